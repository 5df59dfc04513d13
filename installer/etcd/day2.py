"""Day-2 operations on a running etcd cluster: status, add, remove, replace, snapshot save and restore.

Owns what ``kha etcd …`` does to a cluster that ``kha install`` built: reading the cluster's own view
of itself (``etcdctl member list``, ``endpoint status``, ``endpoint health`` as JSON, run over SSH on a
reachable member), changing its membership one member at a time, and rolling it back to a snapshot.
The command line lives in ``installer.etcd.cli``; the install phases in ``installer.etcd.phases``.

Membership follows etcd's runtime-reconfiguration guide
(https://etcd.io/docs/v3.4/op-guide/runtime-configuration/) and the learner design
(https://etcd.io/docs/v3.4/learning/design-learner/): a new member joins as a *learner* (it receives
the log but does not vote, so a slow or broken newcomer cannot cost the cluster its quorum), starts
from an empty data dir with ``--initial-cluster-state existing``, and is promoted once etcd says it has
caught up. A member is removed before its replacement is added ("remove first, then add"), and no
change is attempted when the remaining voters would not hold a healthy majority.

Every step first looks at what the cluster says and only does what is missing, so a run cut short
(an SSH drop, Ctrl-C) is finished by running the same command again: ``add`` finds the member already
added and goes on with starting or promoting it. The pure parts (JSON parsing, quorum arithmetic,
initial-cluster composition, the restore argv) are plain functions, unit-tested without a cluster.

Snapshot restore (https://etcd.io/docs/v3.4/op-guide/recovery/) rebuilds every [etcd] member from one
file with a fresh ``--initial-cluster-token``, so members still holding the old data can never rejoin the
restored cluster. Raising the revision past anything a watcher saw (``--bump-revision``/``--mark-compacted``)
needs etcdutl 3.5.10+ or 3.6; etcdctl 3.4 (Debian 12's etcd) has neither flag, so there the revision goes
back to the snapshot's and kube-apiserver must be restarted after a restore. kha asks the node's tool
(``restore_tool``) and bumps when it can.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import sys
import tempfile
import time
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, TextIO

from core import waiting
from installer import nodeops, topology
from installer.connect import Connector
from installer.context import InstallContext
from installer.errors import CommandError, ConfigError, EtcdError, Problem, QuorumError, RemoteError
from installer.etcd import render
from installer.etcd.phases import PACKAGES, cert_files
from installer.files import NodeFile
from installer.phases import Phase, Runner
from installer.pki.store import Store
from installer.remote import Result, Transport
from installer.state import StateDir
from installer.topology import Host, Role

__all__ = [
    "ETCDCTL_VARS",
    "Admin",
    "EndpointHealth",
    "EndpointStatus",
    "EtcdContext",
    "EtcdError",
    "MemberInfo",
    "QuorumError",
    "SnapshotInfo",
    "StatusRow",
    "check_removal",
    "ctl_argv",
    "find_member",
    "format_status",
    "hashkv",
    "host_of",
    "join_initial_cluster",
    "join_member",
    "member_of",
    "open_context",
    "parse_endpoint_health",
    "parse_endpoint_status",
    "parse_hashkv",
    "parse_member_list",
    "prepare_node",
    "promote",
    "quorum",
    "removal_problems",
    "remove_member",
    "restore_argv",
    "restore_token",
    "restore_tool",
    "run_add",
    "run_remove",
    "run_replace",
    "run_restore",
    "snapshot_save",
    "status",
    "status_rows",
    "stop_etcd",
    "wait_serving",
    "wipe_data_dir",
]

log = logging.getLogger(__name__)

#: etcdctl 3.4 refuses a flag whose ETCDCTL_* variable is also set ("conflicting environment variable
#: is shadowed by corresponding command-line flag"); a node's /etc/environment may set them, so every
#: etcdctl we run unsets the ones whose flags we pass.
ETCDCTL_VARS = ("ETCDCTL_ENDPOINTS", "ETCDCTL_CACERT", "ETCDCTL_CERT", "ETCDCTL_KEY",
                "ETCDCTL_DIAL_TIMEOUT", "ETCDCTL_COMMAND_TIMEOUT", "ETCDCTL_WRITE_OUT")
#: Membership changes right after a (re)start are refused with "unhealthy cluster" until every member
#: has been active ~5 s (etcd's --strict-reconfig-check; shared/MACHINE.md "Services"): retry that long
#: and a bit more.
RECONFIG_RETRY_S = 20.0
#: How long a learner may take to catch up before ``member promote`` is given up.
PROMOTE_TIMEOUT_S = 60.0
HEALTH_TIMEOUT_S = 60.0
#: How long a node that could not be reached over SSH is left alone before it is tried again.
DEAD_FOR_S = 60.0
#: A joining member serves clients ~0.5 s after starting (measured, small data set); not by this much
#: means its publish is stuck (see ``wait_serving``) and the learner is restarted once. With a large data
#: set the snapshot transfer alone can take longer: that restart then costs one transfer, and the wait
#: after it is long enough for big ones.
PUBLISH_WAIT_S = 2.0
PUBLISH_RETRY_S = 300.0
#: What etcd's recovery guide suggests for Kubernetes: far above any revision a watcher has seen.
REVISION_BUMP = 1_000_000_000
SNAPSHOT_TMP = "/var/tmp"

_RETRY_RECONFIG = ("unhealthy cluster", "not enough started members", "etcdserver: request timed out",
                   "etcdserver: leader changed", "context deadline exceeded", "no leader")
_LEARNER_NOT_READY = "in sync with leader"
_NOT_A_LEARNER = "can only promote a learner member"
_MEMBER_NOT_FOUND = "member not found"
_PEER_EXISTS = "Peer URLs already exists"


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


# -- pure rules ----------------------------------------------------------------------------------
def quorum(n: int) -> int:
    """Votes a cluster of ``n`` voting members needs to commit anything: a strict majority."""
    return n // 2 + 1


def removal_problems(voters: Sequence[str], healthy: Collection[str], removing: Sequence[str]) -> list[str]:
    """Why removing ``removing`` (one at a time, in order) from ``voters`` would break the cluster.

    Each removal is itself a change the cluster must commit, so before it the healthy voters must be
    a quorum of the current size; after it they must be a quorum of the new size, or the cluster is
    left unable to accept writes. Empty: safe. Removing every voter is refused by the caller, always.
    """
    current = list(voters)
    alive = set(healthy) & set(voters)
    problems: list[str] = []
    for name in removing:
        if name not in current:
            continue  # a learner or already gone: no vote changes
        up = len(alive & set(current))
        if up < quorum(len(current)):
            problems.append(f"only {up} of {len(current)} voting members are healthy, fewer than the "
                            f"{quorum(len(current))} needed to commit the removal of {name}")
        after = [m for m in current if m != name]
        up_after = len(alive & set(after))
        if after and up_after < quorum(len(after)):
            problems.append(f"removing {name} leaves {up_after} healthy of {len(after)} voting members, fewer "
                            f"than the quorum of {quorum(len(after))}: the cluster would stop accepting writes")
        current = after
    return problems


def join_initial_cluster(members: Sequence[MemberInfo], new: render.Member) -> str:
    """``--initial-cluster`` for a member joining a running cluster: every member etcd lists, the new one
    under its own name.

    etcd checks it against the cluster's member list when the member starts ("member count is unequal"),
    so another member that was added but never started cannot be left out or named: that is an error.
    """
    parts: list[str] = []
    seen_new = False
    for m in members:
        if new.peer_url in m.peer_urls:
            parts.append(f"{new.name}={new.peer_url}")
            seen_new = True
        elif m.started:
            parts += [f"{m.name}={u}" for u in m.peer_urls]
        else:
            raise EtcdError(f"member {m.hex_id} ({', '.join(m.peer_urls)}) was added but never started; etcd "
                            "would refuse the new member. Finish it (`kha etcd add` / `kha etcd replace` for its "
                            f"node) or drop it (`etcdctl member remove {m.hex_id}`), then run this again")
    if not seen_new:
        parts.append(f"{new.name}={new.peer_url}")
    return ",".join(parts)


def restore_token(cluster_name: str) -> str:
    """A fresh ``--initial-cluster-token`` for a restored cluster: never the old one, so a member that
    still has the old data can never join the restored cluster (member IDs derive from the token)."""
    return f"kha-{cluster_name}-restore-{secrets.token_hex(5)}"


def restore_argv(snapshot: str, member: render.Member, members: Sequence[render.Member], *, token: str,
                 data_dir: str, tool: str = "etcdctl", bump: int | None = None) -> list[str]:
    """``snapshot restore`` for one member of the restored cluster (https://etcd.io/docs/v3.4/op-guide/recovery/).

    ``bump``: raise the revision by this much and mark it compacted, so that watchers (kube-apiserver's
    cache) never see revisions go backwards. Only etcdutl ≥ 3.5.10 / 3.6 has these flags; etcdctl 3.4
    does not, and the caller passes None there.
    """
    argv = [tool, "snapshot", "restore", snapshot,
            f"--name={member.name}",
            f"--initial-cluster={render.initial_cluster(members)}",
            f"--initial-cluster-token={token}",
            f"--initial-advertise-peer-urls={member.peer_url}",
            f"--data-dir={data_dir}"]
    if bump:
        argv += [f"--bump-revision={bump}", "--mark-compacted"]
    return argv


# -- running etcdctl on a member -----------------------------------------------------------------
def ctl_argv(*args: str, endpoints: Sequence[str], command_timeout: str = "5s", dial_timeout: str = "3s") -> list[str]:
    pki = render.PKI_DIR
    unset = [a for v in ETCDCTL_VARS for a in ("-u", v)]
    return ["env", *unset, "ETCDCTL_API=3", "etcdctl", f"--endpoints={','.join(endpoints)}",
            f"--cacert={pki}/ca.crt", f"--cert={pki}/healthcheck-client.crt", f"--key={pki}/healthcheck-client.key",
            f"--dial-timeout={dial_timeout}", f"--command-timeout={command_timeout}", *args]


class Admin:
    """etcdctl over SSH on the first reachable member of ``candidates`` (skipping ``avoid``).

    A node that cannot be reached is not tried again for ``DEAD_FOR_S``, so a dead node costs one SSH
    timeout per command, not one per etcdctl call, and a node that comes back is used again later.
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
        hosts = [runner, *(h for h in self.candidates if h != runner)]
        return [render.Member(h.name, str(h.address)).client_url for h in hosts]

    def ctl(self, *args: str, endpoints: Sequence[str] | None = None, check: bool = True,
            command_timeout: str = "5s", dial_timeout: str = "3s", timeout: float = 60.0) -> Result:
        for _attempt in range(len(self.candidates)):
            host, t = self.runner()
            argv = ctl_argv(*args, endpoints=endpoints or self.endpoints(), command_timeout=command_timeout,
                            dial_timeout=dial_timeout)
            try:
                return t.run(argv, check=check, timeout=timeout)
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

    def wait_healthy(self, urls: Sequence[str], timeout: float = HEALTH_TIMEOUT_S) -> float:
        def healthy() -> str | None:
            bad = [h for h in self.health(urls).values() if not h.healthy]
            said = "; ".join(f"{h.endpoint}: {h.error or 'unhealthy'}" for h in bad)
            if bad:
                log.debug("not healthy yet: %s", said)
            return said or None

        return waiting.until(healthy, timeout=timeout, interval=0.5,
                             error=lambda said: EtcdError(f"etcd not healthy after {timeout:.0f}s: {said}"))

    def reconfigure(self, *args: str, done_if: Iterable[str] = ()) -> Result | None:
        """A membership change, retried while etcd refuses it for now ("unhealthy cluster" right after a
        start, a leader election). Returns None when etcd answers with one of ``done_if`` (already done)."""
        deadline = time.monotonic() + RECONFIG_RETRY_S
        done = tuple(done_if)
        while True:
            res = self.ctl(*args, check=False)
            if res.ok:
                return res
            said = res.stderr + res.stdout
            if any(d in said for d in done):
                return None
            if not any(r in said for r in _RETRY_RECONFIG) or time.monotonic() > deadline:
                res.check()
            log.info("etcdctl %s refused for now, retrying: %s", " ".join(args[:2]), said.strip().splitlines()[-1])
            time.sleep(1.0)


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


# -- context -------------------------------------------------------------------------------------
@dataclass(kw_only=True)
class EtcdContext(InstallContext):
    """What a day-2 command carries besides the install context: its options and the etcdctl runner."""

    force: bool = False
    target: str | None = None
    snapshot: Path | None = None
    token: str | None = None
    admins: dict[frozenset[str], Admin] = field(default_factory=dict)

    def admin(self, avoid: Collection[str] = ()) -> Admin:
        key = frozenset(avoid)
        if key not in self.admins:
            self.admins[key] = Admin(self, self.topo.etcd, avoid=key)
        return self.admins[key]


def open_context(inventory: str | Path, *, state: str | Path | None = None, known_hosts: str | Path | None = None,
                 ssh_config: str | Path | None = None, trust_unknown: bool = False, dry_run: bool = False,
                 connect_timeout: float = 10.0) -> EtcdContext:
    """A context like ``kha install`` builds, for day-2 commands (close ``ctx.connector`` when done)."""
    topo = topology.load(inventory)
    sd = StateDir.for_inventory(inventory, state)
    kh = Path(known_hosts) if known_hosts else sd.root / "known_hosts"
    connector = Connector(kh, Path(ssh_config) if ssh_config else None, trust_unknown=trust_unknown,
                          connect_timeout=connect_timeout)
    # Day-2 etcd never needs the cluster secrets: do not create a secrets file as a side effect.
    return EtcdContext(topo=topo, inventory=Path(inventory), state=sd, connector=connector,
                       secrets=sd.secrets(topo, write=False), dry_run=dry_run)


def member_of(host: Host) -> render.Member:
    """What kha makes of an inventory host as an etcd member (name, peer and client URLs)."""
    return render.Member(host.name, str(host.address))


def host_of(hosts: Iterable[Host], member: MemberInfo) -> Host | None:
    """The inventory host behind a member the cluster lists (matched by peer URL)."""
    return next((h for h in hosts if member_of(h).peer_url in member.peer_urls), None)


# -- status --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class StatusRow:
    name: str
    id: str
    peer_url: str
    leader: bool
    learner: bool
    raft_term: int | None
    revision: int | None
    db_size: int | None
    health: str  # "healthy", "unhealthy: why", "not started"

    @property
    def healthy(self) -> bool:
        return self.health == "healthy"


def status_rows(members: Sequence[MemberInfo], statuses: Sequence[EndpointStatus],
                health: dict[str, EndpointHealth]) -> list[StatusRow]:
    by_id = {s.member_id: s for s in statuses}
    rows = []
    for m in members:
        s = by_id.get(m.id)
        if not m.started:
            h = "not started"
        else:
            checks = [health[u] for u in m.client_urls if u in health]
            if checks and all(c.healthy for c in checks):
                h = "healthy"
            else:
                h = "unhealthy: " + ("; ".join(c.error for c in checks if c.error) or "no answer")
        rows.append(StatusRow(
            name=m.name or "(not started)", id=m.hex_id, peer_url=",".join(m.peer_urls),
            leader=s is not None and s.is_leader, learner=m.is_learner,
            raft_term=s.raft_term if s else None, revision=s.revision if s else None,
            db_size=s.db_size if s else None, health=h))
    return rows


def status(ctx: EtcdContext) -> list[StatusRow]:
    """One row per member the cluster lists, with what each member says about itself."""
    admin = ctx.admin()
    members = admin.member_list()
    urls = [u for m in members if m.started for u in m.client_urls]
    return status_rows(members, admin.statuses(urls), admin.health(urls))


def _size(n: int | None) -> str:
    if n is None:
        return "-"
    if n < 1024:
        return f"{n} B"
    size = n / 1024
    for unit in ("kB", "MB"):
        if size < 1024:
            return f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GB"


def format_status(rows: Sequence[StatusRow]) -> list[str]:
    header = ("NAME", "ID", "PEER URL", "LEADER", "VOTER", "RAFT TERM", "REVISION", "DB SIZE", "HEALTH")

    def opt(v: int | None) -> str:
        return "-" if v is None else str(v)

    table = [header, *((r.name, r.id, r.peer_url, "yes" if r.leader else "no", "learner" if r.learner else "yes",
                        opt(r.raft_term), opt(r.revision), _size(r.db_size), r.health) for r in rows)]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    return ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in table]


