"""``kha install`` end to end: seconds per phase and in total, and what the installed topology costs at rest.

    .venv/bin/python bench/bench_install.py [--scenarios allinone,m-master] [--driver lxc]
                                            [--settle 30] [--window 30] [--keep]

For each scenario: boot it in isolated mode (a private libvirtd in its own network namespace), build or reuse
the offline bundle, run every install phase with the real installer over SSH (what ``kha install`` does),
then measure the steady-state CPU and tear everything down (unless --keep).

Steady-state CPU, and why it is measured this way: after the nodes are Ready the topology is left alone for
``--settle`` seconds, then each node's cumulative CPU time is read from libvirt (``virDomainGetInfo``
cpuTime) at the start and end of a ``--window`` of wall time. For an LXC node libvirt reads that from the
cpuacct cgroup of the domain, which holds everything the node runs — systemd, etcd, containerd, kubelet
and every pod (the harness's PID-1 wrapper keeps the node's cgroups inside the domain's; checked here by
listing the processes of a node's PID namespace: none outside it); for a qemu node it is the VM's vCPU and
emulator threads. The sum over nodes divided by the wall time is the topology's load in CPU cores
(1.0 = one core busy); "% of host" divides that by the host's CPU count. The host-wide busy time from
/proc/stat over the same window is printed beside it as context only: it includes whatever else this
machine runs (this script, other work), so it is an upper bound, not the topology's figure.
"""

from __future__ import annotations

import argparse
import io
import logging
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from harness.provider import Cluster, Provider
from images import bundle as bundles
from installer import install
from installer.phases import Status
from scenarios import catalog
from scenarios.topologies import spec_for_scenario


class Tee(io.StringIO):
    """Keeps the runner's output and echoes it, indented, as it comes."""

    def write(self, s: str) -> int:
        sys.stdout.write("".join(f"    {line}" for line in s.splitlines(keepends=True)))
        sys.stdout.flush()
        return super().write(s)


@dataclass
class Result:
    scenario: str
    boot: float = 0.0
    install: float = 0.0
    phases: dict[str, float] = field(default_factory=dict)
    cores: float = 0.0
    per_node: dict[str, float] = field(default_factory=dict)
    memory_mib: dict[str, float] = field(default_factory=dict)
    host_busy_cores: float = 0.0
    window: float = 0.0


def host_busy_seconds() -> float:
    """CPU seconds the whole host spent not idle (user+nice+system+irq+softirq+steal), from /proc/stat."""
    fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def node_cpu_ns(cluster: Cluster) -> dict[str, int]:
    """Each node's cumulative CPU time in ns (virDomainGetInfo: for LXC the domain's cpuacct cgroup)."""
    conn = cluster.conn
    return {n: int(conn.lookupByName(cluster.state.nodes[n].domain).info()[4]) for n in cluster.nodes}


def node_memory_mib(cluster: Cluster) -> dict[str, float]:
    """Each node's memory in MiB as libvirt reports it (LXC: the memory cgroup's usage, page cache included)."""
    conn = cluster.conn
    return {n: conn.lookupByName(cluster.state.nodes[n].domain).info()[2] / 1024 for n in cluster.nodes}


def steady_state(cluster: Cluster, res: Result, settle: float, window: float) -> None:
    print(f"    … settling {settle:.0f}s, then measuring CPU over {window:.0f}s")
    time.sleep(settle)
    cpu0, host0, t0 = node_cpu_ns(cluster), host_busy_seconds(), time.monotonic()
    time.sleep(window)
    cpu1, host1, t1 = node_cpu_ns(cluster), host_busy_seconds(), time.monotonic()
    res.window = t1 - t0
    res.per_node = {n: (cpu1[n] - cpu0[n]) / 1e9 / res.window for n in cpu1}
    res.cores = sum(res.per_node.values())
    res.host_busy_cores = (host1 - host0) / res.window
    res.memory_mib = node_memory_mib(cluster)


