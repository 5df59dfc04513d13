"""The fault catalogue, measured: each case N times on an installed m-master, the client-visible outage
through the VIP against the bound its timers promise.

    .venv/bin/python bench/bench_failover.py [--runs 3] [--cases kill-etcd-leader,stop-haproxy-on-vrrp-master]
                                             [--driver lxc] [--out DIR] [--keep]

Boots m-master (isolated), installs Kubernetes from the offline bundle with the real installer, snapshots
it, then runs every case of ``scenarios/failover/catalogue.py`` (or those named) ``--runs`` times, each from
the snapshot (``scenarios.failover.run``). Prints per case the median and max outage, the bound, the worst
ratio to the bound (the test asserts ratio ≤ the case's margin), writes lost and unknown, and how many
runs kept every promise; each run's results and timeline are under ``--out``. Exit 1 when a run broke a
promise. Everything is torn down at the end unless ``--keep``.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from harness.provider import Provider
from images import bundle as bundles
from installer import topology
from scenarios import catalog
from scenarios.failover import catalogue, run
from scenarios.failover.model import CaseResult
from scenarios.installed import install_onto
from scenarios.topologies import spec_for_scenario


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--cases", help="comma-separated case names (default: every case this driver can run)")
    parser.add_argument("--driver", default="lxc", choices=("lxc", "qemu"))
    parser.add_argument("--out", help="results folder (default: a temporary one, kept)")
    parser.add_argument("--keep", action="store_true", help="keep the topology (kha down --name … removes it)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    topo_name = "m-master"
    inventory = catalog.get(topo_name).inventory
    names = args.cases.split(",") if args.cases else [c.name for c in catalogue.CASES]
    cases = [catalogue.get(n) for n in names]
    spec = spec_for_scenario(topo_name, args.driver, name=f"bench-failover-{args.driver}")
    topo = topology.load(inventory)
    cases = [c for c in cases if run.problem(c, topo, args.driver) is None]
    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="kha-bench-failover-"))
    root = Path(tempfile.mkdtemp(prefix="kha-bench-failover-state-"))
    print(f"{topo_name} on {args.driver}; {len(cases)} cases × {args.runs} runs; results in {out}")
    cluster = Provider(isolated=True, emit=lambda line: print(f"    {line}")).up(spec, state_dir=root / spec.cluster)
    results: dict[str, list[CaseResult]] = {c.name: [] for c in cases}
    try:
        start = time.monotonic()
        inst, _ = install_onto(cluster, inventory, root / "install", bundle=bundles.build().path)
        inst.snapshot(run.SNAPSHOT)
        print(f"    ✓ installed and snapshotted  {time.monotonic() - start:.1f}s")
        for case in cases:
            for i in range(args.runs):
                start = time.monotonic()
                done = run.run_case(case, inst, out / f"run{i + 1}", seed=i)
                r = done.result
                results[case.name].append(r)
                print(f"    {case.name} run {i + 1}: outage {r.outage_s or 0:.2f}s (bound {r.bound_s:.2f}s) "
                      f"lost {r.writes_lost} {'✓' if r.ok else '✗ ' + ', '.join(c.name for c in r.failures())}  "
                      f"{time.monotonic() - start:.0f}s")
        inst.close()
    finally:
        if args.keep:
            print(f"kept {cluster.name} (state in {root}); `kha down --name {cluster.name}` removes it")
        else:
            cluster.destroy()
            shutil.rmtree(root)
    print()
    print(f"{'case':<32} {'runs':>4} {'median':>7} {'max':>7} {'bound':>7} {'ratio':>6} {'margin':>6} {'lost':>4} "
          f"{'unknown':>7}  kept")
    broke = False
    for case in cases:
        rs = results[case.name]
        if not rs:
            continue
        outs = [r.outage_s or 0.0 for r in rs]
        bound = rs[0].bound_s
        ratio = max(outs) / bound
        kept = sum(r.ok for r in rs)
        broke |= kept < len(rs)
        print(f"{case.name:<32} {len(rs):>4} {statistics.median(outs):6.2f}s {max(outs):6.2f}s {bound:6.2f}s "
              f"{ratio:6.2f} {case.margin:6.2f} {max(r.writes_lost for r in rs):>4} "
              f"{max(r.writes_unknown for r in rs):>7}  {kept}/{len(rs)}")
    return 1 if broke else 0


if __name__ == "__main__":
    sys.exit(main())