# -- one node's etcd -----------------------------------------------------------------------------
def _check_data_dir(data_dir: str) -> str:
    p = PurePosixPath(data_dir)
    # A wipe of "/" or "/var" would be a disaster a typo in the inventory must never cause.
    if not p.is_absolute() or len(p.parts) < 3:
        raise ConfigError([Problem("<inventory>", None, f"etcd_data_dir {data_dir!r} is not a dedicated directory "
                                   "(absolute, at least two levels deep); kha will not wipe it", "etcd_data_dir")])
    return str(p)


def wipe_data_dir(ctx: InstallContext, t: Transport) -> None:
    """Empty the data dir (keeping it, 0700 etcd:etcd): a member must join with no state of its own."""
    data_dir = _check_data_dir(ctx.topo.settings.etcd_data_dir)
    if ctx.would(f"wipe {data_dir}"):
        return
    t.run(["install", "-d", "-m", "0700", "-o", "etcd", "-g", "etcd", data_dir], sudo=True)
    t.run(["find", data_dir, "-mindepth", "1", "-delete"], sudo=True)
    log.info("%s: wiped %s", t.node, data_dir)


def stop_etcd(ctx: InstallContext, t: Transport, *, disable: bool = False) -> None:
    if ctx.would("stop etcd" + (" and disable it" if disable else "")):
        return
    if disable:
        nodeops.systemctl(t, "disable", "--now", "etcd", check=False)
    nodeops.systemctl(t, "stop", "etcd", check=False)


