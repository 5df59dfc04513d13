"""First-boot files for VMs: a small "seed" disk per node, and the base disk that knows how to read it.

A VM's root is a qcow2 overlay on the shared base disk, and nothing on this host can write files into
ext4 inside a qcow2 without loop devices, nbd or libguestfs. So the per-node files (hostname, host key,
authorized_keys, …) go onto a second, tiny disk: ext4 labelled ``kha-seed`` made with ``mkfs.ext4 -d``
(no mount needed), attached read-only as vdb. ``kha-seed.service`` in the guest mounts it and copies
``/root/.`` onto ``/`` before systemd-networkd and sshd start.

That unit is not in the base image yet. Until it is (the images recipe can add ``SEED_FILES``), the
harness derives its own base disk once per image: the image's rootfs plus ``SEED_FILES``, packed with
``mkfs.ext4 -d`` inside a throwaway mount namespace (an overlay, so the image stays untouched) and
converted to qcow2; cached under the harness cache, keyed by image digest and ``SEED_VERSION``.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path

from harness import hostcmd, paths
from harness.firstboot import File, write_tree
from harness.state import ImageRef

log = logging.getLogger(__name__)

LABEL = "kha-seed"
SEED_SCRIPT_PATH = "/usr/lib/kha/kha-seed"

SEED_SCRIPT = """#!/bin/sh
# kha-seed: copy the kha harness's per-node files (hostname, SSH host key, authorized_keys, ...) from
# the seed disk (ext4, label kha-seed, attached read-only by the harness) onto the root filesystem.
# Runs before systemd-networkd and sshd (kha-seed.service). No seed disk: nothing to do.
set -eu
dev=$(blkid -L kha-seed 2>/dev/null || true)
[ -n "$dev" ] || exit 0
mnt=/run/kha-seed
mkdir -p "$mnt"
mount -o ro "$dev" "$mnt"
if [ -d "$mnt/root" ]; then
    cp -a "$mnt/root/." /
fi
umount "$mnt"
rmdir "$mnt"
if [ -s /etc/hostname ]; then
    hostname "$(cat /etc/hostname)"
fi
"""

SEED_UNIT = """[Unit]
Description=kha: per-node files from the harness seed disk
Documentation=file:/usr/lib/kha/kha-seed
DefaultDependencies=no
ConditionVirtualization=!container
After=systemd-remount-fs.service
Before=sysinit.target shutdown.target systemd-network-generator.service systemd-networkd.service
Before=ssh.service kha-ssh-hostkeys.service systemd-hostnamed.service
Conflicts=shutdown.target

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/lib/kha/kha-seed

[Install]
WantedBy=sysinit.target
"""

SEED_FILES: tuple[File, ...] = (
    File(SEED_SCRIPT_PATH, SEED_SCRIPT.encode(), 0o755),
    File("/etc/systemd/system/kha-seed.service", SEED_UNIT.encode()),
)
# Bump when SEED_SCRIPT/SEED_UNIT change: derived base disks are rebuilt once.
SEED_VERSION = hashlib.sha256(SEED_SCRIPT.encode() + SEED_UNIT.encode()).hexdigest()[:8]


def image_has_seed_support(image: ImageRef) -> bool:
    """True when the image itself ships the seed unit (then its qcow2 boots as is)."""
    root = Path(image.rootfs)
    return any((root / p).exists() for p in ("usr/lib/kha/kha-seed", "lib/kha/kha-seed"))


def base_disk(image: ImageRef, cache: Path | None = None) -> Path:
    """The qcow2 every VM overlay backs onto: the image's own, or the derived one (built once)."""
    # A cloud image reads its NoCloud seed with cloud-init (harness.cloudinit); it has no rootfs to derive from.
    if image.is_cloud_image or image_has_seed_support(image):
        return Path(image.qcow2)
    out_dir = (cache or paths.harness_cache()) / "vm-base" / f"{image.name}-{image.digest}-seed{SEED_VERSION}"
    disk = out_dir / "disk.qcow2"
    if disk.exists():
        return disk
    log.info("deriving a VM base disk with kha-seed.service from %s-%s", image.name, image.digest)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}-", dir=out_dir.parent))
    try:
        upper, wdir, merged = work / "upper", work / "work", work / "merged"
        for d in (upper, wdir, merged):
            d.mkdir()
        write_tree(upper, SEED_FILES, like=Path(image.rootfs))
        # What `systemctl enable kha-seed.service` would do.
        wants = upper / "etc/systemd/system/sysinit.target.wants"
        wants.mkdir(mode=0o755, exist_ok=True)
        (wants / "kha-seed.service").symlink_to("/etc/systemd/system/kha-seed.service")
        size = _virtual_size(Path(image.qcow2))
        raw = work / "disk.raw"
        # mkfs.ext4 -d reads the merged tree inside a private mount namespace: the overlay mount
        # disappears with the command, nothing is left mounted on the host.
        script = ('mount -t overlay -o "lowerdir=$1,upperdir=$2,workdir=$3" kha-vm-base "$4" && '
                  'mkfs.ext4 -q -F -L kha-root -d "$4" "$5" "$6"')
        hostcmd.run(["unshare", "--mount", "--propagation", "private", "--", "/bin/sh", "-c", script, "kha-vm-base",
                     image.rootfs, str(upper), str(wdir), str(merged), str(raw), f"{size}"], timeout=600)
        hostcmd.run(["qemu-img", "convert", "-O", "qcow2", str(raw), str(work / "disk.qcow2")], timeout=600)
        out_dir.mkdir(exist_ok=True)
        os.replace(work / "disk.qcow2", disk)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return disk


def _virtual_size(qcow2: Path) -> int:
    import json  # noqa: PLC0415

    info = json.loads(hostcmd.run(["qemu-img", "info", "--output=json", str(qcow2)]))
    return int(info["virtual-size"])


def make_seed_disk(files: Iterable[File], out: Path, like: Path) -> None:
    """A raw ext4 image labelled ``kha-seed`` holding ``files`` under ``/root`` (mkfs.ext4 -d, no mount)."""
    tree = out.with_name(out.name + ".d")
    shutil.rmtree(tree, ignore_errors=True)
    (tree / "root").mkdir(parents=True)
    write_tree(tree / "root", files, like=like)
    out.unlink(missing_ok=True)
    # No journal: a 4 MiB read-only seed needs none (and mke2fs refuses one that small).
    hostcmd.run(["mkfs.ext4", "-q", "-F", "-O", "^has_journal", "-L", LABEL, "-d", str(tree), str(out), "4M"])
    shutil.rmtree(tree, ignore_errors=True)
