"""The one etcd client (installer/etcd/ctl.py) and the loops built on it, without a cluster.

``EtcdNode`` stands in for a member's node: its login environment sets ETCDCTL_* variables (from
/etc/environment, as an admin's convenience), and its etcdctl behaves like 3.4's, which refuses a flag
whose variable is also set (shared/MACHINE.md "Services"). The install phases, day-2 and the client must
all work there.
"""

from __future__ import annotations

import ast
import json
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import pytest

from installer.context import InstallContext
from installer.errors import CommandError, EtcdError
from installer.etcd import ctl, membership, phases
from installer.etcd.ctl import MemberInfo
from installer.etcd.render import Member
from installer.pki.store import Store
from installer.remote import Result, Transport
from installer.state import StateDir
from installer.topology import Host
from tests.unit import variants

CLUSTER_ID = 0x8E9E05C52164694D

#: What an admin might put into a member's /etc/environment so that a bare `etcdctl` just works.
NODE_ENV = {"ETCDCTL_API": "3", "ETCDCTL_ENDPOINTS": "https://127.0.0.1:2379",
            "ETCDCTL_CACERT": "/etc/kubernetes/pki/etcd/ca.crt", "ETCDCTL_WRITE_OUT": "table"}


class Refused(AssertionError):
    """etcdctl 3.4's refusal, raised rather than answered so that a test fails at once, not after a wait."""


def split_env(argv: list[str]) -> tuple[dict[str, str], list[str]]:
    """What env(1) makes of ``argv`` on a node with ``NODE_ENV``: the environment (-u NAME unsets,
    NAME=VALUE sets) and the command it runs."""
    env = dict(NODE_ENV)
    if argv[0] != "env":
        return env, argv
    rest = argv[1:]
    while rest[0] == "-u" or "=" in rest[0]:
        if rest[0] == "-u":
            env.pop(rest[1], None)
            rest = rest[2:]
        else:
            name, value = rest[0].split("=", 1)
            env[name] = value
            rest = rest[1:]
    return env, rest


class EtcdNode(Transport):
    """A node where etcd answers: every member healthy, the member list of the given hosts."""

    as_root = True

    def __init__(self, name: str, hosts: Sequence[Host], dirs: set[str] | None = None) -> None:
        self.node = name
        self.hosts = hosts
        self.dirs = dirs or set()
        self.calls: list[list[str]] = []
        self.systemctl: list[list[str]] = []

    def _exec(self, argv: tuple[str, ...], stdin: bytes | None, timeout: float | None
              ) -> tuple[int | None, bytes, bytes]:
        env, command = split_env(list(argv))
        self.calls.append(command)
        code, out = self._answer(env, command)
        return code, out.encode(), b""

    def _answer(self, env: dict[str, str], command: list[str]) -> tuple[int, str]:
        match command:
            case ["true"]:
                return 0, ""
            case ["test", "-d", path]:
                return (0 if path in self.dirs else 1), ""
            case ["systemctl", *args]:
                self.systemctl.append(args)
                return 0, ""
            case ["etcdctl", *args]:
                return self._etcdctl(env, args)
        raise AssertionError(f"unexpected command on {self.node}: {command}")

    def _etcdctl(self, env: dict[str, str], args: list[str]) -> tuple[int, str]:
        flags = {a[2:].split("=", 1)[0]: a.split("=", 1)[-1] for a in args if a.startswith("--")}
        if "-w" in args:
            flags["write-out"] = args[args.index("-w") + 1]
        for flag in flags:
            var = "ETCDCTL_" + flag.upper().replace("-", "_")
            if var in env:
                raise Refused(f'pkg/flags: conflicting environment variable "{var}" is shadowed by corresponding '
                              f"command-line flag (either unset environment variable or disable flag): {args}")
        endpoints = flags.get("endpoints", env.get("ETCDCTL_ENDPOINTS", "")).split(",")
        words = [a for a in args if not a.startswith("-") and a != flags.get("write-out")]
        match words:
            case ["endpoint", "health"]:
                if flags.get("write-out") == "json":
                    return 0, json.dumps([{"endpoint": e, "health": True} for e in endpoints])
                return 0, "".join(f"{e} is healthy: successfully committed proposal\n" for e in endpoints)
            case ["endpoint", "status"]:
                header = {"cluster_id": CLUSTER_ID, "member_id": 1, "revision": 5}
                return 0, json.dumps([{"Endpoint": e, "Status": {"header": header, "leader": 1, "version": "3.4.23"}}
                                      for e in endpoints])
            case ["member", "list"]:
                members = [{"ID": i + 1, "name": h.name, "peerURLs": [ctl.member_of(h).peer_url],
                            "clientURLs": [ctl.member_of(h).client_url]} for i, h in enumerate(self.hosts)]
                return 0, json.dumps({"members": members})
        raise AssertionError(f"unexpected etcdctl command: {args}")

    def put(self, src: Any, remote_path: str, *, mode: int | None = None, owner: str | None = None,
            group: str | None = None, sudo: bool = False) -> None:
        raise AssertionError("not used")

    def get(self, remote_path: str, local_path: str | os.PathLike[str] | None = None, *, sudo: bool = False) -> bytes:
        raise AssertionError("not used")

    def close(self) -> None:
        pass