def _data_present(ctx: InstallContext, t: Transport) -> bool:
    res = t.run(["find", ctx.topo.settings.etcd_data_dir, "-mindepth", "1", "-maxdepth", "1"], sudo=True, check=False)
    return res.ok and bool(res.stdout.strip())


def _transport_or_fail(admin: Admin, host: Host, what: str) -> Transport:
    t = admin.reachable(host)
    if t is None:
        raise EtcdError(f"{host.name} is not reachable over SSH, so it cannot {what}; bring it back and run "
                        "the same command again (it picks up where it stopped)")
    return t


def join_member(ctx: EtcdContext, host: Host, *, admin: Admin | None = None) -> float:
    """Bring ``host`` into the cluster as a new member: learner, empty data dir, ``existing``, then promote.

    Idempotent: a member already added is not added again, one already started is only promoted if it is
    still a learner. Returns the seconds from ``member add`` (or from resuming) to healthy.
    """
    admin = admin or ctx.admin(avoid={host.name})
    me = member_of(host)
    start = time.monotonic()
    with ctx.node(host.name):
        t = _transport_or_fail(admin, host, "join the cluster")
        entry = find_member(admin.member_list(), me)
        # A node that was a member before (or ran Debian's default etcd) has state that would make it
        # rejoin under its old identity: a member that has not started yet must start empty.
        if (entry is None or not entry.started) and _data_present(ctx, t):
            stop_etcd(ctx, t)
            wipe_data_dir(ctx, t)
        if entry is None:
            if ctx.would(f"member add {me.name} --peer-urls={me.peer_url} --learner"):
                return 0.0
            admin.reconfigure("member", "add", me.name, f"--peer-urls={me.peer_url}", "--learner",
                              done_if=(_PEER_EXISTS,))
            log.info("%s: added as a learner", host.name)
            entry = find_member(admin.member_list(), me)
            if entry is None:
                raise EtcdError(f"{host.name}: `member add` succeeded but the member list does not show "
                                f"{me.peer_url}; check `kha etcd status`")
        members = admin.member_list()
        if entry.started and not _data_present(ctx, t) and not ctx.dry_run:
            raise EtcdError(f"{host.name} is a started member ({entry.hex_id}) but its data dir is empty: it would "
                            f"rejoin with a blank log under its old identity; run `kha etcd replace {host.name}`")
        files = [render.unit(ctx.topo, host), _initial_env_file(ctx, join_initial_cluster(members, me))]
        changed = nodeops.sync_files(ctx, t, files)
        data_dir = ctx.topo.settings.etcd_data_dir
        # etcd refuses a data dir others can read (https://etcd.io/docs/v3.4/op-guide/security/).
        if nodeops.remote_stat(t, data_dir) != (0o700, "etcd", "etcd") and not ctx.would(
                f"make {data_dir} 0700 etcd:etcd"):
            t.run(["install", "-d", "-m", "0700", "-o", "etcd", "-g", "etcd", data_dir], sudo=True)
        # --no-block: Type=notify would hold `systemctl start` until the member has joined.
        nodeops.ensure_service(ctx, t, "etcd", changed=bool(changed) and not entry.started, no_block=True)
        if ctx.dry_run:
            return 0.0
        entry = wait_serving(admin, t, me)
        promote(ctx, admin, entry)
        urls = [u for m in admin.member_list() for u in m.client_urls]
        admin.wait_healthy(urls)
    took = time.monotonic() - start
    log.info("%s: member healthy %.1fs after joining", host.name, took)
    return took


