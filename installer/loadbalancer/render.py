"""The apiserver load balancer's files: haproxy or nginx (stream) in front of every master, and
keepalived holding the VIP on the ``[lb]`` nodes — or the same proxy on 127.0.0.1 on every node
(node-local mode), or nothing (``slb``).

Timers are chosen for fast failover and measured by the failover benchmark (shared/FACTS.md,
"Timing"): a 1 s check with fall 2 bounds a stopped-haproxy failover at ~2 s + the VRRP skew;
advert_int 1 bounds a powered-off MASTER at 3 × advert_int + skew.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from installer import systemd
from installer.facts import NodeFacts
from installer.files import NodeFile, environment, render
from installer.kubernetes.hardening import Hardening
from installer.secrets import ClusterSecrets
from installer.settings import LBMode
from installer.topology import Host, LBKind, Role, Topology

HAPROXY_CFG = "/etc/haproxy/haproxy.cfg"
NGINX_CONF = "/etc/nginx/nginx.conf"
KEEPALIVED_CONF = "/etc/keepalived/keepalived.conf"
CHECK_SCRIPT = "/etc/keepalived/kha-check-lb.sh"
#: keepalived.service drop-in: restart it, and take the VIP away when it dies (see the template).
KEEPALIVED_DROPIN = "/etc/systemd/system/keepalived.service.d/kha.conf"

CHECK_INTERVAL_S = 1
CHECK_FALL = 2
CHECK_RISE = 2
ADVERT_INT_S = 1
#: haproxy's health check of each apiserver (GET /readyz): every ``inter`` s, DOWN after ``fall`` failures in
#: a row, UP again after ``rise`` successes (https://docs.haproxy.org/2.6/configuration.html#5.2-inter).
#: The failover suite's bounds read these.
BACKEND_CHECK_INTER_S = 1.0
BACKEND_CHECK_FALL = 2
BACKEND_CHECK_RISE = 2
#: haproxy gives up connecting to a backend after this long and retries another (``retries``, redispatch).
BACKEND_CONNECT_TIMEOUT_MS = 500
BACKEND_RETRIES = 3
#: priority of the first [lb] node; each next one is PRIORITY_STEP lower.
TOP_PRIORITY, PRIORITY_STEP = 150, 10

_env = environment("installer.loadbalancer")


@dataclass(frozen=True)
class Backend:
    name: str
    address: str
    port: int


def router_id(topo: Topology) -> int:
    """VRRP virtual_router_id (1..255): the inventory's, or a stable hash of the cluster (never ``hash()``)."""
    if topo.settings.lb_keepalived_router_id is not None:
        return topo.settings.lb_keepalived_router_id
    seed = f"{topo.settings.cluster_name}/{topo.vip}/{topo.settings.lb_kube_apiserver_port}"
    return int(hashlib.sha256(seed.encode()).hexdigest(), 16) % 255 + 1


def priority(topo: Topology, host: Host) -> int:
    names = [h.name for h in topo.lb]
    return TOP_PRIORITY - PRIORITY_STEP * names.index(host.name)


def lb_nodes(topo: Topology) -> tuple[Host, ...]:
    """Nodes that run a load balancer: the [lb] nodes (VIP), every node (local), none (slb)."""
    kind = topo.lb_kind
    if kind is LBKind.VIP:
        return topo.lb
    if kind is LBKind.LOCAL:
        return topo.hosts
    return ()


def backends(topo: Topology) -> list[Backend]:
    """Every current master, including those joining in this run ([new-master]); not those leaving."""
    leaving = set(topo.groups[Role.DEL_MASTER]) | set(topo.groups[Role.DEL_NODE])
    hosts = [*topo.masters, *topo.group(Role.NEW_MASTER)]
    return [Backend(h.name, str(h.address), topo.apiserver_port) for h in hosts if h.name not in leaving]


