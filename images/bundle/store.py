"""A bundle in the store: ``Bundle`` (a built bundle's files) and ``BundleStore`` (the store's ``bundles/``).

    bundles/
      kubernetes-1.20.2-3f2a9c0d1e4b/     one complete bundle (see images.bundle.builder for its layout)
      .apt/         private apt sources and lists (images.bundle.apt)
      .downloads/   Debian source packages, kept across builds
      .go-cache/    GOCACHE shared by every build (warm rebuilds compile almost nothing)

Locking, atomic publishing, lookup and the kept log of a failed build are ``images.cache``'s; the manifest
schema is ``core.bundle_manifest``'s (the installer reads the same one).
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.bundle_manifest import BundleManifest, ManifestError
from images.bundle.recipe import BundleRecipe, bundle_hash
from images.cache import BUILD_LOG, Builder, Built, Store
from images.errors import ImageError

log = logging.getLogger(__name__)

#: A builder fills an empty work directory and returns the manifest (the store sets ``build.seconds``).
BundleBuilder = Builder[BundleRecipe, BundleManifest]


@dataclass(frozen=True)
class Bundle(Built):
    """A complete, cached bundle. Paths are absolute; treat them as read-only."""

    manifest: BundleManifest

    @classmethod
    def from_manifest(cls, directory: Path, doc: dict[str, Any]) -> Bundle | None:
        """The bundle in ``directory`` whose manifest is ``doc``; ``None`` (logged) when it is not one."""
        try:
            m = BundleManifest.from_dict(doc, str(directory / "manifest.json"))
        except ManifestError as exc:
            log.warning("ignoring %s: %s", directory, exc)
            return None
        return cls(name=m.name, digest=m.hash, path=directory, manifest=m)

    @property
    def cni_dir(self) -> Path:
        return self.path / self.manifest.cni.dir

    @property
    def crictl(self) -> Path:
        return self.path / self.manifest.crictl.path

    @property
    def build_log(self) -> Path:
        return self.path / BUILD_LOG

    def binary(self, component: str) -> Path:
        return self.path / "bin" / component

    def image_archives(self) -> list[tuple[str, Path]]:
        """(name:tag, archive) for every image the bundle carries."""
        return [(i.ref, self.path / i.archive) for i in self.manifest.images if i.archive is not None]


class BundleStore(Store[BundleRecipe, BundleManifest, Bundle]):
    """Bundles under ``root/bundles`` (``root``: the kha cache unless given), and the state builds share."""

    def __init__(self, root: Path | None = None) -> None:
        super().__init__(root, "bundles", digest=bundle_hash, load=Bundle.from_manifest, seal=_seal)
        self.apt_dir = self.dir / ".apt"
        self.downloads_dir = self.dir / ".downloads"
        self.go_cache = self.dir / ".go-cache"


def _seal(r: BundleRecipe, work: Path, manifest: BundleManifest, seconds: float) -> dict[str, Any]:
    if manifest.build is not None:
        manifest = dataclasses.replace(manifest, build=dataclasses.replace(manifest.build, seconds=round(seconds, 1)))
    problems = manifest.problems(work)
    if problems:
        raise ImageError(f"the builder's manifest does not match its output: {'; '.join(problems)}")
    return manifest.to_dict()
