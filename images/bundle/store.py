"""The bundle cache: ``CACHE/bundles/NAME-HASH12/``, built atomically under a lock, as base images are.

    bundles/
      kubernetes-1.20.2-3f2a9c0d1e4b/     one complete bundle (see images.bundle for its layout)
      .kubernetes-1.20.2-3f2a9c0d1e4b.lock
      .building-kubernetes-1.20.2-3f2a9c0d1e4b-XXXX/    a build in progress, or an interrupted one
      .kubernetes-1.20.2-3f2a9c0d1e4b.failed.log        build.log of the last failed build
      .apt/         private apt sources and lists (images.bundle.apt)
      .downloads/   Debian source packages, kept across builds
      .go-cache/    GOCACHE shared by every build (warm rebuilds compile almost nothing)

The protocol is ``images.cache``'s, through its shared functions (``build_lock``, ``remove_leftovers``,
``publish``): a directory with a final name always holds a complete bundle whose manifest.json was written
last.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from core.bundle_manifest import MANIFEST, BundleManifest, ManifestError
from images.bundle.recipe import BundleRecipe, bundle_hash
from images.cache import build_lock, publish, remove_leftovers, remove_quietly
from images.errors import ImageError
from images.run import Progress

log = logging.getLogger(__name__)

BUILD_LOG = "build.log"
_NAME_RE = re.compile(r"^(?P<name>.+)-(?P<digest>[0-9a-f]{12})$")

# A builder fills an empty work directory and returns the manifest (``build.seconds`` is set by the store).
BundleBuilder = Callable[[BundleRecipe, Path, Progress | None], BundleManifest]


@dataclass(frozen=True)
class Bundle:
    """A complete, cached bundle. Paths are absolute; treat them as read-only."""

    name: str
    digest: str
    path: Path
    manifest: BundleManifest

    @classmethod
    def load(cls, directory: Path) -> Bundle | None:
        """The bundle in ``directory``, or ``None`` when it is not a complete one."""
        if not (directory / MANIFEST).is_file():
            return None
        try:
            m = BundleManifest.load(directory / MANIFEST)
        except ManifestError as exc:
            log.warning("ignoring %s: %s", directory, exc)
            return None
        return cls(name=m.name, digest=m.hash, path=directory, manifest=m)

    @property
    def bin_dir(self) -> Path:
        return self.path / "bin"

    @property
    def images_dir(self) -> Path:
        return self.path / "images"

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
        return self.bin_dir / component

    def image_archives(self) -> list[tuple[str, Path]]:
        """(name:tag, archive) for every image the bundle carries."""
        return [(i.ref, self.path / i.archive) for i in self.manifest.images if i.archive is not None]


class BundleStore:
    """Bundles under ``root/bundles``: lookup, listing and atomic, locked builds."""

    def __init__(self, root: Path) -> None:
        self.dir = root / "bundles"

    @property
    def apt_dir(self) -> Path:
        return self.dir / ".apt"

    @property
    def downloads_dir(self) -> Path:
        return self.dir / ".downloads"

    @property
    def go_cache(self) -> Path:
        return self.dir / ".go-cache"

    def path_for(self, r: BundleRecipe) -> Path:
        return self.dir / f"{r.name}-{bundle_hash(r)}"

    def lookup(self, r: BundleRecipe) -> Bundle | None:
        return Bundle.load(self.path_for(r))

    def list(self) -> list[Bundle]:
        """Every complete bundle, including ones built from older versions of a recipe."""
        if not self.dir.is_dir():
            return []
        found = []
        for p in sorted(self.dir.iterdir()):
            if p.name.startswith(".") or not _NAME_RE.match(p.name):
                continue
            b = Bundle.load(p)
            if b is not None:
                found.append(b)
        return found

    def build(
        self, r: BundleRecipe, builder: BundleBuilder, *, force: bool = False, progress: Progress | None = None
    ) -> Bundle:
        """Build ``r`` with ``builder`` unless it is cached (or ``force``); return the bundle."""
        self.dir.mkdir(parents=True, exist_ok=True)
        final = self.path_for(r)
        with build_lock(self.dir, final.name, progress):
            if not force and (b := Bundle.load(final)) is not None:
                log.info("%s: built by another process meanwhile", final.name)
                return b
            remove_leftovers(self.dir, final.name)
            work = Path(tempfile.mkdtemp(prefix=f".building-{final.name}-", dir=self.dir))
            work.chmod(0o755)
            try:
                start = time.monotonic()
                manifest = builder(r, work, progress)
                if manifest.build is not None:
                    seconds = round(time.monotonic() - start, 1)
                    manifest = dataclasses.replace(manifest, build=dataclasses.replace(manifest.build, seconds=seconds))
                problems = manifest.problems(work)
                if problems:
                    raise ImageError(f"the builder's manifest does not match its output: {'; '.join(problems)}")
                _write(work / MANIFEST, manifest.to_json())
                publish(self.dir, work, final)
            except BaseException:
                self._keep_log(work, final.name)
                remove_quietly(work)
                raise
        b = Bundle.load(final)
        if b is None:
            raise ImageError(f"{final}: just built, but its manifest does not load")
        return b

    def failed_log(self, r: BundleRecipe) -> Path:
        """Where the build log of the last failed build of ``r`` is kept (the build directory is not)."""
        return self.dir / f".{self.path_for(r).name}.failed.log"

    def _keep_log(self, work: Path, key: str) -> None:
        src = work / BUILD_LOG
        if src.is_file():
            dest = self.dir / f".{key}.failed.log"
            try:
                shutil.copyfile(src, dest)
                log.warning("build of %s failed; its log: %s", key, dest)
            except OSError as exc:
                log.warning("could not keep the log of the failed build %s: %s", key, exc)


def _write(path: Path, text: str) -> None:
    """``path`` written atomically (tmp file, fsync, rename)."""
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("w") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.rename(tmp, path)
