"""Reading kubeadm-ha inventories (Ansible INI) exactly as users write them.

This module owns the *syntax*: sections, host lines, group member lines and ``[all:vars]``, each
remembered with the line it came from. It knows nothing about what the values mean; that is
``installer.settings`` (typed knobs) and ``installer.topology`` (roles, rules, the resolved cluster).

The format follows kubeadm-ha's ``example/hosts.*.ini`` (see shared/FACTS.md): ``;`` and ``#``
comment lines, ``[all]`` with one host per line (``node1 ansible_host=… ansible_port=… ansible_user="…"``
or a bare IP as the host name), the role groups, and ``[all:vars]`` with quoted or bare values.
"""

from __future__ import annotations

import difflib
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from installer.errors import InventoryError, Problem

#: Every group kubeadm-ha inventories use, in the order its examples list them.
KNOWN_GROUPS: tuple[str, ...] = (
    "all",
    "lb",
    "etcd",
    "kube-master",
    "kube-worker",
    "new-master",
    "new-worker",
    "new-etcd",
    "del-worker",
    "del-master",
    "del-etcd",
    "del-node",
)

_SECTION = re.compile(r"^\[(?P<name>[^\]:]+)(?::(?P<kind>[^\]]+))?\]\s*$")
_VAR_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class FileLine(int):
    """A line number that remembers the file it is in: a variable from ``-e @variables.yaml`` keeps its
    YAML line, and every ``Problem`` built from it names that file, not the inventory."""

    file: str

    def __new__(cls, line: int, file: str) -> FileLine:
        obj = super().__new__(cls, line)
        obj.file = file
        return obj


def file_of(line: int | None, default: str) -> str:
    """The file a line number belongs to: its own for a ``FileLine``, else ``default`` (the inventory)."""
    return line.file if isinstance(line, FileLine) else default


@dataclass(frozen=True)
class Value:
    """A value as written, with the line it sits on (a ``FileLine`` when it came from another file)."""

    text: str
    line: int


@dataclass(frozen=True)
class HostLine:
    """One host definition from ``[all]``."""

    name: str
    line: int
    vars: dict[str, Value]


@dataclass
class RawInventory:
    """The inventory file as written: nothing checked beyond syntax."""

    path: str
    hosts: list[HostLine] = field(default_factory=list)
    #: group name → (member name, line) in file order; every known group is present, maybe empty.
    groups: dict[str, list[tuple[str, int]]] = field(default_factory=dict)
    #: line of each group's header, for messages about a whole group.
    group_lines: dict[str, int] = field(default_factory=dict)
    vars: dict[str, Value] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)


