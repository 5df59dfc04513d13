"""Changing who is in the etcd cluster: ``kha etcd add``, ``remove`` and ``replace``.

Owns the quorum guard (which removals the remaining voters survive), bringing a node in as a learner and
promoting it, taking a member out and cleaning its node up, and the phase trees of the three commands.

Membership follows etcd's runtime-reconfiguration guide
(https://etcd.io/docs/v3.4/op-guide/runtime-configuration/) and the learner design
(https://etcd.io/docs/v3.4/learning/design-learner/): a new member joins as a *learner* (it receives
the log but does not vote, so a slow or broken newcomer cannot cost the cluster its quorum), starts
from an empty data dir with ``--initial-cluster-state existing``, and is promoted once etcd says it has
caught up. A member is removed before its replacement is added ("remove first, then add"), and no
change is attempted when the remaining voters would not hold a healthy majority.

Every step first looks at what the cluster says (through ``installer.etcd.ctl``) and only does what is
missing, so a run cut short (an SSH drop, Ctrl-C) is finished by running the same command again: ``add``
finds the member already added and goes on with starting or promoting it. The pure parts (quorum
arithmetic, initial-cluster composition) are plain functions, unit-tested without a cluster.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Collection, Sequence
from pathlib import PurePosixPath
from typing import TextIO

from core import waiting
from installer import nodeops
from installer.context import InstallContext, walk
from installer.errors import ConfigError, EtcdError, Problem, QuorumError
from installer.etcd import apiservers, ctl, render
from installer.etcd.context import EtcdContext
from installer.etcd.ctl import Admin, MemberInfo, find_member, member_of
from installer.etcd.phases import cert_files, ensure_data_dir, ensure_etcd
from installer.files import NodeFile
from installer.phases import Phase
from installer.pki.store import Store
from installer.remote import Result, Transport
from installer.topology import Host, Role

log = logging.getLogger(__name__)

#: How long a learner may take to catch up before ``member promote`` is given up.
PROMOTE_TIMEOUT_S = 60.0
#: A joining member serves clients ~0.5 s after starting (measured, small data set); not by this much
#: means its publish is stuck (see ``wait_serving``) and the learner is restarted once. With a large data
#: set the snapshot transfer alone can take longer: that restart then costs one transfer, and the wait
#: after it is long enough for big ones.
PUBLISH_WAIT_S = 2.0
PUBLISH_RETRY_S = 300.0

_LEARNER_NOT_READY = "in sync with leader"
_NOT_A_LEARNER = "can only promote a learner member"
_MEMBER_NOT_FOUND = "member not found"
_PEER_EXISTS = "Peer URLs already exists"


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


# -- one node's etcd -----------------------------------------------------------------------------
def check_data_dir(data_dir: str) -> str:
    p = PurePosixPath(data_dir)
    # A wipe of "/" or "/var" would be a disaster a typo in the inventory must never cause.
    if not p.is_absolute() or len(p.parts) < 3:
        raise ConfigError([Problem("<inventory>", None, f"etcd_data_dir {data_dir!r} is not a dedicated directory "
                                   "(absolute, at least two levels deep); kha will not wipe it", "etcd_data_dir")])
    return str(p)


def wipe_data_dir(ctx: InstallContext, t: Transport) -> None:
    """Empty the data dir (keeping it, 0700 etcd:etcd): a member must join with no state of its own."""
    data_dir = check_data_dir(ctx.topo.settings.etcd_data_dir)
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
    data_dir = ctx.topo.settings.etcd_data_dir
    start = time.monotonic()
    with ctx.node(host.name):
        t = _transport_or_fail(admin, host, "join the cluster")
        entry = find_member(admin.member_list(), me)
        # A node that was a member before has data that would make it rejoin under its old identity: a
        # member that has not started yet must start empty.
        if (entry is None or not entry.started) and ctl.has_data(t, data_dir):
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
        if entry.started and not ctl.has_data(t, data_dir) and not ctx.dry_run:
            raise EtcdError(f"{host.name} is a started member ({entry.hex_id}) but its data dir is empty: it would "
                            f"rejoin with a blank log under its old identity; run `kha etcd replace {host.name}`")
        files = [render.unit(ctx.topo, host), _initial_env_file(ctx, join_initial_cluster(members, me))]
        changed = nodeops.sync_files(ctx, t, files)
        ensure_data_dir(ctx, t, data_dir)
        # --no-block: Type=notify would hold `systemctl start` until the member has joined.
        nodeops.ensure_service(ctx, t, "etcd", changed=bool(changed) and not entry.started, no_block=True)
        if ctx.dry_run:
            return 0.0
        entry = wait_serving(admin, t, me)
        promote(ctx, admin, entry)
        admin.wait_healthy()
    took = time.monotonic() - start
    log.info("%s: member healthy %.1fs after joining", host.name, took)
    return took


def _token(ctx: EtcdContext) -> str:
    return ctx.token or render.cluster_token(ctx.topo)


def _initial_env_file(ctx: EtcdContext, initial_cluster: str) -> NodeFile:
    return render.initial_env_file(initial_cluster, _token(ctx), "existing")


def wait_serving(admin: Admin, t: Transport, me: render.Member) -> MemberInfo:
    """Until the new member serves clients, which it does only once it has published itself to the cluster.

    A member publishes its name through a raft proposal as it starts. Observed on etcd 3.4.23 in about
    half of the joins: "publish error: request timed out" 7 s (5 s + 2 × election timeout) after the
    start, then serving at once — the proposal most likely went into the snapshot the newcomer received,
    so its own wait for it never fired (same symptom as etcd issue 8977). Meanwhile the member accepts TCP
    connections and serves nobody. A learner has no vote, so restarting it costs nothing; it then
    publishes within a second, from the log it now has.
    """
    started = time.monotonic()
    restarted = False
    joined: list[MemberInfo] = []

    def published() -> str | None:
        nonlocal restarted
        if admin.serving(me.client_url):
            entry = find_member(admin.member_list(), me)
            if entry is None:
                raise EtcdError(f"{me.name} left the member list while joining; check `kha etcd status`")
            if entry.started:
                joined.append(entry)
                return None
        if not restarted and time.monotonic() - started > PUBLISH_WAIT_S:
            restarted = True
            entry = find_member(admin.member_list(), me)
            if entry is not None and entry.is_learner:
                log.info("%s: not serving %.0fs after start (likely its publish went into the snapshot it got, "
                         "etcd issue 8977); restarting the learner", me.name, PUBLISH_WAIT_S)
                nodeops.systemctl(t, "restart", "--no-block", "etcd")
        return "not serving clients"

    limit = PUBLISH_WAIT_S + PUBLISH_RETRY_S
    waiting.until(published, timeout=limit, interval=0.25, error=lambda _: EtcdError(
        f"{me.name} does not serve clients {limit:.0f}s after starting; check its log (journalctl -u etcd) and "
        "run the command again"))
    return joined[-1]


def promote(ctx: EtcdContext, admin: Admin, entry: MemberInfo, timeout: float = PROMOTE_TIMEOUT_S) -> None:
    """``member promote`` once the learner has caught up; etcd answers "not in sync" until then."""
    if not entry.is_learner:
        return

    def done(said: str) -> bool:
        # "can only promote a learner member" alone: a run cut short after the promote went through.
        return _NOT_A_LEARNER in said and _LEARNER_NOT_READY not in said

    def for_now(said: str) -> bool:
        return not done(said) and (_LEARNER_NOT_READY in said or ctl.is_transient(said))

    def not_promoted(res: Result) -> EtcdError:
        said = (res.stderr + res.stdout).strip()
        return EtcdError(f"learner {entry.hex_id} ({entry.name or 'not started'}) was not promoted after "
                         f"{timeout:.0f}s: {said.splitlines()[-1] if said else 'no answer'}; "
                         "check its etcd log (journalctl -u etcd) and run the command again")

    res = ctl.retry_transient(lambda: admin.ctl("member", "promote", entry.hex_id, check=False), for_now,
                              timeout=timeout, interval=0.5, error=not_promoted, what="member promote")
    if not (res.ok or done(res.stderr + res.stdout)):
        raise not_promoted(res)
    log.info("member %s promoted to voter", entry.hex_id)


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
    ensure_etcd(ctx, t, facts, ctx.topo.settings)
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


def _wait_all(ctx: EtcdContext) -> None:
    if ctx.would("wait until every member is healthy"):
        return
    ctx.admin().wait_healthy()


#: The last step of every membership change: Kubernetes uses the members etcd has now.
FOLLOW: Phase[EtcdContext] = Phase(
    "apiservers", apiservers.run_follow,
    description="every kube-apiserver's --etcd-servers names the members, one control plane at a time")

ADD: Phase[EtcdContext] = Phase("etcd-add", children=(
    Phase("pki", _pki, description="certificates for the [new-etcd] node in the PKI store"),
    Phase("prepare", _prepare_new, description="etcd packages and certificates on the new node"),
    Phase("join", _join_new, description="member add --learner, start with an empty data dir, promote"),
    Phase("wait", _wait_all, description="every member reports healthy"),
    FOLLOW,
), description="add the [new-etcd] members")

REMOVE: Phase[EtcdContext] = Phase("etcd-remove", children=(
    Phase("check", _remove_check, description="the remaining voters keep a healthy majority"),
    Phase("members", _remove, description="member remove; stop, disable and wipe etcd on the node"),
    Phase("wait", _wait_all, description="every remaining member reports healthy"),
    FOLLOW,
), description="remove the [del-etcd] members")

REPLACE: Phase[EtcdContext] = Phase("etcd-replace", children=(
    Phase("remove", _replace_remove, description="remove the old member by ID (etcdctl on the other members)"),
    Phase("join", _replace_join, description="packages, certificates, wipe, member add --learner, start, promote"),
    Phase("wait", _wait_all, description="every member reports healthy"),
    FOLLOW,
), description="replace a dead member with a fresh one at the same address")


def run_add(ctx: EtcdContext, out: TextIO | None = None) -> None:
    walk(ADD, ctx, out)


def run_remove(ctx: EtcdContext, out: TextIO | None = None) -> None:
    walk(REMOVE, ctx, out)


def run_replace(ctx: EtcdContext, node: str, out: TextIO | None = None) -> None:
    ctx.target = node
    walk(REPLACE, ctx, out)

