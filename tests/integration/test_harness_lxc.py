"""The LXC m-master topology on this machine, isolated mode (what CI runs): it boots from the built
image, nodes answer SSH on the inventory addresses, testinfra checks pass, power off/on, link down/up,
pause/resume and revert behave as a user expects, and ``down`` leaves nothing behind."""

from __future__ import annotations

import errno
import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import paramiko
import pytest

from core import waiting
from harness import ssh
from harness.daemon import PrivateLibvirt
from harness.provider import Cluster
from harness.pytest_plugin import PRISTINE, Topologies

pytestmark = [pytest.mark.integration, pytest.mark.kha_topology("m-master", driver="lxc")]

#: Connect errors that mean nothing answers at the node's address: no ARP answer or no route (off, cut
#: off), nothing listening. (A connect that gets no answer at all ends in ``TimeoutError``.)
_UNREACHABLE = frozenset({errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EHOSTDOWN, errno.ECONNREFUSED})
#: What paramiko says when the TCP handshake worked but no sshd spoke (a frozen node): the banner did not
#: come within ``banner_timeout``, or the negotiation had not started when ``timeout`` ran out.
_NO_SSHD = ("Error reading SSH protocol banner", "No existing session")


def ssh_ok(cluster: Cluster, node: str) -> bool:
    """True when a login to ``node`` works; False only when nothing at its address speaks SSH.

    Anything else fails the test that asked: a rejected key or host key, an unknown node, a bug (``assert
    not ssh_ok(...)`` must not pass because the helper broke).
    """
    try:
        cli = cluster.ssh(node)
    except TimeoutError:
        return False
    except OSError as exc:
        if exc.errno in _UNREACHABLE:
            return False
        raise
    except paramiko.SSHException as exc:
        # Exactly SSHException: its subclasses (AuthenticationException, BadHostKeyException, …) mean an
        # sshd did answer.
        if type(exc) is paramiko.SSHException and str(exc).startswith(_NO_SSHD):
            return False
        raise
    try:
        status, _out, err = ssh.run(cli, ["true"], timeout=10)
    finally:
        cli.close()
    assert status == 0, f"logged in to {node}, but `true` exited {status}: {err}"
    return True


def test_nodes_answer_ssh_on_the_inventory_addresses(kha_topology: Cluster) -> None:
    assert [str(n.address) for n in kha_topology.spec.nodes] == ["10.56.56.11", "10.56.56.12", "10.56.56.13",
                                                            "10.56.56.14"]
    for node in kha_topology.spec.nodes:
        status, out, _ = kha_topology.run(node.name, ["sh", "-c", "hostname; ip -4 -o addr show dev eth0"])
        assert status == 0
        assert out.splitlines()[0] == node.name
        assert f"{node.address}/24" in out
    # The real OpenSSH client through the harness's ssh_config (ProxyCommand into the namespace).
    proc = subprocess.run(["ssh", "-F", str(kha_topology.ssh_config), "10.56.56.14", "systemctl", "is-system-running"],
                          capture_output=True, text=True, timeout=30, check=False)
    assert proc.stdout.strip() == "running", proc.stderr


def test_testinfra_sees_sshd_running_and_listening(kha_topology: Cluster, kha_hosts: dict[str, Any]) -> None:
    assert set(kha_hosts) == set(kha_topology.nodes)
    for host in kha_hosts.values():
        assert host.service("ssh").is_running
        assert host.socket("tcp://0.0.0.0:22").is_listening
        assert host.file("/etc/ssh/ssh_host_ed25519_key").mode == 0o600


def test_nodes_reach_each_other_and_the_vip_is_left_free(kha_topology: Cluster) -> None:
    status, _out, _err = kha_topology.run("10.56.56.11", ["ping", "-c1", "-W2", "10.56.56.14"])
    assert status == 0
    status, _out, _err = kha_topology.run("10.56.56.11", ["ping", "-c1", "-W1", str(kha_topology.spec.vip)])
    assert status != 0  # nobody holds the VIP until keepalived is installed


def test_each_node_is_confined_to_its_own_cgroups(kha_topology: Cluster) -> None:
    status, out, _ = kha_topology.run("10.56.56.12", ["sh", "-c", "cat /proc/self/cgroup; "
                                                 "cat /sys/fs/cgroup/memory/memory.limit_in_bytes"])
    assert status == 0
    lines = out.splitlines()
    assert any(line.endswith(":/system.slice/ssh.service") for line in lines if ":memory:" in line)
    assert int(lines[-1]) == kha_topology.spec.node("10.56.56.12").memory_mib * 1024 * 1024


