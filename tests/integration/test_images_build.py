"""Integration: build debian-12 for real (or reuse the cached build) and check what the harness relies on.

Needs root, mmdebstrap, mkfs.ext4, qemu-img and the Debian mirror from this machine's apt configuration;
the boot test also needs qemu-system-x86_64 (TCG, ~30 s). Missing tools fail the test, they never skip it.
``KHA_TEST_IMAGE_RECIPE=debian-13`` runs the same checks on another Debian recipe.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

import pytest

import images
from core.errors import KhaError
from core.waiting import until
from images.debootstrap import REQUIRED_PATHS, preflight
from images.initrd import list_initrd
from images.recipes import DebootstrapRecipe
from images.run import missing_tools

pytestmark = pytest.mark.integration

RECIPE = os.environ.get("KHA_TEST_IMAGE_RECIPE", "debian-12")
BOOT_TOOLS = {"qemu-system-x86_64": "qemu-system-x86", "debugfs": "e2fsprogs", "ssh": "openssh-client"}


@pytest.fixture(scope="module")
def image() -> images.Image:
    r = images.recipe(RECIPE)
    assert isinstance(r, DebootstrapRecipe)
    try:
        preflight(r)  # the builder's own check: root, mmdebstrap, mkfs.ext4, qemu-img, zstd, the keyring
    except KhaError as exc:
        pytest.fail(f"this machine cannot build {RECIPE}: {exc}")
    return images.build(RECIPE)


@pytest.fixture(scope="module")
def manifest(image: images.Image) -> dict[str, object]:
    doc: dict[str, object] = json.loads(image.manifest.read_text())
    return doc


# What the builder checks before it publishes an image, and what only the harness needs besides.
@pytest.mark.parametrize("path", [*REQUIRED_PATHS, "usr/lib/cni/host-local", "usr/sbin/chronyd"])
def test_rootfs_has(image: images.Image, path: str) -> None:
    assert os.path.lexists(image.rootfs / path)


def test_no_ssh_host_keys_and_an_empty_root_ssh(image: images.Image) -> None:
    assert not list((image.rootfs / "etc/ssh").glob("ssh_host_*"))
    ssh_dir = image.rootfs / "root/.ssh"
    assert stat.S_IMODE(ssh_dir.stat().st_mode) == 0o700 and not list(ssh_dir.iterdir())
    assert "PermitRootLogin prohibit-password" in (image.rootfs / "etc/ssh/sshd_config.d/10-kha.conf").read_text()


def test_machine_id_is_empty_and_host_files_are_not_leaked(image: images.Image) -> None:
    assert (image.rootfs / "etc/machine-id").read_bytes() == b""
    assert (image.rootfs / "etc/hostname").read_text().strip() == "localhost"
    assert "nameserver" not in (image.rootfs / "etc/resolv.conf").read_text()


def test_role_services_are_disabled_and_base_services_enabled(image: images.Image) -> None:
    wants = image.rootfs / "etc/systemd/system/multi-user.target.wants"
    enabled = {p.name for p in wants.iterdir()}
    assert not enabled & {"haproxy.service", "keepalived.service", "etcd.service", "nginx.service"}
    assert {"ssh.service", "systemd-networkd.service", "chrony.service"} <= enabled
    sysinit = image.rootfs / "etc/systemd/system/sysinit.target.wants"
    assert (sysinit / "systemd-network-generator.service").exists()
    assert sorted(p.name for p in (image.rootfs / "etc/systemd/network").iterdir())[-1].startswith("99-")


def test_chrony_not_timesyncd(manifest: dict[str, object]) -> None:
    packages = manifest["packages"]
    assert isinstance(packages, dict)
    assert "chrony" in packages and "systemd-timesyncd" not in packages
    r = images.recipe(RECIPE)
    assert isinstance(r, DebootstrapRecipe)
    assert set(r.packages) <= set(packages)
    assert {"etcd-server", "haproxy", "keepalived", "containerd", "runc", "libnginx-mod-stream"} <= set(packages)


def test_qcow2_is_qcow2(image: images.Image, manifest: dict[str, object]) -> None:
    info = json.loads(
        subprocess.run(["qemu-img", "info", "--output=json", str(image.qcow2)], capture_output=True, check=True).stdout
    )
    assert info["format"] == "qcow2"
    sizes = manifest["sizes"]
    assert isinstance(sizes, dict) and info["virtual-size"] == sizes["qcow2_virtual_bytes"]


def test_kernel_and_initrd_with_virtio(image: images.Image) -> None:
    assert image.kernel.stat().st_size > 1_000_000
    names = list_initrd(image.initrd)
    modules = {n.rsplit("/", 1)[-1].split(".ko", 1)[0] for n in names if ".ko" in n}
    assert "virtio_blk" in modules
    # Some kernels build the rest in (trixie's 6.12 cloud kernel has virtio_pci built in).
    version = json.loads(image.manifest.read_text())["kernel_version"]
    # bullseye trees are not merged-/usr: modules live in /lib there.
    builtin_list = next(
        p for p in (image.rootfs / d / version / "modules.builtin" for d in ("usr/lib/modules", "lib/modules"))
        if p.is_file()
    )  # fmt: skip
    builtin = {line.rsplit("/", 1)[-1].split(".ko", 1)[0] for line in builtin_list.read_text().split()}
    assert {"virtio_pci", "virtio_net", "ext4"} <= modules | builtin
    if shutil.which("lsinitramfs"):  # cross-check with initramfs-tools when the host has it
        out = subprocess.run(["lsinitramfs", str(image.initrd)], capture_output=True, text=True, check=True).stdout
        assert "virtio_blk.ko" in out


def test_a_cached_image_is_reused_without_building(image: images.Image, monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[str] = []
    monkeypatch.setattr(images, "builder_for", lambda r, *args: asked.append(r.name))
    assert images.build(RECIPE) == image
    assert asked == [], "a cached image needs no builder (and so no source, no traffic)"


# --- the qcow2 boots: direct kernel boot, static address from ip=, SSH login -------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture
def booted(image: images.Image, tmp_path: Path) -> Iterator[tuple[list[str], Path]]:
    if missing := missing_tools(BOOT_TOOLS, BOOT_TOOLS):
        pytest.fail("missing on this machine: " + ", ".join(missing))
    key = tmp_path / "id"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    # A private raw copy; authorized_keys written with debugfs (no loop devices, no mounts).
    disk = tmp_path / "node.raw"
    subprocess.run(["qemu-img", "convert", "-O", "raw", str(image.qcow2), str(disk)], check=True)
    cmds = tmp_path / "debugfs.cmds"
    cmds.write_text(
        f"write {key}.pub root/.ssh/authorized_keys\n"
        "sif root/.ssh/authorized_keys mode 0100600\n"
        "sif root/.ssh/authorized_keys uid 0\n"
        "sif root/.ssh/authorized_keys gid 0\n"
    )
    subprocess.run(["debugfs", "-w", "-f", str(cmds), str(disk)], check=True, capture_output=True)
    port = _free_port()
    cmdline = f"{image.kernel_cmdline} ip=10.0.2.15::10.0.2.2:255.255.255.0:node1:eth0:off"
    # TCG: KVM on our machines is kvm_pvm and hangs stock kernels (MACHINE.md).
    qemu = subprocess.Popen(
        ["qemu-system-x86_64", "-accel", "tcg,thread=multi", "-cpu", "qemu64", "-m", "1024", "-smp", "1",
         "-nographic", "-no-reboot", "-monitor", "none", "-serial", f"file:{tmp_path / 'console.log'}",
         "-kernel", str(image.kernel), "-initrd", str(image.initrd), "-append", cmdline,
         "-drive", f"file={disk},format=raw,if=virtio",
         "-netdev", f"user,id=n0,hostfwd=tcp:127.0.0.1:{port}-:22", "-device", "virtio-net-pci,netdev=n0"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    ssh = ["ssh", "-q", "-i", str(key), "-p", str(port), "-o", "BatchMode=yes", "-o", "ConnectTimeout=5",
           "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "root@127.0.0.1"]  # fmt: skip

    def logged_in() -> str | None:
        # The forwarded port accepts TCP before sshd runs: wait for a real login.
        if subprocess.run([*ssh, "true"], capture_output=True, check=False).returncode == 0:
            return None
        if qemu.poll() is not None:
            _no_login(tmp_path, f"qemu exited ({qemu.returncode})")
        return "no SSH login yet"

    try:
        until(logged_in, timeout=180, interval=1, error=lambda why: _no_login(tmp_path, why))
        yield ssh, tmp_path
    finally:
        qemu.terminate()
        qemu.wait(timeout=30)


def _no_login(tmp_path: Path, why: str) -> NoReturn:
    console = (tmp_path / "console.log").read_text(errors="replace")[-3000:]
    pytest.fail(f"no SSH login on the booted qcow2 ({why}); console tail:\n{console}")


def test_qcow2_boots_to_ssh_with_a_static_address(booted: tuple[list[str], Path]) -> None:
    ssh, _ = booted

    def sh(*argv: str) -> str:
        return subprocess.run([*ssh, *argv], capture_output=True, text=True, check=False).stdout.strip()

    assert sh("systemctl", "is-system-running", "--wait") == "running"
    assert "10.0.2.15/24" in sh("ip", "-br", "addr", "show", "eth0")
    assert sh("systemctl", "is-enabled", "haproxy", "keepalived", "etcd", "nginx").split() == ["disabled"] * 4
    # No keys were baked in, none were written: the fallback unit made this node's own.
    assert "ssh_host_ed25519_key" in sh("ls", "/etc/ssh")
    assert sh("systemctl", "is-active", "serial-getty@ttyS0") == "active"
    assert len(sh("cat", "/etc/machine-id")) == 32
