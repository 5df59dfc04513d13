"""Faults for the apiserver load balancer (haproxy + keepalived on the ``[lb]`` nodes), and what a failover
suite needs around them: who holds the VIP, a prober + VIP watcher from inside the topology's network,
and the failover bound the configured timers promise.

Faults (each an inject/heal pair, see ``scenarios.faults.Fault``):

* ``StopLoadBalancer`` — ``systemctl stop haproxy`` on a node. Not ``kill -9``: Debian's haproxy unit
  has ``Restart=always``, so systemd restarts a killed haproxy in ~0.3 s and nothing fails over
  (shared/MACHINE.md, "Services"); a unit stopped through systemd stays stopped.
* ``PowerOffNode`` — a hard power-off through the harness (no shutdown: keepalived sends no goodbye).
* ``CutLink`` — the node's link goes down (NO-CARRIER, like a pulled cable) and comes back.

Bounds (shared/FACTS.md, "Timing"; RFC 5798 §6.1): a BACKUP declares the MASTER dead after
Master_Down_Interval = 3 × Advertisement_Interval + Skew_Time, Skew_Time = (256 − priority) / 256 s.
A stopped haproxy fails the check ``CHECK_FALL`` times in a row, ``CHECK_INTERVAL_S`` apart; the check
has no weight, so keepalived puts the instance into FAULT, and RFC 5798 §6.4.3 has a MASTER that
leaves send a priority-0 advert, after which the BACKUP waits only Skew_Time. Keepalived docs:
https://keepalived.readthedocs.io/en/latest/configuration_synopsis.html (vrrp_script, track_script).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from core import waiting
from harness.probe import ArpHolders, History, Outage, Prober, VipWatcher, Watch
from harness.provider import Cluster
from installer.loadbalancer import render
from installer.remote import Transport
from installer.topology import Host, Topology
from scenarios.errors import FaultError
from scenarios.faults import Fault
from scenarios.installed import Installed

log = logging.getLogger(__name__)


# -- faults -----------------------------------------------------------------------------------------


class StopLoadBalancer:
    """Stop the load balancer's unit on ``node`` (heal: start it again).

    The unit is stopped, not killed: haproxy's Debian unit says ``Restart=always``, so a ``kill -9`` is
    undone by systemd in ~0.3 s, well inside keepalived's 2 × 1 s check, and the VIP never moves. Masking
    is not needed either: ``Restart=`` only acts on a process that exits on its own, never on a unit
    stopped with ``systemctl stop`` (systemd.service(5), "Restart=").
    """

    def __init__(self, node: str, transport: Transport, unit: str = "haproxy") -> None:
        self.node = node
        self.transport = transport
        self.unit = unit
        self.description = f"systemctl stop {unit} on {node} (kill -9 would be undone by Restart=always)"
        self.injected_at: float | None = None
        self.healed_at: float | None = None

    def inject(self) -> None:
        log.info("fault: %s", self.description)
        self.transport.run(["systemctl", "stop", self.unit], sudo=True, timeout=30)
        self.injected_at = time.monotonic()

    def heal(self) -> None:
        log.info("heal: systemctl start %s on %s", self.unit, self.node)
        self.transport.run(["systemctl", "start", self.unit], sudo=True, timeout=30)
        self.healed_at = time.monotonic()


class PowerOffNode:
    """Hard power-off of ``node`` (libvirt destroy / SIGKILL of the container's init); heal: power on and
    wait for an SSH login. Its peers learn of it only through missing VRRP adverts."""

    def __init__(self, cluster: Cluster, node: str) -> None:
        self.cluster = cluster
        self.node = node
        self.description = f"power off {node} (hard, no shutdown)"
        self.injected_at: float | None = None
        self.healed_at: float | None = None

    def inject(self) -> None:
        log.info("fault: %s", self.description)
        self.injected_at = time.monotonic()
        self.cluster.power_off(self.node)

    def heal(self) -> None:
        log.info("heal: power on %s", self.node)
        self.cluster.power_on(self.node, wait=True)
        self.healed_at = time.monotonic()


class CutLink:
    """Take ``node``'s network link down (the node sees NO-CARRIER); heal: bring it up."""

    def __init__(self, cluster: Cluster, node: str) -> None:
        self.cluster = cluster
        self.node = node
        self.description = f"cut the link of {node}"
        self.injected_at: float | None = None
        self.healed_at: float | None = None

    def inject(self) -> None:
        log.info("fault: %s", self.description)
        self.injected_at = time.monotonic()
        self.cluster.link_down(self.node)

    def heal(self) -> None:
        log.info("heal: link of %s up", self.node)
        self.cluster.link_up(self.node)
        self.healed_at = time.monotonic()


# -- where the VIP is --------------------------------------------------------------------------------


def vrrp_master(installed: Installed) -> str:
    """The node holding the VIP now (the VRRP MASTER); ``FaultError`` unless exactly one holds it."""
    holders = installed.vip_holders()
    if len(holders) != 1:
        raise FaultError(f"VIP {installed.topo.vip} is held by {holders or 'no node'}; expected exactly one")
    return holders[0]


def wait_one_holder(installed: Installed, timeout: float = 30.0) -> tuple[str, float]:
    """Until exactly one ``[lb]`` node holds the VIP (by SSH); returns it and the seconds waited."""
    seen: list[str] = []

    def one() -> str | None:
        seen[:] = installed.vip_holders()
        return None if len(seen) == 1 else ", ".join(seen) or "no node"

    waited = waiting.until(one, timeout=timeout, interval=0.3, error=lambda held: FaultError(
        f"VIP {installed.topo.vip} held by {held} {timeout:.0f}s on; expected one"))
    return seen[0], waited


def watch(installed: Installed, *, max_duration: float = 120.0, interval: float = 0.1,
          period: float = 0.2) -> Watch:
    """A prober on VIP:port every ``interval`` s and an ARP watcher of the VIP every ``period`` s, both
    running inside the topology's network namespace. Use as a context manager."""
    topo, cluster = installed.topo, installed.cluster
    if topo.vip is None:
        raise FaultError("the topology has no VIP (lb_kube_apiserver_ip)")
    ns = cluster.state.netns
    names = {cluster.state.nodes[h.name].mac: h.name for h in topo.lb}
    arp = ArpHolders(cluster.state.bridge, str(topo.vip), names)
    prober = Prober(str(topo.vip), topo.settings.lb_kube_apiserver_port, netns=ns, interval=interval,
                    max_duration=max_duration, name="probe-vip")
    watcher = VipWatcher(arp, netns=ns, period=period, max_duration=max_duration, name="vip-arp")
    return Watch(prober, watcher, [arp.close])


def measure_failover(w: Watch, fault: Fault, timeout: float = 30.0) -> Outage:
    """Mark ``inject``, inject ``fault``, and wait until the prober has seen the VIP stop serving and serve
    again; that outage (first failed attempt → first accepted connect) is the failover a client saw."""
    t = w.mark("inject")
    fault.inject()

    def recovered(h: History) -> bool:
        o = h.first_outage_after(t)
        return o is not None and o.end is not None

    outage = w.prober.wait_for(recovered, timeout).first_outage_after(t)
    assert outage is not None and outage.duration is not None
    log.info("%s: VIP served again after %.2fs", fault.description, outage.duration)
    return outage


def backup_of(topo: Topology, master: str) -> str:
    """The ``[lb]`` node that takes over from ``master``: the highest priority among the others."""
    others = [h for h in topo.lb if h.name != master]
    if not others:
        raise FaultError(f"no [lb] node besides {master} to fail over to")
    return max(others, key=lambda h: render.priority(topo, h)).name


# -- bounds ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Bound:
    """What the configured timers promise for one kind of failure, and how it is made up."""

    seconds: float
    formula: str


def skew_s(priority: int) -> float:
    """RFC 5798 §6.1 Skew_Time for a VRRPv2-style priority (keepalived uses it for VRRPv2 too)."""
    return (256 - priority) / 256


def stopped_lb_bound(topo: Topology, backup: str) -> Bound:
    """A stopped haproxy: ``fall`` failed checks ``interval`` apart, then FAULT → priority-0 advert → skew."""
    prio = render.priority(topo, _host(topo, backup))
    s = skew_s(prio)
    return Bound(render.CHECK_INTERVAL_S * render.CHECK_FALL + s,
                 f"check {render.CHECK_INTERVAL_S}s × fall {render.CHECK_FALL} + skew (256−{prio})/256 = {s:.2f}s")


def power_off_bound(topo: Topology, backup: str) -> Bound:
    """A dead MASTER: the BACKUP waits out Master_Down_Interval = 3 × advert_int + skew."""
    prio = render.priority(topo, _host(topo, backup))
    s = skew_s(prio)
    return Bound(3 * render.ADVERT_INT_S + s,
                 f"3 × advert_int {render.ADVERT_INT_S}s + skew (256−{prio})/256 = {s:.2f}s")


def _host(topo: Topology, name: str) -> Host:
    for h in topo.lb:
        if h.name == name:
            return h
    raise FaultError(f"{name} is not an [lb] node (those are: {', '.join(h.name for h in topo.lb)})")