def _token(ctx: EtcdContext) -> str:
    return ctx.token or render.cluster_token(ctx.topo)


def _initial_env_file(ctx: EtcdContext, initial_cluster: str) -> NodeFile:
    text = (f"# Written by kha for an etcd member joining a running cluster; read only while its data dir is empty.\n"
            f"ETCD_INITIAL_CLUSTER={initial_cluster}\n"
            f"ETCD_INITIAL_CLUSTER_TOKEN={_token(ctx)}\n"
            "ETCD_INITIAL_CLUSTER_STATE=existing\n")
    return NodeFile(render.INITIAL_ENV_PATH, text.encode(), mode=0o644)


def wait_serving(admin: Admin, t: Transport, me: render.Member) -> MemberInfo:
    """Until the new member serves clients, which it does only once it has published itself to the cluster.

    A member publishes its name through a raft proposal as it starts. Observed on etcd 3.4.23 in about
    half of the joins: "publish error: request timed out" 7 s (5 s + 2 × election timeout) after the
    start, then serving at once — the proposal most likely went into the snapshot the newcomer received,
    so its own wait for it never fired (same symptom as etcd issue 8977). Meanwhile the member accepts TCP
    connections and serves nobody. A learner has no vote, so restarting it costs nothing; it then
    publishes within a second, from the log it now has.
    """
    deadline = time.monotonic() + PUBLISH_WAIT_S
    restarted = False
    while True:
        if admin.serving(me.client_url):
            entry = find_member(admin.member_list(), me)
            if entry is None:
                raise EtcdError(f"{me.name} left the member list while joining; check `kha etcd status`")
            if entry.started:
                return entry
        if time.monotonic() > deadline:
            if restarted:
                raise EtcdError(f"{me.name} does not serve clients {PUBLISH_WAIT_S + PUBLISH_RETRY_S:.0f}s after "
                                "starting; check its log (journalctl -u etcd) and run the command again")
            entry = find_member(admin.member_list(), me)
            if entry is not None and entry.is_learner:
                log.info("%s: not serving %.0fs after start (likely its publish went into the snapshot it got, "
                         "etcd issue 8977); restarting the learner", me.name, PUBLISH_WAIT_S)
                nodeops.systemctl(t, "restart", "--no-block", "etcd")
            restarted = True
            deadline = time.monotonic() + PUBLISH_RETRY_S
        time.sleep(0.25)


