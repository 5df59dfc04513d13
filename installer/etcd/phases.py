"""Install phases for the external etcd cluster: packages, certificates, unit, start, wait healthy, and the
daily snapshot timer (``installer.etcd.backup``).

A member that has data is never re-bootstrapped: the initial-cluster settings are written only
while its data dir is empty, and a changed unit or certificate restarts members one at a time,
each waiting for the cluster to be healthy again, so quorum is never lost on a re-run.
"""

from __future__ import annotations

import logging

from installer import nodeops
from installer.context import InstallContext
from installer.errors import EtcdError
from installer.etcd import backup, ctl, release, render
from installer.facts import NodeFacts, OSFamily
from installer.files import NodeFile
from installer.phases import Context, Phase
from installer.pki.store import Store
from installer.remote import Transport
from installer.settings import Settings
from installer.topology import Host

log = logging.getLogger(__name__)

#: Debian's packages; the RHEL family has none and gets etcd's release tarball (installer.etcd.release).
PACKAGES = ("etcd-server", "etcd-client")
#: files from the PKI store's node tree (pki/etcd/…) and who must be able to read them.
CERTS: dict[str, tuple[str, int]] = {
    "ca.crt": ("root", 0o644),
    "server.crt": ("etcd", 0o644),
    "server.key": ("etcd", 0o600),
    "peer.crt": ("etcd", 0o644),
    "peer.key": ("etcd", 0o600),
    "healthcheck-client.crt": ("root", 0o644),
    "healthcheck-client.key": ("root", 0o600),
}


def ensure_etcd(ctx: Context, t: Transport, facts: NodeFacts, s: Settings) -> None:
    """etcd, etcdctl (and the etcd user) on a member: Debian's packages, or the pinned release tarball."""
    if facts.os_family is OSFamily.DEBIAN:
        nodeops.ensure_packages(ctx, t, facts, PACKAGES)
    else:
        release.ensure(ctx, t, s)


def _packages(ctx: InstallContext) -> None:
    for host in ctx.topo.etcd:
        with ctx.node(host.name):
            ensure_etcd(ctx, ctx.transport(host), ctx.node_facts(host), ctx.topo.settings)


def cert_files(ctx: InstallContext, host: Host) -> list[NodeFile]:
    ctx.ensure_same_ca(host)
    src = ctx.pki_tree(host) / "pki" / "etcd"
    out = []
    for name, (owner, mode) in CERTS.items():
        path = src / name
        if not path.exists():
            raise EtcdError(f"{path} is missing from the PKI store; re-run `kha pki init`")
        out.append(NodeFile(f"{render.PKI_DIR}/{name}", path.read_bytes(), mode=mode, owner=owner,
                            group=owner))
    return out


def _certs(ctx: InstallContext) -> None:
    for host in ctx.topo.etcd:
        with ctx.node(host.name):
            if nodeops.sync_files(ctx, ctx.transport(host), cert_files(ctx, host), restarts="etcd"):
                ctx.etcd_changed[host.name] = True


def ensure_data_dir(ctx: InstallContext, t: Transport, data_dir: str) -> None:
    """The data dir exists as 0700 etcd:etcd: etcd refuses one others can read
    (https://etcd.io/docs/v3.4/op-guide/security/)."""
    if nodeops.remote_stat(t, data_dir) != (0o700, "etcd", "etcd") and not ctx.would(
            f"make {data_dir} 0700 etcd:etcd"):
        t.run(["install", "-d", "-m", "0700", "-o", "etcd", "-g", "etcd", data_dir], sudo=True)


def _config(ctx: InstallContext) -> None:
    data_dir = ctx.topo.settings.etcd_data_dir
    initial = render.initial_env(ctx.topo, render.members(ctx.topo.etcd), state="new")
    for host in ctx.topo.etcd:
        with ctx.node(host.name):
            t = ctx.transport(host)
            files = [render.unit(ctx.topo, host)]
            if not ctl.has_data(t, data_dir):
                files.append(initial)
            if nodeops.sync_files(ctx, t, files, restarts="etcd"):
                ctx.etcd_changed[host.name] = True
            ensure_data_dir(ctx, t, data_dir)


def _start(ctx: InstallContext) -> None:
    hosts = ctx.topo.etcd
    changed = ctx.etcd_changed
    for host in hosts:
        ctx.ensure_same_ca(host)
    fresh = [h for h in hosts if not ctl.has_data(ctx.transport(h), ctx.topo.settings.etcd_data_dir)]
    if fresh:
        # Bootstrap: no member can be healthy alone, so start every new one without waiting
        # (Type=notify would block until quorum) and wait for the cluster afterwards.
        for host in fresh:
            with ctx.node(host.name):
                nodeops.ensure_service(ctx, ctx.transport(host), "etcd", changed=True, no_block=True)
    for host in hosts:
        if host in fresh:
            continue
        with ctx.node(host.name):
            # Rolling: a blocking restart returns once the member is back (Type=notify: it has rejoined), and
            # the next member restarts only once the whole cluster is healthy again. (--no-block would let
            # the health check race the stop: two members down at once, and a 3-member cluster loses quorum.)
            if nodeops.ensure_service(ctx, ctx.transport(host), "etcd",
                                      changed=changed.get(host.name, False)) and not ctx.dry_run:
                ctl.wait_healthy(ctx, hosts)


def _wait(ctx: InstallContext) -> None:
    if ctx.would(f"wait until {len(ctx.topo.etcd)} etcd members are healthy"):
        return
    with ctx.node(ctx.topo.etcd[0].name):
        admin = ctl.Admin(ctx, ctx.topo.etcd)
        admin.wait_healthy()
        record_cluster_id(ctx, admin)


def record_cluster_id(ctx: InstallContext, admin: ctl.Admin, *, restored: bool = False) -> None:
    """Keep etcd's cluster ID in the PKI store (identity.json) from the first healthy install on: a later run
    whose nodes form another etcd cluster is refused. ``restored``: a snapshot restore made a new cluster
    on purpose (a fresh token, so a fresh ID), which the store records in place of the old one."""
    ids = {s.cluster_id for s in admin.statuses(admin.endpoints())}
    if len(ids) != 1:
        raise EtcdError(f"the etcd members report {len(ids)} cluster IDs ({', '.join(f'{i:x}' for i in ids)}): "
                        "they are not one cluster")
    for change in Store(ctx.state.pki, ctx.topo).record_etcd_cluster_id(ids.pop(), restored=restored):
        log.info("pki: %s", change)


PHASE: Phase[InstallContext] = Phase(
    "etcd",
    children=(
        Phase("packages", _packages, description="etcd: Debian's packages, or the RHEL family's pinned tarball"),
        Phase("certs", _certs, description="etcd CA, server, peer and healthcheck certificates from the store"),
        Phase("config", _config, description="systemd unit with TLS everywhere; data dir 0700"),
        Phase("start", _start, description="start new members together; restart changed ones one at a time"),
        Phase("wait", _wait, description="every member reports healthy"),
        backup.PHASE,
    ),
    description="external etcd cluster on the [etcd] nodes",
)