@dataclass(kw_only=True)
class OnEtcdNodes(InstallContext):
    """An install context whose transports are ``EtcdNode``s (nothing else of it is used here)."""

    nodes: dict[str, EtcdNode] = field(default_factory=dict)

    def transport(self, host: Host) -> EtcdNode:
        return self.nodes.setdefault(host.name, EtcdNode(host.name, self.topo.etcd))


@pytest.fixture
def ctx(tmp_path: Path) -> Iterator[OnEtcdNodes]:
    none = cast(Any, None)
    topo = variants.topo(tmp_path, cert_key_type="ecdsa")  # quick keys: the store is only a place to record in
    state = StateDir(tmp_path / "state")
    Store(state.pki, topo).init()
    yield OnEtcdNodes(topo=topo, inventory=tmp_path / "hosts.ini", state=state, connector=none, secrets=none)


def run_phase(name: str, ctx: InstallContext) -> None:
    """The install tree's etcd phase ``name`` (a phase is data: its run function, called as the runner would)."""
    phase = next(p for p in phases.PHASE.children if p.name == name)
    assert phase.run is not None
    phase.run(ctx)


# -- the command line ----------------------------------------------------------------------------
def test_install_waits_for_health_where_the_node_sets_etcdctl_variables(ctx: OnEtcdNodes) -> None:
    """The latent bug: the install phases had their own etcdctl line without ``env -u ETCDCTL_*``."""
    run_phase("wait", ctx)
    asked = [c for n in ctx.nodes.values() for c in n.calls if c[0] == "etcdctl"]
    assert asked and all("--endpoints=" + ",".join(ctl.client_urls(ctx.topo.etcd)) in c for c in asked)


def test_install_records_the_etcd_cluster_id_in_the_store(ctx: OnEtcdNodes) -> None:
    run_phase("wait", ctx)
    assert f'"etcd_cluster_id": "{CLUSTER_ID:x}"' in (ctx.state.pki / "identity.json").read_text()


def test_day2_client_works_where_the_node_sets_etcdctl_variables(ctx: OnEtcdNodes) -> None:
    admin = ctl.Admin(ctx, ctx.topo.etcd)
    assert [m.name for m in admin.member_list()] == [h.name for h in ctx.topo.etcd]
    assert admin.wait_healthy() < 5


def test_the_old_command_line_is_refused_there(ctx: OnEtcdNodes) -> None:
    """The fake node is strict enough to catch the bug: etcdctl without the unsets is refused."""
    node = ctx.transport(ctx.topo.etcd[0])
    with pytest.raises(Refused, match="ETCDCTL_ENDPOINTS"):
        node.run(["etcdctl", "--endpoints=https://10.56.56.11:2379", "endpoint", "health"], env={"ETCDCTL_API": "3"})
    assert node.run(ctl.argv("endpoint", "health", endpoints=["https://10.56.56.11:2379"])).ok


