"""``kha report collect|show|check`` and ``kha replay``: reproducible bug reports from the command line.

    kha report collect --name CLUSTER -i INVENTORY [--state DIR] [--bundle DIR] [-o FILE]
    kha report show REPORT
    kha report check REPORT            # the recorded cases decided again, offline; exit 1 when one differs
    kha replay REPORT... [--repeat N] [--driver lxc|qemu] [--keep] [--out DIR]

A file that is not a report, a truncated one, one from a newer kha, or an image or bundle that differs
from the recorded one: one line, exit 2, nothing booted.
"""

from __future__ import annotations

import argparse
import datetime as dt
import tempfile
from pathlib import Path

from core import progress
from scenarios.installed import Installed
from scenarios.report import check, make, replay, show
from scenarios.report.model import open_report


def _collect(args: argparse.Namespace) -> int:
    inst = Installed.attach(args.name, args.inventory, args.state, args.bundle)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    out = Path(args.output or f"kha-report-{inst.cluster.name}-{stamp}.tar.gz")
    try:
        made = make.make(inst, out)
    finally:
        inst.close()
    c = made.collected
    print(progress.line(True, f"report {made.path}", c.seconds,
                        f"{c.artefacts} artefacts, {len(c.missing)} not collected, {made.path.stat().st_size} bytes"))
    for m in c.missing:
        print(f"  not collected: {m.node}: {m.artefact}: {m.reason}")
    return 0


def _show(args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory(prefix="kha-report-") as tmp:
        print("\n".join(show.summary(open_report(args.report, Path(tmp)))))
    return 0


def _check(args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory(prefix="kha-report-") as tmp:
        report = open_report(args.report, Path(tmp))
        rechecked = check.recheck(report)
    for r in rechecked:
        was = "ok" if r.recorded_ok else "failed (" + "; ".join(r.recorded_failed) + ")"
        now = "ok" if r.now.ok else "failed (" + "; ".join(c.name for c in r.now.failures()) + ")"
        print(f"{'✓' if r.same else '✗'} {r.case}: recorded {was}; this checker: {now}")
        for c in r.now.failures():
            print(f"    ✗ {c.name}: {c.detail}")
    return 0 if all(r.same for r in rechecked) else 1


def _replay(args: argparse.Namespace) -> int:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    unpacked = Path(tempfile.mkdtemp(prefix="reports-", dir=out))
    reports = [open_report(p, unpacked / str(i)) for i, p in enumerate(args.reports)]
    results = replay.replay(reports, repeat=args.repeat, out=out, driver=args.driver, keep=args.keep)
    for r in results:
        o = r.report.origin
        said = o.outcome + (f": {'; '.join(o.failed_checks)}" if o.failed_checks else "")
        print(f"{'✓' if r.matches else '✗'} {r.report.path}: reproduced {r.reproduced}/{r.runs} (the report: {said})")
    return 0 if all(r.matches for r in results) else 1


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("report", help="bug reports: collect one from a cluster, show one, check one offline")
    s = p.add_subparsers(dest="report_command", metavar="ACTION", required=True)
    c = s.add_parser("collect", help="one .tar.gz from a running (or half-broken) cluster, secrets redacted")
    c.add_argument("--name", required=True, help="the cluster (kha status)")
    c.add_argument("-i", "--inventory", required=True, help="the inventory it was installed from")
    c.add_argument("--state", help="its state folder (default: beside the inventory)")
    c.add_argument("--bundle", help="the bundle it was installed from")
    c.add_argument("-o", "--output", help="the report file (default: kha-report-CLUSTER-TIME.tar.gz)")
    c.set_defaults(handler=_collect)
    sh = s.add_parser("show", help="a readable summary of a report")
    sh.add_argument("report")
    sh.set_defaults(handler=_show)
    ck = s.add_parser("check", help="decide the recorded cases again offline; exit 1 when a verdict differs")
    ck.add_argument("report")
    ck.set_defaults(handler=_check)
    r = sub.add_parser("replay", help="boot the topology of reports again, re-run their faults: reproduced k/N")
    r.add_argument("reports", nargs="+", metavar="REPORT")
    r.add_argument("--repeat", type=int, default=1, help="runs per report (default 1)")
    r.add_argument("--driver", choices=("lxc", "qemu"), help="boot on this driver instead of the recorded one")
    r.add_argument("--keep", action="store_true", help="keep the replayed topology (kha down --name …)")
    r.add_argument("--out", default="replay-results", help="where each run's records go")
    r.set_defaults(handler=_replay)