def read(path: str | Path) -> RawInventory:
    """Read an inventory file. Raises InventoryError for a missing file or broken syntax."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InventoryError([Problem(str(p), None, "no such inventory file")]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InventoryError([Problem(str(p), None, f"cannot read inventory: {exc}")]) from None
    raw = parse(text, str(p))
    if raw.problems:
        raise InventoryError(raw.problems)
    return raw


def parse(text: str, path: str = "<inventory>") -> RawInventory:
    """Parse inventory text; syntax problems are collected in ``problems``, all of them."""
    raw = RawInventory(path=path, groups={g: [] for g in KNOWN_GROUPS if g != "all"})
    section: str | None = None
    kind: str | None = None

    def problem(line: int, message: str, fld: str | None = None) -> None:
        raw.problems.append(Problem(path, line, message, fld))

    for lineno, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped[0] in ";#":
            continue
        m = _SECTION.match(stripped)
        if m:
            section, kind = m.group("name").strip(), m.group("kind")
            if kind is not None and not (section == "all" and kind == "vars"):
                problem(lineno, f"[{section}:{kind}] is not supported: kha reads host lines in [all] and "
                        "variables in [all:vars] only; move these settings there")
            elif section not in KNOWN_GROUPS:
                hint = _closest(section)
                problem(lineno, f"unknown group [{section}]"
                        + (f"; did you mean [{hint}]?" if hint else f"; known groups: {', '.join(KNOWN_GROUPS)}"))
            elif section in raw.group_lines and kind is None:
                problem(lineno, f"group [{section}] appears twice (first at line {raw.group_lines[section]}); "
                        "merge the two sections")
            else:
                raw.group_lines.setdefault(section if kind is None else f"{section}:{kind}", lineno)
            continue
        if section is None:
            problem(lineno, "text before the first [section]; start with [all]")
            continue
        if kind == "vars":
            _parse_var(raw, stripped, lineno, problem)
        elif kind is not None or section not in KNOWN_GROUPS:
            continue  # already reported at the section header
        elif section == "all":
            _parse_host(raw, stripped, lineno, problem)
        else:
            _parse_member(raw, section, stripped, lineno, problem)
    if "all" not in raw.group_lines:
        raw.problems.append(Problem(path, None, "no [all] section: define every host there"))
    return raw


def _split(text: str, lineno: int, problem: _ProblemSink) -> list[str] | None:
    try:
        # comments=True: Ansible's INI reader also allows a trailing "# ..." after a host line.
        return shlex.split(text, comments=True, posix=True)
    except ValueError as exc:
        problem(lineno, f"cannot split line ({exc}); check the quotes")
        return None


def _parse_host(raw: RawInventory, text: str, lineno: int, problem: _ProblemSink) -> None:
    tokens = _split(text, lineno, problem)
    if not tokens:
        return
    name, rest = tokens[0], tokens[1:]
    if "=" in name:
        problem(lineno, f"host line starts with {name!r}; it must start with the host name "
                "(e.g. 'node1 ansible_host=10.0.0.11')")
        return
    if re.search(r"\[\d+:\d+\]", name):
        problem(lineno, f"host ranges like {name!r} are not supported; write one line per host")
        return
    hvars: dict[str, Value] = {}
    for tok in rest:
        key, sep, value = tok.partition("=")
        if not sep or not _VAR_NAME.match(key):
            problem(lineno, f"expected key=value after the host name, got {tok!r}")
            continue
        if key in hvars:
            problem(lineno, f"{key} given twice for host {name}", key)
        hvars[key] = Value(value, lineno)
    raw.hosts.append(HostLine(name=name, line=lineno, vars=hvars))


def _parse_member(raw: RawInventory, group: str, text: str, lineno: int, problem: _ProblemSink) -> None:
    tokens = _split(text, lineno, problem)
    if not tokens:
        return
    if len(tokens) > 1:
        problem(lineno, f"[{group}] lines name a host defined in [all]; move "
                f"{' '.join(tokens[1:])!r} to that host's line in [all]")
    raw.groups[group].append((tokens[0], lineno))


def _parse_var(raw: RawInventory, text: str, lineno: int, problem: _ProblemSink) -> None:
    key, sep, value = text.partition("=")
    key = key.strip()
    if not sep or not _VAR_NAME.match(key):
        problem(lineno, f"expected name=value in [all:vars], got {text!r}")
        return
    value = value.strip()
    if value[:1] in "\"'":
        tokens = _split(value, lineno, problem)
        if tokens is None:
            return
        if len(tokens) != 1:
            problem(lineno, f"value of {key} must be one quoted string", key)
            return
        value = tokens[0]
    else:
        # An unquoted value may carry a trailing comment, as Ansible allows.
        value = re.split(r"\s+[;#]", value, maxsplit=1)[0].strip()
    if key in raw.vars:
        problem(lineno, f"{key} is set twice (also at line {raw.vars[key].line}); keep one", key)
    raw.vars[key] = Value(value, lineno)


def _closest(name: str) -> str | None:
    hits = difflib.get_close_matches(name, KNOWN_GROUPS, n=1, cutoff=0.6)
    return hits[0] if hits else None


class _ProblemSink(Protocol):
    def __call__(self, line: int, message: str, fld: str | None = None) -> None: ...
