"""A cloud-image node as the harness prepares it, without booting: the NoCloud seed cloud-init reads (hostname,
static address on the node's MAC, root key, the pinned host key, no passwords), the ``cidata`` disk that
carries it, the domain that boots the disk's own bootloader under OVMF, and the refusals (LXC). The boot
itself is tests/integration/test_cloud_image.py."""

from __future__ import annotations

import base64
import json
import subprocess
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import replace
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Any

import libvirt
import pytest

from harness import accel, cloudinit, image, libvirtxml
from harness.daemon import SystemLibvirt
from harness.errors import DriverUnavailable
from harness.keys import KeyPair
from harness.node import Context
from harness.qemu import QemuDriver
from harness.spec import NodeSpec, TopologySpec
from harness.state import ClusterState, ImageRef, NodeState

SPEC = TopologySpec("cloud", IPv4Network("10.57.0.0/24"), IPv4Address("10.57.0.1"),
                    (NodeSpec("cp1", IPv4Address("10.57.0.11")), NodeSpec("cp2", IPv4Address("10.57.0.12"))),
                    image="local-cloud", driver="qemu")
MAC = "52:54:00:aa:bb:cc"
CLOUD = ImageRef("local-cloud", "0123456789ab", "", "/cache/images/local-cloud/disk.qcow2", "", "", "", boot="uefi")


@pytest.fixture(scope="module")
def keys() -> tuple[KeyPair, KeyPair]:
    return KeyPair.generate("cp1@kha-cloud"), KeyPair.generate("kha-cloud")


def documents(seed: cloudinit.SeedFiles) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    header, _, body = seed.user_data.partition(b"\n")
    assert header == b"#cloud-config", "cloud-init ignores user-data without this first line"
    return json.loads(seed.meta_data), json.loads(body), json.loads(seed.network_config)


def test_the_seed_names_the_node_and_pins_its_keys(keys: tuple[KeyPair, KeyPair]) -> None:
    host_key, root_key = keys
    meta, user, _ = documents(cloudinit.seed_files(SPEC, SPEC.node("cp1"), MAC, host_key, root_key))
    assert meta == {"instance-id": "kha-cloud-cp1", "local-hostname": "cp1"}
    assert user["hostname"] == "cp1"
    assert user["ssh_keys"] == {"ed25519_private": host_key.private, "ed25519_public": host_key.public}
    assert user["ssh_authorized_keys"] == [root_key.public]
    assert user["disable_root"] is False and user["ssh_pwauth"] is False
    assert user["ssh_genkeytypes"] == [] and user["ssh_deletekeys"] is True


def test_the_rest_of_every_nodes_files_is_written_but_not_what_cloud_init_owns(keys: tuple[KeyPair, KeyPair]) -> None:
    host_key, root_key = keys
    _, user, _ = documents(cloudinit.seed_files(SPEC, SPEC.node("cp1"), MAC, host_key, root_key))
    written = {f["path"]: base64.b64decode(f["content"]).decode() for f in user["write_files"]}
    assert "10.57.0.12\tcp2" in written["/etc/hosts"] and user["manage_etc_hosts"] is False
    assert "HostKey /etc/ssh/ssh_host_ed25519_key" in written["/etc/ssh/sshd_config.d/20-kha-harness.conf"]
    assert not set(written) & cloudinit.BY_CLOUD_INIT
    assert host_key.private not in json.dumps(user["write_files"])


def test_the_network_is_static_on_the_nodes_mac(keys: tuple[KeyPair, KeyPair]) -> None:
    _, _, net = documents(cloudinit.seed_files(SPEC, SPEC.node("cp2"), MAC, *keys))
    assert net["version"] == 2
    (nic,) = net["ethernets"].values()
    assert nic["match"] == {"macaddress": MAC}
    assert nic["addresses"] == ["10.57.0.12/24"]
    assert nic["routes"] == [{"to": "0.0.0.0/0", "via": "10.57.0.1"}]
    assert nic["dhcp4"] is False


def test_instance_ids_differ_per_cluster_and_node() -> None:
    other = replace(SPEC, cluster="cloud2")
    ids = {cloudinit.instance_id(s, n) for s in (SPEC, other) for n in SPEC.nodes}
    assert len(ids) == 4


def test_the_cidata_disk_is_vfat_labelled_for_nocloud(tmp_path: Path, keys: tuple[KeyPair, KeyPair]) -> None:
    seed = cloudinit.seed_files(SPEC, SPEC.node("cp1"), MAC, *keys)
    disk = tmp_path / "seed.img"
    cloudinit.make_seed_disk(seed, disk)
    probe = subprocess.run(["blkid", "-o", "export", str(disk)], capture_output=True, text=True, check=True).stdout
    assert "TYPE=vfat" in probe and "LABEL=CIDATA" in probe
    for name, content in seed.as_dict().items():
        got = subprocess.run(["mtype", "-i", str(disk), f"::{name}"], capture_output=True, check=True).stdout
        assert got == content
    assert [p.name for p in tmp_path.iterdir()] == ["seed.img"], "no scratch files left beside it"


