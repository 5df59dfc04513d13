"""Jepsen-style target selectors: which nodes a fault hits, resolved on the live topology at injection.

A case names a role, not a node ("the VRRP master", "the etcd leader"), because which node plays it moves
between runs (nopreempt keeps the VIP wherever it last went; elections move the leader). Each selector
resolves to node names on an ``Installed`` topology, or raises ``FaultError`` saying why it cannot
(no ``[lb]`` nodes, no worker …) — before anything is injected.
"""

from __future__ import annotations

from collections.abc import Callable

from installer.etcd.ctl import host_of
from installer.loadbalancer import render as lb_render
from installer.topology import Role
from scenarios.errors import CaseRefused, FaultError
from scenarios.installed import Installed


def vrrp_master(inst: Installed) -> list[str]:
    holders = inst.vip_holders()
    if len(holders) != 1:
        raise FaultError(f"VIP {inst.topo.vip} is held by {holders or 'no node'}; a VRRP master needs exactly one")
    return holders


def vrrp_backup(inst: Installed) -> list[str]:
    """The [lb] node that takes over from the master: the highest priority among the others."""
    master = vrrp_master(inst)[0]
    others = [h for h in inst.topo.lb if h.name != master]
    if not others:
        raise FaultError("no [lb] node besides the VRRP master")
    return [max(others, key=lambda h: lb_render.priority(inst.topo, h)).name]


def _etcd_leader_name(inst: Installed) -> str:
    ctx = inst.etcd()
    try:
        member, _ = ctx.admin().leader()
        host = host_of(inst.topo.hosts, member)
    finally:
        ctx.connector.close()
    if host is None:
        raise FaultError(f"the etcd leader {member.name} is not a host of the inventory")
    return host.name


def etcd_leader(inst: Installed) -> list[str]:
    return [_etcd_leader_name(inst)]


def _prefer_quiet(names: list[str], avoid: set[str]) -> list[str]:
    """``names`` with the ones that also play another role (VIP holder, etcd leader) last, so a fault on
    "a follower" tests that alone where the topology allows."""
    return sorted(names, key=lambda n: (n in avoid, names.index(n)))


def etcd_follower(inst: Installed) -> list[str]:
    leader = _etcd_leader_name(inst)
    followers = [h.name for h in inst.topo.etcd if h.name != leader]
    if not followers:
        raise FaultError("a one-member etcd has no follower")
    avoid = set(inst.vip_holders()) if inst.topo.vip is not None else set()
    return _prefer_quiet(followers, avoid)[:1]


def apiserver_not_on_vip(inst: Installed) -> list[str]:
    masters = list(inst.topo.groups[Role.MASTER])
    holders = set(inst.vip_holders()) if inst.topo.vip is not None else set()
    candidates = [m for m in masters if m not in holders]
    if not candidates:
        raise FaultError("every control plane holds the VIP: none is 'not on the VIP'")
    return [candidates[-1]]


def worker(inst: Installed) -> list[str]:
    masters = set(inst.topo.groups[Role.MASTER])
    workers = [n for n in inst.topo.groups[Role.WORKER] if n not in masters]
    if not workers:
        raise FaultError("the topology has no node that is only a worker")
    return workers[:1]


def minority(inst: Installed) -> list[str]:
    """As many etcd members as can fail without losing quorum (1 of 3): a follower, not the VIP holder."""
    size = len(inst.topo.etcd)
    if size < 3:
        raise FaultError(f"{size} etcd member(s): no minority can fail without losing quorum")
    return etcd_follower(inst)[: (size - 1) // 2]


def majority(inst: Installed) -> list[str]:
    """Enough etcd members to lose quorum (2 of 3): the leader and a follower; the VIP holder spared when it
    can be, so the API path itself stays up and the outage is etcd's."""
    size = len(inst.topo.etcd)
    need = size // 2 + 1
    names = [h.name for h in inst.topo.etcd]
    avoid = set(inst.vip_holders()) if inst.topo.vip is not None else set()
    leader = _etcd_leader_name(inst)
    ordered = [leader, *_prefer_quiet([n for n in names if n != leader], avoid)]
    return ordered[:need]


def all_nodes(inst: Installed) -> list[str]:
    return [h.name for h in inst.topo.hosts]


def lb_nodes(inst: Installed) -> list[str]:
    if not inst.topo.lb:
        raise FaultError("the topology has no [lb] nodes")
    return [h.name for h in inst.topo.lb]


SELECTORS: dict[str, Callable[[Installed], list[str]]] = {
    "vrrp-master": vrrp_master,
    "vrrp-backup": vrrp_backup,
    "etcd-leader": etcd_leader,
    "etcd-follower": etcd_follower,
    "apiserver-not-on-vip": apiserver_not_on_vip,
    "worker": worker,
    "minority": minority,
    "majority": majority,
    "lb-nodes": lb_nodes,
    "all": all_nodes,
}


def resolve(name: str, inst: Installed) -> list[str]:
    if name not in SELECTORS:
        raise CaseRefused(f"unknown selector {name!r}; known: {', '.join(SELECTORS)}")
    return SELECTORS[name](inst)
