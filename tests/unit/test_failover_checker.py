"""The failover checker decides from recorded histories alone: each promise it checks goes red on a history
that breaks it (an outage past the bound, a lost write, two VIP holders, a VIP that never settles …)."""

from __future__ import annotations

import pytest

from installer import topology
from scenarios import catalog
from scenarios.failover import catalogue
from scenarios.failover.checker import Recovery, WriteCount, check, longest_outage, outage
from scenarios.failover.model import CaseHistory, FaultWindow, Op, Outcome, Sample

T0 = 100.0


def probes(bad: list[tuple[float, float]], start: float = 95.0, stop: float = 120.0) -> list[Op]:
    """A probe every 0.1 s from ``start`` to ``stop``; those starting inside a ``bad`` window fail."""
    ops, t = [], start
    while t < stop:
        failed = any(a <= t < b for a, b in bad)
        ops.append(Op("readyz vip", t, t + 0.02, Outcome.FAILED if failed else Outcome.OK,
                      "refused" if failed else ""))
        t = round(t + 0.1, 3)
    return ops


def vip(holders: dict[float, str], start: float = 95.0, stop: float = 120.0) -> list[Sample]:
    """VIP samples every 0.2 s; ``holders`` maps a time to who holds it from then on."""
    out, t, now = [], start, "node1"
    while t < stop:
        for at in sorted(holders):
            if at <= t:
                now = holders[at]
        out.append(Sample("vip", t, now))
        t = round(t + 0.2, 3)
    return out


def history(ops: list[Op], samples: list[Sample]) -> CaseHistory:
    return CaseHistory("stop-haproxy-on-vrrp-master", "c", 95.0, 120.0,
                       FaultWindow("stop-haproxy-on-vrrp-master", "vrrp-master", ("node1",), "stop", T0, 108.0),
                       ops, samples)


GOOD_WRITES = WriteCount(acked=200, lost=0, failed_but_present=0, unknown=2, rv_problems=0, summary="200 acked, 0 lost")
GOOD_RECOVERY = Recovery(4.0, "all ready", True, "hashkv equal")


def verdict(ops: list[Op], samples: list[Sample], writes: WriteCount = GOOD_WRITES,
            recovery: Recovery = GOOD_RECOVERY) -> dict[str, bool]:
    case = catalogue.get("stop-haproxy-on-vrrp-master")
    bound = case.bound(topology.load(catalog.get("m-master").inventory))
    result = check(case, bound, history(ops, samples), writes, recovery)
    return {c.name: c.ok for c in result.checks}


def test_a_clean_failover_passes_every_check() -> None:
    result = verdict(probes([(100.0, 102.0)]), vip({102.0: "node2"}))
    assert all(result.values()), result


@pytest.mark.parametrize(("ops", "samples", "writes", "recovery", "broken"), [
    (probes([(100.0, 110.0)]), vip({102.0: "node2"}), GOOD_WRITES, GOOD_RECOVERY,
     "outage through the VIP within the bound"),
    (probes([(99.0, 99.5)]), vip({102.0: "node2"}), GOOD_WRITES, GOOD_RECOVERY, "VIP served before the fault"),
    # A late failure is part of the window too: both promises break.
    (probes([(100.0, 101.0), (119.5, 120.0)]), vip({102.0: "node2"}), GOOD_WRITES, GOOD_RECOVERY,
     "outage through the VIP within the bound|VIP serves again at the end"),
    (probes([(100.0, 102.0)]), vip({102.0: "node2"}),
     WriteCount(200, 1, 0, 0, 0, "1 lost"), GOOD_RECOVERY, "no acknowledged write lost"),
    (probes([(100.0, 102.0)]), vip({102.0: "node2"}),
     WriteCount(200, 0, 1, 0, 0, "1 failed but present"), GOOD_RECOVERY, "no acknowledged write lost"),
    (probes([(100.0, 102.0)]), vip({102.0: "node1,node2", 103.0: "node2"}), GOOD_WRITES, GOOD_RECOVERY,
     "never two VIP holders"),
    (probes([(100.0, 102.0)]), vip({102.0: "node2", 119.0: ""}), GOOD_WRITES, GOOD_RECOVERY,
     "exactly one VIP holder after the heal"),
    (probes([(100.0, 102.0)]), vip({102.0: "node2"}), GOOD_WRITES, Recovery(None, "node3 NotReady", True, ""),
     "recovered: VIP serves, every node Ready, etcd healthy"),
    (probes([(100.0, 102.0)]), vip({102.0: "node2"}), GOOD_WRITES, Recovery(3.0, "", False, "node2 differs"),
     "etcd hashkv equal on every member"),
])
def test_each_promise_fails_on_a_history_that_breaks_it(
    ops: list[Op], samples: list[Sample], writes: WriteCount, recovery: Recovery, broken: str
) -> None:
    result = verdict(ops, samples, writes, recovery)
    assert [name for name, ok in result.items() if not ok] == broken.split("|")


def test_intermittent_failures_count_as_one_window() -> None:
    ops = probes([(100.0, 100.3), (101.0, 101.2), (103.5, 103.6)])
    seconds, first, last = outage(ops, T0)
    assert first is not None and last is not None
    assert seconds == pytest.approx(103.52 - 100.0)


def test_a_rolling_restarts_blips_are_measured_one_at_a_time() -> None:
    # Three restarts 5 s apart, each costing a few probes: the longest stretch, not first to last.
    ops = probes([(100.0, 100.3), (105.0, 105.1), (110.0, 110.5)])
    assert outage(ops, T0)[0] == pytest.approx(110.42 - 100.0)
    assert longest_outage(ops, T0) == pytest.approx(110.42 - 110.0)
    assert longest_outage(probes([]), T0) == 0.0
    assert longest_outage(probes([(99.0, 99.5)]), T0) == 0.0  # over before t0


def test_a_node_not_ready_fails_a_single_lb_fault() -> None:
    samples = [*vip({102.0: "node2"}), Sample("ready node3", 104.0, "False"), Sample("ready node3", 106.0, "True")]
    result = verdict(probes([(100.0, 102.0)]), samples)
    assert [name for name, ok in result.items() if not ok] == ["no node went NotReady"]


def test_the_history_survives_its_json_form() -> None:
    h = history(probes([(100.0, 102.0)]), vip({102.0: "node2"}))
    again = CaseHistory.from_json(h.to_json())
    assert again == h


def test_a_probe_in_flight_when_the_fault_hits_is_the_faults() -> None:
    ops = [o for o in probes([(100.0, 102.0)]) if not 99.9 <= o.start < 100.0]
    ops.append(Op("readyz vip", 99.95, 100.2, Outcome.FAILED, "answer: closed without an answer"))
    result = verdict(ops, vip({102.0: "node2"}))
    assert all(result.values()), result
    seconds, first, _ = outage(ops, T0)
    assert first is not None and first.start == 99.95 and seconds == pytest.approx(102.0 - 0.1 + 0.02 - 99.95)