def promote(ctx: EtcdContext, admin: Admin, entry: MemberInfo, timeout: float = PROMOTE_TIMEOUT_S) -> None:
    """``member promote`` once the learner has caught up; etcd answers "not in sync" until then."""
    if not entry.is_learner:
        return
    deadline = time.monotonic() + timeout
    while True:
        res = admin.ctl("member", "promote", entry.hex_id, check=False)
        said = res.stderr + res.stdout
        not_ready = _LEARNER_NOT_READY in said
        # "can only promote a learner member" alone: a run cut short after the promote went through.
        if res.ok or (_NOT_A_LEARNER in said and not not_ready):
            log.info("member %s promoted to voter", entry.hex_id)
            return
        retry = not_ready or any(r in said for r in _RETRY_RECONFIG)
        if not retry or time.monotonic() > deadline:
            raise EtcdError(f"learner {entry.hex_id} ({entry.name or 'not started'}) was not promoted after "
                            f"{timeout:.0f}s: {said.strip().splitlines()[-1] if said.strip() else 'no answer'}; "
                            "check its etcd log (journalctl -u etcd) and run the command again")
        time.sleep(0.5)


def remove_member(ctx: EtcdContext, host: Host, *, admin: Admin | None = None, force: bool | None = None,
                  cleanup: bool = True) -> bool:
    """Take ``host`` out of the cluster (quorum-checked unless forced), then stop, disable and wipe its etcd
    when the node is reachable. Returns False when the node could not be cleaned up (unreachable)."""
    force = ctx.force if force is None else force
    admin = admin or ctx.admin(avoid={host.name})
    me = member_of(host)
    with ctx.node(host.name):
        members = admin.member_list()
        entry = find_member(members, me)
        if entry is None:
            log.info("%s: not a member (already removed)", host.name)
        else:
            check_removal(admin, members, [entry], force=force)
            if not ctx.would(f"member remove {entry.hex_id} ({host.name})"):
                admin.reconfigure("member", "remove", entry.hex_id, done_if=(_MEMBER_NOT_FOUND,))
                log.info("%s: removed member %s", host.name, entry.hex_id)
        if not cleanup:
            return True
        t = admin.reachable(host)
        if t is None:
            log.warning("%s: unreachable: etcd there was not stopped and its data dir not wiped", host.name)
            return False
        stop_etcd(ctx, t, disable=True)
        wipe_data_dir(ctx, t)
    return True


def check_removal(admin: Admin, members: Sequence[MemberInfo], removing: Sequence[MemberInfo], *,
                  force: bool) -> None:
    voters = [m for m in members if not m.is_learner]
    leaving = {m.id for m in removing}
    if voters and all(m.id in leaving for m in voters):
        raise QuorumError("this would remove every voting etcd member; take a snapshot "
                          "(`kha etcd snapshot save`) and tear the cluster down instead")
    health = admin.health([u for m in voters for u in m.client_urls])
    label = {m.id: m.name or m.hex_id for m in members}
    healthy = [label[m.id] for m in voters if m.client_urls and all(health[u].healthy for u in m.client_urls)]
    problems = removal_problems([label[m.id] for m in voters], healthy,
                                [label[m.id] for m in removing if not m.is_learner])
    if not problems:
        return
    if force:
        log.warning("removing despite: %s (--force)", "; ".join(problems))
        return
    raise QuorumError("refused: " + "; ".join(problems) + ". Bring members back first (`kha etcd status`), "
                      "or pass --force if you accept an unavailable cluster")


