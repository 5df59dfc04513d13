"""The typed records a failover case leaves: what clients did (``Op``), what observers saw (``Sample``),
when the fault acted (``FaultWindow``), all of it (``CaseHistory``), and what the checker decided
(``Check``, ``CaseResult``). Plain frozen dataclasses with a JSON form, so a history can be written
beside its results and checked again offline.

Times are ``time.monotonic()`` seconds as recorded; ``CaseHistory.t0`` is the injection, and
``rel(t)`` gives a time on the case's axis (t = 0 at injection).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

FORMAT_VERSION = 1


class Outcome(StrEnum):
    """Jepsen's three answers: it happened, it certainly did not, or nobody can say."""

    OK = "ok"
    FAILED = "failed"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class Op:
    """One client operation, as the client saw it.

    ``client`` names the client and its target ("readyz vip", "readyz node2", "write vip");
    ``detail`` is the error when not ok, else what the answer carried (a write's object name and
    resourceVersion as ``name@rv``).
    """

    client: str
    start: float
    end: float
    outcome: Outcome
    detail: str = ""

    @property
    def latency(self) -> float:
        return self.end - self.start


@dataclass(frozen=True)
class Sample:
    """One observation: ``observer`` ("vip", "haproxy node1", "etcd leader", "lease kube-scheduler",
    "ready node3") saw ``value`` at ``t`` ("node1", "node1,node2", "" for nobody; "UP node1,node2";
    "node2/7" for leader/term; "True"/"False"/"Unknown"). ``error`` is set when the observer could
    not look (its value is then meaningless)."""

    observer: str
    t: float
    value: str
    error: str = ""


@dataclass(frozen=True)
class FaultWindow:
    """What the fault did, to which nodes, and when (inject and heal times; heal None if never)."""

    case: str
    selector: str
    targets: tuple[str, ...]
    description: str
    injected: float
    healed: float | None


@dataclass
class CaseHistory:
    """Everything recorded while one case ran."""

    case: str
    cluster: str
    started: float
    stopped: float
    fault: FaultWindow
    ops: list[Op] = field(default_factory=list)
    samples: list[Sample] = field(default_factory=list)

    @property
    def t0(self) -> float:
        return self.fault.injected

    def rel(self, t: float) -> float:
        return t - self.t0

    def ops_of(self, client: str) -> list[Op]:
        return sorted((o for o in self.ops if o.client == client), key=lambda o: o.start)

    def samples_of(self, observer: str) -> list[Sample]:
        return sorted((s for s in self.samples if s.observer == observer), key=lambda s: s.t)

    def clients(self) -> list[str]:
        return sorted({o.client for o in self.ops})

    def observers(self) -> list[str]:
        return sorted({s.observer for s in self.samples})

    def to_json(self) -> dict[str, Any]:
        return {"format": FORMAT_VERSION, **dataclasses.asdict(self)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CaseHistory:
        if data.get("format") != FORMAT_VERSION:
            raise ValueError(f"history format {data.get('format')!r}, this kha reads {FORMAT_VERSION}")
        fault = data["fault"]
        return cls(
            case=data["case"], cluster=data["cluster"], started=data["started"], stopped=data["stopped"],
            fault=FaultWindow(**{**fault, "targets": tuple(fault["targets"])}),
            ops=[Op(**{**o, "outcome": Outcome(o["outcome"])}) for o in data["ops"]],
            samples=[Sample(**s) for s in data["samples"]],
        )


@dataclass(frozen=True)
class Check:
    """One assertion the checker made: its name, whether it held, the figure and what it was held to."""

    name: str
    ok: bool
    detail: str
    value: float | None = None
    bound: float | None = None


@dataclass(frozen=True)
class CaseResult:
    """The checker's verdict on one case; ``ok`` only when every check held."""

    case: str
    bound_s: float
    bound_formula: str
    outage_s: float | None
    writes_acked: int
    writes_lost: int
    writes_unknown: int
    checks: tuple[Check, ...]

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    def failures(self) -> list[Check]:
        return [c for c in self.checks if not c.ok]

    def to_json(self) -> dict[str, Any]:
        return {"format": FORMAT_VERSION, "ok": self.ok, **dataclasses.asdict(self)}


def write_json(path: Path, data: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    return path