def one(scenario: str, driver: str, bundle_dir: Path, *, settle: float, window: float, keep: bool) -> Result:
    res = Result(scenario)
    scen = catalog.get(scenario)
    spec = spec_for_scenario(scenario, driver, name=f"bench-install-{scenario}")
    root = Path(tempfile.mkdtemp(prefix=f"kha-bench-install-{scenario}-"))
    print(f"{scenario} on {driver} (state in {root}):")
    start = time.monotonic()
    cluster = Provider(isolated=True, emit=lambda line: print(f"    {line}")).up(spec, state_dir=root / spec.cluster)
    res.boot = time.monotonic() - start
    try:
        out = Tee()
        start = time.monotonic()
        result = install.run(scen.inventory, state=root / "install", ssh_config=cluster.ssh_config,
                             known_hosts=cluster.known_hosts, bundle=bundle_dir, out=out)
        res.install = time.monotonic() - start
        res.phases = {s.path: s.seconds for s in result.steps if s.status is Status.OK}
        print(f"    ✓ kha install, every phase  {res.install:.1f}s")
        steady_state(cluster, res, settle, window)
        print(f"    steady state: {res.cores:.3f} cores ({100 * res.cores / (os.cpu_count() or 1):.1f} % of "
              f"{os.cpu_count()} host CPUs); per node: "
              + ", ".join(f"{n} {c:.3f}" for n, c in res.per_node.items()))
    finally:
        if keep:
            print(f"    kept {cluster.name} (state in {root}); `kha down --name {cluster.name}` removes it")
        else:
            cluster.destroy()
            shutil.rmtree(root)  # the installer's state (PKI, secrets) of this throwaway cluster
            print(f"    ✓ torn down {cluster.name}")
    return res


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenarios", default="allinone,m-master")
    parser.add_argument("--driver", default="lxc", choices=("lxc", "qemu"))
    parser.add_argument("--settle", type=float, default=30.0, help="seconds left alone after install (default 30)")
    parser.add_argument("--window", type=float, default=30.0, help="seconds of CPU measurement (default 30)")
    parser.add_argument("--keep", action="store_true", help="keep the topologies (kha down --name … removes them)")
    args = parser.parse_args()
    scenarios = [s for s in args.scenarios.split(",") if s]
    unknown = [s for s in scenarios if s not in catalog.names()]
    if unknown:
        parser.error(f"unknown scenario(s) {unknown}; known: {', '.join(catalog.names())}")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    start = time.monotonic()
    cached = bundles.get() is not None
    built = bundles.build(progress=lambda line: print(f"    {line}"))
    print(f"bundle {built.path.name}: {'cached' if cached else 'built'} in {time.monotonic() - start:.1f}s")

    results = [one(s, args.driver, built.path, settle=args.settle, window=args.window, keep=args.keep)
               for s in scenarios]

    print()
    width = max(len(p) for r in results for p in [*r.phases, "steady-state CPU (% of host)"])
    print(f"{'seconds':<{width}}" + "".join(f"{r.scenario:>12}" for r in results))
    paths = list(dict.fromkeys(p for r in results for p in r.phases))
    for p in paths:
        print(f"{p:<{width}}" + "".join(f"{r.phases[p]:>12.1f}" if p in r.phases else f"{'-':>12}" for r in results))
    rows: list[tuple[str, list[str]]] = [
        ("install total", [f"{r.install:.1f}" for r in results]),
        ("boot (harness)", [f"{r.boot:.1f}" for r in results]),
        ("steady-state CPU (cores)", [f"{r.cores:.3f}" for r in results]),
        ("steady-state CPU (% of host)", [f"{100 * r.cores / (os.cpu_count() or 1):.1f}" for r in results]),
        ("host busy, context (cores)", [f"{r.host_busy_cores:.3f}" for r in results]),
        ("memory, sum of nodes (MiB)", [f"{sum(r.memory_mib.values()):.0f}" for r in results]),
    ]
    for name, values in rows:
        print(f"{name:<{width}}" + "".join(f"{v:>12}" for v in values))
    return 0


if __name__ == "__main__":
    sys.exit(main())