# -- phases of each command ----------------------------------------------------------------------
def _pki(ctx: EtcdContext) -> None:
    if ctx.would(f"bring the PKI store {ctx.state.pki} up to date (certificates for new members)"):
        return
    for change in Store(ctx.state.pki, ctx.topo).init(ctx.inventory.read_bytes()):
        log.info("pki: %s", change)


def prepare_node(ctx: EtcdContext, host: Host, t: Transport) -> None:
    """Packages and certificates on a joining node: what ``kha install``'s etcd phases give a member."""
    facts = ctx.node_facts(host)
    nodeops.ensure_packages(ctx, t, facts, PACKAGES[facts.os_family])
    if ctx.dry_run and not (ctx.state.pki / "nodes" / host.name / "pki" / "etcd").is_dir():
        ctx.would("copy the etcd certificates the pki phase issues for this node")
        return
    nodeops.sync_files(ctx, t, cert_files(ctx, host))


def _prepare_new(ctx: EtcdContext) -> None:
    for host in _new(ctx):
        with ctx.node(host.name):
            prepare_node(ctx, host, _transport_or_fail(ctx.admin(avoid={host.name}), host, "be prepared"))


def _new(ctx: EtcdContext) -> Sequence[Host]:
    hosts = ctx.topo.group(Role.NEW_ETCD)
    if not hosts:
        raise ConfigError([Problem(str(ctx.inventory), None, "[new-etcd] is empty: list the node to add there")])
    return hosts


def _join_new(ctx: EtcdContext) -> None:
    for host in _new(ctx):
        join_member(ctx, host)


def _remove_check(ctx: EtcdContext) -> None:
    gone = ctx.topo.group(Role.DEL_ETCD)
    if not gone:
        raise ConfigError([Problem(str(ctx.inventory), None, "[del-etcd] is empty: list the members to remove there")])
    admin = ctx.admin(avoid={h.name for h in gone})
    members = admin.member_list()
    leaving = [m for m in (find_member(members, member_of(h)) for h in gone) if m is not None]
    check_removal(admin, members, leaving, force=ctx.force)


def _remove(ctx: EtcdContext) -> None:
    gone = ctx.topo.group(Role.DEL_ETCD)
    admin = ctx.admin(avoid={h.name for h in gone})
    unreachable = [h.name for h in gone if not remove_member(ctx, h, admin=admin)]
    if unreachable:
        log.warning("not cleaned up (unreachable): %s — stop etcd and wipe %s there before reusing them",
                    ", ".join(unreachable), ctx.topo.settings.etcd_data_dir)


def _target(ctx: EtcdContext) -> Host:
    name = ctx.target or ""
    try:
        host = ctx.topo.host(name)
    except KeyError:
        raise ConfigError([Problem(str(ctx.inventory), None, f"{name!r} is not a host in [all]", "NODE")]) from None
    if name not in ctx.topo.groups.get(Role.ETCD, ()):
        raise ConfigError([Problem(str(ctx.inventory), None, f"{name} is not in [etcd]: only a member can be "
                                   "replaced (use [new-etcd] and `kha etcd add` for a new one)", "NODE")])
    return host


def _replace_remove(ctx: EtcdContext) -> None:
    host = _target(ctx)
    admin = ctx.admin(avoid={host.name})
    entry = find_member(admin.member_list(), member_of(host))
    if entry is not None and entry.started and not entry.is_learner:
        # The old identity must go before the new one comes: "remove first, then add".
        remove_member(ctx, host, admin=admin, cleanup=False)
    elif entry is not None:
        log.info("%s: already re-added (member %s); resuming", host.name, entry.hex_id)


def _replace_join(ctx: EtcdContext) -> None:
    host = _target(ctx)
    admin = ctx.admin(avoid={host.name})
    t = admin.reachable(host)
    if t is None:
        raise EtcdError(f"{host.name} is out of the cluster but not reachable over SSH, so it cannot be re-added "
                        f"yet; bring it back (or a new machine with its address) and run `kha etcd replace "
                        f"{host.name}` again: it picks up from here")
    with ctx.node(host.name):
        prepare_node(ctx, host, t)
    entry = find_member(admin.member_list(), member_of(host))
    if entry is None:
        # The old member's data (if the node kept it) must not come back: start empty.
        stop_etcd(ctx, t)
        wipe_data_dir(ctx, t)
    join_member(ctx, host, admin=admin)


