"""etcd failover, measured: leader kill and member re-add, each with a writer running, on a fresh m-master.

    .venv/bin/python bench/bench_failover_etcd.py [--rounds 3] [--driver lxc]

Boots the m-master topology (isolated mode, state under a temporary directory removed afterwards), installs
the etcd cluster with the real installer (``kha install --only pki,connect,etcd``), then per round:

* kill -9 the raft leader while a writer puts a key every 20 ms (failover to the next member, 250 ms per
  attempt): the time until another member is leader, against its bound (raft randomises each follower's
  election timeout in [1, 2) × the configured 1 s, so 2 s), and the longest stretch without an acknowledged
  write, against that bound plus one write attempt;
* remove a member, wipe it and re-add it empty (learner, promoted) with the writer running: seconds from
  the start of the re-add to every member healthy (goal ≤ 60 s), and ``endpoint hashkv`` equal;
* after each: acknowledged writes missing from any member (goal 0).

The base image must be built (``kha image build debian-12``). Prints one line per measurement and a summary.
"""

from __future__ import annotations

import argparse
import io
import logging
import statistics
import tempfile
import time
from pathlib import Path

from harness.provider import Cluster, Provider
from installer import install
from installer.etcd import ctl
from installer.etcd.context import EtcdContext
from scenarios import catalog, workload
from scenarios.faults.etcd import KillEtcdLeader, RemoveAndReAddMember
from scenarios.topologies import spec_for_scenario

ELECTION_S = 1.0  # --election-timeout in installer/etcd/render.py
#: raft randomises each follower's election timeout in [1, 2) × the configured one: a new leader within 2 s.
ELECTION_BOUND_S = 2 * ELECTION_S
ATTEMPT_S = 0.25  # the writer's timeout per attempt
#: A write in flight when the leader dies hangs until its attempt times out: the client sees up to one more.
GAP_BOUND_S = ELECTION_BOUND_S + ATTEMPT_S
READD_GOAL_S = 60.0


def boot(root: Path, driver: str) -> tuple[Cluster, Path]:
    spec = spec_for_scenario("m-master", driver, "bench-etcd")
    start = time.monotonic()
    cluster = Provider(isolated=True, emit=lambda line: print(f"    {line}")).up(
        spec, state_dir=root / "cluster", build_image=False
    )
    print(f"  up in {time.monotonic() - start:.1f}s")
    state = root / "state"
    start = time.monotonic()
    install.run(
        catalog.get("m-master").inventory,
        state=state,
        ssh_config=cluster.ssh_config,
        known_hosts=cluster.known_hosts,
        only=["pki", "connect", "etcd"],
        out=io.StringIO(),
    )
    print(f"  etcd installed in {time.monotonic() - start:.1f}s")
    return cluster, state


def writer(ctx: EtcdContext, cluster: Cluster, state: Path, prefix: str) -> workload.Writer:
    eps = ctl.client_urls(ctx.topo.etcd)
    client = workload.EtcdHTTP(workload.TLSFiles.from_store(state / "pki"))
    return workload.Writer(client, eps, netns=cluster.state.netns, prefix=prefix, duration=60.0, timeout=ATTEMPT_S)


def check(ctx: EtcdContext, cluster: Cluster, state: Path, w: workload.Writer, prefix: str) -> workload.Report:
    eps = ctl.client_urls(ctx.topo.etcd)
    client = workload.EtcdHTTP(workload.TLSFiles.from_store(state / "pki"))
    return workload.Checker(client, eps, netns=cluster.state.netns).check(w.history, prefix)


def leader_kill(ctx: EtcdContext, cluster: Cluster, state: Path, n: int) -> tuple[float, float, int]:
    fault = KillEtcdLeader(ctx)
    prefix = f"kill{n}/"
    w = writer(ctx, cluster, state, prefix)
    eps = ctl.client_urls(ctx.topo.etcd)
    probe = workload.EtcdHTTP(workload.TLSFiles.from_store(state / "pki"))
    netns = cluster.state.netns
    with w:
        w.wait_acked(100)
        fault.inject()
        # From the kill until a member reports another leader (asked every 50 ms from inside the namespace).
        workload.wait_for(lambda: workload.leader_of(probe, eps, netns, 0.2) not in (0, fault.leader_id), 15.0,
                          "a new leader", step=0.05)
        elected = time.monotonic() - fault.killed_at
        time.sleep(3.0)
        fault.heal()
        w.wait_acked(w.acked() + 100)
    r = check(ctx, cluster, state, w, prefix)
    print(f"  round {n}: {fault.description}: new leader after {1000 * elected:.0f} ms "
          f"(×{elected / ELECTION_BOUND_S:.2f} of {ELECTION_BOUND_S:.0f} s); writes unavailable "
          f"{1000 * r.longest_gap:.0f} ms (×{r.longest_gap / GAP_BOUND_S:.2f} of {GAP_BOUND_S:.2f} s); {r.summary()}")
    return elected, r.longest_gap, r.lost


