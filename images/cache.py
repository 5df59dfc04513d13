"""The image cache: where built images live, how a build becomes visible atomically, the manifest.

Layout, under ``cache_dir()`` (``$KHA_CACHE_DIR``, else ``$XDG_CACHE_HOME/kha``, else ``~/.cache/kha``)::

    images/
      debian-12-3f2a9c0d1e4b/          one complete image: NAME-HASH12 (see recipes.recipe_hash)
        rootfs/                        the tree (libvirt-LXC nodes; mkfs.ext4 -d source)
        disk.qcow2                     ext4 on the whole disk (/dev/vda), for qemu VMs
        vmlinuz, initrd.img            for direct kernel boot (manifest: kernel_cmdline)
        manifest.json                  written last, inside the build directory
        build.log
      .debian-12-3f2a9c0d1e4b.lock     flock: one build of a recipe at a time
      .building-debian-12-3f2a9c0d1e4b-XXXX/   a build in progress (or an interrupted one)

A build runs in a ``.building-…`` directory in the same folder and is renamed to its final name
only after the manifest is written, so a directory with the final name is always complete. An
interrupted build leaves only a dot-directory, which nothing lists and the next build of the same
recipe removes (under the lock, so never while it is still running).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
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
from typing import Any

from images.errors import ImageError
from images.recipes import BUILDER_VERSION, Recipe, recipe_hash
from images.run import Progress

log = logging.getLogger(__name__)

ROOTFS = "rootfs"
QCOW2 = "disk.qcow2"
KERNEL = "vmlinuz"
INITRD = "initrd.img"
MANIFEST = "manifest.json"
BUILD_LOG = "build.log"
MANIFEST_FORMAT = 1

_NAME_RE = re.compile(r"^(?P<name>.+)-(?P<digest>[0-9a-f]{12})$")


@dataclass(frozen=True)
class BuildInfo:
    """What a builder found out while building, for the manifest."""

    kernel_version: str
    kernel_cmdline: str
    sources: tuple[str, ...]
    mirror_origin: str
    packages: tuple[tuple[str, str], ...]
    initrd_modules: tuple[str, ...]
    qcow2_virtual_bytes: int


# A builder fills an empty work directory with ROOTFS, QCOW2, KERNEL and INITRD.
Builder = Callable[[Recipe, Path, Progress | None], BuildInfo]


@dataclass(frozen=True)
class Image:
    """A complete, cached image. Paths are absolute; the harness treats them as read-only."""

    name: str
    digest: str
    path: Path
    rootfs: Path
    qcow2: Path
    kernel: Path
    initrd: Path
    manifest: Path
    kernel_cmdline: str
    created: str

    @classmethod
    def load(cls, directory: Path) -> Image | None:
        """The image in ``directory``, or ``None`` when it is not a complete image."""
        try:
            doc = json.loads((directory / MANIFEST).read_text())
        except (OSError, ValueError):
            return None
        if not isinstance(doc, dict) or doc.get("format") != MANIFEST_FORMAT:
            return None
        files = doc["files"]
        return cls(
            name=doc["name"],
            digest=doc["hash"],
            path=directory,
            rootfs=directory / files["rootfs"],
            qcow2=directory / files["qcow2"],
            kernel=directory / files["kernel"],
            initrd=directory / files["initrd"],
            manifest=directory / MANIFEST,
            kernel_cmdline=doc["kernel_cmdline"],
            created=doc["created"],
        )

    def read_manifest(self) -> dict[str, Any]:
        doc: dict[str, Any] = json.loads(self.manifest.read_text())
        return doc


def cache_dir(env: Mapping[str, str] | None = None) -> Path:
    """``$KHA_CACHE_DIR``, else ``$XDG_CACHE_HOME/kha``, else ``~/.cache/kha``."""
    env = os.environ if env is None else env
    if env.get("KHA_CACHE_DIR"):
        return Path(env["KHA_CACHE_DIR"]).expanduser()
    if env.get("XDG_CACHE_HOME"):
        return Path(env["XDG_CACHE_HOME"]).expanduser() / "kha"
    return Path.home() / ".cache" / "kha"


class ImageStore:
    """Images under ``root/images``: lookup, listing and atomic, locked builds."""

    def __init__(self, root: Path) -> None:
        self.dir = root / "images"

    def path_for(self, r: Recipe) -> Path:
        return self.dir / f"{r.name}-{recipe_hash(r)}"

    def lookup(self, r: Recipe) -> Image | None:
        """The cached image for ``r`` as it is now (its current hash), if built."""
        return Image.load(self.path_for(r))

    def list(self) -> list[Image]:
        """Every complete image, including ones built from older versions of a recipe."""
        if not self.dir.is_dir():
            return []
        images = []
        for p in sorted(self.dir.iterdir()):
            if p.name.startswith(".") or not _NAME_RE.match(p.name):
                continue
            img = Image.load(p)
            if img is not None:
                images.append(img)
        return images

    def build(self, r: Recipe, builder: Builder, *, force: bool = False, progress: Progress | None = None) -> Image:
        """Build ``r`` with ``builder`` unless it is cached (or ``force``); return the image."""
        self.dir.mkdir(parents=True, exist_ok=True)
        final = self.path_for(r)
        with build_lock(self.dir, final.name, progress):
            if not force and (img := Image.load(final)) is not None:
                log.info("%s: built by another process meanwhile", final.name)
                return img
            remove_leftovers(self.dir, final.name)
            work = Path(tempfile.mkdtemp(prefix=f".building-{final.name}-", dir=self.dir))
            work.chmod(0o755)
            try:
                start = time.monotonic()
                info = builder(r, work, progress)
                _check_outputs(work)
                _write_manifest(r, work, info, time.monotonic() - start)
                publish(self.dir, work, final)
            except BaseException:
                remove_quietly(work)
                raise
        img = Image.load(final)
        if img is None:
            raise ImageError(f"{final}: just built, but its manifest does not load")
        return img



def _check_outputs(work: Path) -> None:
    missing = [n for n in (ROOTFS, QCOW2, KERNEL, INITRD) if not (work / n).exists()]
    if missing:
        raise ImageError(f"the builder did not produce {', '.join(missing)} in {work}")


def _write_manifest(r: Recipe, work: Path, info: BuildInfo, seconds: float) -> None:
    qcow2 = work / QCOW2
    doc = {
        "format": MANIFEST_FORMAT,
        "name": r.name,
        "hash": recipe_hash(r),
        "builder_version": BUILDER_VERSION,
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "build_seconds": round(seconds, 1),
        "files": {"rootfs": ROOTFS, "qcow2": QCOW2, "kernel": KERNEL, "initrd": INITRD, "log": BUILD_LOG},
        "kernel_version": info.kernel_version,
        "kernel_cmdline": info.kernel_cmdline,
        "qcow2_sha256": _sha256(qcow2),
        "sizes": {
            "rootfs_bytes": tree_size(work / ROOTFS),
            "qcow2_bytes": qcow2.stat().st_size,
            "qcow2_virtual_bytes": info.qcow2_virtual_bytes,
            "kernel_bytes": (work / KERNEL).stat().st_size,
            "initrd_bytes": (work / INITRD).stat().st_size,
        },
        "sources": list(info.sources),
        "mirror_origin": info.mirror_origin,
        "initrd_modules": list(info.initrd_modules),
        "packages": dict(info.packages),
        "recipe": dataclasses.asdict(r),
    }
    tmp = work / f".{MANIFEST}.tmp"
    with tmp.open("w") as fh:
        json.dump(doc, fh, indent=2, sort_keys=False)
        fh.write("\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.rename(tmp, work / MANIFEST)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


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


# -- shared by every cache of built artefacts (base images here, Kubernetes bundles in images.bundle) --
@contextmanager
def build_lock(cache: Path, key: str, progress: Progress | None) -> Iterator[None]:
    """Hold ``cache/.KEY.lock``: one build of a recipe at a time, across processes."""
    path = cache / f".{key}.lock"
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


def remove_leftovers(cache: Path, key: str) -> None:
    """Remove what an interrupted build of ``key`` left. Only under its ``build_lock``: nothing else writes these."""
    for p in [*cache.glob(f".building-{key}-*"), *cache.glob(f".old-{key}-*")]:
        log.info("removing the leftovers of an interrupted build: %s", p)
        remove_quietly(p)


def publish(cache: Path, work: Path, final: Path) -> None:
    """Rename a finished build into place; a previous one (force) is moved aside first, then deleted."""
    old = None
    if final.exists():
        old = Path(tempfile.mkdtemp(prefix=f".old-{final.name}-", dir=cache))
        os.rename(final, old / "previous")
    os.rename(work, final)
    if old is not None:
        remove_quietly(old)
