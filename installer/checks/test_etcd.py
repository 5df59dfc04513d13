"""The external etcd cluster: every member healthy, the members exactly the inventory's [etcd] nodes,
every member's key-value store the same (``endpoint hashkv`` at one revision), and the daily snapshot
timer armed with no failed run. etcdctl runs on a member
as the healthcheck client (``installer.etcd.ctl``, the one etcdctl command line)."""

from __future__ import annotations

import pytest

from installer.checks import verdicts
from installer.checks.target import Target, output
from installer.etcd import backup, ctl
from installer.topology import Host

#: Members that just (re)started elect a leader and answer within the install's own bound.
DEADLINE_S = ctl.HEALTH_TIMEOUT_S
#: the timer is armed by the install itself: nothing to wait for but a slow answer
BACKUP_DEADLINE_S = 10.0


def _etcdctl(target: Target, *args: str) -> tuple[str, str]:
    """etcdctl ARGS -w json against every member, on the first member reachable: (stdout, evidence)."""
    urls = ctl.client_urls(target.topo.etcd)
    res = target.run_on_any(target.topo.etcd, ctl.argv(*args, "-w", "json", endpoints=urls))
    return res.stdout, output(res)


def _members(target: Target) -> list[str]:
    if not target.topo.etcd:
        pytest.skip("the inventory has no [etcd] nodes")
    return ctl.client_urls(target.topo.etcd)


def test_health(target: Target, note: list[str]) -> None:
    urls = _members(target)

    def look() -> str | None:
        text, said = _etcdctl(target, "endpoint", "health")
        problem = verdicts.health_problem(ctl.parse_endpoint_health(text), urls)
        return f"{problem}\n{said}" if problem else None

    target.until(look, DEADLINE_S)
    note.append(f"{len(urls)} members healthy")


def test_members(target: Target) -> None:
    _members(target)

    def look() -> str | None:
        text, said = _etcdctl(target, "member", "list")
        problem = verdicts.members_problem(ctl.parse_member_list(text), target.topo.etcd)
        return f"{problem}\n{said}" if problem else None

    target.until(look, DEADLINE_S)


def test_hashkv(target: Target, note: list[str]) -> None:
    urls = _members(target)
    seen: list[int] = []

    def look() -> str | None:
        text, said = _etcdctl(target, "endpoint", "status")
        revisions = [s.revision for s in ctl.parse_endpoint_status(text)]
        if not revisions:
            return f"no member told its revision\n{said}"
        # One revision every member has: the hashes cover the same history (a write in between would
        # otherwise make equal stores differ).
        text, said = _etcdctl(target, "endpoint", "hashkv", f"--rev={min(revisions)}")
        problem = verdicts.hashkv_problem(ctl.parse_hashkv(text), urls)
        seen[:] = [min(revisions)]
        return f"{problem}\n{said}" if problem else None

    target.until(look, DEADLINE_S)
    note.append(f"equal at revision {seen[0]}")


def test_backup(target: Target, note: list[str]) -> None:
    """The daily snapshot timer (``installer.etcd.backup``) armed on every member, and its last run, if it ran,
    succeeded: a backup that has been failing for weeks is found here, not on the day it is needed."""
    hosts = target.topo.etcd
    _members(target)

    def look(h: Host) -> str | None:
        timer = target.run(h, ["systemctl", "is-active", backup.TIMER]).stdout.strip()
        if timer != "active":
            return f"{backup.TIMER} is {timer or 'missing'}: no daily snapshot here (kha install puts it back)"
        props, _ = target.unit_properties(h, backup.SERVICE, "Result", "ExecMainStartTimestampMonotonic")
        ran = props.get("ExecMainStartTimestampMonotonic", "0") not in ("", "0")
        if ran and props.get("Result") != "success":
            return f"the last snapshot failed: {target.unit_state(h, backup.SERVICE)}"
        return None

    target.until(lambda: target.each(hosts, look), BACKUP_DEADLINE_S)
    note.append(f"{backup.TIMER} armed on {len(hosts)} members, at {target.topo.settings.etcd_backup_hour:02d}:00")