def readd(ctx: EtcdContext, cluster: Cluster, state: Path, n: int) -> tuple[float, int, bool]:
    node = ctx.topo.etcd[n % len(ctx.topo.etcd)].name
    fault = RemoveAndReAddMember(ctx, node)
    prefix = f"readd{n}/"
    w = writer(ctx, cluster, state, prefix)
    with w:
        w.wait_acked(100)
        fault.inject()
        w.wait_acked(w.acked() + 50)
        fault.heal()
        w.wait_acked(w.acked() + 100)
    r = check(ctx, cluster, state, w, prefix)
    rev, hashes = ctx.admin().hashkv_at_common_revision(ctl.client_urls(ctx.topo.etcd))
    equal = len(hashes) == len(ctx.topo.etcd) and len({h for h, _ in hashes.values()}) == 1
    print(
        f"  round {n}: {fault.description}: re-added in {fault.rejoin_seconds:.1f}s "
        f"(×{fault.rejoin_seconds / READD_GOAL_S:.2f} of the {READD_GOAL_S:.0f}s goal); hashkv at rev {rev} "
        f"equal: {equal}; {r.summary()}"
    )
    return fault.rejoin_seconds, r.lost, equal


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--driver", default="lxc", choices=("lxc", "qemu"))
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    elections: list[float] = []
    gaps: list[float] = []
    readds: list[float] = []
    lost = 0
    hashes_equal = True
    with tempfile.TemporaryDirectory(prefix="kha-bench-etcd-") as tmp:
        print(f"m-master on {args.driver}:")
        cluster, state = boot(Path(tmp), args.driver)
        try:
            ctx = EtcdContext.open(
                catalog.get("m-master").inventory,
                state=state,
                ssh_config=cluster.ssh_config,
                known_hosts=cluster.known_hosts,
            )
            try:
                for n in range(1, args.rounds + 1):
                    elected, gap, lost_k = leader_kill(ctx, cluster, state, n)
                    secs, lost_r, equal = readd(ctx, cluster, state, n)
                    elections.append(elected)
                    gaps.append(gap)
                    readds.append(secs)
                    lost += lost_k + lost_r
                    hashes_equal = hashes_equal and equal
            finally:
                ctx.close()
        finally:
            cluster.destroy()
    print()
    print(f"leader kill → new leader: median {1000 * statistics.median(elections):.0f} ms, max "
          f"{1000 * max(elections):.0f} ms (×{max(elections) / ELECTION_BOUND_S:.2f} of the {ELECTION_BOUND_S:.0f} s "
          f"bound: 2 × the {1000 * ELECTION_S:.0f} ms election timeout)")
    print(f"leader-kill unavailability (longest gap between acknowledged writes): median "
          f"{1000 * statistics.median(gaps):.0f} ms, max {1000 * max(gaps):.0f} ms (×{max(gaps) / GAP_BOUND_S:.2f} of "
          f"{GAP_BOUND_S:.2f} s: the election bound + one {1000 * ATTEMPT_S:.0f} ms write attempt)")
    print(
        f"member re-add with a writer running: median {statistics.median(readds):.1f}s, max {max(readds):.1f}s "
        f"(goal ≤ {READD_GOAL_S:.0f}s: {'met' if max(readds) <= READD_GOAL_S else 'MISSED'})"
    )
    print(
        f"acknowledged writes lost: {lost} (goal 0: {'met' if lost == 0 else 'MISSED'}); "
        f"hashkv equal after every re-add: {hashes_equal}"
    )
    return 0 if lost == 0 and hashes_equal and max(readds) <= READD_GOAL_S else 1


if __name__ == "__main__":
    raise SystemExit(main())
