"""The base image a topology boots from, as the harness needs it (read-only paths, never modified).

``resolve(name)`` returns the cached image from the ``images`` package, building it on first use
(``kha up`` from a fresh clone builds it). The harness only reads what the image builder produced:
``rootfs`` (LXC nodes' overlay lower dir), ``qcow2`` + ``kernel`` + ``initrd`` + ``kernel_cmdline``
(VMs). ``check`` says clearly what a driver is missing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from harness.errors import DriverUnavailable
from harness.spec import Driver
from harness.state import ImageRef

log = logging.getLogger(__name__)


def resolve(name: str, build: bool = True, progress: Callable[[str], None] | None = None) -> ImageRef:
    """The image ``name`` (e.g. ``debian-12``): cached, or built now when ``build``."""
    try:
        import images  # noqa: PLC0415 - the image builder is only needed when a topology boots
    except ImportError as exc:  # pragma: no cover - the package ships with kha
        raise DriverUnavailable(f"the images package is not importable: {exc}") from exc
    try:
        img = images.get(name) if not build else images.build(name, progress=progress)
    except images.ImageError as exc:
        raise DriverUnavailable(f"base image {name!r} is not available: {exc}") from exc
    if img is None:
        raise DriverUnavailable(f"base image {name!r} is not built: run `kha image build {name}`")
    return ImageRef(img.name, img.digest, str(img.rootfs), str(img.qcow2), str(img.kernel), str(img.initrd),
                    img.kernel_cmdline)


def check(image: ImageRef, driver: Driver) -> None:
    """Raise ``DriverUnavailable`` if ``image`` lacks what ``driver`` boots from."""
    needed = {"lxc": [("rootfs", image.rootfs, "/sbin/init")],
              "qemu": [("qcow2", image.qcow2, ""), ("kernel", image.kernel, ""), ("initrd", image.initrd, "")]}
    for what, path, inner in needed[driver]:
        p = Path(path) / inner.lstrip("/") if inner else Path(path)
        if not (p.exists() or p.is_symlink()):
            raise DriverUnavailable(f"image {image.name}-{image.digest} has no {what} ({p}); rebuild it with "
                                    f"`kha image build {image.name}`")
