"""A base image in the store: its files, its manifest, and ``ImageStore`` (the store's ``images/`` folder).

    images/debian-12-3f2a9c0d1e4b/
      rootfs/                        the tree (libvirt-LXC nodes; mkfs.ext4 -d source)
      disk.qcow2                     ext4 on the whole disk (/dev/vda), for qemu VMs
      vmlinuz, initrd.img            for direct kernel boot (manifest: kernel_cmdline)
      manifest.json                  written last (images.cache)
      build.log

The build itself is ``images.debootstrap``'s; locking, atomic publishing and lookup are ``images.cache``'s.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.bundle_manifest import file_sha256
from images import cache
from images.cache import BUILD_LOG, MANIFEST, Built, Store, tree_size
from images.errors import ImageError
from images.recipes import BUILDER_VERSION, Recipe, recipe_hash

ROOTFS = "rootfs"
QCOW2 = "disk.qcow2"
KERNEL = "vmlinuz"
INITRD = "initrd.img"
MANIFEST_FORMAT = 1


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


#: A builder fills an empty work directory with ROOTFS, QCOW2, KERNEL and INITRD.
Builder = cache.Builder[Recipe, BuildInfo]


@dataclass(frozen=True)
class Image(Built):
    """A complete, cached image. Paths are absolute; the harness treats them as read-only."""

    rootfs: Path
    qcow2: Path
    kernel: Path
    initrd: Path
    manifest: Path
    kernel_cmdline: str
    created: str

    @classmethod
    def from_manifest(cls, directory: Path, doc: dict[str, Any]) -> Image | None:
        """The image in ``directory`` whose manifest is ``doc``; ``None`` for another format or kind (a
        cloud image, ``images.cloudimage``, shares the folder and has no rootfs/kernel/initrd)."""
        if doc.get("format") != MANIFEST_FORMAT or doc.get("kind", "debootstrap") != "debootstrap":
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


class ImageStore(Store[Recipe, BuildInfo, Image]):
    """Base images under ``root/images`` (``root``: the kha cache unless given)."""

    def __init__(self, root: Path | None = None) -> None:
        super().__init__(root, "images", digest=recipe_hash, load=Image.from_manifest, seal=_seal)


def _seal(r: Recipe, work: Path, info: BuildInfo, seconds: float) -> dict[str, Any]:
    missing = [n for n in (ROOTFS, QCOW2, KERNEL, INITRD) if not (work / n).exists()]
    if missing:
        raise ImageError(f"the builder did not produce {', '.join(missing)} in {work}")
    qcow2 = work / QCOW2
    return {
        "format": MANIFEST_FORMAT,
        "name": r.name,
        "hash": recipe_hash(r),
        "builder_version": BUILDER_VERSION,
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "build_seconds": round(seconds, 1),
        "files": {"rootfs": ROOTFS, "qcow2": QCOW2, "kernel": KERNEL, "initrd": INITRD, "log": BUILD_LOG},
        "kernel_version": info.kernel_version,
        "kernel_cmdline": info.kernel_cmdline,
        "qcow2_sha256": file_sha256(qcow2),
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
