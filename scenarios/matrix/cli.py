"""``kha matrix list|run|generate|report``: the test matrix from the command line.

    kha matrix list [--tier T] [--cells GLOB...]           cells, what each needs, runs here or why not
    kha matrix run --tier T [--cells GLOB...] [--jobs N | --hosts FILE] [--out DIR] [-- PYTEST_ARGS...]
    kha matrix generate github|gitlab [--tier nightly] [--check]
    kha matrix report RUN... [--baseline FILE] [--save-baseline FILE] [--out DIR]

Bad input (an unknown tier, a glob that selects nothing, a cell asked for that cannot run here, a corrupt
results or baseline file, an unknown axis value in the matrix file, a hosts file that cannot be read or has a
bad line): one line per problem, exit 2.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from core.errors import InputError
from scenarios.matrix import ci, hosts, probe, report, runner
from scenarios.matrix import model as matrix_model
from scenarios.matrix.results import Baseline, load_baseline, load_run, write_json


def _matrix(args: argparse.Namespace) -> matrix_model.Matrix:
    return matrix_model.load(Path(args.matrix))


def _list(args: argparse.Namespace) -> int:
    m = _matrix(args)
    cells = m.select(args.tier, args.cells or ())
    host = probe.probe(m, cells)
    for line in host.describe():
        print(f"# {line}")
    runnable = 0
    for cell in cells:
        need = probe.needs(m, cell)
        reasons = probe.refusals(cell, need, host)
        runnable += not reasons
        print(f"{'✓' if not reasons else '✗'} {cell.id}  needs {need.describe()}; "
              f"CI limit {m.timeout_minutes(cell)} min")
        for why in reasons:
            print(f"    cannot run here: {why}")
    print(f"{len(cells)} cells, {runnable} runnable here, {len(cells) - runnable} not")
    return 0


def _run(args: argparse.Namespace) -> int:
    m = _matrix(args)
    out = Path(args.out)
    hypervisors = hosts.load(Path(args.hosts)) if args.hosts else []
    if hypervisors and args.jobs is not None:
        raise InputError(f"--jobs {args.jobs} with --hosts {args.hosts}: the hosts file says how many cells each "
                         "host runs at once")
    jobs = args.jobs if args.jobs is not None else 1
    p = runner.plan(m, args.tier, args.cells or (), out, pytest_args=args.pytest_args, hypervisors=hypervisors)
    runner.check_jobs(p, jobs)
    for line in p.host.describe():
        print(f"# {line}")
    for h in hypervisors:
        print(f"# host {h.text}: {h.slots} cell{'s' if h.slots != 1 else ''} at once")
    done = runner.run(p, jobs, out, emit=lambda line: print(line, flush=True))
    return 0 if done.ok else 1


def _generate(args: argparse.Namespace) -> int:
    m = _matrix(args)
    files = ci.generate(m, args.target, args.tier)
    stale = ci.write(files, Path(args.root), check=args.check)
    for path in files:
        if args.check:
            print(f"✗ {path}: differs from the matrix" if path in stale else f"✓ {path}: up to date")
        else:
            print(f"✓ {path}: {'written' if path in stale else 'up to date'}")
    return 1 if args.check and stale else 0


def _report(args: argparse.Namespace) -> int:
    runs = [load_run(Path(r)) for r in args.runs]
    baseline = load_baseline(Path(args.baseline)) if args.baseline else None
    made = report.make(runs, baseline, Path(args.out))
    print(made.markdown, end="")
    print(f"# report: {made.html}  summary: {made.markdown_path}  plots: {len(made.plots)}")
    latest = made.latest
    if args.save_baseline:
        if not latest.ok:
            print(f"# baseline not saved: the latest run ({latest.folder}) is not green")
        else:
            write_json(Path(args.save_baseline), Baseline.of(latest).to_json())
            print(f"# baseline saved: {args.save_baseline} (from {latest.folder})")
    return 0 if latest.ok and not made.regressions else 1


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("matrix", help="the test matrix: list cells, run a tier, generate CI files, report results")
    p.add_argument("--matrix", default=str(matrix_model.MATRIX), help="the matrix file (default: %(default)s)")
    s = p.add_subparsers(dest="matrix_command", metavar="ACTION", required=True)

    ls = s.add_parser("list", help="cells, what each needs, and whether it runs here (or why not)")
    ls.add_argument("--tier", help="only this tier's cells, in its run order")
    ls.add_argument("--cells", nargs="+", action="extend", metavar="GLOB",
                    help="only cells whose id matches (os/kubernetes/topology/lb/driver/suite)")
    ls.set_defaults(handler=_list)

    r = s.add_parser("run", help="run the cells of a tier (or --cells) here; exit 1 when one failed or was refused")
    r.add_argument("--tier", help="the tier (pr, nightly, weekly); without it --cells picks from every cell")
    r.add_argument("--cells", nargs="+", action="extend", metavar="GLOB",
                   help="only cells whose id matches (the flag may be repeated); each must run here")
    r.add_argument("--jobs", type=int, metavar="N", help="cells at a time here (default 1: sequential)")
    r.add_argument("--hosts", metavar="FILE",
                   help="run the cells on these libvirt hypervisors instead: one URI per line, optionally followed "
                        "by how many cells it takes at once; # comments (each cell's pytest gets --kha-connect)")
    r.add_argument("--out", default="matrix-results", help="where results go (default: %(default)s)")
    r.add_argument("pytest_args", nargs="*", metavar="-- PYTEST_ARG",
                   help="after --: arguments for every cell's pytest (e.g. -- -x)")
    r.set_defaults(handler=_run)

    g = s.add_parser("generate", help="write the nightly CI files from the matrix")
    g.add_argument("target", choices=ci.TARGETS)
    g.add_argument("--tier", default="nightly", help="the tier to make jobs of (default: %(default)s)")
    g.add_argument("--root", default=str(ci.ROOT), help="the checkout to write into (default: %(default)s)")
    g.add_argument("--check", action="store_true", help="write nothing; exit 1 when a committed file differs")
    g.set_defaults(handler=_generate)

    rep = s.add_parser("report", help="HTML + Markdown over runs: pass/fail, figures, regressions, trends")
    rep.add_argument("runs", nargs="+", metavar="RUN", help="`kha matrix run --out` folders, oldest first; "
                                                           "the last is reported, all are plotted")
    rep.add_argument("--baseline", help="the last green run's figures (--save-baseline wrote it)")
    rep.add_argument("--save-baseline", metavar="FILE", help="store the last run's figures as the baseline if green")
    rep.add_argument("--out", default="matrix-report", help="where the HTML, Markdown and plots go")
    rep.set_defaults(handler=_report)
