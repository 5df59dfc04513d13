"""The matrix file read into typed data: axes, exclusions, needs, timeouts and tiers, and the cells they make.

A cell is one value per axis; its id joins them with "/" in axis order
(``debian-12/1.20.2/allinone/local-nginx/lxc/install``), which is what ``--cells GLOB`` matches. Every
selector (an exclusion, a need, a timeout, a tier's include entry) maps axes to the values it matches;
an axis it leaves out matches every value. Everything is checked when the file is read: an unknown axis,
an unknown value, a tier without cells are ``ConfigError``\\s naming the file and line.
"""

from __future__ import annotations

import fnmatch
import itertools
import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.errors import InputError
from installer.errors import ConfigError, Problem

MATRIX = Path(__file__).resolve().parents[1] / "matrix.toml"

AXES = ("os", "kubernetes", "topology", "lb", "driver", "suite")
#: Kubernetes values that name the offline bundle's version rather than an online release.
RELATIVE = re.compile(r"^latest(?:-(\d+))?$")
FAILOVER_CASES = ("pr", "full")


def slug(cell_id: str) -> str:
    """A cell id as a file or CI job name: letters, digits, ``_`` and ``-`` only."""
    return re.sub(r"[^A-Za-z0-9_-]", "-", cell_id.replace("/", "_"))


@dataclass(frozen=True, order=True)
class Cell:
    os: str
    kubernetes: str
    topology: str
    lb: str
    driver: str
    suite: str

    @property
    def id(self) -> str:
        return "/".join(self.values())

    @property
    def slug(self) -> str:
        return slug(self.id)

    def values(self) -> tuple[str, ...]:
        return tuple(self.get(a) for a in AXES)

    def get(self, axis: str) -> str:
        value: str = getattr(self, axis)
        return value

    @classmethod
    def parse(cls, cell_id: str) -> Cell:
        parts = cell_id.split("/")
        if len(parts) != len(AXES):
            raise InputError(f"cell id {cell_id!r}: expected {len(AXES)} values joined by '/' ({'/'.join(AXES)})")
        return cls(*parts)


@dataclass(frozen=True)
class Selector:
    """Axis → the values it matches; an axis not named matches everything. ``line`` is where it was written."""

    axes: tuple[tuple[str, frozenset[str]], ...]
    line: int | None = None

    def matches(self, cell: Cell) -> bool:
        return all(cell.get(axis) in values for axis, values in self.axes)

    def describe(self) -> str:
        return ", ".join(f"{a}={'|'.join(sorted(v))}" for a, v in self.axes) or "every cell"


@dataclass(frozen=True)
class Exclusion:
    selector: Selector
    why: str


@dataclass(frozen=True)
class Need:
    """What the cells a selector picks require: hosts to download from, a KVM that boots."""

    selector: Selector
    why: str
    internet: tuple[str, ...] = ()
    kvm: bool = False


@dataclass(frozen=True)
class Timeout:
    selector: Selector
    minutes: int


@dataclass(frozen=True)
class Tier:
    name: str
    description: str
    include: tuple[Selector, ...]
    failover_cases: str
    max_parallel: int
    schedule: str | None = None


@dataclass(frozen=True)
class Matrix:
    source: Path
    axes: Mapping[str, tuple[str, ...]]
    exclusions: tuple[Exclusion, ...]
    needs: tuple[Need, ...]
    timeouts: tuple[Timeout, ...]
    tiers: Mapping[str, Tier]

    def cells(self) -> list[Cell]:
        """Every cell of the matrix in axis order, less the excluded ones."""
        every = (Cell(*values) for values in itertools.product(*(self.axes[a] for a in AXES)))
        return [c for c in every if self.excluded(c) is None]

    def excluded(self, cell: Cell) -> Exclusion | None:
        return next((e for e in self.exclusions if e.selector.matches(cell)), None)

    def tier(self, name: str) -> Tier:
        if name not in self.tiers:
            raise InputError(f"--tier {name}: no such tier in {self.source}; tiers: {', '.join(self.tiers)}")
        return self.tiers[name]

    def tier_cells(self, name: str) -> list[Cell]:
        """The tier's cells in its include order (a cell matched twice runs once, where first matched)."""
        every = self.cells()
        picked: dict[Cell, None] = {}
        for sel in self.tier(name).include:
            picked.update(dict.fromkeys(c for c in every if sel.matches(c)))
        return list(picked)

    def select(self, tier: str | None, patterns: Iterable[str] = ()) -> list[Cell]:
        """The cells of ``tier`` (every cell without one) whose id matches any of ``patterns`` (all when
        none). Nothing selected: ``InputError`` naming the flags."""
        cells = self.tier_cells(tier) if tier else self.cells()
        pats = list(patterns)
        if pats:
            for p in pats:
                if "/" not in p and "*" not in p and "?" not in p and "[" not in p:
                    raise InputError(f"--cells {p}: a cell id is {'/'.join(AXES)} (or a glob such as '*/allinone/*')")
            cells = [c for c in cells if any(fnmatch.fnmatchcase(c.id, p) for p in pats)]
        if not cells:
            where = f"tier {tier}" if tier else f"the matrix ({self.source})"
            flags = f" matching --cells {' '.join(pats)}" if pats else ""
            raise InputError(f"no cell of {where}{flags}; `kha matrix list` shows them")
        return cells

    def needs_of(self, cell: Cell) -> list[Need]:
        return [n for n in self.needs if n.selector.matches(cell)]

    def timeout_minutes(self, cell: Cell) -> int:
        found = [t.minutes for t in self.timeouts if t.selector.matches(cell)]
        if not found:
            raise InputError(f"{self.source}: no [[timeout]] entry matches cell {cell.id}; add a default one")
        return found[-1]