def _restore_upload(ctx: EtcdContext) -> None:
    src = ctx.snapshot
    if src is None or not src.is_file():
        raise ConfigError([Problem(str(src), None, "no such snapshot file", "FILE")])
    data = src.read_bytes()
    for host in ctx.topo.etcd:
        with ctx.node(host.name):
            if ctx.would(f"copy {src} to {_remote_snapshot()}"):
                continue
            ctx.transport(host).put(data, _remote_snapshot(), mode=0o600, sudo=True)
    if ctx.dry_run:
        return
    # Check the file on a node before anything is stopped: a corrupt snapshot must not cost a cluster.
    t = ctx.transport(ctx.topo.etcd[0])
    res = t.run(["env", "ETCDCTL_API=3", "etcdctl", "snapshot", "status", _remote_snapshot(), "-w", "json"],
                check=False)
    if not res.ok:
        raise EtcdError(f"{src} is not a usable etcd snapshot: {res.stderr.strip() or res.stdout.strip()}")
    info = json.loads(res.stdout)
    log.info("snapshot %s: revision %s, %s keys", src, info.get("revision"), info.get("totalKey"))


def _remote_snapshot() -> str:
    return f"{SNAPSHOT_TMP}/kha-etcd-restore.db"


def _restore_stop(ctx: EtcdContext) -> None:
    _warn_unlisted(ctx)
    for host in ctx.topo.etcd:
        with ctx.node(host.name):
            stop_etcd(ctx, ctx.transport(host))


def _warn_unlisted(ctx: EtcdContext) -> None:
    """The restored cluster is [etcd]; a member the running cluster has beyond it is left out (best effort)."""
    try:
        listed = ctx.admin().member_list()
    except (EtcdError, RemoteError) as exc:
        log.info("could not read the current member list (%s); restoring [etcd] as listed", exc)
        return
    known = {member_of(h).peer_url for h in ctx.topo.etcd}
    extra = [m.name or m.hex_id for m in listed if not known & set(m.peer_urls)]
    if extra:
        log.warning("members not in [etcd] are left out of the restored cluster: %s; stop etcd there, or add them "
                    "back with [new-etcd] and `kha etcd add` afterwards", ", ".join(extra))


def restore_tool(t: Transport) -> tuple[str, int | None]:
    """The restore command a node has, and the revision bump it can apply (None: it cannot).

    ``--bump-revision``/``--mark-compacted`` came with etcdutl in 3.5.10/3.6 (etcd PRs 16029, 16165);
    etcdctl 3.4's ``snapshot restore`` has neither, so a 3.4 restore keeps the snapshot's revision and
    clients that watched a later revision must re-list (restart kube-apiserver after a restore).
    """
    for tool in ("etcdutl", "etcdctl"):
        res = t.run(["env", "ETCDCTL_API=3", tool, "snapshot", "restore", "--help"], check=False)
        if res.exit_code == 127:
            continue
        if "--bump-revision" in res.stdout + res.stderr:
            return tool, REVISION_BUMP
        if res.ok or tool == "etcdctl":
            return tool, None
    return "etcdctl", None


def _restore_data(ctx: EtcdContext) -> None:
    data_dir = _check_data_dir(ctx.topo.settings.etcd_data_dir)
    token = ctx.token = ctx.token or restore_token(ctx.topo.settings.cluster_name)
    members = render.members(ctx.topo.etcd)
    staging = f"{data_dir}/kha-restore"
    backup = f"{data_dir}.kha-before-restore"
    for host in ctx.topo.etcd:
        with ctx.node(host.name):
            t = ctx.transport(host)
            tool, bump = restore_tool(t)
            if bump is None:
                log.warning("%s: %s cannot bump the revision on restore (etcd 3.4); the restored cluster's "
                            "revision goes back to the snapshot's: restart kube-apiserver afterwards", host.name, tool)
            argv = restore_argv(_remote_snapshot(), member_of(host), members, token=token, data_dir=staging,
                                tool=tool, bump=bump)
            if ctx.would(f"restore the snapshot into {data_dir} (token {token}); keep the old data in {backup}"):
                continue
            t.run(["rm", "-rf", "--", staging], sudo=True)
            t.run(["env", "ETCDCTL_API=3", *argv], sudo=True, timeout=600)
            # Keep the data this replaces (once: a resumed run must not overwrite it with nothing).
            if t.run(["test", "-d", f"{data_dir}/member"], sudo=True, check=False).ok:
                t.run(["rm", "-rf", "--", backup], sudo=True)
                t.run(["install", "-d", "-m", "0700", "-o", "etcd", "-g", "etcd", backup], sudo=True)
                t.run(["mv", "--", f"{data_dir}/member", f"{backup}/member"], sudo=True)
            t.run(["mv", "--", f"{staging}/member", f"{data_dir}/member"], sudo=True)
            t.run(["rm", "-rf", "--", staging, _remote_snapshot()], sudo=True)
            t.run(["chown", "-R", "etcd:etcd", "--", data_dir], sudo=True)
            t.run(["chmod", "0700", "--", data_dir], sudo=True)
            # What this member would bootstrap with if its data dir were emptied again: the restored
            # cluster (never "new": that would start a second cluster under the same name).
            env = render.initial_env(ctx.topo, members, state="existing", token=token)
            nodeops.sync_file(ctx, t, env)


def _restore_start(ctx: EtcdContext) -> None:
    for host in ctx.topo.etcd:
        with ctx.node(host.name):
            t = ctx.transport(host)
            if not ctx.would("start etcd"):
                nodeops.systemctl(t, "enable", "etcd")
                # No member can be healthy alone: start all without waiting (Type=notify).
                nodeops.systemctl(t, "start", "--no-block", "etcd")


def _wait_all(ctx: EtcdContext) -> None:
    if ctx.would("wait until every member is healthy"):
        return
    admin = ctx.admin()
    urls = [u for m in admin.member_list() for u in m.client_urls]
    admin.wait_healthy(urls)


