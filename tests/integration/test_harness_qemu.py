"""One qemu VM (allinone; TCG here, KVM where a probe boot proves it works) in isolated mode: it boots
from the image with its seed disk, SSH works on the inventory address with the pinned host key, and an
internal snapshot brings back a changed file; ``down`` leaves nothing behind."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from harness.daemon import PrivateLibvirt
from harness.provider import Cluster
from harness.pytest_plugin import PRISTINE, Topologies

pytestmark = [pytest.mark.integration, pytest.mark.kha_topology("allinone", driver="qemu")]


def test_vm_boots_and_answers_ssh_as_its_inventory_address(kha_topology: Cluster,
                                                          kha_hosts: dict[str, Any]) -> None:
    vm = kha_topology
    status, out, _ = vm.run("10.56.56.11", ["sh", "-c", "hostname; ip -4 -o addr show dev eth0; "
                                            "systemd-detect-virt; cat /proc/cmdline"])
    assert status == 0
    lines = out.splitlines()
    assert lines[0] == "10.56.56.11"
    assert "10.56.56.11/24" in lines[1]
    assert lines[2] in ("qemu", "kvm")
    host = kha_hosts["10.56.56.11"]
    assert host.service("ssh").is_running
    assert host.socket("tcp://0.0.0.0:22").is_listening
    assert host.service("kha-seed").is_running  # the per-node files came from the seed disk


def test_revert_restores_a_changed_file(fresh_topology: Cluster) -> None:
    c = fresh_topology
    assert PRISTINE in c.snapshots()
    c.run("10.56.56.11", ["sh", "-c", "echo changed > /etc/kha-test; sync"])
    c.revert(PRISTINE)
    status, _out, _err = c.run("10.56.56.11", ["test", "!", "-e", "/etc/kha-test"])
    assert status == 0


def test_down_leaves_nothing_behind(kha_topologies: Topologies) -> None:
    vm = kha_topologies.own("allinone", "qemu")
    state_dir, netns_name = vm.state.state_dir, vm.state.netns
    assert isinstance(vm.libvirt, PrivateLibvirt)
    pids = list(vm.libvirt.pids.values())
    kha_topologies.discard(vm)
    assert not state_dir.exists()
    assert netns_name is not None and not Path("/run/netns", netns_name).exists()
    for pid in pids:
        assert not Path(f"/proc/{pid}/cmdline").exists() or Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"
    procs = [p for p in Path("/proc").iterdir() if p.name.isdigit()]
    assert not [p for p in procs if str(state_dir).encode() in _cmdline(p)]


def _cmdline(proc: Path) -> bytes:
    try:
        return (proc / "cmdline").read_bytes()
    except OSError:
        return b""
