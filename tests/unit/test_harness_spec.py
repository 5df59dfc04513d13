"""Harness specs: validation before any side effect, JSON round trip, and the scenario → spec mapping."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

import pytest

from harness.errors import SpecError
from harness.spec import NodeSpec, TopologySpec, default_gateway
from scenarios import catalog
from scenarios.topologies import cluster_name, spec_for_inventory, spec_for_scenario

NET = IPv4Network("10.56.56.0/24")


def node(name: str, last: int, **kw: object) -> NodeSpec:
    return NodeSpec(name, IPv4Address(f"10.56.56.{last}"), **kw)  # type: ignore[arg-type]


def topo(**kw: object) -> TopologySpec:
    args: dict[str, object] = {"cluster": "c1", "network": NET, "gateway": IPv4Address("10.56.56.1"),
                               "nodes": (node("node1", 11), node("node2", 12)), "vip": IPv4Address("10.56.56.10")}
    args.update(kw)
    return TopologySpec(**args)  # type: ignore[arg-type]


def test_a_valid_spec_round_trips_through_json() -> None:
    spec = topo(driver="qemu", source="scenario x", nodes=(node("node1", 11), node("node2", 12, login_user="vagrant")))
    again = TopologySpec.from_json(spec.to_json())
    assert again == spec
    assert again.source == "scenario x"
    assert again.node("node2").address == IPv4Address("10.56.56.12")
    assert (again.node("node1").login_user, again.node("node2").login_user) == ("root", "vagrant")


def test_the_inventorys_ansible_user_is_the_nodes_login_user(tmp_path: Path) -> None:
    inv = tmp_path / "hosts.ini"
    inv.write_text(Path(catalog.get("allinone").inventory).read_text().replace('ansible_user="root"',
                                                                                'ansible_user="vagrant"'))
    assert [n.login_user for n in spec_for_inventory(inv).nodes] == ["vagrant"]
    assert [n.login_user for n in spec_for_scenario("allinone").nodes] == ["root"]


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(SpecError) as err:
        topo(cluster="Bad_Name", gateway=IPv4Address("10.56.57.1"), vip=IPv4Address("10.56.56.11"),
             nodes=(node("node1", 11), node("node1", 11), node("node3", 255)))
    text = "\n".join(err.value.problems)
    assert "cluster name 'Bad_Name'" in text
    assert "gateway 10.56.57.1 is not in the network" in text
    assert "node name node1 is used twice" in text
    assert "address 10.56.56.11 is also used by node1" in text
    assert "address 10.56.56.11 is the VIP" in text
    assert "10.56.56.255 is the network's broadcast address" in text


@pytest.mark.parametrize(("kw", "message"), [
    ({"nodes": ()}, "at least one node"),
    ({"driver": "docker"}, "driver 'docker'"),
    ({"image": ""}, "image is empty"),
    ({"nodes": (node("node1", 1),)}, "is the gateway address"),
    ({"vip": IPv4Address("10.56.56.1")}, "VIP 10.56.56.1 is the gateway"),
])
def test_spec_rules(kw: dict[str, object], message: str) -> None:
    with pytest.raises(SpecError, match=message):
        topo(**kw)


@pytest.mark.parametrize(("kw", "message"), [
    ({"vcpus": 0}, "vcpus must be at least 1"),
    ({"memory_mib": 64}, "memory_mib must be at least 128"),
    ({"login_user": "Vagrant"}, "login user 'Vagrant' is not a name useradd takes"),
    ({"login_user": "a;rm -rf /"}, "is not a name useradd takes"),
])
def test_node_rules(kw: dict[str, object], message: str) -> None:
    with pytest.raises(SpecError, match=message):
        node("node1", 11, **kw)


def test_node_names_may_be_addresses_but_not_uppercase() -> None:
    assert node("10.56.56.11", 11).name == "10.56.56.11"
    with pytest.raises(SpecError, match="not a lowercase hostname"):
        node("Node1", 11)


def test_default_gateway_skips_taken_addresses() -> None:
    assert default_gateway(NET, set()) == IPv4Address("10.56.56.1")
    assert default_gateway(NET, {IPv4Address("10.56.56.1")}) == IPv4Address("10.56.56.2")


def test_m_master_scenario_becomes_four_sized_nodes_with_the_vip() -> None:
    spec = spec_for_scenario("m-master")
    assert spec.cluster == "m-master"
    assert spec.driver == catalog.get("m-master").driver
    assert spec.network == NET
    assert spec.gateway == IPv4Address("10.56.56.1")
    assert spec.vip == IPv4Address("10.56.56.10")
    assert [str(n.address) for n in spec.nodes] == ["10.56.56.11", "10.56.56.12", "10.56.56.13", "10.56.56.14"]
    first, worker = spec.nodes[0], spec.nodes[3]
    assert set(first.roles) == {"lb", "etcd", "kube-master"}
    assert (first.vcpus, first.memory_mib) == (2, 2048)  # the largest of its roles' sizes
    assert worker.roles == ("kube-worker",)


def test_driver_override_and_allinone_sizes() -> None:
    spec = spec_for_scenario("allinone", driver="qemu", name="mine")
    assert (spec.cluster, spec.driver, spec.vip) == ("mine", "qemu", None)
    assert spec.nodes[0].memory_mib == 4096


def test_hostname_inventory_keeps_node_names() -> None:
    path = catalog.get("m-master").inventory_hostname
    spec = spec_for_inventory(path)
    assert [n.name for n in spec.nodes] == ["node1", "node2", "node3", "node4"]
    assert spec.cluster == "m-master-hostname"


def test_unknown_driver_is_a_spec_error() -> None:
    with pytest.raises(SpecError, match="driver 'vbox'"):
        spec_for_scenario("allinone", driver="vbox")


@pytest.mark.parametrize(("source", "name"), [
    ("hosts.m-master.ip.ini", "m-master-ip"),
    (Path("/x/My Lab.ini"), "my-lab"),
    ("allinone", "allinone"),
    ("___.ini", "kha"),
])
def test_cluster_names_from_files(source: str | Path, name: str) -> None:
    assert cluster_name(source) == name