def _wait_topo(ctx: EtcdContext) -> None:
    if ctx.would(f"wait until the {len(ctx.topo.etcd)} [etcd] members are healthy"):
        return
    ctx.admin().wait_healthy([member_of(h).client_url for h in ctx.topo.etcd])


ADD: Phase[EtcdContext] = Phase("etcd-add", children=(
    Phase("pki", _pki, description="certificates for the [new-etcd] node in the PKI store"),
    Phase("prepare", _prepare_new, description="etcd packages and certificates on the new node"),
    Phase("join", _join_new, description="member add --learner, start with an empty data dir, promote"),
    Phase("wait", _wait_all, description="every member reports healthy"),
), description="add the [new-etcd] members")

REMOVE: Phase[EtcdContext] = Phase("etcd-remove", children=(
    Phase("check", _remove_check, description="the remaining voters keep a healthy majority"),
    Phase("members", _remove, description="member remove; stop, disable and wipe etcd on the node"),
    Phase("wait", _wait_all, description="every remaining member reports healthy"),
), description="remove the [del-etcd] members")

REPLACE: Phase[EtcdContext] = Phase("etcd-replace", children=(
    Phase("remove", _replace_remove, description="remove the old member by ID (etcdctl on the other members)"),
    Phase("join", _replace_join, description="packages, certificates, wipe, member add --learner, start, promote"),
    Phase("wait", _wait_all, description="every member reports healthy"),
), description="replace a dead member with a fresh one at the same address")

RESTORE: Phase[EtcdContext] = Phase("etcd-restore", children=(
    Phase("upload", _restore_upload, description="copy the snapshot to every member and check it"),
    Phase("stop", _restore_stop, description="stop etcd on every member"),
    Phase("restore", _restore_data, description="snapshot restore with a fresh cluster token; old data kept aside"),
    Phase("start", _restore_start, description="start every member"),
    Phase("wait", _wait_topo, description="every member reports healthy"),
), description="roll the cluster back to a snapshot")


def _run(phase: Phase[EtcdContext], ctx: EtcdContext, out: TextIO | None) -> None:
    runner: Runner[EtcdContext] = Runner([phase], dry_run=ctx.dry_run, out=out or sys.stdout)
    try:
        runner.run(ctx)
    finally:
        ctx.connector.close()


def run_add(ctx: EtcdContext, out: TextIO | None = None) -> None:
    _run(ADD, ctx, out)


def run_remove(ctx: EtcdContext, out: TextIO | None = None) -> None:
    _run(REMOVE, ctx, out)


def run_replace(ctx: EtcdContext, node: str, out: TextIO | None = None) -> None:
    ctx.target = node
    _run(REPLACE, ctx, out)


def run_restore(ctx: EtcdContext, snapshot: Path, out: TextIO | None = None) -> str:
    """Restore every [etcd] member from ``snapshot``; returns the new cluster token."""
    ctx.snapshot = snapshot
    _run(RESTORE, ctx, out)
    return ctx.token or ""


# -- snapshot save -------------------------------------------------------------------------------
@dataclass(frozen=True)
class SnapshotInfo:
    path: Path
    member: str
    revision: int
    keys: int
    size: int
    hash: int


def snapshot_save(ctx: EtcdContext, dest: Path) -> SnapshotInfo:
    """A snapshot from one healthy member, saved on that node, then copied here (atomically, 0600)."""
    admin = ctx.admin()
    members = admin.member_list()
    voters = [m for m in members if m.started and not m.is_learner]
    health = admin.health([u for m in voters for u in m.client_urls])
    for m in voters:
        if not all(health[u].healthy for u in m.client_urls):
            continue
        host = host_of(ctx.topo.hosts, m)
        t = admin.reachable(host) if host is not None else None
        if host is None or t is None:
            continue
        with ctx.node(host.name):
            remote = f"{SNAPSHOT_TMP}/kha-etcd-snapshot-{secrets.token_hex(4)}.db"
            try:
                # snapshot save talks to exactly one endpoint; the member's own, on its own node.
                t.run(ctl_argv("snapshot", "save", remote, endpoints=[m.client_urls[0]], command_timeout="300s"),
                      timeout=600)
                res = t.run(["env", "ETCDCTL_API=3", "etcdctl", "snapshot", "status", remote, "-w", "json"])
                data = t.get(remote, sudo=True)
            finally:
                t.run(["rm", "-f", "--", remote], sudo=True, check=False)
        _write_atomic(dest, data)
        info = json.loads(res.stdout)
        snap = SnapshotInfo(dest, m.name, int(info["revision"]), int(info["totalKey"]), len(data), int(info["hash"]))
        log.info("saved snapshot of %s at revision %d to %s", m.name, snap.revision, dest)
        return snap
    raise EtcdError("no healthy etcd member reachable to take a snapshot from; see `kha etcd status`")


def _write_atomic(dest: Path, data: bytes) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", dir=dest.parent)
    try:
        os.fchmod(fd, 0o600)  # the snapshot holds every secret the cluster stores
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def hashkv(ctx: EtcdContext, revision: int) -> dict[str, tuple[int, int]]:
    """``endpoint hashkv --cluster --rev=REV``: every member's hash of the key space at one revision."""
    admin = ctx.admin()
    res = admin.ctl("endpoint", "hashkv", "--cluster", f"--rev={revision}", "-w", "json")
    return parse_hashkv(res.stdout)

