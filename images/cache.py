"""The one content-addressed store of built artefacts: base images, Kubernetes bundles, e2e test images.

Under ``cache_dir()`` (``$KHA_CACHE_DIR``, else ``$XDG_CACHE_HOME/kha``, else ``~/.cache/kha``), one folder
per kind (``images/``, ``bundles/``, ``testimages/``), laid out alike::

    images/
      debian-12-3f2a9c0d1e4b/          one complete build: NAME-DIGEST (``digest`` of its recipe)
        …                              what the kind's builder wrote (images.image, images.bundle, …)
        build.log
        manifest.json                  written last, inside the build directory
      .debian-12-3f2a9c0d1e4b.lock     flock: one build of a recipe at a time, across processes
      .building-debian-12-3f2a9c0d1e4b-XXXX/   a build in progress (or an interrupted one)
      .debian-12-3f2a9c0d1e4b.failed.log       build.log of the last failed build

A build runs in a ``.building-…`` directory in the same folder and is renamed to its final name only after
its manifest is written, so a directory with the final name is always complete and a cached build sends no
traffic. An interrupted build leaves only dot-entries, which nothing lists and the next build of the same
recipe removes (under the lock, so never while it is still running). A kind keeps its own shared state in
dot-directories of its folder (the bundle's apt lists, downloads and GOCACHE).
"""

from __future__ import annotations

import dataclasses
import fcntl
import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

from images.errors import ImageError
from images.run import Progress

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
BUILD_LOG = "build.log"

_NAME_RE = re.compile(r"^(?P<name>.+)-(?P<digest>[0-9a-f]{12})$")


def cache_dir(env: Mapping[str, str] | None = None) -> Path:
    """``$KHA_CACHE_DIR``, else ``$XDG_CACHE_HOME/kha``, else ``~/.cache/kha``."""
    env = os.environ if env is None else env
    if env.get("KHA_CACHE_DIR"):
        return Path(env["KHA_CACHE_DIR"]).expanduser()
    if env.get("XDG_CACHE_HOME"):
        return Path(env["XDG_CACHE_HOME"]).expanduser() / "kha"
    return Path.home() / ".cache" / "kha"


def digest(version_key: str, version: str, recipe: DataclassInstance) -> str:
    """12 hex digits over a recipe (a dataclass) and its builder's version: the store's address for a build.

    Stable across processes and machines (canonical JSON, sha256; never Python's ``hash()``).
    """
    doc = {version_key: version, "recipe": dataclasses.asdict(recipe)}
    blob = json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()[:12]


@dataclass(frozen=True)
class Built:
    """A complete build in the store: its recipe's name, the digest that addresses it, its directory."""

    name: str
    digest: str
    path: Path


class Recipe(Protocol):
    """What the store needs of a recipe: its name (the digest comes from the kind)."""

    @property
    def name(self) -> str: ...


R = TypeVar("R", bound=Recipe)
B = TypeVar("B")
T = TypeVar("T")

#: A builder fills an empty work directory and says what it found out (the kind's ``seal`` turns that into
#: the manifest).
Builder = Callable[[R, Path, Progress | None], B]


