"""``images.clouddisk`` on a tiny fake image (a small tree, a "kernel" and an "initrd" of a few bytes): the disk
it writes is what UEFI firmware needs to boot it by itself, checked with the tools a user would use (sfdisk,
mtools, objcopy, blkid), without mounting anything. Booting a real one is tests/integration/test_cloud_image.py."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from images.clouddisk import ESP_TYPE, ROOT_X86_64_TYPE, kernel_cmdline, layout_for, make_cloud_disk
from images.image import Image
from images.recipes import ROOT_LABEL


def fake_image(tmp_path: Path) -> Image:
    d = tmp_path / "img"
    (d / "rootfs/usr/lib").mkdir(parents=True)
    (d / "rootfs/usr/lib/os-release").write_text('ID=debian\nPRETTY_NAME="fake"\n')
    (d / "rootfs/etc").mkdir()
    (d / "rootfs/etc/fstab").write_text(f"LABEL={ROOT_LABEL} / ext4 rw 0 1\n")
    (d / "vmlinuz").write_bytes(b"KERNEL" * 1000)
    (d / "initrd.img").write_bytes(b"INITRD" * 1000)
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(d / "disk.qcow2"), "16M"], check=True)
    return Image(name="fake", digest="0123456789ab", path=d, rootfs=d / "rootfs", qcow2=d / "disk.qcow2",
                 kernel=d / "vmlinuz", initrd=d / "initrd.img", manifest=d / "manifest.json",
                 kernel_cmdline="root=/dev/vda", created="now")


def run(*argv: str) -> str:
    return subprocess.run(argv, capture_output=True, text=True, check=True).stdout


@pytest.fixture(scope="module")
def disk(tmp_path_factory: pytest.TempPathFactory) -> tuple[Image, Path]:
    tmp = tmp_path_factory.mktemp("clouddisk")
    img = fake_image(tmp)
    qcow2 = make_cloud_disk(img, tmp / "out" / "cloud.qcow2", root_mib=32)
    raw = tmp / "cloud.raw"
    run("qemu-img", "convert", "-O", "raw", str(qcow2), str(raw))
    return img, raw


def test_the_disk_is_gpt_with_an_esp_and_a_root_partition(disk: tuple[Image, Path]) -> None:
    img, raw = disk
    lay = layout_for(img, 32, 0)
    dump = run("sfdisk", "--dump", str(raw))
    assert "label: gpt" in dump
    (esp, root) = [line for line in dump.splitlines() if line.startswith(str(raw))]
    assert f"type={ESP_TYPE}" in esp and "start=        2048" in esp
    assert f"type={ROOT_X86_64_TYPE}" in root and f"uuid={lay.root_partuuid.upper()}" in root
    assert [p.name for p in (raw.parent / "out").iterdir()] == ["cloud.qcow2"], "no scratch left beside it"


def test_the_esp_holds_a_unified_kernel_image_that_finds_root_by_partuuid(disk: tuple[Image, Path],
                                                                         tmp_path: Path) -> None:
    img, raw = disk
    esp = f"{raw}@@1M"  # mtools reads the partition at its offset: no loop device
    uki = tmp_path / "BOOTX64.EFI"
    run("mcopy", "-i", esp, "::/EFI/BOOT/BOOTX64.EFI", str(uki))
    for section, want in ((".linux", img.kernel.read_bytes()), (".initrd", img.initrd.read_bytes()),
                          (".cmdline", (kernel_cmdline(layout_for(img, 32, 0).root_partuuid) + "\0").encode())):
        got = tmp_path / section.lstrip(".")
        run("objcopy", "-O", "binary", f"--only-section={section}", str(uki), str(got))
        assert got.read_bytes() == want, section
    assert "ID=debian" in run("objcopy", "-O", "binary", "--only-section=.osrel", str(uki), "/dev/stdout")


def test_the_root_partition_is_the_images_tree(disk: tuple[Image, Path], tmp_path: Path) -> None:
    _img, raw = disk
    root = tmp_path / "root.img"
    # The second partition starts after 1 MiB of GPT and the 64 MiB ESP.
    run("dd", f"if={raw}", f"of={root}", "bs=1M", "skip=65", "count=32", "status=none")
    assert f'LABEL="{ROOT_LABEL}"' in run("blkid", str(root)) and 'TYPE="ext4"' in run("blkid", str(root))
    assert f"LABEL={ROOT_LABEL}" in run("debugfs", "-R", "cat /etc/fstab", str(root))


def test_the_same_image_gives_the_same_partition_uuids(tmp_path: Path) -> None:
    img = fake_image(tmp_path)
    assert layout_for(img, 32, 0) == layout_for(img, 32, 0)
    other = Image(**{**img.__dict__, "digest": "ba9876543210"})
    assert layout_for(other, 32, 0).root_partuuid != layout_for(img, 32, 0).root_partuuid