def files(topo: Topology, host: Host, secrets: ClusterSecrets, facts: NodeFacts | None = None) -> list[NodeFile]:
    if host not in lb_nodes(topo):
        return []
    facts = facts or NodeFacts(interface=topo.settings.lb_keepalived_interface or "eth0")
    vip_mode = topo.lb_kind is LBKind.VIP
    port = topo.settings.lb_kube_apiserver_port
    common = {
        "node": host.name,
        "shape": f"VIP {topo.vip}" if vip_mode else "node-local",
        # VIP mode binds every address: the VIP comes and goes with VRRP, and binding it would need
        # ip_nonlocal_bind on every [lb] node.
        "bind": "0.0.0.0" if vip_mode else "127.0.0.1",
        "port": port,
        "backends": backends(topo),
        "check_fall": BACKEND_CHECK_FALL,
    }
    out: list[NodeFile] = []
    if topo.settings.lb_mode is LBMode.HAPROXY:
        out.append(NodeFile(HAPROXY_CFG, render(_env, "haproxy.cfg.j2", **common,
                                                check_inter_ms=int(BACKEND_CHECK_INTER_S * 1000),
                                                check_rise=BACKEND_CHECK_RISE,
                                                connect_timeout_ms=BACKEND_CONNECT_TIMEOUT_MS,
                                                retries=BACKEND_RETRIES,
                                                balance=topo.settings.lb_haproxy_balance_alg.value,
                                                chroot=Hardening.of(topo.settings).haproxy_chroot)))
    else:
        out.append(NodeFile(NGINX_CONF, render(_env, "nginx.conf.j2", **common, fail_timeout_s=10,
                                               user=facts.nginx_user, modules=facts.nginx_modules)))
    if vip_mode:
        peers = [str(h.address) for h in topo.lb if h.name != host.name] if topo.settings.lb_keepalived_unicast else []
        out.append(NodeFile(KEEPALIVED_CONF, render(
            _env, "keepalived.conf.j2", node=host.name, vip=topo.vip, prefix=topo.node_network.prefixlen,
            interface=facts.interface, router_id=router_id(topo), priority=priority(topo, host),
            advert_int=ADVERT_INT_S, password=secrets.vrrp_password, address=host.address,
            unicast_peers=peers, check_script=CHECK_SCRIPT, check_interval=CHECK_INTERVAL_S,
            check_fall=CHECK_FALL, check_rise=CHECK_RISE,
        ), mode=0o640))
        out.append(NodeFile(CHECK_SCRIPT, render(_env, "check-lb.sh.j2", port=port, timeout=CHECK_INTERVAL_S),
                            mode=0o755))
        out.append(NodeFile(KEEPALIVED_DROPIN, keepalived_dropin(
            host, f"{topo.vip}/{topo.node_network.prefixlen}", facts.interface)))
    return out


def keepalived_dropin(host: Host, vip: str, interface: str) -> bytes:
    """keepalived must not leave the VIP behind when it dies.

    A keepalived killed without saying goodbye (kill -9, OOM) leaves the VIP configured on its node while
    the BACKUP takes it over after Master_Down_Interval: two nodes answer ARP for the VIP and clients'
    TCP connections break as the answers flip (measured by kha's failover suite:
    kill-keepalived-on-vrrp-master). ExecStopPost runs whenever the service stops, also after a crash
    (systemd.service(5)), so the address goes with the daemon; systemd then restarts keepalived, which
    comes back as BACKUP (nopreempt).
    """
    return systemd.unit(
        ["Written by kha: keepalived must not leave the apiserver VIP behind when it dies (ExecStopPost",
         "removes it after any stop, a crash included; systemd.service(5)). Edit the inventory, not this file."],
        [("Service", [("Restart", "always"), ("RestartSec", "1"),
                      ("ExecStopPost", systemd.command(["/sbin/ip", "-4", "addr", "del", vip, "dev", interface],
                                                       prefix="-"))])])
