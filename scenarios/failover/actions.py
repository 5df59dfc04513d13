"""From a case's ``action`` name to the fault that does it, on the nodes its selector resolved to.

``build`` is the one table; an action that needs what this topology or machine lacks (netem, a clock of
the node's own) is refused by ``catalogue``'s needs before it gets here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from core import waiting
from installer.etcd.ctl import client_urls, host_of
from scenarios.errors import FaultError
from scenarios.failover import nemesis
from scenarios.failover.catalogue import Case
from scenarios.installed import Installed


@dataclass
class ReturnOfTheMaster(nemesis.NodeFault):
    """Prepared by a failover (the VRRP master powered off, the BACKUP serving); the fault itself is the old
    master's return: powered on, it must stay BACKUP (nopreempt) and the VIP must not move."""

    def __post_init__(self) -> None:
        self.description = f"power {', '.join(self.nodes)} (the old VRRP master) back on after a failover"

    def prepare(self) -> None:
        for node in self.nodes:
            self.inst.cluster.power_off(node)

        def moved() -> str | None:
            holders = self.inst.vip_holders(among=[h.name for h in self.inst.topo.lb if h.name not in self.nodes])
            return None if len(holders) == 1 else f"VIP on {holders or 'no node'}"

        waiting.until(moved, timeout=60, interval=0.5, error=lambda said: FaultError(
            f"no failover after powering off {', '.join(self.nodes)}: {said}"))

    def _inject(self) -> None:
        for node in self.nodes:
            self.inst.cluster.power_on(node, wait=True)
        self.inst.close()

    def _heal(self) -> None:
        pass


@dataclass
class PauseEtcdLeader(nemesis.Pause):
    """Freeze the etcd leader's node. Prepared so that the leader is not also the VRRP master (leadership
    moved with ``etcdctl move-leader`` when it is): the case is about etcd and the apiserver beside it.
    Freezing the VRRP master is another matter on LXC: a frozen container's kernel keeps answering ARP
    for the VIP, so two nodes hold it while it is frozen."""

    def prepare(self) -> None:
        holders = set(self.inst.vip_holders())
        ctx = self.inst.etcd()
        try:
            admin = ctx.admin()
            member, _ = admin.leader()
            leader = host_of(self.inst.topo.hosts, member)
            if leader is not None and leader.name in holders:
                to = next(h for h in self.inst.topo.etcd if h.name not in holders)
                target = next(m for m in admin.member_list() if host_of([to], m) is not None)
                admin.ctl("move-leader", target.hex_id, endpoints=client_urls([leader]))
                leader = to
        finally:
            ctx.connector.close()
        if leader is None:
            raise FaultError(f"the etcd leader {member.name} is not a host of the inventory")
        self.nodes = [leader.name]
        self.description = f"pause (freeze) {leader.name}, the etcd leader"


@dataclass
class Netem(nemesis.NodeFault):
    """200 ms ± 50 ms on the nodes' etcd peer traffic (tcp dport 2380) through a prio qdisc band."""

    def __post_init__(self) -> None:
        self.description = f"netem delay 200ms ± 50ms on etcd peer traffic from {', '.join(self.nodes)}"

    def _inject(self) -> None:
        script = ("tc qdisc add dev eth0 root handle 1: prio && "
                  "tc qdisc add dev eth0 parent 1:3 handle 30: netem delay 200ms 50ms && "
                  "tc filter add dev eth0 protocol ip parent 1:0 prio 3 u32 match ip dport 2380 0xffff flowid 1:3")
        self._each(["sh", "-c", script])

    def _heal(self) -> None:
        self._each(["tc", "qdisc", "del", "dev", "eth0", "root"])


@dataclass
class ClockJump(nemesis.NodeFault):
    """Set the nodes' clocks 5 minutes ahead (heal: back by as much). Only on nodes with a clock of their
    own (VMs): an LXC node shares the host's clock."""

    def __post_init__(self) -> None:
        self.description = f"clock +5 min on {', '.join(self.nodes)}"

    def _inject(self) -> None:
        self._each(["date", "-s", "+5 minutes"])

    def _heal(self) -> None:
        self._each(["date", "-s", "-5 minutes"])


Builder = Callable[[Installed, Sequence[str], int], nemesis.NodeFault]

ACTIONS: dict[str, Builder] = {
    "stop-haproxy": lambda inst, nodes, seed: nemesis.StopUnits(inst, nodes, units=("haproxy",)),
    "kill-keepalived": lambda inst, nodes, seed: nemesis.KillProcess(inst, nodes, process="keepalived",
                                                                      unit="keepalived"),
    "power-off": lambda inst, nodes, seed: nemesis.PowerOff(inst, nodes, seed=seed),
    "cut-link": lambda inst, nodes, seed: nemesis.CutLink(inst, nodes),
    "power-off-then-return": lambda inst, nodes, seed: ReturnOfTheMaster(inst, nodes),
    "kill-apiserver": lambda inst, nodes, seed: nemesis.KillProcess(inst, nodes, process="kube-apiserver"),
    "block-etcd-client": lambda inst, nodes, seed: nemesis.block_etcd_client(inst, nodes),
    "kill-etcd": lambda inst, nodes, seed: nemesis.KillProcess(inst, nodes, process="etcd", unit="etcd"),
    "pause-etcd-leader": lambda inst, nodes, seed: PauseEtcdLeader(inst, nodes),
    "readd-etcd-member": lambda inst, nodes, seed: nemesis.ReAddEtcdMember(inst, nodes),
    "stop-etcd": lambda inst, nodes, seed: nemesis.StopUnits(inst, nodes, units=("etcd",)),
    "partition": lambda inst, nodes, seed: nemesis.partition(inst, nodes),
    "block-vrrp": lambda inst, nodes, seed: nemesis.block_vrrp(inst, nodes),
    "stop-kubelet-containerd": lambda inst, nodes, seed: nemesis.StopUnits(inst, nodes,
                                                                           units=("kubelet", "containerd")),
    "power-cycle": lambda inst, nodes, seed: nemesis.PowerOff(inst, nodes, seed=seed),
    "netem": lambda inst, nodes, seed: Netem(inst, nodes),
    "clock-jump": lambda inst, nodes, seed: ClockJump(inst, nodes),
}


def build(case: Case, inst: Installed, nodes: Sequence[str], seed: int) -> nemesis.NodeFault:
    if case.action not in ACTIONS:
        raise FaultError(f"case {case.name}: no action {case.action!r} (known: {', '.join(ACTIONS)})")
    return ACTIONS[case.action](inst, nodes, seed)