def test_power_off_then_on(fresh_topology: Cluster) -> None:
    c, node = fresh_topology, "10.56.56.13"
    c.run(node, ["sh", "-c", "echo before > /root/power-test; sync"])
    c.power_off(node)
    assert c.status()[node] == "shut off"
    assert not ssh_ok(c, node)
    c.power_on(node)
    assert c.status()[node] == "running"
    assert c.run(node, ["cat", "/root/power-test"])[1] == "before\n"  # the disk survived the power cut


def test_link_down_cuts_the_node_off_and_up_restores_it(fresh_topology: Cluster) -> None:
    c = fresh_topology
    c.link_down("10.56.56.12")
    try:
        assert c.run("10.56.56.11", ["ping", "-c1", "-W1", "10.56.56.12"])[0] != 0
    finally:
        c.link_up("10.56.56.12")

    def answers() -> str | None:
        status, out, _ = c.run("10.56.56.11", ["ping", "-c1", "-W1", "10.56.56.12"])
        return None if status == 0 else f"ping exited {status}: {(out.strip().splitlines() or [''])[-1]}"

    waiting.until(answers, timeout=10, interval=0.2,
                  error=lambda last: AssertionError(f"link did not come back after 10s: {last}"))


def test_pause_freezes_and_resume_thaws(fresh_topology: Cluster) -> None:
    c = fresh_topology
    c.pause("10.56.56.14")
    try:
        assert c.status()["10.56.56.14"] == "paused"
        # Frozen processes: sshd sends no banner. (The node's kernel still answers ping and TCP
        # handshakes: an LXC pause freezes processes, not the network stack.)
        assert not ssh_ok(c, "10.56.56.14")
    finally:
        c.resume("10.56.56.14")
    assert c.run("10.56.56.14", ["true"])[0] == 0


def test_revert_restores_changed_and_deleted_files(fresh_topology: Cluster,
                                                   measured: Callable[..., None]) -> None:
    c = fresh_topology
    assert PRISTINE in c.snapshots()
    image, lower = c.state.image, _identity(c.state.image.rootfs)
    c.run("10.56.56.11", ["sh", "-c", "echo changed > /etc/kha-test; rm /etc/hostname"])
    start = time.monotonic()
    c.revert(PRISTINE)
    took = time.monotonic() - start
    status, out, _ = c.run("10.56.56.11", ["sh", "-c", "cat /etc/hostname; test ! -e /etc/kha-test"])
    assert status == 0 and out == "10.56.56.11\n"
    # A revert puts the nodes' own snapshot copies back over the cached image: the image is the same
    # one, neither rebuilt nor rewritten (what made it quick; the time is reported, not asserted).
    assert c.state.image == image and _identity(image.rootfs) == lower
    measured(f"revert to {PRISTINE}: {took:.1f}s", revert_seconds=round(took, 1))


def test_down_leaves_nothing_behind(kha_topologies: Topologies) -> None:
    # A topology of its own: the shared m-master carries session fixtures (the installed etcd and LBs).
    kha_topology = kha_topologies.own("m-master", "lxc")
    state_dir = kha_topology.state.state_dir
    netns_name = kha_topology.state.netns
    assert isinstance(kha_topology.libvirt, PrivateLibvirt)
    pids = dict(kha_topology.libvirt.pids)
    domains = [n.domain for n in kha_topology.state.nodes.values()]
    kha_topologies.discard(kha_topology)

    assert not state_dir.exists()
    assert netns_name is not None and not Path("/run/netns", netns_name).exists()
    for pid in pids.values():
        assert not _alive(pid), f"daemon {pid} still running"
    leftovers = [p for p in Path("/proc").iterdir() if p.name.isdigit() and _mentions(p, [*domains, str(state_dir)])]
    assert leftovers == [], [(p, (p / "cmdline").read_bytes().replace(b"\0", b" ")[:200]) for p in leftovers
                             if (p / "cmdline").exists()]
    assert str(state_dir) not in Path("/proc/self/mountinfo").read_text()
    for d in Path("/sys/fs/cgroup").glob("*/machine/*"):
        assert not any(dom in d.name for dom in domains), f"cgroup left: {d}"


def _identity(path: str) -> tuple[int, int, int]:
    """Which directory ``path`` is, and when its entries last changed: a rebuilt or rewritten image differs."""
    st = os.stat(path)
    return st.st_dev, st.st_ino, st.st_mtime_ns


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _mentions(proc: Path, needles: list[str]) -> bool:
    try:
        cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return False
    return _alive(int(proc.name)) and any(n in cmdline for n in needles)
