"""The base image a topology boots from, as the harness needs it (read-only paths, never modified).

``resolve(name)`` returns the cached image from the ``images`` package, building it on first use
(``kha up`` from a fresh clone builds it; a cloud image is downloaded and verified against its pinned
digest). The harness only reads what the image builder produced: ``rootfs`` (LXC nodes' overlay lower
dir), ``qcow2`` + ``kernel`` + ``initrd`` + ``kernel_cmdline`` (VMs), or a cloud image's ``qcow2`` alone,
which boots with its own bootloader under OVMF (UEFI) or SeaBIOS. ``check`` says clearly what a driver is
missing, and refuses a cloud image on LXC (there is no rootfs directory to run as a container).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from harness.errors import DriverUnavailable
from harness.spec import Driver
from harness.state import ImageRef

log = logging.getLogger(__name__)

# OVMF as one image (code and variables) for qemu's -bios: no per-node NVRAM file. Boot entries then do not
# persist, which a cloud image does not need (the firmware finds \EFI\BOOT\BOOTX64.EFI on the ESP, as every
# cloud image ships), and a domain without NVRAM keeps libvirt's plain undefine and internal snapshots.
OVMF_FIRMWARE = Path("/usr/share/ovmf/OVMF.fd")


def resolve(name: str, build: bool = True, progress: Callable[[str], None] | None = None) -> ImageRef:
    """The image ``name`` (e.g. ``debian-12``): cached, or built now when ``build``."""
    try:
        import images  # noqa: PLC0415 - the image builder is only needed when a topology boots
        from images.recipes import CloudImageRecipe  # noqa: PLC0415
    except ImportError as exc:  # pragma: no cover - the package ships with kha
        raise DriverUnavailable(f"the images package is not importable: {exc}") from exc
    try:
        if isinstance(images.recipe(name), CloudImageRecipe):
            cloud = images.get_cloud(name) if not build else images.build_cloud(name, progress=progress)
            if cloud is None:
                raise DriverUnavailable(f"cloud image {name!r} is not downloaded: run `kha image build {name}`")
            return ImageRef(cloud.name, cloud.digest, "", str(cloud.qcow2), "", "", "", boot=cloud.boot)
        img = images.get(name) if not build else images.build(name, progress=progress)
    except images.ImageError as exc:
        raise DriverUnavailable(f"base image {name!r} is not available: {exc}") from exc
    if img is None:
        raise DriverUnavailable(f"base image {name!r} is not built: run `kha image build {name}`")
    return ImageRef(img.name, img.digest, str(img.rootfs), str(img.qcow2), str(img.kernel), str(img.initrd),
                    img.kernel_cmdline)


def check(image: ImageRef, driver: Driver) -> None:
    """Raise ``DriverUnavailable`` if ``image`` lacks what ``driver`` boots from."""
    if image.is_cloud_image:
        if driver == "lxc":
            raise DriverUnavailable(f"image {image.name} is a cloud image (a vendor disk that boots with its own "
                                    "bootloader, no rootfs directory): it runs on qemu only, not as an LXC node "
                                    "(--driver qemu)")
        needed = [("qcow2", image.qcow2, "")]
        if image.boot == "uefi":
            needed.append(("UEFI firmware (apt-get install ovmf)", str(OVMF_FIRMWARE), ""))
    else:
        needed = {"lxc": [("rootfs", image.rootfs, "/sbin/init")],
                  "qemu": [("qcow2", image.qcow2, ""), ("kernel", image.kernel, ""),
                           ("initrd", image.initrd, "")]}[driver]
    for what, path, inner in needed:
        p = Path(path) / inner.lstrip("/") if inner else Path(path)
        if not (p.exists() or p.is_symlink()):
            raise DriverUnavailable(f"image {image.name}-{image.digest} has no {what} ({p}); rebuild it with "
                                    f"`kha image build {image.name}`")
