"""A cloud disk made from a built image: a disk that boots by itself under UEFI, like a vendor cloud image.

    disk.qcow2 (raw layout, GPT):
      1 MiB         GPT
      partition 1   EFI system partition, vfat: \\EFI\\BOOT\\BOOTX64.EFI = a unified kernel image
      partition 2   the image's rootfs as ext4 (label kha-root), PARTUUID fixed per image
      1 MiB         backup GPT

This is how kha proves the cloud-image path (``images.cloudimage`` + ``harness.cloudinit``) without
internet: ``debian-12-cloudinit`` (the Debian image with cloud-init) made into such a disk, served from
127.0.0.1, downloaded, verified and booted with OVMF exactly as an Ubuntu or Rocky image would be.

No loop devices and no mounts: each partition is a file of its own (``mkfs.vfat -C`` + mtools for the
ESP, ``mkfs.ext4 -d ROOTFS`` for the root), the partition table is ``sfdisk`` on the raw disk file, and the
two are written into it with ``dd conv=notrunc``. The bootloader is the kernel itself: a unified kernel
image (systemd's EFI stub with the kernel, initrd, os-release and command line as PE sections, put
together with ``objcopy``; https://uapi-group.org/specifications/specs/unified_kernel_image/), found by
the firmware at the removable-media path, so no NVRAM boot entry is needed.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

from images.errors import BuildError, ImageError
from images.image import Image
from images.recipes import ROOT_LABEL
from images.run import Progress, capture, file_log, missing_tools, run, step

log = logging.getLogger(__name__)

EFI_STUB = Path("/usr/lib/systemd/boot/efi/linuxx64.efi.stub")
TOOLS = ("objcopy", "objdump", "mkfs.vfat", "mmd", "mcopy", "mkfs.ext4", "sfdisk", "dd", "qemu-img")
MIB = 1 << 20
SECTOR = 512
# GPT partition types: https://uapi-group.org/specifications/specs/discoverable_partitions_specification/
ESP_TYPE = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"
ROOT_X86_64_TYPE = "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709"
# A fixed namespace for the disk's UUIDs: the same image gives the same disk, as a vendor's build does.
_NAMESPACE = uuid.UUID("9b2d7a4e-3f1c-5e8a-b6d0-4c2f1e7a9d35")


@dataclass(frozen=True)
class Layout:
    """Where the partitions go (MiB) and their UUIDs."""

    esp_mib: int
    root_mib: int
    disk_uuid: str
    esp_uuid: str
    root_partuuid: str

    @property
    def total_mib(self) -> int:
        return 1 + self.esp_mib + self.root_mib + 1

    def sfdisk_script(self) -> str:
        esp_start, root_start = MIB // SECTOR, (1 + self.esp_mib) * MIB // SECTOR
        return (
            "label: gpt\n"
            f"label-id: {self.disk_uuid}\n"
            "unit: sectors\n"
            f"start={esp_start}, size={self.esp_mib * MIB // SECTOR}, type={ESP_TYPE}, uuid={self.esp_uuid}, "
            'name="EFI System"\n'
            f"start={root_start}, size={self.root_mib * MIB // SECTOR}, type={ROOT_X86_64_TYPE}, "
            f'uuid={self.root_partuuid}, name="root"\n'
        )


def layout_for(img: Image, root_mib: int, uki_bytes: int) -> Layout:
    """The layout for ``img``: an ESP with room for the UKI (at least 64 MiB, FAT32's comfortable minimum)."""
    esp_mib = max(64, -(-uki_bytes // MIB) + 16)

    def made(what: str) -> str:
        return str(uuid.uuid5(_NAMESPACE, f"{img.name}-{img.digest}/{what}"))

    return Layout(esp_mib, root_mib, made("disk"), made("esp"), made("root"))


def kernel_cmdline(partuuid: str) -> str:
    # The root by PARTUUID, as vendor images do (a UUID, not a device name). No ip=/hostname: cloud-init
    # configures those from the NoCloud seed, which is the point of this disk.
    return f"root=PARTUUID={partuuid} rw console=ttyS0"


def make_cloud_disk(img: Image, out: Path, *, root_mib: int | None = None, progress: Progress | None = None) -> Path:
    """Write ``out`` (qcow2): ``img``'s tree as a GPT disk that boots under UEFI. Returns ``out``."""
    missing = missing_tools(TOOLS)
    if missing:
        raise ImageError("missing tools for a cloud disk: " + ", ".join(missing))
    if not EFI_STUB.is_file():
        raise ImageError(f"{EFI_STUB} is missing (apt-get install systemd-boot-efi)")
    if root_mib is None:
        root_mib = _virtual_mib(img.qcow2)
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        with file_log(work / "build.log") as logfile:
            with step(progress, "unified kernel image (systemd EFI stub + kernel + initrd + cmdline)"):
                # The PARTUUID is fixed by the image, so the layout can be known before the UKI's size is.
                partuuid = layout_for(img, root_mib, 0).root_partuuid
                uki = work / "BOOTX64.EFI"
                _unified_kernel_image(img, kernel_cmdline(partuuid), uki, work)
                lay = layout_for(img, root_mib, uki.stat().st_size)
            with step(progress, f"ESP ({lay.esp_mib} MiB vfat)"):
                esp = work / "esp.img"
                run(["mkfs.vfat", "-F", "32", "-n", "ESP", "-C", str(esp), str(lay.esp_mib * 1024)], logfile=logfile,
                    what="mkfs.vfat")
                run(["mmd", "-i", str(esp), "::/EFI", "::/EFI/BOOT"], logfile=logfile, what="mmd")
                run(["mcopy", "-i", str(esp), str(uki), "::/EFI/BOOT/BOOTX64.EFI"], logfile=logfile, what="mcopy")
            with step(progress, f"root partition ({lay.root_mib} MiB ext4 from {img.rootfs.name}/)"):
                root = work / "root.img"
                run(["mkfs.ext4", "-q", "-t", "ext4", "-L", ROOT_LABEL, "-d", str(img.rootfs),
                     str(root), f"{lay.root_mib}M"], logfile=logfile, what="mkfs.ext4")
            with step(progress, f"GPT disk ({lay.total_mib} MiB) → qcow2"):
                raw = work / "disk.raw"
                with raw.open("wb") as fh:
                    fh.truncate(lay.total_mib * MIB)
                capture(["sfdisk", "--no-reread", "--no-tell-kernel", str(raw)], what="sfdisk",
                        input_text=lay.sfdisk_script())
                for part, seek in ((esp, 1), (root, 1 + lay.esp_mib)):
                    # sparse: the root file is mostly holes; writing its zeros would make the raw file dense.
                    run(["dd", f"if={part}", f"of={raw}", "bs=1M", f"seek={seek}", "conv=notrunc,sparse",
                         "status=none"], logfile=logfile, what="dd")
                _check_partitions(raw, lay)
                tmp = work / "disk.qcow2"
                run(["qemu-img", "convert", "-f", "raw", "-O", "qcow2", str(raw), str(tmp)], logfile=logfile,
                    what="qemu-img convert")
                tmp.replace(out)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    log.info("cloud disk of %s-%s: %s", img.name, img.digest, out)
    return out


def _unified_kernel_image(img: Image, cmdline: str, out: Path, work: Path) -> None:
    """systemd-stub + sections, each placed after the stub's own (objdump -h) at increasing addresses."""
    osrel = img.rootfs / "usr/lib/os-release"
    if not osrel.is_file():
        osrel = img.rootfs / "etc/os-release"
    cmdline_file = work / "cmdline.txt"
    cmdline_file.write_text(cmdline + "\0")
    sections = ((".osrel", osrel), (".cmdline", cmdline_file), (".linux", img.kernel), (".initrd", img.initrd))
    addr = _align(_stub_end(capture(["objdump", "-h", str(EFI_STUB)], what="objdump -h")))
    argv = ["objcopy"]
    for name, path in sections:
        argv += ["--add-section", f"{name}={path}", "--change-section-vma", f"{name}={addr:#x}"]
        addr = _align(addr + path.stat().st_size)
    argv += [str(EFI_STUB), str(out)]
    capture(argv, what="objcopy (unified kernel image)")


def _stub_end(objdump_h: str) -> int:
    """The first address after the stub's last section (``objdump -h``: idx name size vma …)."""
    end = 0
    for line in objdump_h.splitlines():
        m = re.match(r"\s*\d+\s+\S+\s+([0-9a-f]+)\s+([0-9a-f]+)\s", line)
        if m:
            end = max(end, int(m.group(1), 16) + int(m.group(2), 16))
    if end == 0:
        raise BuildError(f"objdump -h {EFI_STUB}: no sections found")
    return end


def _align(n: int, to: int = 4096) -> int:
    return -(-n // to) * to


def _check_partitions(raw: Path, lay: Layout) -> None:
    dump = capture(["sfdisk", "--dump", str(raw)], what="sfdisk --dump").upper()
    for want in (lay.esp_uuid, lay.root_partuuid, ESP_TYPE, ROOT_X86_64_TYPE):
        if want.upper() not in dump:
            raise BuildError(f"{raw}: the partition table lacks {want}:\n{dump}")


def _virtual_mib(qcow2: Path) -> int:
    info = json.loads(capture(["qemu-img", "info", "--output=json", str(qcow2)], what="qemu-img info"))
    return int(info["virtual-size"]) // MIB

