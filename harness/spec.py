"""What the harness is asked to boot: frozen, validated specs with no installer types in them.

``TopologySpec`` is the request in the Talos sense (request → result → state): a cluster name, one
network with its gateway, the nodes with their addresses and sizes, an optional VIP that must stay
free, the base image and the node driver. Every rule is checked in ``__post_init__`` so a bad spec
fails with all its problems before anything is created. ``scenarios.topologies`` builds these from
inventories; the harness itself never reads an inventory.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network
from typing import Any, Literal

from harness.errors import SpecError

Driver = Literal["lxc", "qemu"]
DRIVERS: tuple[Driver, ...] = ("lxc", "qemu")

# Cluster names end up in libvirt object names, a network namespace name and a directory name:
# keep them short and boring. Node names are hostnames; an IPv4 address is allowed (the
# kubeadm-ha ".ip.ini" inventories name nodes by address) and is a valid systemd hostname.
_CLUSTER = re.compile(r"[a-z0-9]([a-z0-9-]{0,30}[a-z0-9])?")
_NODE = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_MIN_MEMORY_MIB = 128
# A login name useradd accepts (Debian's NAME_REGEX, relaxed as useradd's --badname is not needed).
_LOGIN = re.compile(r"[a-z_][a-z0-9_-]{0,31}")


@dataclass(frozen=True)
class NodeSpec:
    """One machine: its hostname, static address on the topology network, size and inventory roles."""

    name: str
    address: IPv4Address
    vcpus: int = 1
    memory_mib: int = 1024
    roles: tuple[str, ...] = ()
    #: the inventory's ``ansible_user``: when not root, the harness creates it on the node with the
    #: cluster key and passwordless sudo (what an installer that logs in as a user needs).
    login_user: str = "root"

    def __post_init__(self) -> None:
        problems = self.problems()
        if problems:
            raise SpecError(problems)

    def problems(self) -> list[str]:
        out: list[str] = []
        if not _NODE.fullmatch(self.name) or len(self.name) > 63:
            out.append(f"node name {self.name!r} is not a lowercase hostname (a-z, 0-9, '-', '.'; at most 63)")
        if not isinstance(self.address, IPv4Address):
            out.append(f"node {self.name}: address {self.address!r} is not an IPv4Address")
        if self.vcpus < 1:
            out.append(f"node {self.name}: vcpus must be at least 1, not {self.vcpus}")
        if self.memory_mib < _MIN_MEMORY_MIB:
            out.append(f"node {self.name}: memory_mib must be at least {_MIN_MEMORY_MIB}, not {self.memory_mib}")
        if not _LOGIN.fullmatch(self.login_user):
            out.append(f"node {self.name}: login user {self.login_user!r} is not a name useradd takes "
                       "(a-z, 0-9, '_', '-'; at most 32)")
        return out

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "address": str(self.address), "vcpus": self.vcpus,
                "memory_mib": self.memory_mib, "roles": list(self.roles), "login_user": self.login_user}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> NodeSpec:
        return cls(str(data["name"]), IPv4Address(data["address"]), int(data["vcpus"]), int(data["memory_mib"]),
                   tuple(str(r) for r in data.get("roles", ())), str(data.get("login_user", "root")))


@dataclass(frozen=True)
class TopologySpec:
    """A whole topology to boot. ``gateway`` is the host side of the network (the bridge address)."""

    cluster: str
    network: IPv4Network
    gateway: IPv4Address
    nodes: tuple[NodeSpec, ...]
    vip: IPv4Address | None = None
    image: str = "debian-12"
    driver: Driver = "lxc"
    # Free-form provenance ("scenario m-master", an inventory path), shown by ``kha status``.
    source: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        problems = self.problems()
        if problems:
            raise SpecError(problems)

    def problems(self) -> list[str]:
        out: list[str] = []
        if not _CLUSTER.fullmatch(self.cluster):
            out.append(f"cluster name {self.cluster!r} must be 1-32 of a-z, 0-9 and '-', not starting or ending "
                       "with '-'")
        if self.driver not in DRIVERS:
            out.append(f"driver {self.driver!r} is not one of {', '.join(DRIVERS)}")
        if not self.image:
            out.append("image is empty")
        if not self.nodes:
            out.append("a topology needs at least one node")
        net = self.network
        if net.prefixlen > 30:
            out.append(f"network {net} is too small for a gateway and nodes (at most /30)")
        usable = net.prefixlen <= 30

        def check_address(what: str, addr: IPv4Address) -> None:
            if addr not in net:
                out.append(f"{what} {addr} is not in the network {net}")
            elif usable and addr in (net.network_address, net.broadcast_address):
                out.append(f"{what} {addr} is the network's {'network' if addr == net.network_address else 'broadcast'}"
                           " address")

        check_address("gateway", self.gateway)
        if self.vip is not None:
            check_address("VIP", self.vip)
            if self.vip == self.gateway:
                out.append(f"VIP {self.vip} is the gateway address")
        seen_names: set[str] = set()
        seen_addrs: dict[IPv4Address, str] = {}
        for node in self.nodes:
            if node.name in seen_names:
                out.append(f"node name {node.name} is used twice")
            seen_names.add(node.name)
            check_address(f"node {node.name}: address", node.address)
            if node.address == self.gateway:
                out.append(f"node {node.name}: address {node.address} is the gateway address")
            if self.vip is not None and node.address == self.vip:
                out.append(f"node {node.name}: address {node.address} is the VIP")
            if node.address in seen_addrs:
                out.append(f"node {node.name}: address {node.address} is also used by {seen_addrs[node.address]}")
            seen_addrs.setdefault(node.address, node.name)
        return out

    def node(self, name: str) -> NodeSpec:
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(name)

    def to_json(self) -> dict[str, Any]:
        return {
            "cluster": self.cluster,
            "network": str(self.network),
            "gateway": str(self.gateway),
            "nodes": [n.to_json() for n in self.nodes],
            "vip": None if self.vip is None else str(self.vip),
            "image": self.image,
            "driver": self.driver,
            "source": self.source,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TopologySpec:
        driver = str(data["driver"])
        if driver not in DRIVERS:
            raise SpecError(f"driver {driver!r} is not one of {', '.join(DRIVERS)}")
        return cls(
            cluster=str(data["cluster"]),
            network=IPv4Network(data["network"]),
            gateway=IPv4Address(data["gateway"]),
            nodes=tuple(NodeSpec.from_json(n) for n in data["nodes"]),
            vip=None if data.get("vip") is None else IPv4Address(data["vip"]),
            image=str(data["image"]),
            driver=driver,
            source=str(data.get("source", "")),
        )


def default_gateway(network: IPv4Network, taken: set[IPv4Address]) -> IPv4Address:
    """The first host address of ``network`` not in ``taken`` (nodes, VIP): the bridge's address."""
    for addr in network.hosts():
        if addr not in taken:
            return addr
    raise SpecError(f"network {network} has no free address left for the gateway")