def test_offline_commands_get_the_same_environment() -> None:
    argv = ctl.offline("etcdutl", "snapshot", "status", "/s.db")
    assert argv[argv.index("etcdutl"):] == ["etcdutl", "snapshot", "status", "/s.db"]
    assert argv[:argv.index("etcdutl")] == ctl.argv(endpoints=[])[:argv.index("etcdutl")]
    assert all(v in argv for v in ctl.ETCDCTL_VARS) and "ETCDCTL_API=3" in argv


def test_snapshot_status_is_parsed() -> None:
    got = ctl.parse_snapshot_status('{"hash":672987823,"revision":2,"totalKey":5,"totalSize":20480}')
    assert got == ctl.SnapshotStatus(hash=672987823, revision=2, total_keys=5, total_size=20480)


# -- has data ------------------------------------------------------------------------------------
@pytest.mark.parametrize(("dirs", "has"), [
    ({"/var/lib/etcd/member"}, True),
    ({"/var/lib/etcd/lost+found", "/var/lib/etcd/default"}, False),  # a mount point; Debian's default member
    (set(), False),
])
def test_has_data_means_a_member_dir(dirs: set[str], has: bool) -> None:
    assert ctl.has_data(EtcdNode("n", [], dirs), "/var/lib/etcd") is has


# -- retrying what etcd refuses for now ----------------------------------------------------------
def answers(*said: tuple[int, str]) -> Callable[[], Result]:
    """An attempt that answers (exit code, stderr) in turn, the last one for ever."""
    left = list(said)

    def attempt() -> Result:
        code, err = left.pop(0) if len(left) > 1 else left[0]
        return Result("n", ("etcdctl", "member", "add"), code, "", err)

    return attempt


def test_transient_refusals_are_retried_until_success() -> None:
    res = ctl.retry_transient(answers((1, "Error: etcdserver: unhealthy cluster"), (0, "")), ctl.is_transient,
                              timeout=5, interval=0.01, error=ctl.failure, what="member add")
    assert res.ok


def test_a_final_refusal_ends_the_retry_at_once() -> None:
    res = ctl.retry_transient(answers((1, "Error: etcdserver: Peer URLs already exists")), ctl.is_transient,
                              timeout=60, interval=30, error=ctl.failure, what="member add")
    assert res.exit_code == 1 and "already exists" in res.stderr


def test_still_refused_after_the_timeout_raises_with_the_last_answer() -> None:
    with pytest.raises(CommandError, match="unhealthy cluster") as caught:
        ctl.retry_transient(answers((1, "Error: etcdserver: unhealthy cluster")), ctl.is_transient,
                            timeout=0.05, interval=0.01, error=ctl.failure, what="member add")
    assert caught.value.argv == ("etcdctl", "member", "add")


class ScriptedAdmin(ctl.Admin):
    """An Admin whose etcdctl answers come from a script (and whose learner serves when told)."""

    def __init__(self, ctx: InstallContext, *said: tuple[int, str]) -> None:
        super().__init__(ctx, ctx.topo.etcd)
        self.attempt = answers(*said)
        self.asked = 0
        self.serving_after = 0
        self.members: list[MemberInfo] = []

    def ctl(self, *args: str, **kw: Any) -> Result:
        self.asked += 1
        return self.attempt()

    def serving(self, url: str) -> bool:
        self.serving_after -= 1
        return self.serving_after < 0

    def member_list(self) -> list[MemberInfo]:
        return self.members


def test_reconfigure_already_done_is_not_an_error(ctx: OnEtcdNodes) -> None:
    admin = ScriptedAdmin(ctx, (1, "Error: etcdserver: unhealthy cluster"), (1, "Error: Peer URLs already exists"))
    assert admin.reconfigure("member", "add", "x", done_if=("Peer URLs already exists",)) is None
    assert admin.asked == 2


def test_reconfigure_refused_for_real_raises_the_command_error(ctx: OnEtcdNodes) -> None:
    admin = ScriptedAdmin(ctx, (1, "Error: etcdserver: the member has been permanently removed"))
    with pytest.raises(CommandError, match="permanently removed"):
        admin.reconfigure("member", "remove", "1")
    assert admin.asked == 1


