"""``kha etcd status|add|remove|replace|snapshot`` on a real three-member etcd cluster.

Runs on the installed LXC m-master (``etcd_lb``: etcd on 10.56.56.11-13 with TLS everywhere, reverted
before each test, so a test may break anything). Commands are run the way a user runs them (``kha.cli``
with ``--state/--ssh-config/--known-hosts``); outcomes are checked from the cluster's own view (etcdctl
on a member, or the JSON gateway from inside the topology's network namespace). 10.56.56.14 (a worker
with the etcd packages in its image) is the [new-etcd] node. Tests that change the PKI store work on a
copy of the fixture's state folder.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from installer.etcd import backup, ctl
from installer.etcd.context import EtcdContext
from kha import cli
from scenarios import workload

if TYPE_CHECKING:  # the fixture's type
    from scenarios.installed import Installed

pytestmark = pytest.mark.integration

FIRST, SECOND, THIRD, WORKER = "10.56.56.11", "10.56.56.12", "10.56.56.13", "10.56.56.14"


def kha(inst: Installed, *args: str, inventory: Path | None = None, state: Path | None = None) -> list[str]:
    return ["etcd", *args, *inst.cli_args(inventory, state)]


def members(ctx: EtcdContext, *avoid: str) -> list[ctl.MemberInfo]:
    return ctx.admin(avoid=set(avoid)).member_list()


def status_rows(capsys: pytest.CaptureFixture[str]) -> list[list[str]]:
    out = capsys.readouterr().out
    lines = [ln for ln in out.splitlines() if ln.startswith("10.56.56.")]
    return [re.split(r"\s{2,}", ln.strip()) for ln in lines]


def test_status_table_shows_three_members_and_one_leader(
    etcd_lb: Installed, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(kha(etcd_lb, "status")) == 0
    rows = status_rows(capsys)
    assert sorted(r[0] for r in rows) == [FIRST, SECOND, THIRD]
    assert [r[3] for r in rows].count("yes") == 1, rows  # LEADER column
    assert all(r[-1] == "healthy" and r[4] == "yes" for r in rows), rows
    assert len({r[5] for r in rows}) == 1  # one raft term


def test_add_new_etcd_member_as_learner_then_voter_and_resume(
    etcd_lb: Installed, ctx: EtcdContext, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state = tmp_path / "state"
    shutil.copytree(etcd_lb.state, state)
    inv = etcd_lb.inventory_with(tmp_path / "hosts.add.ini", new_etcd=[WORKER])

    assert cli.main(kha(etcd_lb, "add", "--dry-run", inventory=inv, state=state)) == 0
    assert "would member add 10.56.56.14" in capsys.readouterr().out
    assert len(members(ctx)) == 3

    # A run cut short right after `member add`: the learner is listed but never started. The next run
    # must find it and carry on (start it empty, promote it) instead of adding it twice.
    ctx.admin().reconfigure("member", "add", WORKER, f"--peer-urls=https://{WORKER}:2380", "--learner")
    assert cli.main(kha(etcd_lb, "add", inventory=inv, state=state)) == 0
    out = capsys.readouterr().out
    assert "✓ etcd-add/join" in out and "✓ etcd add 10.56.56.14" in out

    listed = members(ctx)
    assert sorted(m.name for m in listed) == [FIRST, SECOND, THIRD, WORKER]
    assert not any(m.is_learner for m in listed)
    assert (state / "pki" / "nodes" / WORKER / "pki" / "etcd" / "server.crt").is_file()

    # Re-run on the finished state: nothing to do, still four voters.
    assert cli.main(kha(etcd_lb, "add", inventory=inv, state=state)) == 0
    assert cli.main(kha(etcd_lb, "status", inventory=inv, state=state)) == 0
    rows = status_rows(capsys)
    assert sorted(r[0] for r in rows) == [FIRST, SECOND, THIRD, WORKER]
    assert all(r[-1] == "healthy" and r[4] == "yes" for r in rows), rows


def test_remove_member_stops_and_wipes_it(
    etcd_lb: Installed, ctx: EtcdContext, tmp_path: Path
) -> None:
    inv = etcd_lb.inventory_with(tmp_path / "hosts.del.ini", del_etcd=[THIRD])
    assert cli.main(kha(etcd_lb, "remove", inventory=inv)) == 0
    assert sorted(m.name for m in members(ctx, THIRD)) == [FIRST, SECOND]
    with etcd_lb.connector() as c:
        t = c(etcd_lb.topo.host(THIRD))
        assert t.run(["systemctl", "is-enabled", "etcd"], check=False).stdout.strip() == "disabled"
        assert t.run(["systemctl", "is-active", "etcd"], check=False).stdout.strip() == "inactive"
        assert t.run(["find", "/var/lib/etcd", "-mindepth", "1"]).stdout.strip() == ""
    assert cli.main(kha(etcd_lb, "remove", inventory=inv)) == 0  # idempotent: already gone


def test_remove_refused_when_it_would_break_quorum(
    etcd_lb: Installed, ctx: EtcdContext, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    inv = etcd_lb.inventory_with(tmp_path / "hosts.del.ini", del_etcd=[THIRD])
    cluster = etcd_lb.cluster
    cluster.power_off(SECOND)
    cluster.power_off(THIRD)
    try:
        assert cli.main(kha(etcd_lb, "remove", inventory=inv)) == 2
        err = capsys.readouterr().err
        assert "refused" in err and "--force" in err and "quorum" in err
        # Nothing changed: the member list (served locally, no quorum needed) still has all three.
        assert sorted(m.name for m in members(ctx, SECOND, THIRD)) == [FIRST, SECOND, THIRD]
    finally:
        cluster.power_on(SECOND)
        cluster.power_on(THIRD)


def test_replace_dead_first_member(
    etcd_lb: Installed, ctx: EtcdContext, capsys: pytest.CaptureFixture[str]
) -> None:
    old = {m.name: m.id for m in members(ctx)}
    etcd_lb.cluster.power_off(FIRST)
    try:
        # The first member is dead and unreachable: etcdctl runs on the others, the member goes by its ID,
        # and the command says it cannot re-add a node it cannot reach.
        assert cli.main(kha(etcd_lb, "replace", FIRST)) == 1
        err = capsys.readouterr().err
        assert "not reachable" in err and f"kha etcd replace {FIRST}" in err, err
        assert sorted(m.name for m in members(ctx, FIRST)) == [SECOND, THIRD]
    finally:
        etcd_lb.cluster.power_on(FIRST)
    # Back (with its stale data dir, which etcd there refuses: it was removed): the re-run finishes the job.
    assert cli.main(kha(etcd_lb, "replace", FIRST)) == 0
    assert cli.main(kha(etcd_lb, "status")) == 0
    rows = status_rows(capsys)
    assert sorted(r[0] for r in rows) == [FIRST, SECOND, THIRD]
    assert all(r[-1] == "healthy" and r[4] == "yes" for r in rows), rows
    now = {m.name: m.id for m in members(ctx)}
    assert now[FIRST] != old[FIRST] and now[SECOND] == old[SECOND]


def test_snapshot_save_and_restore_round_trip(
    etcd_lb: Installed, ctx: EtcdContext, tmp_path: Path
) -> None:
    eps = ctl.client_urls(etcd_lb.topo.etcd)
    client = workload.EtcdHTTP(workload.TLSFiles.from_store(etcd_lb.state / "pki"), timeout=5.0)

    def put_all(prefix: str, n: int) -> None:
        def run() -> None:
            try:
                for i in range(n):
                    client.put(eps[i % len(eps)], f"{prefix}{i:03d}", f"v{i}")
            finally:
                client.close()
        workload.in_netns(etcd_lb.netns, run)

    def cluster_id() -> int:
        return ctl.parse_endpoint_status(ctx.admin().ctl("endpoint", "status", "-w", "json").stdout)[0].cluster_id

    put_all("before/", 20)
    before_id = cluster_id()
    snap = tmp_path / "etcd.db"
    assert cli.main(kha(etcd_lb, "snapshot", "save", str(snap))) == 0
    assert snap.is_file() and snap.stat().st_mode & 0o777 == 0o600
    put_all("after/", 20)

    assert cli.main(kha(etcd_lb, "snapshot", "restore", str(snap))) == 0
    checker = workload.Checker(client, eps, netns=etcd_lb.netns)
    for ep, kv in checker.read_all("before/").items():
        assert len(kv) == 20, ep
    for ep, kv in checker.read_all("after/").items():
        assert kv == {}, ep
    assert etcd_lb.etcd_healthy()
    # A fresh token makes new member IDs and so a new cluster ID; every member records the token.
    assert cluster_id() != before_id
    with etcd_lb.connector() as c:
        tokens = {c(h).run(["grep", "^ETCD_INITIAL_CLUSTER_TOKEN=", "/etc/kha/etcd-initial.env"]).stdout.strip()
                  for h in etcd_lb.topo.etcd}
    assert len(tokens) == 1 and "-restore-" in tokens.pop()


def test_backup_timer_keeps_checked_snapshots_that_restore(
    etcd_lb: Installed, ctx: EtcdContext, tmp_path: Path
) -> None:
    """The install's timer on every member; its snapshot comes with a hash ``sha256sum -c`` accepts and a
    sidecar naming this cluster, old ones expire, and ``kha etcd snapshot restore`` takes it back."""
    first = etcd_lb.topo.etcd[0]
    eps = ctl.client_urls(etcd_lb.topo.etcd)
    client = workload.EtcdHTTP(workload.TLSFiles.from_store(etcd_lb.state / "pki"), timeout=5.0)
    workload.in_netns(etcd_lb.netns, lambda: [client.put(eps[0], f"timed/{i}", "v") for i in range(5)])
    d = backup.BACKUP_DIR
    with etcd_lb.connector() as c:
        for host in etcd_lb.topo.etcd:
            t = c(host)
            assert t.run(["systemctl", "is-enabled", backup.TIMER]).stdout.strip() == "enabled", host.name
            assert t.run(["systemctl", "is-active", backup.TIMER]).stdout.strip() == "active", host.name
            calendar = t.run(["systemctl", "show", "-p", "TimersCalendar", backup.TIMER]).stdout
            assert "03:00:00" in calendar, calendar  # etcd_backup_hour's default
        t = c(first)
        # An expired snapshot (older than etcd_backup_expiry, 7 days) with its sidecars, and one still kept.
        old, kept = f"{d}/{backup.PREFIX}{first.name}-old.db", f"{d}/{backup.PREFIX}{first.name}-kept.db"
        t.run(["mkdir", "-p", d], sudo=True)
        for path, age in ((old, "8 days ago"), (kept, "6 days ago")):
            for f in (path, f"{path}.sha256", f"{path}.json"):
                t.run(["touch", "-d", age, f], sudo=True)
        t.run(["systemctl", "start", backup.SERVICE], sudo=True, timeout=120)
        listing = t.run(["ls", "-1", d], sudo=True).stdout.split()
        assert Path(old).name not in listing and Path(kept).name in listing, listing
        (name,) = [n for n in listing if n.endswith(".db") and n not in (Path(kept).name,)]
        assert {f"{name}.sha256", f"{name}.json"} <= set(listing), listing
        assert t.run(["sh", "-c", f"cd {d} && sha256sum -c {name}.sha256"], sudo=True, check=False).ok
        snap = tmp_path / name
        for f in (name, f"{name}.sha256", f"{name}.json"):
            (tmp_path / f).write_bytes(t.get(f"{d}/{f}", sudo=True))
    problems, vouched = backup.check(snap, snap.read_bytes(), backup.store_identity(ctx))
    assert problems == [] and vouched
    workload.in_netns(etcd_lb.netns, lambda: client.put(eps[0], "after-timer", "v"))
    assert cli.main(kha(etcd_lb, "snapshot", "restore", str(snap))) == 0
    checker = workload.Checker(client, eps, netns=etcd_lb.netns)
    for ep, kv in checker.read_all("timed/").items():
        assert len(kv) == 5, ep
    for ep, kv in checker.read_all("after-timer").items():
        assert kv == {}, ep


def test_restore_refuses_a_corrupt_or_foreign_snapshot_with_nothing_stopped(
    etcd_lb: Installed, ctx: EtcdContext, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    snap = tmp_path / "etcd.db"
    assert cli.main(kha(etcd_lb, "snapshot", "save", str(snap))) == 0
    sums, meta = backup.sidecars(snap)
    assert sums.is_file() and meta.is_file()
    before = {m.name: m.id for m in members(ctx)}
    good = snap.read_bytes()
    capsys.readouterr()

    # One byte flipped: the hash beside it says so, before any node is touched.
    bad = bytearray(good)
    bad[len(bad) // 2] ^= 0xFF
    snap.write_bytes(bytes(bad))
    assert cli.main(kha(etcd_lb, "snapshot", "restore", str(snap))) == 2
    assert f"{sums}:1" in capsys.readouterr().err
    # The same without its sidecars (a file etcdctl saved): the trial restore on a node catches it.
    sums.unlink()
    meta_text = meta.read_text()
    meta.unlink()
    assert cli.main(kha(etcd_lb, "snapshot", "restore", str(snap))) == 2
    err = capsys.readouterr().err
    assert str(snap) in err and "nothing was stopped" in err, err
    # Whole, but of another cluster (another etcd CA).
    snap.write_bytes(good)
    meta.write_text(meta_text.replace('"etcd_ca": "sha256:', '"etcd_ca": "sha256:00'))
    assert cli.main(kha(etcd_lb, "snapshot", "restore", str(snap))) == 2
    assert "another cluster" in capsys.readouterr().err
    # Nothing changed: the same members, healthy.
    assert {m.name: m.id for m in members(ctx)} == before
    assert etcd_lb.etcd_healthy()
