"""The phase runner: phases as data, walked in order with ``--only``/``--skip`` and dry-run.

Owns the ``Phase`` tree, the ``Context`` handed to every phase, and the ``Runner`` that walks the
tree depth-first, prints one ✓/✗ line per phase with the seconds it took, and turns the first
failure into a ``PhaseError`` naming the phase path and the node.

Modelled on kubeadm's workflow package (cmd/kubeadm/app/cmd/phases/workflow): a phase is a name,
an optional run function, an optional run-if predicate and children; paths are slash-joined names
(``etcd/bootstrap``). Dry-run is answered inside each phase: the runner still calls ``run()`` and
the phase records what it would do with ``ctx.would(...)`` instead of doing it.

What the phases themselves do (certificates, etcd, load balancer, ...) lives elsewhere.
"""

from __future__ import annotations

import difflib
import logging
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Generic, NamedTuple, TextIO, TypeVar, cast, overload

from core import progress
from installer.errors import ConfigError, PhaseError, Problem

__all__ = [
    "Context",
    "Phase",
    "RunResult",
    "Runner",
    "Status",
    "Step",
    "Would",
    "all_paths",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Would:
    """One thing a phase would have done had this not been a dry run."""

    phase: str
    action: str

    def __str__(self) -> str:
        return f"would {self.action}"


# kw_only so a caller's subclass can add required fields (topology, transports) without defaults:
# base fields with defaults would otherwise forbid non-default fields after them.
@dataclass(kw_only=True)
class Context:
    """What every phase receives. Subclass it to carry typed things (topology, transports, and
    what one phase hands to a later one: ``installer.context.InstallContext``)."""

    dry_run: bool = False
    report: list[Would] = field(default_factory=list)
    # Set by the runner / by ``node()``; read when a phase fails so the error can name both.
    phase: str | None = None
    current_node: str | None = None

    def would(self, action: str) -> bool:
        """In a dry run, record "would <action>" and return True; otherwise return False.

        Lets a phase write ``if ctx.would(f"write {path}"): return`` right before the side effect.
        """
        if not self.dry_run:
            return False
        action = action.removeprefix("would ")
        self.report.append(Would(self.phase or "", action))
        log.debug("%s: would %s", self.phase, action)
        return True

    @contextmanager
    def node(self, name: str) -> Iterator[str]:
        """Mark the node the phase is working on, so a failure inside the block names it."""
        previous = self.current_node
        self.current_node = name
        yield name
        # Restored only on a clean exit: when the block raises, the runner still needs to know
        # which node the phase was on.
        self.current_node = previous


C = TypeVar("C", bound=Context)
# Contravariant: a phase that only needs a Context also fits a tree built for a subclass of it,
# so generic phases and topology-aware phases mix in one table.
C_contra = TypeVar("C_contra", bound=Context, contravariant=True)


@dataclass(frozen=True)
class Phase(Generic[C_contra]):
    """One named step; runs its own ``run`` (if any) and then its children, in order."""

    name: str
    run: Callable[[C_contra], None] | None = None
    children: tuple[Phase[C_contra], ...] = ()
    run_if: Callable[[C_contra], bool] | None = None
    description: str = ""

    def __post_init__(self) -> None:
        # Programmer errors in the phase table, not user input: ValueError, raised at import time.
        if not self.name or any(ch in self.name for ch in "/, ") or self.name != self.name.strip():
            raise ValueError(f"phase name must be non-empty without '/', ',' or spaces: {self.name!r}")
        _check_unique(self.children, where=f"children of {self.name!r}")


class Status(StrEnum):
    OK = "ok"
    FAILED = "failed"
    SKIPPED = "skipped"  # deselected by --only / --skip
    NOT_NEEDED = "not needed"  # its run_if said no


class Step(NamedTuple):
    path: str
    status: Status
    seconds: float


@dataclass
class RunResult:
    """What a run did, in order. A failed run raises instead; see ``PhaseError``."""

    steps: list[Step] = field(default_factory=list)

    def paths(self, status: Status = Status.OK) -> list[str]:
        return [s.path for s in self.steps if s.status is status]


def all_paths(phases: Sequence[Phase[Any]]) -> list[str]:
    """Every phase path, depth-first in run order."""
    return [path for path, _ in _walk(phases, "")]


class Runner(Generic[C]):
    """Walks a phase tree in order, honouring ``only``/``skip`` and dry-run.

    ``only``: a path selects that phase and all its descendants; its ancestors are walked (their
    ``run_if`` still gates) but their own ``run`` does not execute. ``skip`` removes a subtree and
    wins over ``only``. Both accept comma-separated values. Unknown paths raise ``ConfigError``
    here, before anything runs.
    """

    def __init__(
        self,
        phases: Sequence[Phase[C]],
        *,
        only: Sequence[str] = (),
        skip: Sequence[str] = (),
        dry_run: bool = False,
        out: TextIO = sys.stdout,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        _check_unique(phases, where="top-level phases")
        self.phases = tuple(phases)
        self.dry_run = dry_run
        self.out = out
        self.clock = clock
        valid = all_paths(self.phases)
        self.only = _parse_paths(only, "--only", valid)
        self.skip = _parse_paths(skip, "--skip", valid)

    def plan(self) -> list[str]:
        """Paths whose ``run`` would execute, in order.

        ``run_if`` is not consulted: it is decided at run time, possibly from values earlier
        phases put in the context.
        """
        return [
            path
            for path, phase in _walk(self.phases, "")
            if phase.run is not None and self._selected(path) and not self._skipped(path)
        ]

    @overload
    def run(self: Runner[Context], ctx: None = None) -> RunResult: ...
    @overload
    def run(self, ctx: C) -> RunResult: ...

    def run(self, ctx: C | Context | None = None) -> RunResult:
        """Run the selected phases; raise ``PhaseError`` at the first failure."""
        # The overloads allow ctx=None only on a Runner[Context], so the cast is exact.
        context = cast(C, ctx if ctx is not None else Context())
        # Dry-run asked for in either place wins: never do real work by accident.
        context.dry_run = context.dry_run or self.dry_run
        result = RunResult()
        self._walk_level(self.phases, "", context, result)
        return result

    # -- internals --------------------------------------------------------------------------

    def _selected(self, path: str) -> bool:
        """The phase's own run is selected: no --only, or it or an ancestor was named."""
        return not self.only or any(_within(path, p) for p in self.only)

    def _skipped(self, path: str) -> bool:
        return any(_within(path, p) for p in self.skip)

    def _on_the_way(self, path: str) -> bool:
        """An ancestor of something named by --only: walked, but its own run does not execute."""
        return any(_within(p, path) for p in self.only)

    def _walk_level(self, phases: Sequence[Phase[C]], prefix: str, ctx: C, result: RunResult) -> None:
        for phase in phases:
            path = f"{prefix}{phase.name}"
            selected = self._selected(path)
            if self._skipped(path) or not (selected or self._on_the_way(path)):
                self._line(f"- {path} (skipped)")
                result.steps.append(Step(path, Status.SKIPPED, 0.0))
                continue
            if self._run_one(phase, path, selected, ctx, result):
                self._walk_level(phase.children, f"{path}/", ctx, result)

    def _run_one(self, phase: Phase[C], path: str, selected: bool, ctx: C, result: RunResult) -> bool:
        """Run one phase's own part; return whether its children should be walked."""
        # run_if is evaluated even on an ancestor that is only walked: it gates the whole subtree,
        # as in kubeadm where a parent's RunIf false skips its children too.
        ctx.phase = path
        ctx.current_node = None
        # A walked-but-unselected ancestor keeps its run_if but not its own run.
        body = phase.run if selected else None
        runs = body is not None
        if runs and self.out.isatty():
            self.out.write(f"→ {path}")
            self.out.flush()
        start = self.clock()
        reported = len(ctx.report)
        log.debug("phase %s: start (dry_run=%s)", path, ctx.dry_run)
        try:
            needed = phase.run_if is None or phase.run_if(ctx)
            if needed and body is not None:
                body(ctx)
        except Exception as exc:
            seconds = self.clock() - start
            self._finish(progress.line(False, path, seconds), ctx.report[reported:])
            result.steps.append(Step(path, Status.FAILED, seconds))
            # The error's own node (a RemoteError knows where the command ran) beats the node the
            # phase said it was on.
            node = getattr(exc, "node", None) or ctx.current_node
            log.debug("phase %s: failed on %s", path, node, exc_info=True)
            raise PhaseError(path, exc, node) from exc
        except BaseException:
            # Ctrl-C and friends: close the progress line, then let them through unchanged.
            self._finish(progress.line(False, path, self.clock() - start), ctx.report[reported:])
            raise
        finally:
            ctx.phase = None
        seconds = self.clock() - start
        if not needed:
            self._finish(f"- {path} (skipped: not needed)", ctx.report[reported:])
            result.steps.append(Step(path, Status.NOT_NEEDED, 0.0))
            return False
        if runs:
            self._finish(progress.line(True, path, seconds), ctx.report[reported:])
            result.steps.append(Step(path, Status.OK, seconds))
            log.debug("phase %s: ok in %.3fs", path, seconds)
        return True

    def _finish(self, line: str, woulds: Sequence[Would]) -> None:
        if self.out.isatty():
            # Overwrite the "→ path" start line; \x1b[K clears what is left of it.
            self.out.write("\r\x1b[K")
        self._line(line)
        for w in woulds:
            self._line(f"    {w}")

    def _line(self, line: str) -> None:
        self.out.write(line + "\n")
        self.out.flush()


def _walk(phases: Sequence[Phase[Any]], prefix: str) -> Iterator[tuple[str, Phase[Any]]]:
    for phase in phases:
        path = f"{prefix}{phase.name}"
        yield path, phase
        yield from _walk(phase.children, f"{path}/")


def _within(path: str, root: str) -> bool:
    """``path`` is ``root`` or below it (``etcd/bootstrap`` is within ``etcd``, ``etcd2`` is not)."""
    return path == root or path.startswith(root + "/")


def _check_unique(phases: Sequence[Phase[Any]], *, where: str) -> None:
    names = [p.name for p in phases]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ValueError(f"duplicate phase names in {where}: {', '.join(dupes)}")


def _parse_paths(values: Sequence[str], flag: str, valid: Sequence[str]) -> tuple[str, ...]:
    """Split comma lists, drop blanks, and reject unknown paths naming the valid ones."""
    if isinstance(values, str):
        # A bare string is a Sequence[str] too; iterating it would yield characters.
        values = (values,)
    paths = tuple(p.strip().strip("/") for v in values for p in v.split(",") if p.strip())
    problems = []
    for p in paths:
        if p in valid:
            continue
        close = difflib.get_close_matches(p, valid, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        problems.append(
            Problem(file=flag, line=None, message=f"unknown phase {p!r}; {hint}valid: {', '.join(valid)}")
        )
    if problems:
        raise ConfigError(problems)
    return paths
