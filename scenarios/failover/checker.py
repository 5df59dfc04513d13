"""The checker: decides a case afterwards, from what the clients and observers recorded (Jepsen's split).

It never talks to the cluster. The runner hands it the history, the write ledger's read-back report and
the recovery facts it measured (seconds from the heal until everything was right, whether etcd's hashes
agreed), and it returns a ``CaseResult``: one ``Check`` per promise, with the figure and what it was
held to, so a failure names the promise and its evidence.

The client-visible outage through the VIP is the window from the first ``/readyz`` probe through the VIP
that did not succeed (started at or after the injection) to the end of the last one that did not
succeed before the history ends: intermittent failures (a share of connections sent to a dead backend)
count as one window, never as several short ones.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from scenarios.failover.catalogue import Bound, Case
from scenarios.failover.model import CaseHistory, CaseResult, Check, Op, Outcome, Sample

VIP_CLIENT = "readyz vip"
#: how long before the injection the VIP must have served without a failure, and after the end.
CALM_S = 1.5


@dataclass(frozen=True)
class Recovery:
    """What the runner measured after the heal."""

    seconds: float | None
    detail: str
    hashkv_equal: bool
    hashkv_detail: str


@dataclass(frozen=True)
class WriteCount:
    """The write ledger's verdict (``ledger.LedgerReport`` reduced to what the checker needs)."""

    acked: int
    lost: int
    failed_but_present: int
    unknown: int
    rv_problems: int
    summary: str


