"""The apiserver VIP at rest, and the watcher that judges every failover is not blind.

On the installed LXC m-master (``etcd_lb``: haproxy + keepalived on the two [lb] nodes, VIP
10.56.56.10:8443, reverted before each test), a prober inside the topology's network namespace connects
to VIP:8443 every 100 ms, and a watcher asks the wire every 200 ms who answers ARP for the VIP: at rest
exactly one node holds it, and a VIP added by hand on the BACKUP shows as two holders.

The failovers themselves (haproxy stopped, keepalived killed, the master powered off or cut off, VRRP
split brain …) are cases of the fault catalogue, run on a topology with Kubernetes behind the VIP and
held to their bounds: ``tests/failover`` (``tox -e failover``).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from harness.probe import ArpHolders, Prober, Timeline, VipWatcher, Watch
from scenarios.errors import FaultError
from scenarios.failover import selectors
from scenarios.installed import Installed

pytestmark = pytest.mark.integration

Report = Callable[..., None]


@pytest.fixture
def report(measured: Report) -> Report:
    """``report(line, **properties)``: the figure appears in the run's "measured" summary (conftest.py)."""
    return measured


def watch(inst: Installed, *, max_duration: float = 120.0, interval: float = 0.1,
          period: float = 0.2) -> Watch:
    """A prober on VIP:port every ``interval`` s and an ARP watcher of the VIP every ``period`` s, both
    running inside the topology's network namespace. Use as a context manager."""
    topo, cluster = inst.topo, inst.cluster
    if topo.vip is None:
        raise FaultError("the topology has no VIP (lb_kube_apiserver_ip)")
    ns = cluster.state.netns
    names = {cluster.state.nodes[h.name].mac: h.name for h in topo.lb}
    arp = ArpHolders(cluster.state.bridge, str(topo.vip), names)
    prober = Prober(str(topo.vip), topo.settings.lb_kube_apiserver_port, netns=ns, interval=interval,
                    max_duration=max_duration, name="probe-vip")
    watcher = VipWatcher(arp, netns=ns, period=period, max_duration=max_duration, name="vip-arp")
    return Watch(prober, watcher, [arp.close])


def holders_after(tl: Timeline, t: float) -> set[frozenset[str]]:
    return {s.holders for s in tl.since(t).good}


def test_exactly_one_vip_holder_at_rest(etcd_lb: Installed, report: Report) -> None:
    (master,) = selectors.vrrp_master(etcd_lb)
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
    (master,) = selectors.vrrp_master(etcd_lb)
    (backup,) = selectors.vrrp_backup(etcd_lb)
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
