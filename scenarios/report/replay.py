"""``kha replay REPORT... [--repeat N]``: the experiment of a report, again, on a new topology.

1. Before anything boots: every report opens (``model``), records a fault schedule, and names a base
   image and bundle whose digests equal the ones this machine would boot and install from (else a clear
   error naming both digests and the commands that rebuild the recorded recipe).
2. Boot the recorded scenario (or inventory) on the recorded driver (``--driver`` to change it), install
   the recorded phases from the recorded bundle, snapshot the installed topology.
3. ``repeat`` times: each case of each report's schedule is run again (``failover.run.run_case``: revert,
   the selector re-resolved by role on this topology, inject, heal, check) with its seed and bound scale.
4. A run reproduces the report when its outcome matches: a failure report when one of the checks that
   failed then fails again, a passing report when every check holds. ``reproduced k/N`` per report.

Reports that share scenario, driver, inventory, provenance and install steps share one topology.
The topology is torn down at the end unless ``keep``.
"""

from __future__ import annotations

import hashlib
import logging
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import images
from harness.provider import Provider
from images import bundle as bundles
from installer import topology
from installer.phases import Status
from scenarios import catalog, topologies
from scenarios.failover import catalogue, run
from scenarios.installed import install_onto
from scenarios.report.model import Report, ReportError

log = logging.getLogger(__name__)

Emit = Callable[[str], None]


@dataclass(frozen=True)
class Verdict:
    """One run of one case of a report."""

    report: Path
    case: str
    run: int
    ok: bool
    failed_checks: tuple[str, ...]
    reproduced: bool
    folder: Path


@dataclass
class Replayed:
    """Per report: how many of its runs reproduced what it recorded."""

    report: Report
    runs: int
    verdicts: list[Verdict] = field(default_factory=list)

    @property
    def reproduced(self) -> int:
        runs = {v.run for v in self.verdicts}
        return sum(all(v.reproduced for v in self.verdicts if v.run == r) for r in runs)

    @property
    def matches(self) -> bool:
        return self.reproduced == self.runs and len({v.run for v in self.verdicts}) == self.runs


def reproduces(report: Report, ok: bool, failed: Sequence[str]) -> bool:
    """Whether a run's outcome is the report's: a failure when a check that failed then fails again; a pass."""
    if report.origin.outcome == "failed":
        return not ok and bool(set(failed) & set(report.origin.failed_checks))
    return ok


def preflight(reports: Sequence[Report]) -> None:
    """Refuse (``ReportError``) what cannot be replayed here, before anything boots."""
    for r in reports:
        o, p = r.origin, r.origin.provenance
        where = str(r.path)
        if not o.cases:
            raise ReportError(f"{where}: no fault case ran in this report: there is nothing to replay")
        for ref in o.cases:
            catalogue.get(ref.name)  # an unknown case is a CaseRefused (exit 2)
        if not r.inventory.is_file():
            raise ReportError(f"{where}: has no {r.inventory.relative_to(r.folder)}: cannot boot its topology")
        commit = f"git checkout {p.kha_commit} && " if p.kha_commit else ""
        image = images.get(p.image)
        if image is None:
            raise ReportError(f"{where}: base image {p.image} is not built here: run `kha image build {p.image}`")
        if image.digest != p.image_digest:
            raise ReportError(f"{where}: base image {p.image} here is {image.digest}, the report's is "
                              f"{p.image_digest}: rebuild the recorded recipe with `{commit}kha image build "
                              f"{p.image}`")
        if p.bundle is not None:
            b = bundles.get(p.bundle)
            if b is None:
                raise ReportError(f"{where}: bundle {p.bundle} is not built here: run `kha bundle build`")
            if b.digest != p.bundle_digest:
                raise ReportError(f"{where}: bundle {p.bundle} here is {b.digest}, the report's is "
                                  f"{p.bundle_digest}: rebuild the recorded recipe with `{commit}kha bundle build`")


def _group_key(r: Report, driver: str | None) -> tuple[object, ...]:
    o = r.origin
    return (o.scenario, driver or o.driver, hashlib.sha256(r.inventory.read_bytes()).hexdigest(), o.provenance.image,
            o.provenance.bundle, o.install_only)


def replay(reports: Sequence[Report], *, repeat: int, out: Path, driver: str | None = None, keep: bool = False,
           emit: Emit = print) -> list[Replayed]:
    """Replay ``reports`` ``repeat`` times each; one ``Replayed`` per report, in their order."""
    if repeat < 1:
        raise ReportError(f"--repeat {repeat}: must be 1 or more")
    preflight(reports)
    done = {id(r): Replayed(r, repeat) for r in reports}
    groups: dict[tuple[object, ...], list[Report]] = {}
    for r in reports:
        groups.setdefault(_group_key(r, driver), []).append(r)
    for number, group in enumerate(groups.values(), start=1):
        _replay_group(group, number, repeat=repeat, out=out, driver=driver, keep=keep, emit=emit, done=done)
    return [done[id(r)] for r in reports]


def _replay_group(group: list[Report], number: int, *, repeat: int, out: Path, driver: str | None, keep: bool,
                  emit: Emit, done: dict[int, Replayed]) -> None:
    first = group[0]
    o = first.origin
    topo = topology.load(first.inventory)
    scen = catalog.get(o.scenario) if o.scenario else None
    name = f"replay{number}-{topologies.cluster_name(o.cluster)}"[:32].rstrip("-")
    spec = topologies.spec_from(topo, scen, driver or o.driver, name)
    provider = Provider(isolated=True, emit=emit)
    emit(f"replay: booting {spec.cluster} ({len(spec.nodes)} nodes, {spec.driver}) for {len(group)} report(s)")
    cluster = provider.up(spec)
    inst = None
    try:
        b = bundles.get(o.provenance.bundle) if o.provenance.bundle else None
        bundle = b.path if b is not None else None
        state = Path(tempfile.mkdtemp(prefix="state-", dir=out))
        inst, result = install_onto(cluster, first.inventory, state, bundle=bundle, only=o.install_only)
        emit(f"replay: installed ({', '.join(s.path for s in result.steps if s.status is Status.OK) or 'nothing'})")
        inst.snapshot(run.SNAPSHOT)
        for i in range(1, repeat + 1):
            for r in group:
                for ref in r.origin.cases:
                    folder = out / r.path.name.removesuffix(".tar.gz") / f"run-{i}"
                    ran = run.run_case(catalogue.get(ref.name), inst, folder, seed=ref.seed,
                                       bound_scale=ref.bound_scale)
                    failed = tuple(c.name for c in ran.result.failures())
                    v = Verdict(r.path, ref.name, i, ran.result.ok, failed, reproduces(r, ran.result.ok, failed),
                                ran.folder)
                    done[id(r)].verdicts.append(v)
                    said = "ok" if v.ok else "failed: " + "; ".join(failed)
                    emit(f"  {'✓' if v.reproduced else '✗'} run {i}/{repeat} {ref.name}: {said}")
    finally:
        if inst is not None:
            inst.close()
        if keep:
            emit(f"replay: kept {cluster.name} (kha down --name {cluster.name})")
        else:
            provider.down(cluster.name, cluster.state.state_dir)
