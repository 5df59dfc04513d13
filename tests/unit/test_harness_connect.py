"""``kha up --connect URI``: the URI is checked before any connection, the other driver's URI is derived
from it, the cluster's state rebuilds the same libvirt kind, and how nodes are reached follows from it
(ssh_config and paramiko alike). Nothing here boots or needs a libvirtd (tests/integration/
test_harness_connect.py runs the real thing against a second daemon)."""

from __future__ import annotations

import os
import socket
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

import libvirt
import paramiko
import pytest

from core.errors import EXIT_BAD_INPUT
from harness import daemon, libvirtxml, provider
from harness.daemon import RemoteLibvirt, SystemLibvirt, parse_uri
from harness.errors import ConnectUriError, DaemonError, HarnessError, Unsupported
from harness.lxc import LxcDriver
from harness.provider import Cluster, Provider
from harness.spec import NodeSpec, TopologySpec
from harness.ssh import Direct, Target, ViaNetns, ViaSsh, render_ssh_config
from harness.state import ClusterState, ImageRef, NodeState
from kha import cli


@pytest.mark.parametrize(("given", "lxc", "qemu"), [
    ("qemu+ssh://root@hv1:2222/system?keyfile=/k/id&no_verify=1",
     "lxc+ssh://root@hv1:2222/system?keyfile=/k/id&no_verify=1",
     "qemu+ssh://root@hv1:2222/system?keyfile=/k/id&no_verify=1"),
    ("lxc+ssh://hv1/system", "lxc+ssh://hv1/system", "qemu+ssh://hv1/system"),
    ("qemu+unix:///system?socket=/run/x/libvirt-sock", "lxc+unix:///system?socket=/run/x/libvirt-sock",
     "qemu+unix:///system?socket=/run/x/libvirt-sock"),
    ("qemu:///system", "lxc:///system", "qemu:///system"),  # the "//" of an empty host stays
    ("qemu://hv2/system", "lxc://hv2/system", "qemu://hv2/system"),  # no transport written: none added
    ("qemu+tcp://[::1]:16509/system", "lxc+tcp://[::1]:16509/system", "qemu+tcp://[::1]:16509/system"),
])
def test_the_other_drivers_uri_keeps_transport_host_path_and_query(given: str, lxc: str, qemu: str) -> None:
    lv = RemoteLibvirt(parse_uri(given))
    assert (lv.uri("lxc"), lv.uri("qemu")) == (lxc, qemu)


@pytest.mark.parametrize(("given", "why"), [
    ("hv1", "not a URI"),
    ("qemu+ssh:/hv1/system", "not a URI"),
    ("xen+ssh://hv1/system", "driver 'xen'"),
    ("qemu+pigeon://hv1/system", "transport 'pigeon'"),
    ("qemu+ext:///system?command=/bin/x", "transport 'ext'"),
    ("qemu+ssh:///system", "the ssh transport needs a host"),
    ("qemu+unix://hv1/system", "a unix socket URI names no host"),
    ("qemu+ssh://hv1", "no path"),
    ("qemu+ssh://hv1:99999/system", "port"),
    ("qemu+ssh://me:secret@hv1/system", "a password in the URI"),
    ("qemu+ssh://hv1/system?name=qemu:///system", "name= fixes the driver"),
    ("qemu+ssh://hv1/system#frag", "fragment"),
    ("qemu+ssh://hv 1/system", "not a URI"),
])
def test_a_malformed_uri_is_refused_before_any_connection(given: str, why: str) -> None:
    with pytest.raises(ConnectUriError, match=why) as err:
        parse_uri(given)
    assert f"--connect {given!r}" in str(err.value)
    assert err.value.cli_exit_code == EXIT_BAD_INPUT


def test_lxc_on_another_machine_is_refused_before_connecting() -> None:
    # .invalid never resolves (RFC 2606): were a connection tried, libvirt would say so instead.
    with pytest.raises(ConnectUriError, match=r"on hv\.invalid use qemu nodes \(--driver qemu\)"):
        RemoteLibvirt.attach("qemu+ssh://hv.invalid/system", "lxc")


