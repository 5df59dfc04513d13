"""Harness timings: seconds to SSH-ready for one node (allinone) and for m-master with each driver, and
the reset (revert to a snapshot taken right after boot) against that boot.

    .venv/bin/python bench/bench_harness.py [--drivers lxc,qemu] [--scenarios allinone,m-master]

Isolated mode (a private libvirtd per topology), state under a temporary directory removed afterwards.
The base image must be built (``kha image build debian-12``); the derived VM disk and the KVM probe are
cached, so run once to warm them. Prints one line per topology.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path

from harness.provider import Provider
from scenarios.topologies import spec_for_scenario


def measure(scenario: str, driver: str, root: Path) -> str:
    spec = spec_for_scenario(scenario, driver, name=f"bench-{scenario}-{driver}")
    provider = Provider(isolated=True, emit=lambda line: print(f"    {line}"))
    start = time.monotonic()
    cluster = provider.up(spec, state_dir=root / spec.cluster, build_image=False)
    up = time.monotonic() - start
    boot = provider.steps.seconds(f"boot {len(spec.nodes)} node{'s' if len(spec.nodes) != 1 else ''}")
    try:
        start = time.monotonic()
        cluster.snapshot("bench")
        snap = time.monotonic() - start
        cluster.run(cluster.nodes[0], ["sh", "-c", "echo dirty > /root/bench; sync"])
        start = time.monotonic()
        cluster.revert("bench")
        reset = time.monotonic() - start
    finally:
        start = time.monotonic()
        cluster.destroy()
        down = time.monotonic() - start
    return (f"{scenario:<9} {driver:<4} nodes={len(spec.nodes)}  up→SSH {up:6.1f}s (boot {boot:5.1f}s)  "
            f"snapshot {snap:5.2f}s  reset {reset:5.1f}s = {100 * reset / up:4.0f}% of up  down {down:4.1f}s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--drivers", default="lxc,qemu")
    parser.add_argument("--scenarios", default="allinone,m-master")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    results = []
    with tempfile.TemporaryDirectory(prefix="kha-bench-harness-") as tmp:
        for driver in args.drivers.split(","):
            for scenario in args.scenarios.split(","):
                print(f"{scenario} on {driver}:")
                results.append(measure(scenario, driver, Path(tmp)))
                print(f"  {results[-1]}")
    print()
    for line in results:
        print(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
