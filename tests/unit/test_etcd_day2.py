"""Day-2 etcd logic without a cluster: etcdctl's JSON, quorum arithmetic and refusal, the initial cluster a
joining member gets, the restore argv, the status table, and the workload's history and checker."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import pytest

from installer.errors import ConfigError, EtcdError, QuorumError
from installer.etcd import ctl, membership, snapshot, status
from installer.etcd.ctl import EndpointHealth, MemberInfo
from installer.etcd.render import Member
from kha import cli
from scenarios import workload
from scenarios.workload import ClientError, Op, Outcome

# Shaped like etcdctl 3.4.23's own output (captured on the m-master topology); IDs above 2**63 on purpose.
MEMBER_LIST = json.dumps({
    "header": {"cluster_id": 7712366139105025824, "member_id": 14091769770350181968, "raft_term": 2},
    "members": [
        {"ID": 8413712911373916735, "name": "10.56.56.11", "peerURLs": ["https://10.56.56.11:2380"],
         "clientURLs": ["https://10.56.56.11:2379"]},
        {"ID": 9599403758207880726, "name": "10.56.56.12", "peerURLs": ["https://10.56.56.12:2380"],
         "clientURLs": ["https://10.56.56.12:2379"]},
        {"ID": 12910332308506870376, "peerURLs": ["https://10.56.56.14:2380"], "isLearner": True},
        {"ID": 14091769770350181968, "name": "10.56.56.13", "peerURLs": ["https://10.56.56.13:2380"],
         "clientURLs": ["https://10.56.56.13:2379"]},
    ]})

ENDPOINT_STATUS = json.dumps([
    {"Endpoint": "https://10.56.56.12:2379", "Status": {
        "header": {"cluster_id": 7712366139105025824, "member_id": 9599403758207880726, "revision": 7,
                   "raft_term": 4},
        "version": "3.4.23", "dbSize": 20480, "leader": 14091769770350181968, "raftIndex": 10, "raftTerm": 4,
        "raftAppliedIndex": 10, "dbSizeInUse": 16384}},
    {"Endpoint": "https://10.56.56.13:2379", "Status": {
        "header": {"cluster_id": 7712366139105025824, "member_id": 14091769770350181968, "revision": 7,
                   "raft_term": 4},
        "version": "3.4.23", "dbSize": 24576, "leader": 14091769770350181968, "raftIndex": 10, "raftTerm": 4,
        "raftAppliedIndex": 10, "dbSizeInUse": 16384}},
])

ENDPOINT_HEALTH = json.dumps([
    {"endpoint": "https://10.56.56.13:2379", "health": True, "took": "8.086639ms"},
    {"endpoint": "https://10.56.56.12:2379", "health": True, "took": "8.183603ms"},
    {"endpoint": "https://10.56.56.11:2379", "health": False, "took": "5.001309209s",
     "error": "context deadline exceeded"},
])

HASHKV = json.dumps([
    {"Endpoint": "https://10.56.56.11:2379", "HashKV": {
        "header": {"cluster_id": 1, "member_id": 2, "revision": 40, "raft_term": 2}, "hash": 1084519789,
        "compact_revision": -1}},
])


# -- parsing -------------------------------------------------------------------------------------
def test_member_list_keeps_big_ids_learners_and_unstarted_members() -> None:
    members = ctl.parse_member_list(MEMBER_LIST)
    assert [m.name for m in members] == ["10.56.56.11", "10.56.56.12", "", "10.56.56.13"]
    learner = members[2]
    assert learner.is_learner and not learner.started and learner.client_urls == ()
    assert learner.hex_id == "b32ab6d52ccd0268"  # what `member add` printed for it
    assert members[0].hex_id == "74c38350ac8f5a3f"
    assert not members[0].is_learner and members[0].started


def test_endpoint_status_names_the_leader() -> None:
    statuses = ctl.parse_endpoint_status(ENDPOINT_STATUS)
    assert [s.is_leader for s in statuses] == [False, True]
    assert statuses[1].revision == 7 and statuses[1].raft_term == 4 and statuses[1].db_size == 24576
    assert ctl.parse_endpoint_status("") == []  # every endpoint down: etcdctl prints nothing on stdout


def test_endpoint_health_keeps_the_error_of_an_unhealthy_member() -> None:
    health = {h.endpoint: h for h in ctl.parse_endpoint_health(ENDPOINT_HEALTH)}
    assert health["https://10.56.56.11:2379"] == EndpointHealth("https://10.56.56.11:2379", False,
                                                                "context deadline exceeded")
    assert health["https://10.56.56.12:2379"].healthy


def test_hashkv_gives_hash_and_revision() -> None:
    assert ctl.parse_hashkv(HASHKV) == {"https://10.56.56.11:2379": (1084519789, 40)}


def test_garbage_is_an_etcd_error_not_a_traceback() -> None:
    with pytest.raises(EtcdError, match="member list"):
        ctl.parse_member_list("Error: context deadline exceeded")


# -- quorum --------------------------------------------------------------------------------------
@pytest.mark.parametrize(("n", "q"), [(1, 1), (2, 2), (3, 2), (4, 3), (5, 3), (7, 4)])
def test_quorum_is_a_strict_majority(n: int, q: int) -> None:
    assert membership.quorum(n) == q


THREE = ["a", "b", "c"]


@pytest.mark.parametrize(("voters", "healthy", "removing", "refused"), [
    (THREE, THREE, ["c"], False),               # healthy 3 → healthy 2
    (THREE, ["a", "b"], ["c"], False),          # remove the dead one: 2 of 2 left
    (THREE, ["a", "b"], ["a"], True),           # remove a healthy one while c is dead: 1 of 2 left
    (THREE, ["a"], ["c"], True),                # two dead: nothing can be committed at all
    (["a", "b", "c", "d"], THREE, ["d"], False),
    (["a", "b", "c", "d", "e"], THREE, ["a"], True),   # 2 healthy of 4 < 3
    (["a", "b", "c", "d", "e"], THREE, ["d", "e"], False),
    (THREE, THREE, ["x"], False),               # not a voter (a learner, or gone): nothing changes
])
def test_removal_refused_only_when_the_healthy_majority_breaks(
    voters: list[str], healthy: list[str], removing: list[str], refused: bool
) -> None:
    assert bool(membership.removal_problems(voters, healthy, removing)) is refused


def test_removal_problems_say_what_breaks() -> None:
    problems = membership.removal_problems(THREE, ["a"], ["c"])
    assert any("only 1 of 3 voting members are healthy" in p for p in problems)
    assert any("leaves 1 healthy of 2" in p and "quorum of 2" in p for p in problems)


class FakeAdmin:
    """The one Admin call ``check_removal`` makes: health of some client URLs."""

    def __init__(self, down: Sequence[str] = ()) -> None:
        self.down = set(down)

    def health(self, urls: Sequence[str]) -> dict[str, EndpointHealth]:
        return {u: EndpointHealth(u, u not in self.down, "context deadline exceeded" if u in self.down else "")
                for u in urls}


def _members(*names: str, learner: str | None = None) -> list[MemberInfo]:
    return [MemberInfo(i + 1, n, (f"https://{n}:2380",), (f"https://{n}:2379",), is_learner=n == learner)
            for i, n in enumerate(names)]


def test_check_removal_refuses_unless_forced() -> None:
    members = _members("a", "b", "c")
    admin: Any = FakeAdmin(down=["https://b:2379", "https://c:2379"])
    with pytest.raises(QuorumError, match=r"refused: .*--force"):
        membership.check_removal(admin, members, [members[2]], force=False)
    membership.check_removal(admin, members, [members[2]], force=True)  # forced: warned, not refused


def test_removing_every_voter_is_refused_even_when_forced() -> None:
    members = _members("a", "b", learner="b")
    with pytest.raises(QuorumError, match="every voting etcd member"):
        membership.check_removal(FakeAdmin(), members, [members[0]], force=True)  # type: ignore[arg-type]


def test_removing_a_learner_never_costs_quorum() -> None:
    members = _members("a", "b", "c", "d", learner="d")
    admin: Any = FakeAdmin(down=["https://b:2379"])
    membership.check_removal(admin, members, [members[3]], force=False)


# -- joining -------------------------------------------------------------------------------------
def test_initial_cluster_for_an_added_learner_uses_its_own_name() -> None:
    members = ctl.parse_member_list(MEMBER_LIST)
    got = membership.join_initial_cluster(members, Member("10.56.56.14", "10.56.56.14"))
    # The same set etcdctl's `member add` printed, in member-list order.
    assert got == ("10.56.56.11=https://10.56.56.11:2380,10.56.56.12=https://10.56.56.12:2380,"
                   "10.56.56.14=https://10.56.56.14:2380,10.56.56.13=https://10.56.56.13:2380")


def test_initial_cluster_for_a_replaced_member_not_yet_listed_appends_it() -> None:
    members = [m for m in ctl.parse_member_list(MEMBER_LIST) if m.name != "10.56.56.11" and m.started]
    got = membership.join_initial_cluster(members, Member("10.56.56.11", "10.56.56.11"))
    assert got.split(",") == ["10.56.56.12=https://10.56.56.12:2380", "10.56.56.13=https://10.56.56.13:2380",
                              "10.56.56.11=https://10.56.56.11:2380"]


def test_another_unstarted_member_stops_the_join_with_what_to_do() -> None:
    members = ctl.parse_member_list(MEMBER_LIST)
    with pytest.raises(EtcdError, match=r"b32ab6d52ccd0268.*never started.*member remove b32ab6d52ccd0268"):
        membership.join_initial_cluster(members, Member("10.56.56.15", "10.56.56.15"))


def test_find_member_matches_an_unstarted_member_by_peer_url() -> None:
    members = ctl.parse_member_list(MEMBER_LIST)
    found = ctl.find_member(members, Member("10.56.56.14", "10.56.56.14"))
    assert found is not None and found.is_learner
    assert ctl.find_member(members, Member("10.56.56.99", "10.56.56.99")) is None


# -- restore -------------------------------------------------------------------------------------
def test_restore_argv_names_the_member_the_cluster_and_a_fresh_token() -> None:
    ms = [Member("n1", "10.0.0.1"), Member("n2", "10.0.0.2"), Member("n3", "10.0.0.3")]
    argv = snapshot.restore_argv("/var/tmp/s.db", ms[1], ms, token="kha-x-restore-1", data_dir="/var/lib/etcd/r")
    assert argv[:4] == ["etcdctl", "snapshot", "restore", "/var/tmp/s.db"]
    assert "--name=n2" in argv and "--initial-advertise-peer-urls=https://10.0.0.2:2380" in argv
    assert ("--initial-cluster=n1=https://10.0.0.1:2380,n2=https://10.0.0.2:2380,n3=https://10.0.0.3:2380"
            in argv)
    assert "--initial-cluster-token=kha-x-restore-1" in argv and "--data-dir=/var/lib/etcd/r" in argv
    assert not any(a.startswith("--bump-revision") for a in argv)  # etcdctl 3.4 has no such flag
    bumped = snapshot.restore_argv("/s.db", ms[0], ms, token="t", data_dir="/d", tool="etcdutl", bump=1_000_000_000)
    assert bumped[0] == "etcdutl" and "--bump-revision=1000000000" in bumped and "--mark-compacted" in bumped


def test_restore_tokens_are_fresh_each_time() -> None:
    a, b = snapshot.restore_token("kubernetes"), snapshot.restore_token("kubernetes")
    assert a != b and a.startswith("kha-kubernetes-restore-")


def test_etcdctl_argv_unsets_the_variables_that_would_conflict_with_its_flags() -> None:
    argv = ctl.argv("member", "list", endpoints=["https://a:2379", "https://b:2379"])
    assert argv[0] == "env" and argv[argv.index("ETCDCTL_ENDPOINTS") - 1:][:2] == ["-u", "ETCDCTL_ENDPOINTS"]
    assert "--endpoints=https://a:2379,https://b:2379" in argv and argv[-2:] == ["member", "list"]


@pytest.mark.parametrize("path", ["/", "/var", "relative/etcd", "/etcd"])
def test_a_data_dir_that_is_not_dedicated_is_never_wiped(path: str) -> None:
    with pytest.raises(ConfigError, match="will not wipe"):
        membership.check_data_dir(path)


# -- status --------------------------------------------------------------------------------------
def test_status_table_marks_leader_learner_and_health() -> None:
    members = ctl.parse_member_list(MEMBER_LIST)
    statuses = ctl.parse_endpoint_status(ENDPOINT_STATUS)
    health = {h.endpoint: h for h in ctl.parse_endpoint_health(ENDPOINT_HEALTH)}
    rows = status.status_rows(members, statuses, health)
    assert [r.leader for r in rows] == [False, False, False, True]
    assert rows[0].health == "unhealthy: context deadline exceeded" and rows[0].revision is None
    assert rows[2].learner and rows[2].health == "not started"
    lines = status.format_status(rows)
    assert lines[0].split()[:2] == ["NAME", "ID"]
    assert "10.56.56.13" in lines[4] and " yes " in lines[4] and "24.0 kB" in lines[4] and "healthy" in lines[4]
    assert "learner" in lines[3]


def test_cli_has_every_etcd_action() -> None:
    parser = cli.build_parser()
    args = parser.parse_args(["etcd", "replace", "10.56.56.11", "-i", "x.ini"])
    assert args.node == "10.56.56.11" and not args.dry_run
    args = parser.parse_args(["etcd", "snapshot", "restore", "s.db", "-i", "x.ini", "--ssh-config", "c"])
    assert str(args.file) == "s.db" and args.ssh_config == "c"
    assert parser.parse_args(["etcd", "remove", "-i", "x.ini", "--force"]).force
    for action in ("status", "add"):
        assert parser.parse_args(["etcd", action, "-i", "x.ini"]).handler is not None


# -- workload ------------------------------------------------------------------------------------
def _op(i: int, outcome: Outcome, start: float, end: float) -> Op:
    return Op(i, f"k/{i:06d}", f"v{i}", outcome, start, end, "https://a:2379")


def test_gaps_measure_the_stretch_without_acknowledged_writes() -> None:
    history = [_op(1, Outcome.OK, 0.0, 0.01), _op(2, Outcome.FAILED, 0.02, 0.03), _op(3, Outcome.UNKNOWN, 0.04, 1.04),
               _op(4, Outcome.OK, 1.05, 1.2), _op(5, Outcome.OK, 1.21, 1.25)]
    longest, windows = workload.gaps(history, threshold=0.5)
    assert longest == pytest.approx(1.19)
    assert len(windows) == 1 and windows[0].start == pytest.approx(0.01) and windows[0].end == pytest.approx(1.2)


class FakeEtcd:
    """Stands in for ``EtcdHTTP``: one store per endpoint; ``refuse`` endpoints fail before sending,
    ``hang`` endpoints take the write and time out (so the write lands, unknown to the client)."""

    def __init__(self, endpoints: Sequence[str], refuse: Sequence[str] = (), hang: Sequence[str] = ()) -> None:
        self.stores: dict[str, dict[str, str]] = {e: {} for e in endpoints}
        self.refuse, self.hang = set(refuse), set(hang)

    def put(self, endpoint: str, key: str, value: str, timeout: float | None = None) -> int:
        if endpoint in self.refuse:
            raise ClientError("connect: refused", definite=True)
        for store in self.stores.values():
            store[key] = value
        if endpoint in self.hang:
            raise ClientError("TimeoutError: timed out", definite=False)
        return 1

    def range(self, endpoint: str, prefix: str, timeout: float | None = None) -> dict[str, str]:
        return {k: v for k, v in self.stores[endpoint].items() if k.startswith(prefix)}

    def close(self) -> None:
        pass


def test_writer_records_outcomes_and_checker_finds_lost_writes() -> None:
    eps = ["https://a:2379", "https://b:2379", "https://c:2379"]
    fake = FakeEtcd(eps, refuse=["https://b:2379"], hang=["https://c:2379"])
    client: Any = fake
    history = workload.Writer(client, eps, count=9, interval=0.0, mode="round-robin").start().join()
    assert [op.outcome for op in history[:3]] == [Outcome.OK, Outcome.FAILED, Outcome.UNKNOWN]
    del fake.stores["https://a:2379"]["k/000004"]  # a member that lost an acknowledged write
    report = workload.Checker(client, eps).check(history)
    assert report.ok == 3 and report.failed == 3 and report.unknown == 3 and report.unknown_present == 3
    assert report.missing["https://a:2379"] == ["k/000004"] and report.lost == 1 and not report.valid


def test_failover_writer_tries_the_next_endpoint() -> None:
    eps = ["https://a:2379", "https://b:2379"]
    client: Any = FakeEtcd(eps, refuse=["https://a:2379"])
    history = workload.Writer(client, eps, count=4, interval=0.0).start().join()
    assert all(op.outcome is Outcome.OK and op.endpoint == "https://b:2379" for op in history)
    assert [op.attempts for op in history] == [2, 1, 2, 1]
    report = workload.Checker(client, eps).check(history)
    assert report.valid and report.lost == 0


def test_writer_stops_by_itself_on_its_time_bound() -> None:
    eps = ["https://a:2379"]
    client: Any = FakeEtcd(eps)
    history = workload.Writer(client, eps, duration=0.2, interval=0.01).start().join(timeout=5)
    assert 5 < len(history) < 40


def test_prefix_end_is_the_next_key_after_every_key_with_the_prefix() -> None:
    assert workload.prefix_end("k/") == "k0"