def test_a_daemon_that_does_not_answer_names_the_flag_and_what_libvirt_said(tmp_path: Path) -> None:
    uri = f"qemu+unix:///system?socket={tmp_path / 'nothing-here'}"
    with pytest.raises(DaemonError) as err:
        RemoteLibvirt.attach(uri, "lxc")
    text = str(err.value)
    assert text.startswith(f"--connect {uri}: cannot connect to lxc+unix:///system?socket=")
    assert "(the lxc driver's URI derived from it)" in text
    assert "No such file or directory" in text  # libvirt's own words


@pytest.mark.parametrize(("given", "reach"), [
    ("qemu+ssh://ci@hv1:2222/system?keyfile=/k/id", ViaSsh("hv1", "ci", 2222, "/k/id")),
    ("qemu+libssh2://hv1/system", ViaSsh("hv1")),
    ("qemu+tcp://hv1/system", Direct()),  # the topology's subnet must be routed there (README)
])
def test_nodes_behind_another_machine_are_reached_the_way_its_uri_logs_in(given: str, reach: object) -> None:
    assert RemoteLibvirt(parse_uri(given)).reach() == reach


def test_a_local_daemon_in_a_named_namespace_is_reached_inside_it() -> None:
    uri = parse_uri("lxc+unix:///system?socket=/x")
    assert RemoteLibvirt(uri, netns="kha-second").reach() == ViaNetns("kha-second")
    assert RemoteLibvirt(uri).reach() == Direct()


def test_ssh_config_hops_through_the_hypervisor_with_ssh_w(tmp_path: Path) -> None:
    reach = ViaSsh("hv1", "ci", 2222, "/k/id")
    text = render_ssh_config([Target("node1", "10.56.56.11")], tmp_path / "id", tmp_path / "kh", reach, "c")
    entry = paramiko.SSHConfig.from_text(text).lookup("node1")
    assert entry["proxycommand"] == "ssh -o BatchMode=yes -p 2222 -l ci -i /k/id -W 10.56.56.11:22 -- hv1"
    assert entry["hostname"] == "10.56.56.11"


def test_paramiko_hops_with_the_same_command_as_the_ssh_config() -> None:
    # `true` as the hop: what paramiko is handed is the argv the ssh_config says, tokens expanded.
    proxy = ViaSsh("hv1", "ci").connect("10.56.56.11", 22, timeout=5)
    try:
        assert isinstance(proxy, paramiko.ProxyCommand)
        assert proxy.cmd == ["ssh", "-o", "BatchMode=yes", "-l", "ci", "-W", "10.56.56.11:22", "--", "hv1"]
    finally:
        proxy.close()


def test_state_round_trips_the_connect_uri_and_namespace() -> None:
    lv = RemoteLibvirt(parse_uri("qemu+unix:///system?socket=/s"), netns="kha-second")
    data = lv.to_json()
    assert data == {"isolated": False, "connect": "qemu+unix:///system?socket=/s", "netns": "kha-second"}
    again = daemon.from_json(data)
    assert again == lv
    assert isinstance(daemon.from_json({"isolated": False}), SystemLibvirt)


def test_nothing_is_mounted_on_another_machine() -> None:
    lv = RemoteLibvirt(parse_uri("qemu+ssh://hv1/system"))
    assert lv.mountinfo() is None
    with pytest.raises(Unsupported, match="not on this machine"):
        lv.mount_prefix()


def test_a_socket_served_by_something_else_is_no_libvirt_daemon(tmp_path: Path) -> None:
    path = tmp_path / "impostor.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(1)  # the kernel completes the connection in the backlog: no accept needed for SO_PEERCRED
    try:
        with pytest.raises(DaemonError, match=rf"PID {os.getpid()}: .* is not a libvirt daemon"):
            daemon.peer_pid(path, flag="--connect x")
    finally:
        server.close()


def test_this_process_namespace_needs_no_name() -> None:
    assert daemon.namespace_of(os.getpid(), flag="--connect x") is None


