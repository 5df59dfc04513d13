"""The bundle cache: ``CACHE/bundles/NAME-HASH12/``, built atomically under a lock, as base images are.

    bundles/
      kubernetes-1.20.2-3f2a9c0d1e4b/     one complete bundle (see images.bundle for its layout)
      .kubernetes-1.20.2-3f2a9c0d1e4b.lock
      .building-kubernetes-1.20.2-3f2a9c0d1e4b-XXXX/    a build in progress, or an interrupted one
      .kubernetes-1.20.2-3f2a9c0d1e4b.failed.log        build.log of the last failed build
      .apt/         private apt sources and lists (images.bundle.apt)
      .downloads/   Debian source packages, kept across builds
      .go-cache/    GOCACHE shared by every build (warm rebuilds compile almost nothing)

The protocol is ``images.cache.ImageStore``'s (same dot-directory names, lock file and rename): a directory
with a final name always holds a complete bundle whose manifest.json was written last. That class is typed
for base images (its build checks for rootfs/qcow2), so the few lines of protocol are repeated here over
``images.cache.remove_tree`` rather than bent to fit.
"""

from __future__ import annotations

import dataclasses
import fcntl
import logging
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from images.bundle.errors import ManifestError
from images.bundle.manifest import MANIFEST, BundleManifest
from images.bundle.recipe import BundleRecipe, bundle_hash
from images.cache import remove_tree
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
        with self._lock(final.name, progress):
            if not force and (b := Bundle.load(final)) is not None:
                log.info("%s: built by another process meanwhile", final.name)
                return b
            self._remove_leftovers(final.name)
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
                manifest.write(work)
                self._publish(work, final)
            except BaseException:
                self._keep_log(work, final.name)
                _remove_quietly(work)
                raise
        b = Bundle.load(final)
        if b is None:
            raise ImageError(f"{final}: just built, but its manifest does not load")
        return b

    @contextmanager
    def _lock(self, key: str, progress: Progress | None) -> Iterator[None]:
        path = self.dir / f".{key}.lock"
        with path.open("a") as fh:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                msg = f"waiting for another build of {key} (lock {path})"
                log.info("%s", msg)
                if progress is not None:
                    progress(msg)
                fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

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

    def _remove_leftovers(self, key: str) -> None:
        # Only under the recipe's lock: nothing else can be writing these.
        for p in [*self.dir.glob(f".building-{key}-*"), *self.dir.glob(f".old-{key}-*")]:
            log.info("removing the leftovers of an interrupted build: %s", p)
            _remove_quietly(p)

    def _publish(self, work: Path, final: Path) -> None:
        old = None
        if final.exists():  # force: move the previous bundle aside, then delete it
            old = Path(tempfile.mkdtemp(prefix=f".old-{final.name}-", dir=self.dir))
            os.rename(final, old / "bundle")
        os.rename(work, final)
        if old is not None:
            _remove_quietly(old)


def _remove_quietly(path: Path) -> None:
    try:
        remove_tree(path)
    except (OSError, ImageError) as exc:
        log.warning("could not remove %s: %s", path, exc)
