"""libvirt XML shared by both node drivers: kha metadata, the topology network, MAC addresses.

Every object the harness defines carries ``<metadata><kha:… cluster="NAME" …/></metadata>`` in the
``NAMESPACE`` below, so ``kha down`` finds its domains and networks by reading their XML even when the
state file is gone, and never touches anything without that mark. XML is built with ElementTree, never
by formatting strings, so names from an inventory cannot inject markup.
"""

from __future__ import annotations

import hashlib
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from ipaddress import IPv4Network

from harness.spec import TopologySpec

# A namespace name only, never fetched (.invalid is reserved, RFC 2606).
NAMESPACE = "https://kha.invalid/xmlns/harness/1"
PREFIX = "kha"
ET.register_namespace(PREFIX, NAMESPACE)

# libvirt's own locally administered prefix for guest NICs (52:54:00 is what virt-install uses too).
_MAC_PREFIX = (0x52, 0x54, 0x00)


@dataclass(frozen=True)
class Mark:
    """What the kha metadata element says about an object."""

    kind: str  # "node" or "network"
    cluster: str
    node: str | None = None
    state_dir: str | None = None


def metadata(mark: Mark) -> ET.Element:
    """``<metadata><kha:node cluster=… node=… state-dir=…/></metadata>``"""
    md = ET.Element("metadata")
    attrs = {"cluster": mark.cluster}
    if mark.node is not None:
        attrs["node"] = mark.node
    if mark.state_dir is not None:
        attrs["state-dir"] = mark.state_dir
    ET.SubElement(md, f"{{{NAMESPACE}}}{mark.kind}", attrs)
    return md


def read_mark(xml: str) -> Mark | None:
    """The kha mark in an object's XML description, or None when it is not ours."""
    try:
        root = ET.fromstring(xml)
    except ET.ParseError:
        return None
    md = root.find("metadata")
    if md is None:
        return None
    for kind in ("node", "network"):
        el = md.find(f"{{{NAMESPACE}}}{kind}")
        if el is not None and el.get("cluster"):
            return Mark(kind, el.get("cluster", ""), el.get("node"), el.get("state-dir"))
    return None


def network_name(cluster: str) -> str:
    return f"kha-{cluster}"


def bridge_name(cluster: str) -> str:
    """≤ 15 characters (IFNAMSIZ), unique per cluster even on a shared host (non-isolated mode)."""
    return "khabr-" + hashlib.sha256(cluster.encode()).hexdigest()[:8]


def domain_name(cluster: str, node: str) -> str:
    return f"kha-{cluster}-{node}"


def network_xml(spec: TopologySpec, state_dir: str) -> str:
    """An isolated bridge (no <forward>: nothing leaves it) with the gateway address; no DHCP, no DNS.

    Without DHCP and DNS libvirt starts no dnsmasq at all (https://libvirt.org/formatnetwork.html).
    """
    net = ET.Element("network")
    ET.SubElement(net, "name").text = network_name(spec.cluster)
    net.append(metadata(Mark("network", spec.cluster, None, state_dir)))
    ET.SubElement(net, "bridge", {"name": bridge_name(spec.cluster), "stp": "off", "delay": "0"})
    ET.SubElement(net, "dns", {"enable": "no"})
    ET.SubElement(net, "ip", {"address": str(spec.gateway), "netmask": str(spec.network.netmask)})
    return ET.tostring(net, encoding="unicode")


def network_subnets(xml: str) -> list[IPv4Network]:
    """The IPv4 subnets of a network's ``<ip address=… netmask=…|prefix=…>`` elements (others are skipped)."""
    out = []
    for ip in ET.fromstring(xml).iterfind("ip"):
        mask = ip.get("netmask") or ip.get("prefix")
        if ip.get("family", "ipv4") != "ipv4" or not ip.get("address") or not mask:
            continue
        try:
            out.append(IPv4Network(f"{ip.get('address')}/{mask}", strict=False))
        except ValueError:
            continue
    return out


def mac_for(cluster: str, node: str) -> str:
    """A stable MAC per (cluster, node): the same topology gets the same MACs on every ``up``."""
    digest = hashlib.sha256(f"{cluster}/{node}".encode()).digest()
    return ":".join(f"{b:02x}" for b in (*_MAC_PREFIX, *digest[:3]))


def macs_for(cluster: str, nodes: list[str]) -> dict[str, str]:
    """``mac_for`` for every node, re-hashing on the (1 in 16 million) chance of a clash."""
    out: dict[str, str] = {}
    used: set[str] = set()
    for node in nodes:
        mac = mac_for(cluster, node)
        salt = 0
        while mac in used:
            salt += 1
            mac = mac_for(cluster, f"{node}#{salt}")
        used.add(mac)
        out[node] = mac
    return out


def interface_target(domain_xml: str, mac: str) -> str | None:
    """The host-side device (vnetN / veth) of the interface with ``mac`` in a running domain's XML."""
    root = ET.fromstring(domain_xml)
    for iface in root.iterfind("devices/interface"):
        mac_el = iface.find("mac")
        target = iface.find("target")
        if mac_el is not None and mac_el.get("address", "").lower() == mac.lower() and target is not None:
            return target.get("dev")
    return None


def to_string(el: ET.Element) -> str:
    return ET.tostring(el, encoding="unicode")
