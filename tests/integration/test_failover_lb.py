"""The apiserver VIP fails over, measured from a client's seat, and does not flap.

On the installed LXC m-master (``etcd_lb``: haproxy + keepalived on the two [lb] nodes, VIP
10.56.56.10:8443, reverted before each test), a prober inside the topology's network namespace connects
to VIP:8443 every 100 ms, and a watcher asks the wire every 200 ms who answers ARP for the VIP. Jepsen's
split: the fault (``scenarios.faults.lb``) injects and heals, the prober and the watcher record, and the
assertions below decide afterwards from those histories. No apiserver runs yet, so "the VIP serves" means
haproxy accepts the connection.

Measured figures are printed, recorded as junit properties (``record_property``), and written at the end
of the run by a small terminal-summary plugin this module registers, so they show in ``pytest -q``
output. The timing goals are the benchmark's (bench/bench_failover_lb.py), not asserted here.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from harness.probe import History, Outage, Timeline
from scenarios.faults import Fault
from scenarios.faults.lb import (
    CutLink,
    PowerOffNode,
    StopLoadBalancer,
    backup_of,
    measure_failover,
    power_off_bound,
    stopped_lb_bound,
    vrrp_master,
    watch,
)
from scenarios.installed import Installed

pytestmark = pytest.mark.integration

#: how long the VIP is watched after a heal: long enough for keepalived to preempt if it were going to
#: (its check rises in 2 × 1 s, then a Master_Down_Interval of ~3.4 s).
AFTER_HEAL_S = 8.0


Report = Callable[..., None]


@pytest.fixture
def report(measured: Report) -> Report:
    """``report(line, **properties)``: the figure appears in the run's "measured" summary (conftest.py)."""
    return measured


def holders_after(tl: Timeline, t: float) -> set[frozenset[str]]:
    return {s.holders for s in tl.since(t).good}


def test_exactly_one_vip_holder_at_rest(etcd_lb: Installed, report: Report) -> None:
    master = vrrp_master(etcd_lb)
    with watch(etcd_lb, max_duration=30) as w:
        time.sleep(4.0)
    tl, hist = w.watcher.timeline(), w.prober.history()
    assert not tl.errors, tl.errors[:3]
    assert len(tl.good) >= 10, tl.summary()
    assert holders_after(tl, tl.started) == {frozenset({master})}, f"VIP holders on the wire: {tl.summary()}"
    assert hist.outage_count == 0 and hist.ok_count >= 30, hist.summary()
    assert etcd_lb.vip_holders() == [master]
    report(f"at rest: VIP on {master} alone in {len(tl.good)} ARP samples over {tl.stopped - tl.started:.1f}s; "
           f"{hist.ok_count}/{len(hist.attempts)} connects accepted", vip_holder=master)


def test_watcher_sees_two_holders(etcd_lb: Installed) -> None:
    """The checker is not blind: a VIP configured by hand on the BACKUP shows as two holders on the wire."""
    master = vrrp_master(etcd_lb)
    backup = backup_of(etcd_lb.topo, master)
    vip = f"{etcd_lb.topo.vip}/32"
    with etcd_lb.connector() as c, watch(etcd_lb, max_duration=30) as w:
        # The device keepalived put the VIP on (eth0 in a container, ens3 or the like in a VM).
        dev = c(etcd_lb.topo.host(master)).run(["ip", "-o", "-4", "addr", "show", "to", vip]).stdout.split()[1]
        t = c(etcd_lb.topo.host(backup))
        t.run(["ip", "addr", "add", vip, "dev", dev], sudo=True)
        try:
            w.watcher.wait_for(lambda tl: bool(tl.split_brain()), timeout=5)
        finally:
            t.run(["ip", "addr", "del", vip, "dev", dev], sudo=True)
    assert {frozenset({master, backup})} == {s.holders for s in w.watcher.timeline().split_brain()}


@dataclass(frozen=True)
class Failover:
    outage: Outage
    history: History
    timeline: Timeline
    healed: float  # when the heal began, on the watcher's clock


def fail_over_and_heal(inst: Installed, fault: Fault, backup: str) -> Failover:
    """Inject, measure until the VIP serves again from ``backup``, heal, and watch a while after."""
    with watch(inst, max_duration=50) as w:
        w.prober.wait_for(lambda h: h.ok_count >= 5, timeout=5)
        outage = measure_failover(w, fault, timeout=20)
        w.watcher.wait_for(lambda tl: (s := tl.last()) is not None and s.holders == {backup}, timeout=5)
        healed = w.mark("heal")
        fault.heal()
        time.sleep(AFTER_HEAL_S)
    return Failover(outage, w.prober.history(), w.watcher.timeline(), healed)


