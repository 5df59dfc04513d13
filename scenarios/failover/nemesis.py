"""What a fault case does to its target nodes: inject/heal pairs acting through the harness (power, pause,
link) or on the node over SSH (systemctl, a SIGKILL by process name, nft rules in a table of kha's own).

Every fault records when it injected and healed (``time.monotonic()``), and its ``description`` says
exactly what it did to which node, for the timeline and the report. Heal undoes what inject did and
nothing else (kha's nft table is deleted whole; a stopped unit is started; a paused node resumed).
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from scenarios.faults.etcd import RemoveAndReAddMember
from scenarios.installed import Installed

log = logging.getLogger(__name__)

#: nft table that holds every rule a fault adds (inet: IPv4 and IPv6), so a heal removes exactly those.
NFT_TABLE = "kha_fault"


@dataclass
class NodeFault:
    """Base of the faults here: the installed topology, the target nodes, and the times it acted."""

    inst: Installed
    nodes: Sequence[str]
    description: str = ""
    injected_at: float | None = None
    healed_at: float | None = None

    def _each(self, argv: Sequence[str], *, stdin: str | None = None, timeout: float = 30) -> None:
        for node in self.nodes:
            self.inst.run(node, argv, stdin=stdin, timeout=timeout)

    def prepare(self) -> None:
        """What must hold before the clients start (a failover that already happened …); most need nothing."""

    def inject(self) -> None:
        log.info("fault: %s", self.description)
        self.injected_at = time.monotonic()
        self._inject()

    def heal(self) -> None:
        log.info("heal: %s", self.description)
        self._heal()
        self.healed_at = time.monotonic()

    def _inject(self) -> None:
        raise NotImplementedError

    def _heal(self) -> None:
        raise NotImplementedError


@dataclass
class StopUnits(NodeFault):
    """``systemctl stop`` the units (heal: start them, in reverse order). Stopped, not killed: a unit
    with ``Restart=always`` (Debian's haproxy) would be back in 0.3 s after a kill."""

    units: Sequence[str] = ()

    def __post_init__(self) -> None:
        self.description = f"systemctl stop {' '.join(self.units)} on {', '.join(self.nodes)}"

    def _inject(self) -> None:
        self._each(["systemctl", "stop", *self.units])

    def _heal(self) -> None:
        self._each(["systemctl", "start", *reversed(self.units)])


@dataclass
class KillProcess(NodeFault):
    """SIGKILL every process named exactly ``process`` (``pkill -x``: the name, never a command line, so
    the SSH command itself is never a match). Whatever supervises it (systemd, kubelet) brings it back;
    heal only makes sure ``unit`` (if given) is active again."""

    process: str = ""
    unit: str | None = None

    def __post_init__(self) -> None:
        self.description = f"kill -9 {self.process} on {', '.join(self.nodes)}"

    def _inject(self) -> None:
        self._each(["pkill", "-9", "-x", self.process])

    def _heal(self) -> None:
        if self.unit is not None:
            for node in self.nodes:
                if not self.inst.run(node, ["systemctl", "is-active", "--quiet", self.unit], check=False).ok:
                    self.inst.run(node, ["systemctl", "start", self.unit])


@dataclass
class PowerOff(NodeFault):
    """Hard power-off (no shutdown); heal powers the nodes on in a random order (seeded) and waits for SSH."""

    seed: int = 0
    order: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.description = f"power off {', '.join(self.nodes)} (hard)"

    def _inject(self) -> None:
        for node in self.nodes:
            self.inst.cluster.power_off(node)

    def _heal(self) -> None:
        self.order = list(self.nodes)
        random.Random(self.seed).shuffle(self.order)
        self.description += f"; powered on in the order {', '.join(self.order)}"
        for node in self.order:
            self.inst.cluster.power_on(node, wait=False)
        self.inst.cluster.wait_ready(self.order)
        self.inst.close()  # the old SSH sessions died with the nodes


@dataclass
class Pause(NodeFault):
    """Freeze the nodes (a container's processes stop; its kernel still answers TCP handshakes); heal resumes."""

    def __post_init__(self) -> None:
        self.description = f"pause (freeze) {', '.join(self.nodes)}"

    def _inject(self) -> None:
        for node in self.nodes:
            self.inst.cluster.pause(node)

    def _heal(self) -> None:
        for node in self.nodes:
            self.inst.cluster.resume(node)


@dataclass
class CutLink(NodeFault):
    """Take the nodes' links down (NO-CARRIER, like a pulled cable); heal: bring them up."""

    def __post_init__(self) -> None:
        self.description = f"cut the link of {', '.join(self.nodes)}"

    def _inject(self) -> None:
        for node in self.nodes:
            self.inst.cluster.link_down(node)

    def _heal(self) -> None:
        for node in self.nodes:
            self.inst.cluster.link_up(node)


@dataclass
class NftDrop(NodeFault):
    """Drop traffic on the target nodes with rules in kha's own nft table (heal: delete the table).

    ``rules`` are nft rule bodies for the ``input`` and ``output`` chains, e.g. ``ip saddr 10.0.0.2 drop``.
    """

    what: str = ""
    input_rules: Sequence[str] = ()
    output_rules: Sequence[str] = ()

    def __post_init__(self) -> None:
        self.description = f"{self.what} on {', '.join(self.nodes)} (nft table {NFT_TABLE})"

    def script(self) -> str:
        lines = [f"table inet {NFT_TABLE} {{"]
        for chain, hook, rules in (("input", "input", self.input_rules), ("output", "output", self.output_rules)):
            lines.append(f"  chain {chain} {{ type filter hook {hook} priority -10; policy accept;")
            lines.extend(f"    {r}" for r in rules)
            lines.append("  }")
        lines.append("}")
        return "\n".join(lines) + "\n"

    def _inject(self) -> None:
        self._each(["nft", "-f", "-"], stdin=self.script())

    def _heal(self) -> None:
        for node in self.nodes:
            self.inst.run(node, ["sh", "-c", f"nft list table inet {NFT_TABLE} >/dev/null 2>&1 && "
                                             f"nft delete table inet {NFT_TABLE}; true"])


def partition(inst: Installed, nodes: Sequence[str]) -> NftDrop:
    """Cut the nodes off from every other node (their own links stay up, the VIP's address too)."""
    others = [str(h.address) for h in inst.topo.hosts if h.name not in nodes]
    peers = "{ " + ", ".join(others) + " }"
    return NftDrop(inst, nodes, what=f"drop all traffic to and from {', '.join(others)}",
                   input_rules=[f"ip saddr {peers} drop"], output_rules=[f"ip daddr {peers} drop"])


def block_vrrp(inst: Installed, nodes: Sequence[str]) -> NftDrop:
    """VRRP-only split brain: adverts (IP protocol 112) dropped on every LB node, all else flows."""
    return NftDrop(inst, nodes, what="drop VRRP adverts (IP protocol 112)", input_rules=["ip protocol vrrp drop"])


def block_etcd_client(inst: Installed, nodes: Sequence[str]) -> NftDrop:
    """The node's apiserver loses its path to etcd (client port 2379, any member): up but not ready."""
    return NftDrop(inst, nodes, what="drop the apiserver's etcd client traffic (tcp 2379 out)",
                   output_rules=["tcp dport 2379 drop"])


@dataclass
class ReAddEtcdMember(NodeFault):
    """Remove the etcd member, wipe its data dir, re-add it empty (learner, promoted) with traffic running."""

    fault: RemoveAndReAddMember | None = None

    def __post_init__(self) -> None:
        self.description = f"remove etcd member {', '.join(self.nodes)}, wipe it, re-add it empty"

    def _inject(self) -> None:
        self.fault = RemoveAndReAddMember(self.inst.etcd(), self.nodes[0])
        self.fault.inject()

    def _heal(self) -> None:
        assert self.fault is not None
        try:
            self.fault.heal()
        finally:
            self.fault.ctx.connector.close()