def cloud_state(tmp_path: Path) -> ClusterState:
    macs = libvirtxml.macs_for(SPEC.cluster, [n.name for n in SPEC.nodes])
    return ClusterState(SPEC, tmp_path, {"isolated": False}, "test:///default", libvirtxml.network_name("cloud"),
                        libvirtxml.bridge_name("cloud"), CLOUD,
                        {n.name: NodeState(n.name, libvirtxml.domain_name("cloud", n.name), macs[n.name],
                                           str(tmp_path / "nodes" / n.name)) for n in SPEC.nodes})


@pytest.fixture
def conn() -> Iterator[libvirt.virConnect]:
    c = libvirt.open("test:///default")
    before = {d.name() for d in c.listAllDomains(0)}
    yield c
    for d in c.listAllDomains(0):
        if d.name() not in before:
            d.undefine()
    c.close()


def test_a_cloud_image_boots_its_own_bootloader_under_ovmf(tmp_path: Path, conn: libvirt.virConnect) -> None:
    state = cloud_state(tmp_path)
    ctx = Context(state, SystemLibvirt(), conn)
    root = ET.fromstring(conn.defineXML(QemuDriver(Path(CLOUD.qcow2), "tcg").domain_xml(ctx, SPEC.node("cp1")))
                         .XMLDesc(0))
    assert root.find("os/kernel") is None and root.find("os/cmdline") is None
    loader = root.find("os/loader")
    assert loader is not None and loader.text == str(image.OVMF_FIRMWARE) and loader.get("type") == "rom"
    disks = {d.find("target").get("dev"): d for d in root.iterfind("devices/disk")}  # type: ignore[union-attr]
    assert disks["vda"].find("boot").get("order") == "1"  # type: ignore[union-attr]
    assert disks["vdb"].find("source").get("file") == str(tmp_path / "nodes/cp1/seed.img")  # type: ignore[union-attr]
    assert disks["vdb"].find("readonly") is not None


def test_a_bios_cloud_image_has_no_firmware_loader(tmp_path: Path, conn: libvirt.virConnect) -> None:
    state = cloud_state(tmp_path)
    state.image = replace(CLOUD, boot="bios")
    root = ET.fromstring(QemuDriver(Path(CLOUD.qcow2), "tcg").domain_xml(Context(state, SystemLibvirt(), conn),
                                                                          SPEC.node("cp1")))
    assert root.find("os/loader") is None and root.find("os/kernel") is None


def test_prepare_makes_an_overlay_and_the_nocloud_seed(tmp_path: Path, conn: libvirt.virConnect,
                                                       keys: tuple[KeyPair, KeyPair]) -> None:
    base = tmp_path / "vendor.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(base), "64M"], check=True)
    state = cloud_state(tmp_path / "state")
    state.image = replace(CLOUD, qcow2=str(base))
    QemuDriver(base, "tcg").prepare(Context(state, SystemLibvirt(), conn), SPEC.node("cp2"), *keys)
    node = tmp_path / "state/nodes/cp2"
    info = json.loads(subprocess.run(["qemu-img", "info", "--output=json", str(node / "disk.qcow2")],
                                     capture_output=True, text=True, check=True).stdout)
    assert info["backing-filename"] == str(base), "the downloaded disk is shared read-only, never written"
    meta = subprocess.run(["mtype", "-i", str(node / "seed.img"), "::meta-data"], capture_output=True, text=True,
                          check=True).stdout
    assert json.loads(meta)["local-hostname"] == "cp2"


def test_lxc_refuses_a_cloud_image_and_qemu_takes_it(tmp_path: Path) -> None:
    with pytest.raises(DriverUnavailable, match=r"cloud image .* qemu only, not as an LXC node"):
        image.check(CLOUD, "lxc")
    disk = tmp_path / "disk.qcow2"
    disk.write_bytes(b"")
    image.check(replace(CLOUD, qcow2=str(disk)), "qemu")
    with pytest.raises(DriverUnavailable, match="has no qcow2"):
        image.check(replace(CLOUD, qcow2=str(tmp_path / "gone.qcow2")), "qemu")


def test_old_state_files_load_as_kernel_boot_and_cloud_state_round_trips(tmp_path: Path) -> None:
    state = cloud_state(tmp_path)
    doc = state.to_json()
    assert ClusterState.from_json(doc).image == CLOUD
    old = json.loads(json.dumps(doc))
    del old["image"]["boot"]
    assert ClusterState.from_json(old).image.boot == "kernel"


def test_no_kvm_probe_without_a_kernel_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("KHA_ACCEL", raising=False)
    monkeypatch.setattr(accel.os, "access", lambda *a: True)
    monkeypatch.setattr(accel, "probe_kvm", lambda *a: pytest.fail("probed a kernel that is not there"))
    assert accel.choose(Path(CLOUD.kernel), cache=tmp_path) == "tcg"
