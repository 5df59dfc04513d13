"""Harness logic against libvirt's in-memory ``test:///default`` driver: the domain and network XML each
node driver generates (libvirt parses it and keeps our metadata), finding objects by kha mark, and a
teardown that removes this cluster's objects and nothing else."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterator
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

import libvirt
import pytest

from harness import libvirtxml
from harness.daemon import SystemLibvirt
from harness.errors import StateError
from harness.lxc import LxcDriver
from harness.node import Context
from harness.provider import Provider, marked, remove_marked, teardown
from harness.qemu import QemuDriver
from harness.spec import NodeSpec, TopologySpec
from harness.state import ClusterState, ImageRef, NodeState

TEST_URI = "test:///default"


def make_state(tmp_path: Path, cluster: str = "unit", driver: str = "lxc") -> ClusterState:
    spec = TopologySpec(cluster, IPv4Network("10.56.56.0/24"), IPv4Address("10.56.56.1"),
                        (NodeSpec("node1", IPv4Address("10.56.56.11"), 2, 2048, ("kube-master",)),
                         NodeSpec("node2", IPv4Address("10.56.56.12"), 1, 512, ("lb",))),
                        IPv4Address("10.56.56.10"), "debian-12", driver)  # type: ignore[arg-type]
    img = ImageRef("debian-12", "abc123", "/img/rootfs", "/img/disk.qcow2", "/img/vmlinuz", "/img/initrd.img",
                   "root=/dev/vda rw console=ttyS0 net.ifnames=0")
    macs = libvirtxml.macs_for(cluster, ["node1", "node2"])
    return ClusterState(spec, tmp_path, {"isolated": False}, TEST_URI, libvirtxml.network_name(cluster),
                        libvirtxml.bridge_name(cluster), img,
                        {n: NodeState(n, libvirtxml.domain_name(cluster, n), macs[n], str(tmp_path / "nodes" / n))
                         for n in ("node1", "node2")})


@pytest.fixture
def conn() -> Iterator[libvirt.virConnect]:
    """The shared test driver; whatever a test defines is removed afterwards (the defaults stay)."""
    c = libvirt.open(TEST_URI)
    before_doms = {d.name() for d in c.listAllDomains(0)}
    before_nets = {n.name() for n in c.listAllNetworks(0)}
    yield c
    for d in c.listAllDomains(0):
        if d.name() not in before_doms:
            if d.isActive():
                d.destroy()
            d.undefine()
    for n in c.listAllNetworks(0):
        if n.name() not in before_nets:
            if n.isActive():
                n.destroy()
            n.undefine()
    c.close()


def define_cluster(conn: libvirt.virConnect, state: ClusterState, driver: LxcDriver | QemuDriver) -> None:
    ctx = Context(state, SystemLibvirt(), conn)
    conn.networkDefineXML(libvirtxml.network_xml(state.spec, str(state.state_dir))).create()
    for node in state.spec.nodes:
        conn.defineXML(driver.domain_xml(ctx, node)).create()


def test_lxc_domain_xml_has_what_the_nodes_need(tmp_path: Path, conn: libvirt.virConnect) -> None:
    state = make_state(tmp_path)
    ctx = Context(state, SystemLibvirt(), conn)
    dom = conn.defineXML(LxcDriver().domain_xml(ctx, state.spec.node("node1")))
    root = ET.fromstring(dom.XMLDesc(0))
    assert root.get("type") == "lxc"
    assert root.findtext("name") == "kha-unit-node1"
    assert root.findtext("os/init") == "/sbin/kha-init"
    assert root.find("features/privnet") is not None
    assert root.find("features/capabilities").get("policy") == "allow"  # type: ignore[union-attr]
    assert root.find("idmap") is None
    assert root.findtext("vcpu") == "2"
    assert int(root.findtext("memory") or 0) == 2048 * 1024
    assert root.findtext("devices/hostdev/source/char") == "/dev/kmsg"
    fs = root.find("devices/filesystem")
    assert fs is not None and fs.find("source").get("dir") == str(tmp_path / "nodes/node1/merged")  # type: ignore[union-attr]
    iface = root.find("devices/interface")
    assert iface is not None
    assert iface.find("source").get("network") == "kha-unit"  # type: ignore[union-attr]
    assert iface.find("mac").get("address") == state.nodes["node1"].mac  # type: ignore[union-attr]
    assert libvirtxml.read_mark(dom.XMLDesc(0)) == libvirtxml.Mark("node", "unit", "node1", str(tmp_path))


@pytest.mark.parametrize(("accel", "dom_type"), [("tcg", "qemu"), ("kvm", "kvm")])
def test_qemu_domain_xml_boots_the_kernel_with_a_static_address(tmp_path: Path, conn: libvirt.virConnect,
                                                                accel: str, dom_type: str) -> None:
    state = make_state(tmp_path, driver="qemu")
    ctx = Context(state, SystemLibvirt(), conn)
    dom = conn.defineXML(QemuDriver(Path("/base.qcow2"), accel).domain_xml(ctx, state.spec.node("node2")))
    root = ET.fromstring(dom.XMLDesc(0))
    assert root.get("type") == dom_type
    assert root.findtext("os/kernel") == "/img/vmlinuz"
    assert root.findtext("os/initrd") == "/img/initrd.img"
    cmdline = (root.findtext("os/cmdline") or "").split()
    assert "root=/dev/vda" in cmdline
    assert "ip=10.56.56.12::10.56.56.1:255.255.255.0:node2:eth0:off" in cmdline
    assert "systemd.hostname=node2" in cmdline
    assert root.find("features/acpi") is not None
    cpu = root.find("cpu")
    assert cpu is not None
    if accel == "tcg":
        assert cpu.findtext("model") == "qemu64"
    else:
        assert cpu.get("mode") == "host-passthrough"
    disks = {d.find("target").get("dev"): d for d in root.iterfind("devices/disk")}  # type: ignore[union-attr]
    assert disks["vda"].find("source").get("file") == str(tmp_path / "nodes/node2/disk.qcow2")  # type: ignore[union-attr]
    assert disks["vdb"].find("readonly") is not None
    assert root.find("devices/interface/model").get("type") == "virtio"  # type: ignore[union-attr]
    assert root.findtext("vcpu") == "1"


def test_network_is_isolated_without_dhcp_or_dns(tmp_path: Path, conn: libvirt.virConnect) -> None:
    state = make_state(tmp_path)
    net = conn.networkDefineXML(libvirtxml.network_xml(state.spec, str(tmp_path)))
    root = ET.fromstring(net.XMLDesc(0))
    assert root.find("forward") is None  # nothing leaves the bridge
    assert root.find("ip/dhcp") is None
    assert root.find("dns").get("enable") == "no"  # type: ignore[union-attr]
    assert root.find("ip").get("address") == "10.56.56.1"  # type: ignore[union-attr]
    assert len(root.find("bridge").get("name", "")) <= 15  # type: ignore[union-attr]
    assert libvirtxml.read_mark(net.XMLDesc(0)) == libvirtxml.Mark("network", "unit", None, str(tmp_path))


def test_lookup_finds_only_this_clusters_marked_objects(tmp_path: Path, conn: libvirt.virConnect) -> None:
    ours, theirs = make_state(tmp_path / "a", "ours"), make_state(tmp_path / "b", "theirs")
    define_cluster(conn, ours, LxcDriver())
    define_cluster(conn, theirs, LxcDriver())
    # An unmarked domain whose name even looks like ours, and one with foreign metadata.
    conn.defineXML("<domain type='test'><name>kha-ours-node9</name><memory>65536</memory>"
                   "<os><type>hvm</type></os></domain>")
    conn.defineXML("<domain type='test'><name>other</name><memory>65536</memory><os><type>hvm</type></os>"
                   "<metadata><x:node xmlns:x='https://example.invalid/x' cluster='ours'/></metadata></domain>")
    doms, nets = marked(conn, "ours")
    assert sorted(d.name() for d in doms) == ["kha-ours-node1", "kha-ours-node2"]
    assert [n.name() for n in nets] == ["kha-ours"]


def test_teardown_removes_ours_and_nothing_else(tmp_path: Path, conn: libvirt.virConnect) -> None:
    ours, theirs = make_state(tmp_path / "a", "ours"), make_state(tmp_path / "b", "theirs")
    define_cluster(conn, ours, LxcDriver())
    define_cluster(conn, theirs, QemuDriver(Path("/b.qcow2"), "tcg"))
    before = {d.name() for d in conn.listAllDomains(0)}
    seen: list[str] = []
    removed = remove_marked(conn, "ours", after_destroy=seen.append)
    assert sorted(removed) == ["domain kha-ours-node1", "domain kha-ours-node2", "network kha-ours"]
    assert sorted(seen) == ["kha-ours-node1", "kha-ours-node2"]
    after = {d.name() for d in conn.listAllDomains(0)}
    assert after == before - {"kha-ours-node1", "kha-ours-node2"}
    assert "test" in after  # the driver's own default domain
    assert {"kha-theirs-node1", "kha-theirs-node2"} <= after
    assert "kha-theirs" in {n.name() for n in conn.listAllNetworks(0)}
    assert "kha-ours" not in {n.name() for n in conn.listAllNetworks(0)}
    assert remove_marked(conn, "ours") == []


def test_macs_are_deterministic_local_and_distinct() -> None:
    a = libvirtxml.macs_for("m-master", ["n1", "n2", "n3"])
    assert a == libvirtxml.macs_for("m-master", ["n1", "n2", "n3"])
    assert len(set(a.values())) == 3
    assert all(m.startswith("52:54:00:") for m in a.values())
    assert libvirtxml.mac_for("other", "n1") != a["n1"]


def test_mac_clashes_are_resolved(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(libvirtxml, "mac_for", lambda cluster, node: "52:54:00:00:00:01" if "#" not in node
                        else f"52:54:00:00:00:{len(node):02x}")
    macs = libvirtxml.macs_for("c", ["a", "b"])
    assert macs["a"] != macs["b"]


def test_read_mark_ignores_garbage_and_foreign_metadata() -> None:
    assert libvirtxml.read_mark("not xml") is None
    assert libvirtxml.read_mark("<domain><name>x</name></domain>") is None
    assert libvirtxml.read_mark("<domain><metadata><kha:node xmlns:kha='urn:other' cluster='c'/></metadata>"
                                "</domain>") is None


def test_interface_target_finds_the_host_side_device() -> None:
    xml = ("<domain><devices><interface type='network'><mac address='52:54:00:AA:BB:CC'/>"
           "<target dev='vnet3'/></interface></devices></domain>")
    assert libvirtxml.interface_target(xml, "52:54:00:aa:bb:cc") == "vnet3"
    assert libvirtxml.interface_target(xml, "52:54:00:00:00:00") is None


def test_teardown_removes_only_what_up_writes_in_the_state_dir(tmp_path: Path) -> None:
    state_dir = tmp_path / "c1"
    (state_dir / "nodes" / "n1").mkdir(parents=True)
    for name in ("state.json", "id_ed25519", "known_hosts", "ssh_config"):
        (state_dir / name).write_text("x")
    (state_dir / "precious.txt").write_text("keep me")
    # What the suites keep with a cluster (a copy of its state folder, keys included) goes with it.
    (state_dir / "scratch" / "installed-state" / "kubernetes" / "pki").mkdir(parents=True)
    (state_dir / "scratch" / "installed-state" / "kubernetes" / "pki" / "ca.key").write_text("secret")
    removed = teardown("c1", state_dir, SystemLibvirt(), uris=[])
    assert removed == [f"state {state_dir}"]
    assert sorted(p.name for p in state_dir.iterdir()) == ["precious.txt"]


def test_up_refuses_a_foreign_non_empty_state_dir(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(StateError, match="not a kha cluster state dir"):
        Provider(isolated=True).up(make_state(tmp_path).spec, state_dir=tmp_path)
    assert (tmp_path / "notes.txt").read_text() == "mine"


@pytest.mark.parametrize("case", [
    ("tcg", 2, None, 1),   # 2 VMs on 2 cores: one vCPU each
    ("tcg", 8, None, 2),   # room for the spec's 2
    ("tcg", 2, "2", 2),    # explicit cap
    ("kvm", 1, None, 2),   # KVM keeps the spec
])
def test_tcg_vcpus_fit_the_host(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                case: tuple[str, int, str | None, int]) -> None:
    accel, cores, env, expected = case
    monkeypatch.setattr("os.sched_getaffinity", lambda _pid: set(range(cores)))
    if env is None:
        monkeypatch.delenv("KHA_TCG_MAX_VCPUS", raising=False)
    else:
        monkeypatch.setenv("KHA_TCG_MAX_VCPUS", env)
    state = make_state(tmp_path, driver="qemu")
    ctx = Context(state, SystemLibvirt(), libvirt.open(TEST_URI))
    assert QemuDriver(Path("/b.qcow2"), accel).vcpus(ctx, state.spec.node("node1")) == expected
