"""firewalld on RHEL-family nodes: stopped, or open for exactly what each node's roles serve (``firewalld_mode``).

RHEL 9 and its rebuilds run firewalld by default, and its default zone rejects what a cluster's nodes send
each other. kubeadm asks for the firewall to be off or for its ports to be open
(https://kubernetes.io/docs/reference/networking/ports-and-protocols/); kubespray manages no firewall and
advises disabling it (its contrib/os-services playbook stops firewalld), as kubeadm-ha's
``firewalld_disabled: true`` does. ``stop`` (the default) stops and disables it; ``open`` keeps it and opens,
in the zone of the interface that carries the node's address, one row of ``OPENINGS`` per service the
node runs, in the running firewall and in its permanent configuration (no reload: a reload would drop
rules others added at runtime). Debian nodes are not touched.

What kha opened on a node is recorded there (``OPENED``, the zone and one port or protocol per line). A later
run closes what it opened and the node no longer serves (a role it lost, another network plugin, a moved LB
port), in the running firewall and the permanent configuration alike; a port that was open before kha came
(someone else's) is never in the record, so kha never closes it.

``OPENINGS`` is the one table: a row names what listens, who runs it, the port or protocol, and where that
comes from. ``openings`` evaluates it for one node; the phase and the tests read the same list.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from installer import nodeops
from installer.files import NodeFile
from installer.kubernetes import render as k8s
from installer.nodeprep import render
from installer.phases import Context
from installer.remote import Transport
from installer.settings import FirewalldMode, NetworkPlugin
from installer.topology import Host, LBKind, Role, Topology

log = logging.getLogger(__name__)

UNIT = "firewalld"
#: what kha opened on this node: ``zone=Z`` then one port (``6443/tcp``) or protocol (``vrrp``) per line
OPENED = "/etc/kha/firewalld-opened"
_PORTS = "https://kubernetes.io/docs/reference/networking/ports-and-protocols/"


def _kube(topo: Topology, host: Host) -> bool:
    return host in k8s.kubernetes_nodes(topo)


def _control_plane(topo: Topology, host: Host) -> bool:
    return k8s._is_control_plane(topo, host)


def _worker(topo: Topology, host: Host) -> bool:
    return bool({Role.WORKER, Role.NEW_WORKER} & set(topo.roles(host.name)))


def _etcd(topo: Topology, host: Host) -> bool:
    return bool({Role.ETCD, Role.NEW_ETCD} & set(topo.roles(host.name)))


def _vip_lb(topo: Topology, host: Host) -> bool:
    # A node-local LB listens on 127.0.0.1 only, and an slb is not on the nodes: nothing to open for either.
    return topo.lb_kind is LBKind.VIP and host in topo.lb


def _plugin(plugin: NetworkPlugin) -> Callable[[Topology, Host], bool]:
    return lambda topo, host: _kube(topo, host) and topo.settings.network_plugin is plugin


def _time_server(topo: Topology, host: Host) -> bool:
    return topo.settings.chrony_enabled and host == render.time_server(topo)


@dataclass(frozen=True)
class Opening:
    """One thing a node serves: ``port`` is firewalld's ``PORT[-PORT]/PROTO``, or a protocol's name
    (/etc/protocols) when ``protocol`` is set."""

    what: str
    runs_on: Callable[[Topology, Host], bool]
    port: Callable[[Topology], str]
    source: str
    protocol: bool = False


def _fixed(value: str) -> Callable[[Topology], str]:
    return lambda _topo: value


OPENINGS: tuple[Opening, ...] = (
    Opening("kube-apiserver", _control_plane, lambda t: f"{t.apiserver_port}/tcp", _PORTS),
    Opening("kube-controller-manager", _control_plane, _fixed("10257/tcp"), _PORTS),
    Opening("kube-scheduler", _control_plane, _fixed("10259/tcp"), _PORTS),
    Opening("kubelet API", _kube, _fixed("10250/tcp"), _PORTS),
    Opening("kube-proxy health", _kube, _fixed("10256/tcp"), _PORTS),
    Opening("NodePort Services (TCP)", _worker, lambda t: f"{t.settings.kube_service_node_port_range}/tcp", _PORTS),
    Opening("NodePort Services (UDP)", _worker, lambda t: f"{t.settings.kube_service_node_port_range}/udp", _PORTS),
    Opening("etcd clients and peers", _etcd, _fixed("2379-2380/tcp"), _PORTS),
    Opening("the apiserver load balancer", _vip_lb, lambda t: f"{t.settings.lb_kube_apiserver_port}/tcp",
            "the inventory's lb_kube_apiserver_port"),
    # keepalived's adverts are IP protocol 112, multicast or unicast alike (RFC 5798 section 5.1.1).
    Opening("keepalived (VRRP)", _vip_lb, _fixed("vrrp"), "https://www.rfc-editor.org/rfc/rfc5798", protocol=True),
    Opening("flannel VXLAN", _plugin(NetworkPlugin.FLANNEL), _fixed("8472/udp"),
            "https://github.com/flannel-io/flannel/blob/master/Documentation/backends.md"),
    Opening("calico BGP", _plugin(NetworkPlugin.CALICO), _fixed("179/tcp"),
            "https://docs.tigera.io/calico/latest/getting-started/kubernetes/requirements"),
    Opening("calico IP-in-IP", _plugin(NetworkPlugin.CALICO), _fixed("ipencap"),
            "https://docs.tigera.io/calico/latest/getting-started/kubernetes/requirements", protocol=True),
    Opening("calico Typha", _plugin(NetworkPlugin.CALICO), _fixed("5473/tcp"),
            "https://docs.tigera.io/calico/latest/getting-started/kubernetes/requirements"),
    Opening("chrony (the first master serves time)", _time_server, _fixed("123/udp"), "chrony.conf(5) allow"),
)


@dataclass(frozen=True)
class Wanted:
    """What firewalld must let in on one node."""

    ports: tuple[str, ...]
    protocols: tuple[str, ...]


def openings(topo: Topology, host: Host) -> Wanted:
    rows = [(o.port(topo), o.protocol) for o in OPENINGS if o.runs_on(topo, host)]
    return Wanted(tuple(dict.fromkeys(p for p, proto in rows if not proto)),
                  tuple(dict.fromkeys(p for p, proto in rows if proto)))


def _cmd(*args: str, permanent: bool = False) -> list[str]:
    return ["firewall-cmd", *(["--permanent"] if permanent else []), *args]


def zone(t: Transport, interface: str) -> str:
    """The zone of the node's interface (firewall-cmd(1) --get-zone-of-interface), else the default zone."""
    res = t.run(_cmd(f"--get-zone-of-interface={interface}"), sudo=True, check=False)
    if res.ok and res.stdout.strip():
        return res.stdout.strip()
    return t.run(_cmd("--get-default-zone"), sudo=True).stdout.strip()


