"""etcd under faults, judged Jepsen-style: kill the leader, remove and re-add a member, while a client writes.

On the installed LXC m-master (``etcd_lb``, reverted before each test) a ``Writer`` (scenarios.workload)
puts unique keys through etcd's JSON gateway from inside the topology's network namespace, every 20 ms,
trying the next member when one does not answer, and records each write as ok / failed / unknown. The
fault (scenarios.faults.etcd) injects and heals; afterwards the ``Checker`` reads every key back from every
member and decides: no acknowledged write may be missing anywhere. Measured figures (the longest stretch
without an acknowledged write, the re-add time) are printed, recorded as junit properties, and listed in
the terminal summary; their goals are the benchmark's (bench/bench_failover_etcd.py), not asserted here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import pytest

from installer.etcd import ctl
from installer.etcd.context import EtcdContext
from scenarios import workload
from scenarios.faults.etcd import KillEtcdLeader, RemoveAndReAddMember

if TYPE_CHECKING:  # the fixture's type
    from scenarios.installed import Installed

pytestmark = pytest.mark.integration


Report = Callable[[str, str, float], None]


@pytest.fixture
def report(measured: Callable[..., None]) -> Report:
    """``report(key, line, value)``: the figure appears in the run's "measured" summary (conftest.py)."""

    def add(key: str, line: str, value: float) -> None:
        measured(line, **{key: value})

    return add


def endpoints(inst: Installed) -> list[str]:
    return ctl.client_urls(inst.topo.etcd)


def client(inst: Installed) -> workload.EtcdHTTP:
    return workload.EtcdHTTP(workload.TLSFiles.from_store(inst.state / "pki"))


def test_kill_leader_new_leader_and_no_acknowledged_write_lost(
    etcd_lb: Installed, ctx: EtcdContext, report: Report
) -> None:
    eps = endpoints(etcd_lb)
    fault = KillEtcdLeader(ctx)
    writer = workload.Writer(client(etcd_lb), eps, netns=etcd_lb.netns, prefix="kill/", duration=40.0)
    with writer:
        writer.wait_acked(50)
        fault.inject()
        old = fault.leader_id
        probe = client(etcd_lb)
        # A different member must become leader (the killed one is back only ~2 s later, via systemd).
        elected = workload.wait_for(lambda: workload.leader_of(probe, eps, etcd_lb.netns) not in (0, old), 15.0,
                                    "a new etcd leader after killing the old one")
        fault.heal()
        acked = writer.acked()
        writer.wait_acked(acked + 50)  # the cluster takes writes again after the heal
    result = workload.Checker(client(etcd_lb), eps, netns=etcd_lb.netns).check(writer.history, "kill/")
    print(result.summary())
    report("leader_kill_gap_ms", f"{fault.description}: new leader seen after {elected:.2f}s; longest gap "
           f"between acknowledged writes {1000 * result.longest_gap:.0f} ms; lost writes {result.lost}",
           round(1000 * result.longest_gap))
    assert result.lost == 0, result.missing
    assert not result.failed_present, result.failed_present
    assert result.ok > 100
    assert etcd_lb.etcd_healthy()


def test_remove_and_readd_member_catches_up_with_equal_hashes(
    etcd_lb: Installed, ctx: EtcdContext, report: Report
) -> None:
    eps = endpoints(etcd_lb)
    node = etcd_lb.topo.etcd[1].name
    fault = RemoveAndReAddMember(ctx, node)
    writer = workload.Writer(client(etcd_lb), eps, netns=etcd_lb.netns, prefix="readd/", duration=50.0)
    with writer:
        writer.wait_acked(50)
        fault.inject()
        writer.wait_acked(writer.acked() + 50)  # the two left keep taking writes
        fault.heal()
        writer.wait_acked(writer.acked() + 50)
    result = workload.Checker(client(etcd_lb), eps, netns=etcd_lb.netns).check(writer.history, "readd/")
    print(result.summary())

    # Same key space on every member at one revision: hashkv --rev compares the MVCC history up to it.
    admin = ctx.admin()
    rev, hashes = admin.hashkv_at_common_revision(eps)
    report("readd_seconds", f"{fault.description}: re-added and healthy in {fault.rejoin_seconds:.1f}s (removal "
           f"{fault.inject_seconds:.1f}s); hashkv at revision {rev} equal on {len(hashes)} members: "
           f"{len({h for h, _ in hashes.values()}) == 1}; lost writes {result.lost}", round(fault.rejoin_seconds, 2))
    assert result.lost == 0, result.missing
    assert not result.failed_present, result.failed_present
    assert len(hashes) == 3 and len({h for h, _ in hashes.values()}) == 1, hashes
    names = sorted(m.name for m in admin.member_list() if not m.is_learner)
    assert names == sorted(h.name for h in etcd_lb.topo.etcd)
    assert etcd_lb.etcd_healthy()