def test_kha_up_with_a_malformed_uri_exits_2_and_writes_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("KHA_STATE_DIR", str(tmp_path / "clusters"))
    assert cli.main(["up", "allinone", "--connect", "qemu+ssh:///system"]) == EXIT_BAD_INPUT
    assert "--connect 'qemu+ssh:///system': the ssh transport needs a host" in capsys.readouterr().err
    assert not (tmp_path / "clusters").exists()


def test_kha_up_takes_either_isolated_or_connect(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        cli.main(["up", "allinone", "--isolated", "--connect", "qemu+ssh://hv1/system"])
    assert exit_.value.code == EXIT_BAD_INPUT
    assert "not allowed with argument --isolated" in capsys.readouterr().err


def test_down_keeps_the_state_when_the_connect_daemon_cannot_be_reached(tmp_path: Path) -> None:
    """Removing the state of a cluster whose domains could not be removed would lose track of them."""
    uri = f"qemu+unix:///system?socket={tmp_path / 'gone.sock'}"
    spec = TopologySpec("far", IPv4Network("10.56.56.0/24"), IPv4Address("10.56.56.1"),
                        (NodeSpec("node1", IPv4Address("10.56.56.11"), 1, 512, ("kube-master",)),),
                        None, "debian-12", "qemu")
    img = ImageRef("debian-12", "abc123", "/img/rootfs", "/img/disk.qcow2", "/img/vmlinuz", "/img/initrd.img", "")
    state = ClusterState(spec, tmp_path / "far", RemoteLibvirt(parse_uri(uri)).to_json(), uri, "kha-far",
                         "khafar", img, {"node1": NodeState("node1", "kha-far-node1", "52:54:00:00:00:01",
                                                            str(tmp_path / "far" / "nodes" / "node1"))})
    state.save()
    with pytest.raises(DaemonError, match=r"cannot reach qemu\+unix.*nothing was removed, the state in .* is kept"):
        Provider().down("far", tmp_path / "far")
    assert (tmp_path / "far" / "state.json").is_file()


def test_a_second_topology_on_one_subnet_of_a_shared_daemon_is_refused_with_whose_it_is(tmp_path: Path) -> None:
    """Measured here: an e2e cell through --kha-connect boots a second allinone beside the first; libvirt only
    says "Network is already in use by interface khabr-…". kha names the cluster that holds the subnet."""
    def spec(cluster: str, subnet: str) -> TopologySpec:
        net = IPv4Network(subnet)
        return TopologySpec(cluster, net, net[1], (NodeSpec("node1", net[11], 1, 512, ("kube-master",)),),
                            None, "debian-12", "lxc")

    conn = libvirt.open("test:///default")
    first = conn.networkDefineXML(libvirtxml.network_xml(spec("first", "10.56.56.0/24"), str(tmp_path / "a")))
    first.create()
    try:
        assert provider.subnet_holders(conn, spec("second", "10.56.56.0/24")) == ["cluster first (network kha-first)"]
        assert provider.subnet_holders(conn, spec("second", "10.57.0.0/16")) == []
        assert provider.subnet_holders(conn, spec("first", "10.56.56.0/24")) == []  # its own network
        img = ImageRef("debian-12", "abc", "/img/rootfs", "/img/disk.qcow2", "", "", "")
        s = spec("second", "10.56.56.0/24")
        state = ClusterState(s, tmp_path / "b", {"isolated": False}, "test:///default", "kha-second", "khabr-2", img,
                             {"node1": NodeState("node1", "kha-second-node1", "52:54:00:00:00:02", str(tmp_path))})
        with pytest.raises(HarnessError, match=r"10\.56\.56\.0/24 is already used on this libvirtd by cluster first "
                                               r"\(network kha-first\); one libvirtd holds one topology per subnet"):
            Cluster(state, SystemLibvirt(), LxcDriver()).create_network()
        assert [n.name() for n in conn.listAllNetworks(0) if n.name() == "kha-second"] == []
    finally:
        first.destroy()
        first.undefine()
        conn.close()