def load(path: Path = MATRIX) -> Matrix:
    """Read and check ``path``; every problem found at once, as a ``ConfigError`` with file and line."""
    text = path.read_text()
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([Problem(str(path), None, f"not TOML: {exc}")]) from exc
    return _Reader(path, text).matrix(data)


class _Reader:
    """Turns the TOML data into a ``Matrix``, collecting problems with the lines they are on."""

    def __init__(self, path: Path, text: str) -> None:
        self.path = path
        self.lines = text.splitlines()
        self.problems: list[Problem] = []
        self.axes: dict[str, tuple[str, ...]] = {}

    def problem(self, line: int | None, message: str) -> None:
        self.problems.append(Problem(str(self.path), line, message))

    def line_of(self, needle: str, start: int = 1) -> int | None:
        """The first line at or after ``start`` holding ``needle`` (tomllib keeps no positions)."""
        for no in range(max(start, 1), len(self.lines) + 1):
            if needle in self.lines[no - 1]:
                return no
        return None

    def nth_header(self, header: str, n: int) -> int | None:
        seen = 0
        for no, raw in enumerate(self.lines, 1):
            if raw.strip() == header:
                if seen == n:
                    return no
                seen += 1
        return None

    def matrix(self, data: dict[str, Any]) -> Matrix:
        known = {"axes", "exclude", "needs", "timeout", "tiers"}
        for key in data:
            if key not in known:
                self.problem(self.line_of(key), f"unknown table {key!r}; known: {', '.join(sorted(known))}")
        self.read_axes(data.get("axes", {}))
        if self.problems:
            raise ConfigError(self.problems)
        exclusions = tuple(Exclusion(self.selector(e, line, extra={"why"}), self.text(e, "why", line))
                           for e, line in self.entries(data, "exclude"))
        needs = tuple(self.need(e, line) for e, line in self.entries(data, "needs"))
        timeouts = tuple(Timeout(self.selector(e, line, extra={"minutes"}), self.positive(e, "minutes", line))
                         for e, line in self.entries(data, "timeout"))
        tiers = {name: self.tier(name, t) for name, t in data.get("tiers", {}).items()}
        if not tiers:
            self.problem(None, "no [tiers.NAME] table: at least one tier is needed")
        if self.problems:
            raise ConfigError(self.problems)
        m = Matrix(self.path, self.axes, exclusions, needs, timeouts, tiers)
        for t in tiers.values():
            if not m.tier_cells(t.name):
                self.problem(self.line_of(f"[tiers.{t.name}]"), f"tier {t.name}: selects no cell (all excluded?)")
        if not any(t.selector.axes == () for t in timeouts):
            self.problem(None, "no default [[timeout]] (one without selectors): every cell needs a CI limit")
        if self.problems:
            raise ConfigError(self.problems)
        return m

    def read_axes(self, raw: dict[str, Any]) -> None:
        for axis in AXES:
            values = raw.get(axis)
            if not isinstance(values, list) or not values or not all(isinstance(v, str) and v for v in values):
                self.problem(self.line_of("[axes]"), f"axes.{axis}: a non-empty list of names is needed")
                continue
            if len(set(values)) != len(values):
                self.problem(self.line_of(f"{axis} ="), f"axes.{axis}: a value is listed twice")
            if any("/" in v for v in values):
                self.problem(self.line_of(f"{axis} ="), f"axes.{axis}: values may not hold '/' (it joins cell ids)")
            self.axes[axis] = tuple(values)
        for axis in raw:
            if axis not in AXES:
                self.problem(self.line_of(f"{axis} ="), f"unknown axis {axis!r}; axes: {', '.join(AXES)}")
        for v in self.axes.get("kubernetes", ()):
            if not RELATIVE.match(v) and not re.fullmatch(r"\d+\.\d+\.\d+", v):
                self.problem(self.line_of("kubernetes ="),
                             f"axes.kubernetes: {v!r} is neither a version (1.20.2) nor latest / latest-N")

    def entries(self, data: dict[str, Any], key: str) -> list[tuple[dict[str, Any], int | None]]:
        raw = data.get(key, [])
        if not isinstance(raw, list):
            self.problem(self.line_of(key), f"{key}: expected [[{key}]] entries")
            return []
        return [(e, self.nth_header(f"[[{key}]]", i)) for i, e in enumerate(raw)]

    def selector(self, raw: dict[str, Any], line: int | None, extra: set[str]) -> Selector:
        axes: list[tuple[str, frozenset[str]]] = []
        for key, value in raw.items():
            if key in extra:
                continue
            at = self.line_of(f"{key} =", line or 1) if line else self.line_of(key)
            if key not in AXES:
                self.problem(at, f"unknown axis {key!r}; axes: {', '.join(AXES)}")
                continue
            values = [value] if isinstance(value, str) else value
            if not isinstance(values, list) or not values or not all(isinstance(v, str) for v in values):
                self.problem(at, f"{key}: a value or a list of values is needed")
                continue
            for v in values:
                if v not in self.axes.get(key, ()):
                    self.problem(self.line_of(f'"{v}"', line or 1) or at,
                                 f"{key}: unknown value {v!r}; known: {', '.join(self.axes.get(key, ()))}")
            axes.append((key, frozenset(values)))
        return Selector(tuple(sorted(axes)), line)

    def text(self, raw: dict[str, Any], key: str, line: int | None) -> str:
        value = raw.get(key)
        if not isinstance(value, str) or not value.strip():
            self.problem(line, f"{key}: a sentence is needed (say why)")
            return ""
        return value

    def positive(self, raw: dict[str, Any], key: str, line: int | None) -> int:
        value = raw.get(key)
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            self.problem(line, f"{key}: a positive whole number is needed, not {value!r}")
            return 1
        return value

    def need(self, raw: dict[str, Any], line: int | None) -> Need:
        sel = self.selector(raw, line, extra={"why", "internet", "kvm"})
        hosts = raw.get("internet", [])
        if not isinstance(hosts, list) or not all(isinstance(h, str) and h for h in hosts):
            self.problem(line, "internet: a list of host names the cells download from")
            hosts = []
        kvm = raw.get("kvm", False)
        if not isinstance(kvm, bool):
            self.problem(line, f"kvm: true or false, not {kvm!r}")
            kvm = False
        if not hosts and not kvm:
            self.problem(line, "a [[needs]] entry names internet hosts, kvm = true, or both")
        return Need(sel, self.text(raw, "why", line), tuple(hosts), kvm)

    def tier(self, name: str, raw: Any) -> Tier:
        line = self.line_of(f"[tiers.{name}]")
        if not isinstance(raw, dict):
            self.problem(line, f"tiers.{name}: expected a table")
            return Tier(name, "", (), "pr", 1)
        for key in raw:
            if key not in {"description", "include", "failover_cases", "max_parallel", "schedule"}:
                self.problem(self.line_of(f"{key} =", line or 1), f"tiers.{name}: unknown key {key!r}")
        include = raw.get("include")
        if not isinstance(include, list) or not include or not all(isinstance(i, dict) for i in include):
            self.problem(line, f"tiers.{name}.include: a non-empty list of selectors ({{}} for every cell)")
            include = []
        start = self.line_of("include", line or 1) or line
        selectors = []
        for i, entry in enumerate(include):
            at = (start + 1 + i) if start and len(include) > 1 else start
            selectors.append(self.selector(entry, at, extra=set()))
        cases = raw.get("failover_cases", "full")
        if cases not in FAILOVER_CASES:
            self.problem(self.line_of("failover_cases", line or 1),
                         f"tiers.{name}.failover_cases: {cases!r}; one of {', '.join(FAILOVER_CASES)}")
        schedule = raw.get("schedule")
        if schedule is not None and (not isinstance(schedule, str) or len(schedule.split()) != 5):
            self.problem(self.line_of("schedule", line or 1),
                         f"tiers.{name}.schedule: a cron line of five fields, not {schedule!r}")
        return Tier(name, str(raw.get("description", "")), tuple(selectors), str(cases),
                    self.positive(raw, "max_parallel", line) if "max_parallel" in raw else 1,
                    schedule if isinstance(schedule, str) else None)
