"""``kha report check``: decide every recorded case again, offline, from its history and the checker's
inputs (Jepsen's ``analyze``), with the checker and catalogue of this kha — so a checker fix can be tried
on old reports without a cluster."""

from __future__ import annotations

from dataclasses import dataclass

from scenarios.failover import catalogue, checker
from scenarios.failover.model import CaseHistory, CaseResult
from scenarios.report.model import Report, ReportError, read_json


@dataclass(frozen=True)
class Recheck:
    case: str
    recorded_ok: bool
    recorded_failed: tuple[str, ...]
    now: CaseResult

    @property
    def same(self) -> bool:
        """Whether this checker reaches the recorded verdict (and fails the same checks)."""
        return self.now.ok == self.recorded_ok and {c.name for c in self.now.failures()} == set(self.recorded_failed)


def recheck(report: Report) -> list[Recheck]:
    """Every case of the report's schedule, decided again; ``ReportError`` when one's records are missing."""
    if not report.origin.cases:
        raise ReportError(f"{report.path}: no fault case ran in this report: nothing to check")
    out = []
    for ref in report.origin.cases:
        folder = report.results(ref.name)
        paths = {n: folder / f"{n}.json" for n in ("history", "inputs", "result")}
        absent = [str(p) for p in paths.values() if not p.is_file()]
        if absent:
            raise ReportError(f"{report.path}: case {ref.name} has no {', '.join(absent)}")
        try:
            case = catalogue.get(ref.name)
            history = CaseHistory.from_json(read_json(paths["history"]))
            inputs = checker.Inputs.from_json(read_json(paths["inputs"]))
        except (ValueError, KeyError, TypeError) as exc:
            raise ReportError(f"{folder}: cannot read the records of {ref.name}: {type(exc).__name__}: {exc}") from None
        recorded = read_json(paths["result"])
        failed = tuple(c["name"] for c in recorded.get("checks", ()) if not c.get("ok"))
        now = checker.check(case, inputs.bound, history, inputs.writes, inputs.recovery)
        out.append(Recheck(ref.name, bool(recorded.get("ok")), failed, now))
    return out
