"""``kha up --connect URI`` against a second libvirtd on this machine that the harness did not start for the
cluster: the fixture starts it (a private libvirtd in a network namespace of its own) and stops it; the test
drives the real ``kha`` commands a user types (up, ssh, status, down) through its URI, and checks that
``down`` removed everything it made from that daemon and left the daemon itself running. What only a real
second machine exercises (``qemu+ssh``, image paths on its disk) is said in the README.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import libvirt
import pytest

from harness import netns, paths
from harness.daemon import PrivateLibvirt

pytestmark = pytest.mark.integration

KHA = [sys.executable, "-m", "kha"]


@pytest.fixture(scope="module")
def second_libvirtd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateLibvirt]:
    """A libvirtd + virtlogd in their own network and mount namespaces, started here, not by ``kha up``."""
    if os.geteuid() != 0:
        pytest.fail("needs root: it starts a libvirtd in a network namespace", pytrace=False)
    root = tmp_path_factory.mktemp("second-libvirtd")
    daemon = PrivateLibvirt.start(f"kha-second-{os.getpid()}", root, paths.harness_cache() / "libvirt-cache")
    try:
        yield daemon
    finally:
        daemon.stop()


def kha(*argv: str, state_root: Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "KHA_STATE_DIR": str(state_root)}
    done = subprocess.run([*KHA, *argv], env=env, capture_output=True, text=True, timeout=120, check=False)
    if check and done.returncode != 0:
        pytest.fail(f"kha {' '.join(argv)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}", pytrace=False)
    return done


def leftovers(daemon: PrivateLibvirt) -> list[str]:
    """Every domain, network and storage pool the daemon holds, defined or running."""
    conn = libvirt.open(daemon.uri("lxc"))
    try:
        found = [f"domain {d.name()}" for d in conn.listAllDomains(0)]
        found += [f"network {n.name()}" for n in conn.listAllNetworks(0)]
        found += [f"pool {p.name()}" for p in conn.listAllStoragePools(0)]
    finally:
        conn.close()
    return found


def test_up_ssh_status_down_through_the_uri_of_a_daemon_kha_did_not_start(
        second_libvirtd: PrivateLibvirt, tmp_path: Path) -> None:
    uri = second_libvirtd.uri("lxc")
    name = f"conn-{os.getpid()}"
    state_root = tmp_path / "clusters"
    t0 = time.monotonic()
    up = kha("up", "allinone", "--name", name, "--connect", uri, state_root=state_root)
    up_s = time.monotonic() - t0
    assert f"libvirt at {uri}" in up.stdout
    assert "✓ state dir shared with libvirtd (this machine)" in up.stdout
    try:
        # The nodes live on the second daemon's bridge, inside its namespace: reached there by name.
        ssh = kha("ssh", "10.56.56.11", "--name", name, "--", "sh", "-c", "hostname; cat /proc/1/comm",
                  state_root=state_root)
        assert ssh.stdout.split() == ["10.56.56.11", "systemd"]
        config = (state_root / name / "ssh_config").read_text()
        assert f"ProxyCommand ip netns exec {second_libvirtd.netns} nc %h %p" in config

        status = kha("status", "--name", name, state_root=state_root)
        assert f"{name}: lxc, libvirt at {uri}," in status.stdout
        assert "running" in status.stdout.split("10.56.56.11", 1)[1].splitlines()[0]
    finally:
        down = kha("down", "--name", name, state_root=state_root)
    removed = [line.strip() for line in down.stdout.splitlines() if line.strip().startswith("removed ")]
    kinds = [line.split()[1] for line in removed]
    assert "domain" in kinds and "network" in kinds and "mount" in kinds and "state" in kinds
    assert "libvirtd" not in kinds and "netns" not in kinds, removed  # neither is ours to stop
    assert leftovers(second_libvirtd) == []
    assert second_libvirtd.alive(), "kha down stopped a daemon it did not start"
    assert netns.exists(second_libvirtd.netns)
    mounts = (Path(f"/proc/{second_libvirtd.pids['libvirtd']}/mountinfo")).read_text()
    assert str(state_root) not in mounts
    assert not (state_root / name).exists()
    print(f"kha up allinone --connect (LXC, second libvirtd): {up_s:.1f}s")


def test_a_state_dir_the_daemon_does_not_share_is_refused_before_anything_boots(
        second_libvirtd: PrivateLibvirt, tmp_path: Path) -> None:
    """Same path, different folder: a tmpfs over the state root where the daemon looks. The marker file
    written here is not there, so ``up`` refuses, removes what it wrote, and the daemon holds nothing."""
    state_root = tmp_path / "clusters"
    state_root.mkdir()
    hide = [*second_libvirtd.mount_prefix(), "mount", "-t", "tmpfs", "kha-hidden", str(state_root)]
    subprocess.run(hide, check=True)
    try:
        up = kha("up", "allinone", "--name", "unshared", "--connect", second_libvirtd.uri("qemu"),
                 state_root=state_root, check=False)
    finally:
        subprocess.run([*second_libvirtd.mount_prefix(), "umount", str(state_root)], check=True)
    assert up.returncode == 1, up.stdout + up.stderr
    assert "✗ state dir shared with libvirtd (this machine)" in up.stdout
    assert "does not see" in up.stderr and "kha-shared-" in up.stderr
    assert leftovers(second_libvirtd) == []
    assert not (state_root / "unshared").exists()
