"""The one etcd client: how kha runs etcdctl on a member and reads what it prints.

Owns the etcdctl command line (``argv`` for a command that talks to members, ``offline`` for one that
only reads or writes files), the parsers of its JSON (``member list``, ``endpoint status``, ``endpoint
health``, ``endpoint hashkv``), ``Admin`` — etcdctl over SSH on the first reachable member — with the one
wait until members are healthy, the one "does this node hold member data" check, and the one retry of a
request etcd refuses only for now. The install phases (``installer.etcd.phases``), the day-2 operations
(``membership``, ``snapshot``, ``status``), the faults and the tests all go through here.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from core import waiting
from installer.context import InstallContext
from installer.errors import CommandError, EtcdError, RemoteError
from installer.etcd import render
from installer.remote import Result, Transport
from installer.topology import Host

log = logging.getLogger(__name__)

#: etcdctl 3.4 refuses a flag whose ETCDCTL_* variable is also set ("conflicting environment variable
#: is shadowed by corresponding command-line flag", shared/MACHINE.md "Services"); a node's
#: /etc/environment may set them, so every etcdctl kha runs unsets the ones whose flags it passes.
ETCDCTL_VARS = ("ETCDCTL_ENDPOINTS", "ETCDCTL_CACERT", "ETCDCTL_CERT", "ETCDCTL_KEY",
                "ETCDCTL_DIAL_TIMEOUT", "ETCDCTL_COMMAND_TIMEOUT", "ETCDCTL_WRITE_OUT")
_ENV = ("env", *(a for v in ETCDCTL_VARS for a in ("-u", v)), "ETCDCTL_API=3")

#: One bound for every "until the members are healthy" wait (install bootstrap and rolling restart,
#: join, remove, replace, restore, a healed fault): each waits for the same thing — members that just
#: (re)started elect a leader and answer. Healthy takes ~0.4 s on LXC (shared/MACHINE.md); the bound only
#: matters when something is wrong. It is the install's 90 s, sized for the slowest nodes kha runs on
#: (TCG VMs); day-2 had 60 s for no reason of its own, and a longer bound only delays a failure report.
HEALTH_TIMEOUT_S = 90.0
#: Membership changes right after a (re)start are refused with "unhealthy cluster" until every member
#: has been active ~5 s (etcd's --strict-reconfig-check; shared/MACHINE.md "Services"): retry that long
#: and a bit more.
RECONFIG_RETRY_S = 20.0
#: How long a node that could not be reached over SSH is left alone before it is tried again.
DEAD_FOR_S = 60.0
#: What etcd answers to a membership change it refuses only for now (a member just started, an election).
TRANSIENT = ("unhealthy cluster", "not enough started members", "etcdserver: request timed out",
             "etcdserver: leader changed", "context deadline exceeded", "no leader")


# -- the command line ----------------------------------------------------------------------------
def argv(*args: str, endpoints: Sequence[str], command_timeout: str = "5s", dial_timeout: str = "3s",
         cacert: str = f"{render.PKI_DIR}/ca.crt", cert: str = f"{render.PKI_DIR}/healthcheck-client.crt",
         key: str = f"{render.PKI_DIR}/healthcheck-client.key") -> list[str]:
    """etcdctl (v3 API) talking to ``endpoints`` as the healthcheck client whose certificate every
    member holds (or the client given), with the conflicting ETCDCTL_* variables unset."""
    return [*_ENV, "etcdctl", f"--endpoints={','.join(endpoints)}", f"--cacert={cacert}", f"--cert={cert}",
            f"--key={key}", f"--dial-timeout={dial_timeout}", f"--command-timeout={command_timeout}", *args]


def offline(*command: str) -> list[str]:
    """A command that talks to no member (``etcdctl``/``etcdutl snapshot status|restore``), in the same
    environment as ``argv``."""
    return [*_ENV, *command]


# -- what etcdctl says, parsed -------------------------------------------------------------------
@dataclass(frozen=True)
class MemberInfo:
    """One entry of ``etcdctl member list -w json``. ``name`` is empty until the member first started."""

    id: int
    name: str
    peer_urls: tuple[str, ...]
    client_urls: tuple[str, ...]
    is_learner: bool = False

    @property
    def hex_id(self) -> str:
        """The form ``member remove``/``promote`` accept (the JSON carries the ID in decimal)."""
        return f"{self.id:x}"

    @property
    def started(self) -> bool:
        return bool(self.name)


@dataclass(frozen=True)
class EndpointStatus:
    endpoint: str
    member_id: int
    cluster_id: int
    leader: int
    raft_term: int
    raft_index: int
    raft_applied_index: int
    revision: int
    db_size: int
    version: str
    is_learner: bool = False

    @property
    def is_leader(self) -> bool:
        return self.leader != 0 and self.leader == self.member_id


@dataclass(frozen=True)
class EndpointHealth:
    endpoint: str
    healthy: bool
    error: str = ""


def _json(text: str, what: str) -> Any:
    try:
        return json.loads(text)
    except ValueError as exc:
        raise EtcdError(f"could not read `etcdctl {what} -w json` output ({exc}): {text[:200]!r}") from None


def parse_member_list(text: str) -> list[MemberInfo]:
    """``member list -w json``; protobuf JSON leaves out empty fields (no name, no client URLs, not a learner)."""
    data = _json(text, "member list")
    return [MemberInfo(id=int(m["ID"]), name=str(m.get("name", "")),
                       peer_urls=tuple(m.get("peerURLs", ())), client_urls=tuple(m.get("clientURLs", ())),
                       is_learner=bool(m.get("isLearner", False)))
            for m in data.get("members", [])]


def parse_endpoint_status(text: str) -> list[EndpointStatus]:
    """``endpoint status -w json``: one entry per endpoint that answered (the others only go to stderr)."""
    if not text.strip():
        return []
    out = []
    for e in _json(text, "endpoint status"):
        s = e["Status"]
        h = s.get("header", {})
        out.append(EndpointStatus(
            endpoint=str(e["Endpoint"]), member_id=int(h.get("member_id", 0)), cluster_id=int(h.get("cluster_id", 0)),
            leader=int(s.get("leader", 0)), raft_term=int(s.get("raftTerm", h.get("raft_term", 0))),
            raft_index=int(s.get("raftIndex", 0)), raft_applied_index=int(s.get("raftAppliedIndex", 0)),
            revision=int(h.get("revision", 0)), db_size=int(s.get("dbSize", 0)), version=str(s.get("version", "")),
            is_learner=bool(s.get("isLearner", False))))
    return out


def parse_endpoint_health(text: str) -> list[EndpointHealth]:
    if not text.strip():
        return []
    return [EndpointHealth(str(e["endpoint"]), bool(e.get("health", False)), str(e.get("error", "")))
            for e in _json(text, "endpoint health")]


def parse_hashkv(text: str) -> dict[str, tuple[int, int]]:
    """``endpoint hashkv -w json`` → {endpoint: (hash, revision)}."""
    if not text.strip():
        return {}
    return {str(e["Endpoint"]): (int(e["HashKV"]["hash"]), int(e["HashKV"].get("header", {}).get("revision", 0)))
            for e in _json(text, "endpoint hashkv")}


@dataclass(frozen=True)
class SnapshotStatus:
    hash: int
    revision: int
    total_keys: int
    total_size: int


def parse_snapshot_status(text: str) -> SnapshotStatus:
    """``snapshot status FILE -w json``."""
    d = _json(text, "snapshot status")
    return SnapshotStatus(hash=int(d["hash"]), revision=int(d["revision"]), total_keys=int(d["totalKey"]),
                          total_size=int(d.get("totalSize", 0)))


# -- who is who ----------------------------------------------------------------------------------
def member_of(host: Host) -> render.Member:
    """What kha makes of an inventory host as an etcd member (name, peer and client URLs)."""
    return render.Member(host.name, str(host.address))


def client_urls(hosts: Iterable[Host]) -> list[str]:
    return [member_of(h).client_url for h in hosts]


def host_of(hosts: Iterable[Host], member: MemberInfo) -> Host | None:
    """The inventory host behind a member the cluster lists (matched by peer URL)."""
    return next((h for h in hosts if member_of(h).peer_url in member.peer_urls), None)


def find_member(members: Iterable[MemberInfo], m: render.Member) -> MemberInfo | None:
    """The cluster's entry for ``m``: by peer URL (an unstarted member has no name yet), else by name."""
    members = list(members)
    for x in members:
        if m.peer_url in x.peer_urls:
            return x
    for x in members:
        if x.name == m.name:
            return x
    return None