@dataclass(frozen=True)
class Inputs:
    """Everything ``check`` is given besides the history and the case, as the runner measured it: written
    beside the history as ``inputs.json`` so ``kha report check`` can decide a case again, offline."""

    bound: Bound
    writes: WriteCount
    recovery: Recovery
    #: how the bound was scaled from the case's formula (``--bound-scale``; 1 for the promise itself)
    bound_scale: float = 1.0

    def to_json(self) -> dict[str, Any]:
        return {"format": 1, **dataclasses.asdict(self)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Inputs:
        if data.get("format") != 1:
            raise ValueError(f"checker inputs format {data.get('format')!r}, this kha reads 1")
        return cls(Bound(**data["bound"]), WriteCount(**data["writes"]), Recovery(**data["recovery"]),
                   float(data.get("bound_scale", 1.0)))


def scaled(bound: Bound, factor: float) -> Bound:
    """``bound`` × ``factor`` (a deliberately tight or loose bound; the formula says so)."""
    if factor == 1.0:
        return bound
    return Bound(bound.seconds * factor, f"{factor:g} × ({bound.formula})", f"{bound.source}; scaled ×{factor:g}")


def outage(ops: Sequence[Op], t0: float) -> tuple[float, Op | None, Op | None]:
    """(seconds, first bad op, last bad op) of the window of failed probes that ended after ``t0`` (0 when
    none)."""
    # A probe in flight when the fault hit (it ends after t0) belongs to the outage too.
    bad = [o for o in sorted(ops, key=lambda o: o.start) if o.end > t0 and o.outcome is not Outcome.OK]
    if not bad:
        return 0.0, None, None
    last = max(bad, key=lambda o: o.end)
    return last.end - bad[0].start, bad[0], last


def longest_outage(ops: Sequence[Op], t0: float) -> float:
    """The longest run of consecutive failed probes (in start order, none succeeding in between) that ended
    after ``t0``, from its first start to its last end: how long the API was unavailable at a stretch
    while something was done in several steps (a rolling restart), where ``outage`` would join the steps'
    separate blips into one window."""
    longest, first, last = 0.0, None, 0.0
    for o in sorted((o for o in ops if o.end > t0), key=lambda o: o.start):
        if o.outcome is Outcome.OK:
            first = None
            continue
        if first is None:
            first, last = o.start, o.end
        last = max(last, o.end)
        longest = max(longest, last - first)
    return longest


def holders_at(samples: Sequence[Sample]) -> list[tuple[float, int]]:
    return [(s.t, len([n for n in s.value.split(",") if n])) for s in samples if not s.error]


def check(case: Case, bound: Bound, history: CaseHistory, writes: WriteCount, recovery: Recovery) -> CaseResult:
    checks: list[Check] = []
    t0, end = history.t0, history.stopped
    probes = history.ops_of(VIP_CLIENT)

    # Probes that were over before the injection (one still in flight when the fault hit is the fault's).
    before = [o for o in probes if t0 - CALM_S <= o.start and o.end < t0]
    checks.append(Check("VIP served before the fault", bool(before) and all(o.outcome is Outcome.OK for o in before),
                        f"{sum(o.outcome is Outcome.OK for o in before)}/{len(before)} probes ok in the "
                        f"{CALM_S:g}s before the injection"))

    seconds, first, last = outage(probes, t0)
    limit = case.margin * bound.seconds
    where = ("none" if first is None or last is None else
             f"t={history.rel(first.start):.2f}s → {history.rel(last.end):.2f}s ({first.detail or first.outcome})")
    checks.append(Check("outage through the VIP within the bound", seconds <= limit,
                        f"{seconds:.2f}s ≤ {case.margin:g} × {bound.seconds:.2f}s = {limit:.2f}s? window {where}; "
                        f"bound: {bound.formula}", value=seconds, bound=limit))

    tail = [o for o in probes if o.start >= end - CALM_S]
    checks.append(Check("VIP serves again at the end", bool(tail) and all(o.outcome is Outcome.OK for o in tail),
                        f"{sum(o.outcome is Outcome.OK for o in tail)}/{len(tail)} probes ok in the last {CALM_S:g}s"))

    checks.append(Check("no acknowledged write lost", writes.lost == 0 and writes.failed_but_present == 0
                        and writes.rv_problems == 0, writes.summary, value=float(writes.lost), bound=0.0))

    vip = history.samples_of("vip")
    counts = holders_at(vip)
    during = [n for t, n in counts if t0 <= t <= (history.fault.healed or end)]
    most = max((n for _t, n in counts), default=0)
    if case.expect_two_holders:
        checks.append(Check("two VIP holders seen while VRRP was cut", max(during, default=0) >= 2,
                            f"at most {max(during, default=0)} holder(s) answered ARP during the fault"))
    else:
        checks.append(Check("never two VIP holders", most <= 1, f"at most {most} holder(s) answered ARP at once",
                            value=float(most), bound=1.0))
    settled = [n for t, n in counts if t >= end - CALM_S]
    checks.append(Check("exactly one VIP holder after the heal", bool(settled) and all(n == 1 for n in settled),
                        f"holders in the last {CALM_S:g}s: {sorted(set(settled))}"))

    ok = recovery.seconds is not None and recovery.seconds <= case.recovery_s
    took = "never" if recovery.seconds is None else f"{recovery.seconds:.1f}s"
    checks.append(Check("recovered: VIP serves, every node Ready, etcd healthy", ok,
                        f"{took} after the heal (≤ {case.recovery_s:g}s); {recovery.detail}",
                        value=recovery.seconds, bound=case.recovery_s))
    checks.append(Check("etcd hashkv equal on every member", recovery.hashkv_equal, recovery.hashkv_detail))

    if case.no_notready:
        bad = sorted({s.observer.removeprefix("ready ") for s in history.samples
                      if s.observer.startswith("ready ") and not s.error and s.t >= t0 and s.value != "True"})
        checks.append(Check("no node went NotReady", not bad, f"not Ready at some point: {bad or 'none'}"))

    return CaseResult(case=case.name, bound_s=bound.seconds, bound_formula=bound.formula, outage_s=seconds,
                      writes_acked=writes.acked, writes_lost=writes.lost, writes_unknown=writes.unknown,
                      checks=tuple(checks))
