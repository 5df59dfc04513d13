"""``kha matrix run``: plan the selected cells (each runnable here, or refused with its reasons), run them,
write each cell's JUnit XML, pytest log and ``results.json`` under ``OUT/<cell>/`` and the run's
``summary.json`` under ``OUT/``.

Cells run one after another by default. ``--jobs N`` runs N at a time when the N largest cells' memory
fits: taken in the tier's order as slots free up, a failover cell always alone, its verdicts being timings
(``scenarios.matrix.schedule``). Measured here, two LXC cells at once take about as long as the slower one:
they mostly wait on kubelets, etcd and polls. With ``--hosts FILE`` (``scenarios.matrix.hosts``) cells run
on those hypervisors instead, each host taking as many at once as its line says, each cell's pytest given
``--kha-connect URI``; a cell no listed host can boot is refused with the reason, and each result records
the host it ran on. A cell named explicitly (``--cells``) that cannot run here is bad input (exit 2,
nothing started); a tier's cells that cannot run here are listed with their reasons, recorded in the
summary and make the run fail (exit 1) after the others ran — never a silent skip.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from core import progress
from core.errors import CommandFailed, InputError, tail
from core.run import stream
from scenarios.matrix import invocation, probe, results, schedule
from scenarios.matrix.hosts import Hypervisor
from scenarios.matrix.model import AXES, Cell, Matrix
from scenarios.matrix.probe import Host, Needs
from scenarios.matrix.results import CellResult, Refused, Run

log = logging.getLogger(__name__)

#: Lines of a failed cell's pytest log printed under its ✗ line: pytest's failures and short summary, so a CI
#: log says why without the results folder.
FAILED_TAIL_LINES = 150

#: What a cell's command is run by: (argv, log file, environment) → exit status.
Execute = Callable[[Sequence[str], Path, Mapping[str, str]], int]


@dataclass(frozen=True)
class Planned:
    cell: Cell
    need: Needs
    argv: list[str]
    folder: Path


@dataclass(frozen=True)
class Plan:
    tier: str | None
    host: Host
    runnable: list[Planned]
    refused: list[Refused]
    hypervisors: tuple[Hypervisor, ...] = ()  # --hosts; empty: cells run here, --jobs at a time


def plan(matrix: Matrix, tier: str | None, patterns: Sequence[str], out: Path, *, host: Host | None = None,
         pytest_args: Sequence[str] = (), hypervisors: Sequence[Hypervisor] = ()) -> Plan:
    """What would run and what is refused, before anything starts. ``pytest_args`` go to every cell's pytest
    (as scripts/test.sh passes its own arguments on); ``hypervisors``: where cells run (``--hosts``)."""
    cells = matrix.select(tier, patterns)
    host = host or probe.probe(matrix, cells)
    cases = matrix.tier(tier).failover_cases if tier else "full"
    runnable: list[Planned] = []
    refused: list[Refused] = []
    for cell in cells:
        need = probe.needs(matrix, cell)
        reasons = probe.refusals(cell, need, host)
        refusing = [why for h in hypervisors if (why := h.takes(cell.driver))]
        if hypervisors and len(refusing) == len(hypervisors):  # no listed host can boot it
            reasons = [*reasons, *refusing]
        if reasons:
            refused.append(Refused(cell.id, reasons))
            continue
        folder = out.resolve() / cell.slug
        runnable.append(Planned(cell, need, [*invocation.argv(cell, cases, folder), *pytest_args], folder))
    if patterns and refused:
        lines = [f"{r.cell}: {'; '.join(r.reasons)}" for r in refused]
        raise InputError(f"--cells {' '.join(patterns)}: {len(refused)} of the cells asked for cannot run here:\n"
                         + "\n".join(lines))
    if not runnable:
        raise InputError(f"none of the {len(cells)} selected cells can run here; `kha matrix list"
                         f"{' --tier ' + tier if tier else ''}` says why for each")
    return Plan(tier, host, runnable, refused, tuple(hypervisors))


def check_jobs(p: Plan, jobs: int) -> None:
    """``--jobs N`` is at least 1, and the N largest cells' nodes fit in the memory available together.

    With ``--hosts`` the hosts file says how many cells run at once, on memory that is not this machine's.
    """
    if p.hypervisors:
        return
    if jobs < 1:
        raise InputError(f"--jobs {jobs}: at least 1")
    biggest = sorted((c.need.ram_mib for c in p.runnable), reverse=True)[:jobs]
    if sum(biggest) > p.host.mem_available_mib:
        raise InputError(f"--jobs {jobs}: the {len(biggest)} largest cells give their nodes {sum(biggest)} MiB "
                         f"together; {p.host.mem_available_mib} MiB available")


#: Suites whose verdicts are timings (an outage held to its bound): such a cell runs with nothing beside it,
#: since a neighbour's install on the same cores would stretch what it measures.
ALONE = frozenset({"failover"})


@dataclass(frozen=True)
class ThisMachine:
    """The lane of a run without ``--hosts``: ``--jobs`` cells at once, here."""

    slots: int


def run(p: Plan, jobs: int, out: Path, emit: progress.Emit, *, execute: Execute | None = None,
        resolve: Callable[[str], invocation.Resolved] = invocation.resolve,
        clock: Callable[[], float] = time.monotonic, now: Callable[[], float] = time.time) -> Run:
    """Run the plan's cells (``jobs`` at a time), write every result and the summary; the run's data."""
    check_jobs(p, jobs)
    started, t0 = now(), clock()
    for r in p.refused:
        emit(f"- {r.cell} (refused: {'; '.join(r.reasons)})")

    def one(planned: Planned, lane: Hypervisor | ThisMachine) -> CellResult:
        on = lane if isinstance(lane, Hypervisor) else None
        result = run_cell(planned, p.tier, execute=execute or _execute, resolve=resolve, clock=clock, now=now,
                          host=on.text if on is not None else None)
        j = result.junit
        detail = f"{j.tests - j.failures - j.errors - j.skipped} passed, {j.failures + j.errors} failed"
        if "install_s" in result.figures:
            detail += f"; install {result.figures['install_s']:.1f}s"
        if on is not None:
            detail += f"; on {on.text}"
        emit(progress.line(result.ok, planned.cell.id, result.seconds, f"{detail}; {planned.folder}"))
        if not result.ok:
            emit(_indented(tail(_read(planned.folder / result.log), FAILED_TAIL_LINES)))
        return result

    lanes: Sequence[Hypervisor | ThisMachine] = p.hypervisors or (ThisMachine(jobs),)
    jobs = sum(lane.slots for lane in lanes)

    def accepts(planned: Planned, lane: Hypervisor | ThisMachine) -> bool:
        return not isinstance(lane, Hypervisor) or lane.takes(planned.cell.driver) is None

    done = schedule.dispatch(p.runnable, lanes, one, accepts=accepts, alone=lambda c: c.cell.suite in ALONE)
    ran = Run(out.resolve(), p.tier, started, clock() - t0, jobs, done, p.refused)
    summary = ran.to_json()
    if p.hypervisors:
        summary["hosts"] = {r.cell: r.host for r in done}
    results.write_json(out / results.SUMMARY, summary)
    passed = sum(r.ok for r in done)
    emit(progress.line(ran.ok, f"matrix {p.tier or 'selection'}", ran.wall_s,
                       f"{passed} passed, {len(done) - passed} failed, {len(p.refused)} refused; "
                       f"cells one by one: {sum(r.seconds for r in done):.1f}s; {out / results.SUMMARY}"))
    return ran


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError as exc:
        return f"(no log: {exc})"


def _indented(text: str) -> str:
    return "\n".join(f"    {line}" for line in text.splitlines())


def run_cell(planned: Planned, tier: str | None, *, execute: Execute,
             resolve: Callable[[str], invocation.Resolved], clock: Callable[[], float],
             now: Callable[[], float], host: str | None = None) -> CellResult:
    """One cell's pytest, on this machine's private libvirtd, or on ``host`` (a libvirt URI) when given."""
    cell, folder = planned.cell, planned.folder
    argv = [*planned.argv, "--kha-connect", host] if host is not None else list(planned.argv)
    folder.mkdir(parents=True, exist_ok=True)
    logfile = folder / "pytest.log"
    started, t0 = now(), clock()
    try:
        k8s = resolve(cell.kubernetes)
    except (OSError, ValueError) as exc:
        # Recorded as the cell's failure, with why, rather than ending the whole run.
        logfile.write_text(f"kha matrix: could not resolve Kubernetes {cell.kubernetes}: {exc}\n")
        code: int | None = None
        kubernetes = {"asked": cell.kubernetes, "version": "", "source": f"unresolved: {exc}"}
    else:
        kubernetes = {"asked": k8s.asked, "version": k8s.version, "source": k8s.source}
        env = {**os.environ, "KHA_NO_SKIP": "1", "KHA_MATRIX_CELL": cell.id,
               "KHA_KUBERNETES_VERSION": k8s.version}
        env.setdefault("KHA_REPORT_DIR", str(folder / "kha-reports"))
        code = execute(argv, logfile, env)
    seconds = clock() - t0
    junit = results.junit_counts(folder / "junit.xml")
    cases = results.failover_cases(folder / "failover")
    install_s = results.install_seconds(logfile.read_text(errors="replace"))
    ok = code == 0 and junit.tests > 0 and all(c.ok for c in cases.values())
    result = CellResult(cell.id, dict(zip(AXES, cell.values(), strict=True)),
                        tier, kubernetes, argv, ok, code, started, seconds, junit,
                        results.figures(install_s, cases), cases, logfile.name, host)
    results.write_json(folder / results.RESULTS, result.to_json())
    return result


def _execute(argv: Sequence[str], logfile: Path, env: Mapping[str, str]) -> int:
    with logfile.open("w") as fh:
        try:
            stream(argv, logfile=fh, env=env, what="matrix cell")
        except CommandFailed as exc:
            log.info("%s", exc)
            return -1 if exc.returncode is None else exc.returncode
    return 0
