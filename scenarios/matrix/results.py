"""The files ``kha matrix run`` writes and ``kha matrix report`` reads: one ``results.json`` per cell, one
``summary.json`` per run, and the baseline (the figures of the last green run).

A figure is a number where lower is better, named ``install_s`` (seconds ``kha install`` took, from the
e2e session's timings) or ``failover/<case>/outage_s`` (the outage the checker measured, from the case's
``result.json``). A file that is not what its name says (not JSON, another format, missing fields) is an
``InputError`` naming it: exit 2.
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from core.errors import InputError
from scenarios.matrix.model import slug

FORMAT = 1
SUMMARY = "summary.json"
RESULTS = "results.json"
BASELINE_KIND = "kha-matrix-baseline"

#: The e2e session's terminal summary line for the install (tests/e2e/conftest.py: "kha install (every phase)").
INSTALL_LINE = re.compile(r"^\s*(\d+(?:\.\d+)?)s\s+kha install \(every phase\)\s*$", re.MULTILINE)


@dataclass(frozen=True)
class Junit:
    tests: int = 0
    failures: int = 0
    errors: int = 0
    skipped: int = 0


@dataclass(frozen=True)
class CaseFigure:
    """One failover case as its checker decided it."""

    ok: bool
    outage_s: float | None
    bound_s: float


@dataclass(frozen=True)
class CellResult:
    cell: str
    axes: dict[str, str]
    tier: str | None
    kubernetes: dict[str, str]
    argv: list[str]
    ok: bool
    returncode: int | None
    started: float
    seconds: float
    junit: Junit
    figures: dict[str, float] = field(default_factory=dict)
    cases: dict[str, CaseFigure] = field(default_factory=dict)
    log: str = "pytest.log"
    host: str | None = None  # the libvirt URI it ran on (kha matrix run --hosts); None: this machine

    def to_json(self) -> dict[str, Any]:
        return {"format": FORMAT, **asdict(self)}

    @classmethod
    def from_json(cls, data: Any, where: Path) -> CellResult:
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise InputError(f"{where}: not a kha matrix cell result (format {FORMAT})")
        try:
            return cls(
                cell=str(data["cell"]), axes=dict(data["axes"]), tier=data["tier"],
                kubernetes=dict(data["kubernetes"]), argv=list(data["argv"]), ok=bool(data["ok"]),
                returncode=data["returncode"], started=float(data["started"]), seconds=float(data["seconds"]),
                junit=Junit(**data["junit"]), figures={k: float(v) for k, v in data["figures"].items()},
                cases={k: CaseFigure(**v) for k, v in data["cases"].items()}, log=str(data["log"]),
                host=None if data.get("host") is None else str(data["host"]),  # absent before --hosts
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(f"{where}: a kha matrix cell result with a missing or bad field: {exc}") from exc


@dataclass(frozen=True)
class Refused:
    cell: str
    reasons: list[str]


@dataclass(frozen=True)
class Run:
    """One ``kha matrix run``: its cells' results and the cells it refused."""

    folder: Path
    tier: str | None
    started: float
    wall_s: float
    jobs: int
    results: list[CellResult]
    refused: list[Refused]

    @property
    def ok(self) -> bool:
        return bool(self.results) and all(r.ok for r in self.results) and not self.refused

    def to_json(self) -> dict[str, Any]:
        return {"format": FORMAT, "tier": self.tier, "started": self.started, "wall_s": self.wall_s,
                "jobs": self.jobs, "cells": [r.cell for r in self.results],
                "sum_cell_s": sum(r.seconds for r in self.results),
                "refused": [asdict(r) for r in self.refused]}


def write_json(path: Path, data: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    tmp.replace(path)
    return path


def read_json(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise InputError(f"{path}: no such file ({what})") from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: not JSON ({what}): {exc}") from exc


def load_run(folder: Path) -> Run:
    """A run folder written by ``kha matrix run`` (its summary.json and each cell's results.json)."""
    if not folder.is_dir():
        raise InputError(f"{folder}: not a folder; expected a `kha matrix run --out` folder")
    data = read_json(folder / SUMMARY, "a kha matrix run summary")
    where = folder / SUMMARY
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise InputError(f"{where}: not a kha matrix run summary (format {FORMAT})")
    try:
        results = [CellResult.from_json(read_json(folder / slug(c) / RESULTS, "a cell result"),
                                        folder / slug(c) / RESULTS) for c in data["cells"]]
        refused = [Refused(str(r["cell"]), [str(x) for x in r["reasons"]]) for r in data["refused"]]
        return Run(folder, data["tier"], float(data["started"]), float(data["wall_s"]), int(data["jobs"]),
                   results, refused)
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(f"{where}: a kha matrix run summary with a missing or bad field: {exc}") from exc


def junit_counts(path: Path) -> Junit:
    """The totals of a pytest JUnit XML file (all zero when pytest never wrote one)."""
    if not path.is_file():
        return Junit()
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as exc:
        raise InputError(f"{path}: not JUnit XML: {exc}") from exc
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    return Junit(*(sum(int(s.get(k, "0")) for s in suites) for k in ("tests", "failures", "errors", "skipped")))


def install_seconds(log_text: str) -> float | None:
    found = INSTALL_LINE.findall(log_text)
    return float(found[-1]) if found else None


def failover_cases(folder: Path) -> dict[str, CaseFigure]:
    """Each case's verdict and outage from ``<folder>/<case>/result.json`` (scenarios/failover/run.py)."""
    out: dict[str, CaseFigure] = {}
    if not folder.is_dir():
        return out
    for path in sorted(folder.glob("*/result.json")):
        data = read_json(path, "a failover case result")
        try:
            out[str(data["case"])] = CaseFigure(bool(data["ok"]),
                                                None if data["outage_s"] is None else float(data["outage_s"]),
                                                float(data["bound_s"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(f"{path}: a failover result with a missing or bad field: {exc}") from exc
    return out


def figures(install_s: float | None, cases: dict[str, CaseFigure]) -> dict[str, float]:
    out = {} if install_s is None else {"install_s": install_s}
    out.update({f"failover/{name}/outage_s": c.outage_s for name, c in cases.items() if c.outage_s is not None})
    return out


@dataclass(frozen=True)
class Baseline:
    """The figures of the last green run, per cell id."""

    source: str
    figures: dict[str, dict[str, float]]

    def to_json(self) -> dict[str, Any]:
        return {"format": FORMAT, "kind": BASELINE_KIND, "source": self.source, "figures": self.figures}

    @classmethod
    def of(cls, run: Run) -> Baseline:
        return cls(str(run.folder), {r.cell: dict(r.figures) for r in run.results})


def load_baseline(path: Path) -> Baseline:
    data = read_json(path, "a kha matrix baseline")
    if not isinstance(data, dict) or data.get("kind") != BASELINE_KIND or data.get("format") != FORMAT:
        raise InputError(f"{path}: not a kha matrix baseline (kind {BASELINE_KIND}, format {FORMAT}); "
                         "write one with kha matrix report RUN --save-baseline FILE")
    figs = data.get("figures")
    if not isinstance(figs, dict) or not all(
            isinstance(v, dict) and all(isinstance(x, int | float) and not isinstance(x, bool) for x in v.values())
            for v in figs.values()):
        raise InputError(f"{path}: figures must map each cell id to {{figure: number}}")
    return Baseline(str(data.get("source", path)), {c: {k: float(x) for k, x in v.items()} for c, v in figs.items()})