# -- a node's data -------------------------------------------------------------------------------
def has_data(t: Transport, data_dir: str) -> bool:
    """Whether the node holds an etcd member's data: ``DATA/member`` (its WAL and snapshots).

    That is what etcd itself goes by: with it, etcd restarts from its own data and ignores the
    ``--initial-cluster*`` settings; without it, it bootstraps from them. Anything else in the data dir
    (a dedicated filesystem's lost+found, Debian's default member under ``DATA/default``) is not this
    member's data and does not count.
    """
    return t.run(["test", "-d", f"{data_dir}/member"], sudo=True, check=False).ok


# -- retrying what etcd refuses for now ----------------------------------------------------------
def retry_transient(attempt: Callable[[], Result], transient: Callable[[str], bool], *, timeout: float,
                    interval: float, error: Callable[[Result], BaseException], what: str) -> Result:
    """Run ``attempt`` until its answer is final — success, or anything ``transient`` does not call a
    refusal for now — and return that result; still refused after ``timeout`` s: raise ``error(result)``.

    A thin layer on ``core.waiting.until``, because until's check answers with words and its error is
    made from them, while a membership change needs etcdctl's result itself: to tell "already done"
    from a real refusal, and to raise with its argv and output.
    """
    last: list[Result] = []

    def final() -> str | None:
        res = attempt()
        last[:] = [res]
        said = res.stderr + res.stdout
        if res.ok or not transient(said):
            return None
        log.info("etcdctl %s refused for now, retrying: %s", what, said.strip().splitlines()[-1])
        return said

    waiting.until(final, timeout=timeout, interval=interval, error=lambda _: error(last[0]))
    return last[0]