LEARNER = MemberInfo(7, "", ("https://10.56.56.14:2380",), (), is_learner=True)


def test_promote_waits_for_the_learner_to_catch_up(ctx: Any) -> None:
    admin = ScriptedAdmin(ctx, (1, "Error: etcdserver: can only promote a learner member which is in sync with "
                                   "leader"), (0, "Member 7 promoted"))
    membership.promote(ctx, admin, LEARNER)
    assert admin.asked == 2


def test_promote_cut_short_after_it_went_through_is_done(ctx: Any) -> None:
    admin = ScriptedAdmin(ctx, (1, "Error: etcdserver: can only promote a learner member"))
    membership.promote(ctx, admin, LEARNER)
    assert admin.asked == 1


def test_promote_fails_fast_on_anything_else(ctx: Any) -> None:
    admin = ScriptedAdmin(ctx, (1, "Error: etcdserver: member not found"))
    with pytest.raises(EtcdError, match=r"not promoted.*member not found"):
        membership.promote(ctx, admin, LEARNER, timeout=60)
    assert admin.asked == 1


class SilentLearner(ctl.Admin):
    """A learner that serves nobody until restarted (its publish went into the snapshot it got, etcd issue
    8977); ``deaf``: not even then."""

    def __init__(self, ctx: InstallContext, node: EtcdNode, me: Member, *, deaf: bool = False) -> None:
        super().__init__(ctx, ctx.topo.etcd)
        self.node, self.me, self.deaf = node, me, deaf

    def _up(self) -> bool:
        return bool(self.node.systemctl) and not self.deaf

    def serving(self, url: str) -> bool:
        return self._up()

    def member_list(self) -> list[MemberInfo]:
        up = self._up()
        return [MemberInfo(7, self.me.name if up else "", (self.me.peer_url,), (self.me.client_url,) if up else (),
                           is_learner=True)]


def test_a_silent_learner_is_restarted_once_then_serves(ctx: OnEtcdNodes, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(membership, "PUBLISH_WAIT_S", 0.3)
    me, node = ctl.member_of(ctx.topo.host("node4")), EtcdNode("node4", [])
    entry = membership.wait_serving(SilentLearner(ctx, node, me), node, me)
    assert entry.started and entry.name == "node4"
    assert node.systemctl == [["restart", "--no-block", "etcd"]]


def test_a_learner_silent_after_its_restart_is_an_error(ctx: OnEtcdNodes, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(membership, "PUBLISH_WAIT_S", 0.3)
    monkeypatch.setattr(membership, "PUBLISH_RETRY_S", 0.5)
    me, node = ctl.member_of(ctx.topo.host("node4")), EtcdNode("node4", [])
    with pytest.raises(EtcdError, match="node4 does not serve clients 1s after starting"):
        membership.wait_serving(SilentLearner(ctx, node, me, deaf=True), node, me)
    assert node.systemctl == [["restart", "--no-block", "etcd"]]  # once, not again


# -- one command line ----------------------------------------------------------------------------
ROOT = Path(__file__).resolve().parents[2]


def etcdctl_lines(path: Path) -> list[int]:
    """Lines of ``path`` with a list literal that starts an etcdctl/etcdutl command line of its own
    (first element "etcdctl"/"etcdutl", or "ETCDCTL_API=3" anywhere in it)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.List) and node.elts:
            words = [e.value for e in node.elts if isinstance(e, ast.Constant) and isinstance(e.value, str)]
            first = node.elts[0]
            if "ETCDCTL_API=3" in words or (isinstance(first, ast.Constant) and first.value in ("etcdctl", "etcdutl")):
                found.append(node.lineno)
    return found


def test_etcdctl_is_spelled_once() -> None:
    """Every etcdctl kha runs comes from installer/etcd/ctl.py (a second line once lacked its env -u)."""
    files = [p for d in ("installer", "scenarios", "kha", "bench") for p in sorted((ROOT / d).rglob("*.py"))]
    offenders = {str(p.relative_to(ROOT)): lines for p in files
                 if p != ROOT / "installer" / "etcd" / "ctl.py" and (lines := etcdctl_lines(p))}
    assert offenders == {}
