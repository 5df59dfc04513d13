"""``kha fault list`` and ``kha fault run CASE --name CLUSTER -i INVENTORY``: the failover catalogue on a
cluster someone kept (``tox -e m-master -- --kha-keep``, or ``kha up`` + ``kha install``).

``run`` reverts the cluster to its snapshot ``kubernetes`` before the case (``--no-revert``: run on the
cluster as it is; ``--snapshot``: take that snapshot now, of the cluster as it is, which must be whole),
prints the verdict with each check, writes ``history.json``, ``result.json`` and the timeline picture
under ``--out``, and exits 1 when a promise broke. An unknown case, a cluster that is not up, a case
that cannot apply to the topology: one line, exit 2, nothing injected.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from core import progress
from installer import topology
from scenarios.errors import CaseRefused
from scenarios.failover import catalogue, run
from scenarios.installed import Installed


def _list(args: argparse.Namespace) -> int:
    topo = topology.load(args.inventory) if args.inventory else None
    print(f"{'case':<32} {'targets':<22} {'hold':>5}  bound")
    for case in catalogue.CASES:
        if topo is not None:
            try:
                b = case.bound(topo)
                bound = f"{b.seconds:.2f}s × {case.margin:g} = {b.formula}"
            except CaseRefused as exc:
                bound = f"n/a: {exc}"
        else:
            bound = case.bound.__name__.replace("_", " ")
        needs = "" if case.needs == ("vip",) else f"  [needs {', '.join(n for n in case.needs if n != 'vip')}]"
        print(f"{case.name:<32} {case.selector:<22} {case.hold_s:>4g}s  {bound}{needs}")
    return 0


def _run(args: argparse.Namespace) -> int:
    case = catalogue.get(args.case)
    inventory = Path(args.inventory)
    topo = topology.load(inventory)
    why = run.problem(case, topo, "any")
    if why is not None:
        raise CaseRefused(why)
    inst = Installed.attach(args.name, inventory, args.state, args.bundle)
    cluster = inst.cluster
    why = run.problem(case, topo, cluster.state.spec.driver)
    if why is not None:
        raise CaseRefused(why)
    if args.snapshot:
        inst.snapshot(run.SNAPSHOT)
    elif not args.no_revert and run.SNAPSHOT not in cluster.snapshots():
        raise CaseRefused(f"cluster {args.name} has no snapshot {run.SNAPSHOT!r} to revert to: take it once with "
                          "--snapshot (of the installed, whole cluster) or run with --no-revert")
    try:
        done = run.run_case(case, inst, Path(args.out), revert=not args.no_revert, seed=args.seed,
                            bound_scale=args.bound_scale)
    finally:
        inst.close()
    r = done.result
    for c in r.checks:
        print(f"  {'✓' if c.ok else '✗'} {c.name}: {c.detail}")
    print(progress.line(r.ok, case.name, done.history.stopped - done.history.started,
                        f"outage {r.outage_s:.2f}s (bound {r.bound_s:.2f}s); results in {done.folder}"))
    return 0 if r.ok else 1


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("fault", help="the failover catalogue: list the cases, run one on a kept cluster")
    s = p.add_subparsers(dest="fault_command", metavar="ACTION", required=True)
    ls = s.add_parser("list", help="every case: targets, hold, the bound and its formula")
    ls.add_argument("-i", "--inventory", help="evaluate the bounds for this inventory's timers and priorities")
    ls.set_defaults(handler=_list)
    r = s.add_parser("run", help="run one case on a kept cluster; exit 1 when a promise broke")
    r.add_argument("case", help="a case name (kha fault list)")
    r.add_argument("--name", required=True, help="the cluster (kha status)")
    r.add_argument("-i", "--inventory", required=True, help="the inventory the cluster was installed from")
    r.add_argument("--state", help="its state folder (default: beside the inventory)")
    r.add_argument("--bundle", help="the bundle it was installed from (for kubectl's path)")
    r.add_argument("--out", default="failover-results", help="where the results and the timeline go")
    r.add_argument("--no-revert", action="store_true", help="run on the cluster as it is")
    r.add_argument("--snapshot", action="store_true", help=f"take snapshot {run.SNAPSHOT!r} now, then run")
    r.add_argument("--seed", type=int, default=0, help="for faults with a random part (power-on order)")
    r.add_argument("--bound-scale", type=float, default=1.0, metavar="X",
                   help="hold the outage to X × the case's bound (a failure made on purpose: 0.1)")
    r.set_defaults(handler=_run)