class Store(Generic[R, B, T]):
    """Builds of one kind under ``root/kind``: lookup, listing, and atomic, locked builds.

    ``digest(recipe)`` names a build; ``load(directory, manifest)`` is the build in a directory (``None``
    when it is not one); ``seal(recipe, work, built, seconds)`` checks a finished work directory and returns
    its manifest document, which the store writes last.
    """

    def __init__(
        self,
        root: Path | None,
        kind: str,
        *,
        digest: Callable[[R], str],
        load: Callable[[Path, dict[str, Any]], T | None],
        seal: Callable[[R, Path, B, float], Mapping[str, Any]],
    ) -> None:
        self.dir = (root if root is not None else cache_dir()) / kind
        self._digest = digest
        self._load = load
        self._seal = seal

    def key(self, r: R) -> str:
        return f"{r.name}-{self._digest(r)}"

    def path_for(self, r: R) -> Path:
        return self.dir / self.key(r)

    def failed_log(self, r: R) -> Path:
        """Where the build log of the last failed build of ``r`` is kept (the build directory is not)."""
        return self.dir / f".{self.key(r)}.failed.log"

    def lookup(self, r: R) -> T | None:
        """The build of ``r`` as it is now (its current digest), if there is one."""
        return self._read(self.path_for(r))

    def list(self) -> list[T]:
        """Every complete build, including ones from older versions of a recipe."""
        if not self.dir.is_dir():
            return []
        found = []
        for p in sorted(self.dir.iterdir()):
            if p.name.startswith(".") or not _NAME_RE.match(p.name):
                continue
            if (item := self._read(p)) is not None:
                found.append(item)
        return found

    def obtain(
        self, r: R, builder: Callable[[], Builder[R, B]], *, force: bool = False, progress: Progress | None = None
    ) -> T:
        """The build of ``r``: cached, or built now (``force``: rebuilt). ``builder()`` is asked for only when
        something is to be built, so a cached build needs no reachable source."""
        if not force and (cached := self.lookup(r)) is not None:
            return cached
        return self.build(r, builder(), force=force, progress=progress)

    def build(self, r: R, builder: Builder[R, B], *, force: bool = False, progress: Progress | None = None) -> T:
        """Build ``r`` with ``builder`` unless it is cached (or ``force``); return the build."""
        self.dir.mkdir(parents=True, exist_ok=True)
        final = self.path_for(r)
        with _build_lock(self.dir, final.name, progress):
            if not force and (done := self._read(final)) is not None:
                log.info("%s: built by another process meanwhile", final.name)
                return done
            _remove_leftovers(self.dir, final.name)
            work = Path(tempfile.mkdtemp(prefix=f".building-{final.name}-", dir=self.dir))
            work.chmod(0o755)
            try:
                start = time.monotonic()
                built = builder(r, work, progress)
                _write_json(work / MANIFEST, self._seal(r, work, built, time.monotonic() - start))
                _publish(self.dir, work, final)
            except BaseException:
                self._keep_log(work, r)
                remove_quietly(work)
                raise
        done = self._read(final)
        if done is None:
            raise ImageError(f"{final}: just built, but its manifest does not load")
        return done

    def _read(self, directory: Path) -> T | None:
        try:
            doc = json.loads((directory / MANIFEST).read_text())
        except (OSError, ValueError):
            return None
        return self._load(directory, doc) if isinstance(doc, dict) else None

    def _keep_log(self, work: Path, r: R) -> None:
        src, dest = work / BUILD_LOG, self.failed_log(r)
        if src.is_file():
            try:
                shutil.copyfile(src, dest)
                log.warning("build of %s failed; its log: %s", self.key(r), dest)
            except OSError as exc:
                log.warning("could not keep the log of the failed build %s: %s", self.key(r), exc)


def _write_json(path: Path, doc: Mapping[str, Any]) -> None:
    """``path`` written atomically (tmp file, fsync, rename), indented as people read it."""
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("w") as fh:
        fh.write(json.dumps(doc, indent=2) + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.rename(tmp, path)


@contextmanager
def _build_lock(folder: Path, key: str, progress: Progress | None) -> Iterator[None]:
    """Hold ``folder/.KEY.lock``: one build of a recipe at a time, across processes."""
    path = folder / f".{key}.lock"
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


def _remove_leftovers(folder: Path, key: str) -> None:
    """Remove what an interrupted build of ``key`` left. Only under its lock: nothing else writes these."""
    for p in [*folder.glob(f".building-{key}-*"), *folder.glob(f".old-{key}-*")]:
        log.info("removing the leftovers of an interrupted build: %s", p)
        remove_quietly(p)


def _publish(folder: Path, work: Path, final: Path) -> None:
    """Rename a finished build into place; a previous one (force) is moved aside first, then deleted."""
    old = None
    if final.exists():
        old = Path(tempfile.mkdtemp(prefix=f".old-{final.name}-", dir=folder))
        os.rename(final, old / "previous")
    os.rename(work, final)
    if old is not None:
        remove_quietly(old)


def tree_size(path: Path) -> int:
    """Bytes allocated by a tree (like ``du -s --bytes`` on allocation, hard links counted once)."""
    seen: set[tuple[int, int]] = set()
    total = 0
    for dirpath, dirnames, filenames in os.walk(path):
        for n in [*dirnames, *filenames]:
            st = os.lstat(os.path.join(dirpath, n))
            if (st.st_dev, st.st_ino) in seen:
                continue
            seen.add((st.st_dev, st.st_ino))
            total += st.st_blocks * 512
    return total


def _mountpoints_under(path: Path) -> list[str]:
    prefix = os.path.realpath(path)
    found = []
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return []
    for line in lines:
        # mountinfo(5): the 5th field is the mount point, with \040-style octal escapes.
        point = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), line.split()[4])
        if point == prefix or point.startswith(prefix + "/"):
            found.append(point)
    return found


def remove_tree(path: Path) -> None:
    """Delete a build tree, refusing while anything is mounted inside it.

    A killed mmdebstrap can leave /proc, /sys or /dev mounted in its chroot; deleting recursively
    through a bind mount of the host's /dev would delete the host's device nodes.
    """
    if not path.exists():
        return
    mounts = _mountpoints_under(path)
    if mounts:
        raise ImageError(
            f"refusing to delete {path}: still mounted inside it: {', '.join(mounts)} "
            f"(unmount with: umount -R {mounts[0]})"
        )
    shutil.rmtree(path)


def remove_quietly(path: Path) -> None:
    """Remove a tree; a failure is logged, not raised (leftovers of a build must not fail the next)."""
    try:
        remove_tree(path)
    except (OSError, ImageError) as exc:
        log.warning("could not remove %s: %s", path, exc)