def assert_moved_once_and_stayed(inst: Installed, f: Failover, master: str, backup: str) -> float:
    """One failover, then nothing: the VIP serves throughout the heal and does not go back (nopreempt)."""
    hist, tl = f.history, f.timeline
    assert f.outage.duration is not None
    assert hist.outage_count == 1, hist.summary()
    assert not tl.split_brain(), f"two holders at once: {tl.summary()}"
    assert [(m.source, m.target) for m in tl.moves()] == [(master, backup)], tl.summary()
    assert holders_after(tl, f.healed) == {frozenset({backup})}, tl.summary()
    assert inst.vip_holders() == [backup]
    return f.outage.duration


def test_stopped_haproxy_moves_the_vip_and_it_stays(etcd_lb: Installed, report: Report) -> None:
    topo = etcd_lb.topo
    master = vrrp_master(etcd_lb)
    backup = backup_of(topo, master)
    with etcd_lb.connector() as c:
        failover = fail_over_and_heal(etcd_lb, StopLoadBalancer(master, c(topo.host(master))), backup)
    took = assert_moved_once_and_stayed(etcd_lb, failover, master, backup)
    bound = stopped_lb_bound(topo, backup)
    report(f"haproxy stopped on {master}: VIP served by {backup} after {took:.2f}s "
           f"(bound {bound.seconds:.2f}s = {bound.formula}; ratio {took / bound.seconds:.2f}); "
           f"no move after heal in {AFTER_HEAL_S:.0f}s", failover_s=round(took, 3))


def test_powered_off_master_moves_the_vip(etcd_lb: Installed, report: Report) -> None:
    topo = etcd_lb.topo
    master = vrrp_master(etcd_lb)
    backup = backup_of(topo, master)
    failover = fail_over_and_heal(etcd_lb, PowerOffNode(etcd_lb.cluster, master), backup)
    took = assert_moved_once_and_stayed(etcd_lb, failover, master, backup)
    bound = power_off_bound(topo, backup)
    report(f"{master} powered off: VIP served by {backup} after {took:.2f}s "
           f"(bound {bound.seconds:.2f}s = {bound.formula}; ratio {took / bound.seconds:.2f}); "
           f"stays on {backup} after power-on", failover_s=round(took, 3))


def test_cut_link_moves_the_vip_and_one_holder_after_heal(etcd_lb: Installed, report: Report) -> None:
    topo = etcd_lb.topo
    master = vrrp_master(etcd_lb)
    backup = backup_of(topo, master)
    fault = CutLink(etcd_lb.cluster, master)
    with watch(etcd_lb, max_duration=50) as w:
        w.prober.wait_for(lambda h: h.ok_count >= 5, timeout=5)
        outage = measure_failover(w, fault, timeout=20)
        w.watcher.wait_for(lambda tl: (s := tl.last()) is not None and s.holders == {backup}, timeout=5)
        healed = w.mark("heal")
        fault.heal()
        # While the link is down the cut node may still hold the VIP on its side (keepalived there sees
        # no adverts): judge the state after the heal. Within a few seconds one node answers for the VIP,
        # and keeps answering alone.
        w.watcher.wait_for(lambda tl: (t := tl.since(healed).settled_since()) is not None
                           and tl.good[-1].start - t >= 2.0, timeout=15)
        time.sleep(3.0)
    tl = w.watcher.timeline().since(healed)
    assert outage.duration is not None
    settled = tl.settled_since()
    assert settled is not None and tl.good[-1].start - settled >= 4.0, f"no stable single holder: {tl.summary()}"
    (on_wire,) = tl.good[-1].holders
    assert etcd_lb.vip_holders() == [on_wire], f"ARP says {on_wire}: {tl.summary()}"
    bound = power_off_bound(topo, backup)
    report(f"link of {master} cut: VIP served by {backup} after {outage.duration:.2f}s "
           f"(bound {bound.seconds:.2f}s, ratio {outage.duration / bound.seconds:.2f}); after link up one holder "
           f"({on_wire}) within {settled - healed:.1f}s, split-brain samples after heal: "
           f"{len(tl.since(healed).split_brain())}", failover_s=round(outage.duration, 3))