def ensure(ctx: Context, t: Transport, topo: Topology, host: Host, interface: str) -> None:
    """firewalld as ``firewalld_mode`` says, on one RHEL-family node."""
    if topo.settings.firewalld_mode is FirewalldMode.STOP:
        _stop(ctx, t)
    else:
        _open(ctx, t, openings(topo, host), interface)


def _stop(ctx: Context, t: Transport) -> None:
    active = nodeops.is_active(t, UNIT)
    enabled = nodeops.systemctl(t, "is-enabled", "--quiet", UNIT, check=False)
    if not (active or enabled) or ctx.would("stop and disable firewalld (firewalld_mode=stop)"):
        return
    nodeops.systemctl(t, "disable", "--now", UNIT)
    log.warning("%s: firewalld stopped and disabled (firewalld_mode=stop; firewalld_mode=open keeps it and opens "
                "the ports this node needs)", t.node)


def _open(ctx: Context, t: Transport, wanted: Wanted, interface: str) -> None:
    if not nodeops.is_active(t, UNIT):
        # Not running: nothing filters, and kha does not start a firewall the node's owner left off.
        log.info("%s: firewalld is not running: nothing to open", t.node)
        return
    z = zone(t, interface)
    recorded = opened(t)
    ours = {*recorded.ports, *recorded.protocols} if recorded.zone == z else set()  # what kha opened before
    stale_ports = [p for p in recorded.ports if p in ours and p not in wanted.ports]
    stale_protocols = [p for p in recorded.protocols if p in ours and p not in wanted.protocols]
    added: set[str] = set()
    for permanent in (False, True):
        have_ports = set(t.run(_cmd(f"--zone={z}", "--list-ports", permanent=permanent), sudo=True).stdout.split())
        have_protocols = set(t.run(_cmd(f"--zone={z}", "--list-protocols", permanent=permanent),
                                   sudo=True).stdout.split())
        where = "permanent configuration" if permanent else "running firewall"
        ports = [p for p in wanted.ports if p not in have_ports]
        protocols = [p for p in wanted.protocols if p not in have_protocols]
        if (ports or protocols) and not ctx.would(f"open {' '.join([*ports, *protocols])} in firewalld zone {z} "
                                                  f"({where})"):
            t.run(_cmd(f"--zone={z}", *(f"--add-port={p}" for p in ports),
                       *(f"--add-protocol={p}" for p in protocols), permanent=permanent), sudo=True)
            log.info("%s: firewalld zone %s (%s): opened %s", t.node, z, where, " ".join([*ports, *protocols]))
            added.update(ports, protocols)
        ports = [p for p in stale_ports if p in have_ports]
        protocols = [p for p in stale_protocols if p in have_protocols]
        if (ports or protocols) and not ctx.would(f"close {' '.join([*ports, *protocols])} in firewalld zone {z} "
                                                  f"({where}): kha opened them, and the node no longer serves them"):
            t.run(_cmd(f"--zone={z}", *(f"--remove-port={p}" for p in ports),
                       *(f"--remove-protocol={p}" for p in protocols), permanent=permanent), sudo=True)
            log.info("%s: firewalld zone %s (%s): closed %s (no longer served)", t.node, z, where,
                     " ".join([*ports, *protocols]))
    # kha's from now on: what it opened before or just now, and still serves; not what was open without it.
    ours |= added
    nodeops.sync_file(ctx, t, _record(z, Wanted(tuple(p for p in wanted.ports if p in ours),
                                                 tuple(p for p in wanted.protocols if p in ours))))


@dataclass(frozen=True)
class Opened:
    """What the node's record says kha opened (``OPENED``)."""

    zone: str | None
    ports: tuple[str, ...]
    protocols: tuple[str, ...]


def opened(t: Transport) -> Opened:
    """The node's record of what kha opened; empty when there is none."""
    res = t.run(["cat", OPENED], sudo=True, check=False)
    lines = res.stdout.split() if res.ok else []
    zone = next((line.split("=", 1)[1] for line in lines if line.startswith("zone=")), None)
    items = [line for line in lines if not line.startswith("zone=")]
    return Opened(zone, tuple(i for i in items if "/" in i), tuple(i for i in items if "/" not in i))


def _record(zone: str, wanted: Wanted) -> NodeFile:
    return NodeFile(OPENED, "".join(f"{line}\n" for line in (f"zone={zone}", *wanted.ports, *wanted.protocols))
                    .encode())