def is_transient(said: str) -> bool:
    return any(r in said for r in TRANSIENT)


def failure(res: Result) -> CommandError:
    """The error ``res.check()`` raises, as a value."""
    return CommandError(res.node, res.argv, res.exit_code, res.stdout, res.stderr, sudo=res.sudo)


# -- etcdctl on a member -------------------------------------------------------------------------
class Admin:
    """etcdctl over SSH on the first reachable member of ``candidates`` (skipping ``avoid``).

    A node that cannot be reached is not tried again for ``DEAD_FOR_S``, so a dead node costs one SSH
    timeout per command, not one per etcdctl call, and a node that comes back is used again later.
    etcdctl runs through sudo: the healthcheck client's key is root's alone (0600).
    """

    def __init__(self, ctx: InstallContext, candidates: Sequence[Host], *, avoid: Collection[str] = ()) -> None:
        self.ctx = ctx
        self.candidates = [h for h in candidates if h.name not in avoid]
        self.avoid = set(avoid)
        self._dead: dict[str, float] = {}
        self._runner: Host | None = None
        if not self.candidates:
            raise EtcdError("no etcd member left to run etcdctl on: every [etcd] node is being removed or replaced")

    def is_dead(self, name: str) -> bool:
        since = self._dead.get(name)
        return since is not None and time.monotonic() - since < DEAD_FOR_S

    def mark_dead(self, name: str) -> None:
        self._dead[name] = time.monotonic()

    def reachable(self, host: Host) -> Transport | None:
        """A transport to ``host``, or None when it cannot be reached (the reason is logged)."""
        if self.is_dead(host.name):
            return None
        for attempt in (1, 2):
            started = time.monotonic()
            try:
                t = self.ctx.transport(host)
                t.run(["true"], timeout=30)
                return t
            except RemoteError as exc:
                # A quick refusal (sshd still starting after a boot) is worth one more try; a timeout is not.
                if attempt == 1 and time.monotonic() - started < 3.0:
                    time.sleep(1.0)
                    continue
                log.warning("%s: not reachable: %s", host.name, exc)
                break
        self.mark_dead(host.name)
        return None

    def runner(self) -> tuple[Host, Transport]:
        if self._runner is not None and not self.is_dead(self._runner.name):
            return self._runner, self.ctx.transport(self._runner)
        for host in self.candidates:
            t = self.reachable(host)
            if t is not None:
                self._runner = host
                return host, t
        tried = ", ".join(h.name for h in self.candidates)
        raise EtcdError(f"no etcd member reachable over SSH (tried {tried}); check the nodes and --ssh-config")

    def endpoints(self) -> list[str]:
        """Client URLs of the candidates, the runner's own first (it answers without a network hop)."""
        runner, _ = self.runner()
        return client_urls([runner, *(h for h in self.candidates if h != runner)])

    def ctl(self, *args: str, endpoints: Sequence[str] | None = None, check: bool = True,
            command_timeout: str = "5s", dial_timeout: str = "3s", timeout: float = 60.0) -> Result:
        for _attempt in range(len(self.candidates)):
            host, t = self.runner()
            cmd = argv(*args, endpoints=endpoints or self.endpoints(), command_timeout=command_timeout,
                       dial_timeout=dial_timeout)
            try:
                return t.run(cmd, sudo=True, check=check, timeout=timeout)
            except CommandError:
                raise
            except RemoteError as exc:  # the runner itself went away: try the next member
                log.warning("%s: lost while running etcdctl: %s", host.name, exc)
                self.mark_dead(host.name)
        raise EtcdError("no etcd member reachable over SSH to run etcdctl on")

    # -- queries ---------------------------------------------------------------------------------
    def member_list(self) -> list[MemberInfo]:
        return parse_member_list(self.ctl("member", "list", "-w", "json").stdout)

    def statuses(self, urls: Sequence[str]) -> list[EndpointStatus]:
        if not urls:
            return []
        return parse_endpoint_status(self.ctl("endpoint", "status", "-w", "json", endpoints=urls, check=False).stdout)

    def health(self, urls: Sequence[str]) -> dict[str, EndpointHealth]:
        if not urls:
            return {}
        res = self.ctl("endpoint", "health", "-w", "json", endpoints=urls, check=False)
        try:
            seen = {h.endpoint: h for h in parse_endpoint_health(res.stdout)}
        except EtcdError:
            seen = {}
        why = res.stderr.strip().splitlines()[-1] if res.stderr.strip() else "no answer"
        return {u: seen.get(u, EndpointHealth(u, False, why)) for u in urls}

    def hashkv(self, revision: int) -> dict[str, tuple[int, int]]:
        """``endpoint hashkv --cluster --rev=REV``: every member's hash of the key space at one revision."""
        return parse_hashkv(self.ctl("endpoint", "hashkv", "--cluster", f"--rev={revision}", "-w", "json").stdout)

    def hashkv_at_common_revision(self, urls: Sequence[str]) -> tuple[int, dict[str, tuple[int, int]]]:
        """The lowest revision every member in ``urls`` has reached, and each member's hash at it: the same key
        space on every member means equal hashes (``hashkv --rev`` compares the MVCC history up to it)."""
        rev = min(s.revision for s in self.statuses(urls))
        return rev, self.hashkv(rev)

    def serving(self, url: str) -> bool:
        """Whether the member at ``url`` answers a client request now (short timeouts: this is a poll)."""
        res = self.ctl("endpoint", "status", endpoints=[url], check=False, command_timeout="1s",
                       dial_timeout="1s", timeout=10)
        return res.ok

    def leader(self) -> tuple[MemberInfo, EndpointStatus]:
        """The member the cluster calls its leader; EtcdError when no reachable member knows one."""
        members = self.member_list()
        statuses = self.statuses([u for m in members for u in m.client_urls])
        for s in statuses:
            if s.leader:
                for m in members:
                    if m.id == s.leader:
                        return m, s
        raise EtcdError("no etcd member reports a leader; check `kha etcd status`")

    def wait_healthy(self, urls: Sequence[str] | None = None, timeout: float = HEALTH_TIMEOUT_S) -> float:
        """Until every member at ``urls`` (default: every member the cluster lists) reports healthy; the
        seconds that took."""
        want = list(urls) if urls is not None else [u for m in self.member_list() for u in m.client_urls]

        def healthy() -> str | None:
            bad = [h for h in self.health(want).values() if not h.healthy]
            said = "; ".join(f"{h.endpoint}: {h.error or 'unhealthy'}" for h in bad)
            if bad:
                log.debug("not healthy yet: %s", said)
            return said or None

        return waiting.until(healthy, timeout=timeout, interval=0.5,
                             error=lambda said: EtcdError(f"etcd not healthy after {timeout:.0f}s: {said}"))

    def reconfigure(self, *args: str, done_if: Iterable[str] = ()) -> Result | None:
        """A membership change, retried while etcd refuses it for now ("unhealthy cluster" right after a
        start, a leader election). Returns None when etcd answers with one of ``done_if`` (already done)."""
        done = tuple(done_if)

        def already(said: str) -> bool:
            return any(d in said for d in done)

        res = retry_transient(lambda: self.ctl(*args, check=False),
                              lambda said: not already(said) and is_transient(said),
                              timeout=RECONFIG_RETRY_S, interval=1.0, error=failure, what=" ".join(args[:2]))
        if res.ok:
            return res
        if already(res.stderr + res.stdout):
            return None
        raise failure(res)


def wait_healthy(ctx: InstallContext, hosts: Sequence[Host], timeout: float = HEALTH_TIMEOUT_S) -> float:
    """Until the etcd members on ``hosts`` all report healthy (etcdctl on the first of them that answers)."""
    return Admin(ctx, hosts).wait_healthy(client_urls(hosts), timeout)
