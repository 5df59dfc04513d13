"""etcd snapshots: ``kha etcd snapshot save`` (one healthy member's data, copied here) and ``restore``
(every [etcd] member rebuilt from one file).

Restore (https://etcd.io/docs/v3.4/op-guide/recovery/) rebuilds every [etcd] member from one file with a
fresh ``--initial-cluster-token``, so members still holding the old data can never rejoin the restored
cluster. Raising the revision past anything a watcher saw (``--bump-revision``/``--mark-compacted``)
needs etcdutl 3.5.10+ or 3.6; etcdctl 3.4 (Debian 12's etcd) has neither flag, so there the revision goes
back to the snapshot's. kha asks the node's tool (``restore_tool``) and bumps when it can, and either way
restarts what watched the old history: every control plane's static pods, one node at a time, then the
kubelets. That makes it a restore of the whole Kubernetes cluster, not only of etcd.

Before anything is stopped, the file is checked: against its sidecars (``installer.etcd.backup``: its
sha256, and the cluster it is of), then by a trial restore on one node (etcd's integrity hash). A corrupt
or foreign snapshot is refused (exit 2) with every member still running. The pure parts (the restore
argv, the token, the sidecar check) are plain functions, unit-tested without a cluster.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import secrets
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from installer import nodeops
from installer.context import walk
from installer.errors import ConfigError, EtcdError, Problem, RemoteError
from installer.etcd import backup, ctl, render
from installer.etcd.context import EtcdContext
from installer.etcd.ctl import host_of, member_of
from installer.etcd.membership import check_data_dir, stop_etcd
from installer.etcd.phases import record_cluster_id
from installer.kubernetes import staticpods
from installer.kubernetes.render import kubernetes_nodes
from installer.phases import Phase
from installer.remote import Transport

log = logging.getLogger(__name__)

#: What etcd's recovery guide suggests for Kubernetes: far above any revision a watcher has seen.
REVISION_BUMP = 1_000_000_000
SNAPSHOT_TMP = "/var/tmp"


def status(t: Transport, path: str) -> ctl.SnapshotStatus:
    """``snapshot status`` of a file on the node; EtcdError when it is not a usable snapshot."""
    res = t.run(ctl.offline("etcdctl", "snapshot", "status", path, "-w", "json"), sudo=True, check=False)
    if not res.ok:
        raise EtcdError(f"{t.node}: `etcdctl snapshot status {path}`: {res.stderr.strip() or res.stdout.strip()}")
    return ctl.parse_snapshot_status(res.stdout)


# -- save ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SnapshotInfo:
    path: Path
    member: str
    revision: int
    keys: int
    size: int
    hash: int


def save(ctx: EtcdContext, dest: Path) -> SnapshotInfo:
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
                t.run(ctl.argv("snapshot", "save", remote, endpoints=[m.client_urls[0]], command_timeout="300s"),
                      sudo=True, timeout=600)
                info = status(t, remote)
                data = t.get(remote, sudo=True)
            finally:
                t.run(["rm", "-f", "--", remote], sudo=True, check=False)
        _write_atomic(dest, data)
        backup.write_sidecars(dest, data, backup.store_identity(ctx), m.name, dt.datetime.now(dt.UTC))
        snap = SnapshotInfo(dest, m.name, info.revision, info.total_keys, len(data), info.hash)
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


# -- restore -------------------------------------------------------------------------------------
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




def _restore_upload(ctx: EtcdContext) -> None:
    src = ctx.snapshot
    if src is None:
        raise ConfigError([Problem("FILE", None, "no snapshot file given", "FILE")])
    if not src.is_file():
        raise ConfigError([Problem(str(src), None, "no such snapshot file", "FILE")])
    data = src.read_bytes()
    # Whole and of this cluster, by its sidecars (the timer's, or `kha etcd snapshot save`'s): before any node.
    problems, vouched = backup.check(src, data, backup.store_identity(ctx))
    if problems:
        raise ConfigError(problems)
    if not vouched:
        log.warning("%s has no %s or %s beside it: kha cannot tell which cluster it is of; restoring it as this "
                    "inventory's", src, *(p.name for p in backup.sidecars(src)))
    for host in ctx.topo.etcd:
        with ctx.node(host.name):
            if ctx.would(f"copy {src} to {_remote_snapshot()}"):
                continue
            ctx.transport(host).put(data, _remote_snapshot(), mode=0o600, sudo=True)
    if ctx.dry_run:
        return
    # A trial restore on one node before anything is stopped: it checks the snapshot's integrity hash, so a
    # corrupt file must not cost a cluster.
    first = ctx.topo.etcd[0]
    with ctx.node(first.name):
        _trial(ctx, ctx.transport(first), src)


def _trial(ctx: EtcdContext, t: Transport, src: Path) -> None:
    scratch = f"{SNAPSHOT_TMP}/kha-etcd-restore-check"
    tool, _ = restore_tool(t)
    member = member_of(ctx.topo.etcd[0])
    argv = restore_argv(_remote_snapshot(), member, [member], token="kha-check", data_dir=scratch, tool=tool)
    try:
        info = status(t, _remote_snapshot())
        res = t.run(["sh", "-c", 'rm -rf -- "$1" && shift && exec "$@"', "sh", scratch, *ctl.offline(*argv)],
                    sudo=True, check=False, timeout=600)
        if not res.ok:
            raise EtcdError(f"`{tool} snapshot restore`: {(res.stderr or res.stdout).strip()[-300:]}")
    except EtcdError as exc:
        for host in ctx.topo.etcd:
            ctx.transport(host).run(["rm", "-f", "--", _remote_snapshot()], sudo=True, check=False)
        raise ConfigError([Problem(str(src), None, f"not a usable etcd snapshot ({exc}); nothing was stopped",
                                   "FILE")]) from None
    finally:
        t.run(["rm", "-rf", "--", scratch], sudo=True, check=False)
    log.info("snapshot %s: revision %s, %s keys, restores cleanly", src, info.revision, info.total_keys)


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
        res = t.run(ctl.offline(tool, "snapshot", "restore", "--help"), check=False)
        if res.exit_code == 127:
            continue
        if "--bump-revision" in res.stdout + res.stderr:
            return tool, REVISION_BUMP
        if res.ok or tool == "etcdctl":
            return tool, None
    return "etcdctl", None


def _restore_data(ctx: EtcdContext) -> None:
    data_dir = check_data_dir(ctx.topo.settings.etcd_data_dir)
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
                            "revision goes back to the snapshot's (kha restarts the control planes and kubelets "
                            "after)", host.name, tool)
            argv = restore_argv(_remote_snapshot(), member_of(host), members, token=token, data_dir=staging,
                                tool=tool, bump=bump)
            if ctx.would(f"restore the snapshot into {data_dir} (token {token}); keep the old data in {backup}"):
                continue
            t.run(["rm", "-rf", "--", staging], sudo=True)
            t.run(ctl.offline(*argv), sudo=True, timeout=600)
            # Keep the data this replaces (once: a resumed run must not overwrite it with nothing).
            if ctl.has_data(t, data_dir):
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


def _wait_topo(ctx: EtcdContext) -> None:
    if ctx.would(f"wait until the {len(ctx.topo.etcd)} [etcd] members are healthy"):
        return
    admin = ctx.admin()
    admin.wait_healthy(ctl.client_urls(ctx.topo.etcd))
    record_cluster_id(ctx, admin, restored=True)



def _kubernetes(ctx: EtcdContext) -> None:
    """Kubernetes reads the restored data: every control plane's static pods restart, one node at a time (the
    apiserver's watch cache and the controllers' informers hold the lost history), then every kubelet
    (https://kubernetes.io/docs/tasks/administer-cluster/configure-upgrade-etcd/#restoring-an-etcd-cluster).
    An etcd-only cluster has none of them."""
    for host in ctx.topo.masters:
        with ctx.node(host.name):
            t = ctx.transport(host)
            for pod in staticpods.CONTROL_PLANE:
                staticpods.restart_stamped(ctx, t, pod, str(host.address), ctx.topo.apiserver_port,
                                           why="to read the restored etcd")
    for host in kubernetes_nodes(ctx.topo):
        with ctx.node(host.name):
            t = ctx.transport(host)
            if nodeops.is_active(t, "kubelet") and not ctx.would("restart the kubelet"):
                nodeops.systemctl(t, "restart", "kubelet")


RESTORE: Phase[EtcdContext] = Phase("etcd-restore", children=(
    Phase("upload", _restore_upload, description="copy the snapshot to every member and check it"),
    Phase("stop", _restore_stop, description="stop etcd on every member"),
    Phase("restore", _restore_data, description="snapshot restore with a fresh cluster token; old data kept aside"),
    Phase("start", _restore_start, description="start every member"),
    Phase("wait", _wait_topo, description="every member reports healthy"),
    Phase("kubernetes", _kubernetes, description="control planes' static pods restarted one node at a time, "
                                                 "then the kubelets"),
), description="roll the cluster back to a snapshot")



def run_restore(ctx: EtcdContext, snapshot: Path, out: TextIO | None = None) -> str:
    """Restore every [etcd] member from ``snapshot``; returns the new cluster token."""
    ctx.snapshot = snapshot
    walk(RESTORE, ctx, out)
    return ctx.token or ""
