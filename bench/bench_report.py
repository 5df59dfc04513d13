"""``kha report collect``, measured: how long collecting a report from an installed m-master takes and how big
it is once compressed, against the targets (≤ 30 s, ≤ 50 MB).

    flock /tmp/kha-topology.lock .venv/bin/python bench/bench_report.py [--runs 3] [--driver lxc] [--keep]
    .venv/bin/python bench/bench_report.py --reuse ROOT      # a topology an earlier --keep left (ROOT printed)

Boots m-master (isolated) and installs Kubernetes from the offline bundle with the real installer (or reuses
the topology and install state under ``--reuse ROOT``), then collects ``--runs`` reports
(``scenarios.report.collect``), packs each as a ``.tar.gz`` and prints per run the seconds, the artefacts
per node, what was missing, the size packed and unpacked, and the ratios to the targets. Exit 1 when a
target is missed. Everything is torn down at the end unless ``--keep`` (or ``--reuse``).
"""

from __future__ import annotations

import argparse
import collections
import logging
import shutil
import sys
import tarfile
import tempfile
import time
from pathlib import Path

from harness.provider import Cluster, Provider
from images import bundle as bundles
from installer import topology
from scenarios import catalog
from scenarios.installed import Installed, install_onto
from scenarios.report.collect import collect
from scenarios.topologies import spec_for_scenario

TARGET_S = 30.0
TARGET_BYTES = 50 * 1024 * 1024


def _tree_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--driver", default="lxc", choices=("lxc", "qemu"))
    parser.add_argument("--jobs", type=int, default=8)
    parser.add_argument("--out", help="where the reports go (default: a temporary folder, kept)")
    parser.add_argument("--keep", action="store_true", help="keep the topology (kha down --name … removes it)")
    parser.add_argument("--reuse", help="the ROOT an earlier --keep printed: collect from that topology")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    scenario = "m-master"
    inventory = catalog.get(scenario).inventory
    spec = spec_for_scenario(scenario, args.driver, name=f"bench-report-{args.driver}")
    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="kha-bench-report-"))
    bundle = bundles.build().path
    if args.reuse:
        root = Path(args.reuse)
        cluster = Cluster.load(root / spec.cluster)
        inst = Installed(cluster, topology.load(inventory), Path(inventory), root / "install", bundle)
    else:
        root = Path(tempfile.mkdtemp(prefix="kha-bench-report-state-"))
        provider = Provider(isolated=True, emit=lambda line: print(f"    {line}"))
        cluster = provider.up(spec, state_dir=root / spec.cluster)
    missed = False
    try:
        if not args.reuse:
            start = time.monotonic()
            inst, _ = install_onto(cluster, inventory, root / "install", bundle=bundle)
            print(f"    ✓ installed m-master with Kubernetes  {time.monotonic() - start:.1f}s")
        print(f"{scenario} on {args.driver}; {args.runs} run(s); reports in {out}")
        for i in range(args.runs):
            folder = out / f"run{i + 1}"
            folder.mkdir(parents=True)
            got = collect(inst, folder, jobs=args.jobs)
            packed = out / f"run{i + 1}.tar.gz"
            with tarfile.open(packed, "w:gz") as tar:
                tar.add(folder, arcname="report")
            size, raw = packed.stat().st_size, _tree_bytes(folder)
            per_node = collections.Counter(p.relative_to(folder / "nodes").parts[0]
                                           for p in (folder / "nodes").rglob("*") if p.is_file())
            ok = got.seconds <= TARGET_S and size <= TARGET_BYTES
            missed |= not ok
            print(f"    run {i + 1}: {got.seconds:.1f}s (target {TARGET_S:.0f}s, ratio {got.seconds / TARGET_S:.2f}); "
                  f"{size / 1e6:.2f} MB packed, {raw / 1e6:.1f} MB unpacked (target {TARGET_BYTES / 2**20:.0f} MB, "
                  f"ratio {size / TARGET_BYTES:.3f}); {got.artefacts} artefacts, {len(got.missing)} missing "
                  f"{'✓' if ok else '✗'}")
            print(f"      artefacts per node: {', '.join(f'{n} {c}' for n, c in sorted(per_node.items()))}")
            for m in got.missing:
                print(f"      missing {m.node} {m.artefact}: {m.reason}")
        inst.close()
    finally:
        if args.keep or args.reuse:
            print(f"kept {cluster.name} (ROOT {root}; `--reuse {root}` collects again; "
                  f"`kha down --name {cluster.name}` removes it)")
        else:
            cluster.destroy()
            shutil.rmtree(root)
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
