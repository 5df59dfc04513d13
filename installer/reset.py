"""``kha reset``: nodes taken back to before kha (kubeadm-ha's 99-reset), the whole cluster or ``--node N``.

Phases, each on the chosen nodes that have its part:

- ``kubernetes``: ``installer.kubernetes.reset`` (kubeadm reset, the kubelet stopped and disabled, kha's CNI
  files, bridge and iptables rules gone). kubeadm reset empties /etc/kubernetes/pki, where an etcd member
  keeps its certificates: on an etcd node they are set aside and put back;
- ``loadbalancer``: haproxy or nginx, and keepalived, stopped and disabled (so the VIP is released); the
  files only kha writes (keepalived's config, its check script and drop-in) removed. haproxy.cfg and
  nginx.conf are the packages' own files: they keep kha's content, with their daemons off;
- ``etcd``: only with ``--yes-delete-etcd-data`` (a cluster's whole state lives there, and a reset is not
  how it is lost by accident): the member stopped and disabled, its data directory, unit, initial
  environment and certificates removed, and its snapshot timer (the snapshots in /var/backups/kha-etcd
  stay). Without the flag etcd keeps running, untouched, and the run says so.

The state folder (PKI store, secrets) stays: ``kha install`` with it builds the same cluster again (same
CAs). A node with nothing left of a part is not touched by it: a second reset changes nothing.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

from core.errors import InputError
from installer import nodeops, topology
from installer.context import InstallContext, add_arguments, open_context, walk
from installer.etcd import backup
from installer.etcd import render as etcd_render
from installer.kubernetes import reset as kubernetes_reset
from installer.kubernetes.render import kubernetes_nodes
from installer.loadbalancer import render as lb_render
from installer.phases import Phase
from installer.topology import Host, LBKind

#: what only kha writes on an LB node (the packages' own haproxy.cfg / nginx.conf stay)
LB_FILES = (lb_render.KEEPALIVED_CONF, lb_render.CHECK_SCRIPT, lb_render.KEEPALIVED_DROPIN)
LB_UNITS = ("keepalived", "haproxy", "nginx")


@dataclass(kw_only=True)
class ResetContext(InstallContext):
    #: the nodes to reset (every node of the inventory, or ``--node``)
    chosen: tuple[Host, ...] = ()
    #: ``--yes-delete-etcd-data``
    delete_etcd_data: bool = False


def _on(ctx: ResetContext, hosts: tuple[Host, ...]) -> list[Host]:
    return [h for h in hosts if h in ctx.chosen]


def _kubernetes(ctx: ResetContext) -> None:
    for host in _on(ctx, kubernetes_nodes(ctx.topo)):
        with ctx.node(host.name):
            keep = (etcd_render.PKI_DIR,) if host in ctx.topo.etcd else ()
            kubernetes_reset.kubernetes(ctx, ctx.transport(host), keep)


def _present(ctx: ResetContext, host: Host, paths: tuple[str, ...]) -> list[str]:
    t = ctx.transport(host)
    return [p for p in paths if nodeops.exists(t, p)]


def _loadbalancer(ctx: ResetContext) -> None:
    if ctx.topo.lb_kind is LBKind.SLB:
        return
    for host in _on(ctx, lb_render.lb_nodes(ctx.topo)):
        with ctx.node(host.name):
            t = ctx.transport(host)
            running = [u for u in LB_UNITS if nodeops.is_active(t, u)
                       or nodeops.systemctl(t, "is-enabled", "--quiet", u, check=False)]
            files = _present(ctx, host, LB_FILES)
            if not running and not files:
                continue
            if ctx.would(f"stop and disable {', '.join(running) or 'nothing'}; remove {', '.join(files) or 'nothing'}"):
                continue
            for unit in running:
                nodeops.systemctl(t, "disable", "--now", unit)
            if files:
                t.run(["rm", "-f", "--", *files], sudo=True)
                nodeops.systemctl(t, "daemon-reload")


def _etcd(ctx: ResetContext) -> None:
    data_dir = ctx.topo.settings.etcd_data_dir
    paths = (data_dir, etcd_render.UNIT_PATH, etcd_render.INITIAL_ENV_PATH, etcd_render.PKI_DIR,
             backup.SERVICE_PATH, backup.TIMER_PATH, backup.SCRIPT_PATH)
    for host in _on(ctx, ctx.topo.etcd):
        with ctx.node(host.name):
            t = ctx.transport(host)
            found = _present(ctx, host, paths)
            active = nodeops.is_active(t, "etcd")
            if not found and not active:
                continue
            if not ctx.delete_etcd_data:
                print(f"  {host.name}: etcd kept ({data_dir} and the member untouched; --yes-delete-etcd-data "
                      "removes them)")
                continue
            if ctx.would(f"stop and disable etcd; delete {', '.join(found)}"):
                continue
            nodeops.systemctl(t, "disable", "--now", backup.TIMER, "etcd", check=False)
            t.run(["rm", "-rf", "--", *found], sudo=True)
            nodeops.systemctl(t, "daemon-reload")


RESET: Phase[ResetContext] = Phase(
    "reset",
    children=(
        Phase("kubernetes", _kubernetes, description="kubeadm reset, kubelet off, kha's CNI files and rules gone"),
        Phase("loadbalancer", _loadbalancer, description="haproxy/nginx and keepalived stopped, kha's files gone"),
        Phase("etcd", _etcd, description="only with --yes-delete-etcd-data: the member stopped, its data deleted"),
    ),
    description="nodes back to before kha",
)


def run(inventory: str, *, node: str | None = None, delete_etcd_data: bool = False, state: str | None = None,
        known_hosts: str | None = None, ssh_config: str | None = None, trust_unknown: bool = False,
        dry_run: bool = False) -> None:
    """``kha reset``: ``--node`` is checked against the inventory before anything connects (exit 2)."""
    topo = topology.load(inventory)
    if node is not None and node not in {h.name for h in topo.hosts}:
        raise InputError(f"--node {node}: not a node of {inventory} (its nodes: "
                         f"{', '.join(h.name for h in topo.hosts)})")
    chosen = tuple(h for h in topo.hosts if node is None or h.name == node)
    ctx = open_context(ResetContext, inventory, topo=topo, state=state, known_hosts=known_hosts,
                       ssh_config=ssh_config, trust_unknown=trust_unknown, dry_run=dry_run, write_secrets=False,
                       chosen=chosen, delete_etcd_data=delete_etcd_data)
    walk(RESET, ctx)


def _cmd(args: argparse.Namespace) -> int:
    run(args.inventory, node=args.node, delete_etcd_data=args.yes_delete_etcd_data, state=args.state,
        known_hosts=args.known_hosts, ssh_config=args.ssh_config, trust_unknown=args.trust_unknown_hosts,
        dry_run=args.dry_run)
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("reset", help="take the cluster's nodes (or --node N) back to before kha; etcd's data only "
                                     "with --yes-delete-etcd-data; the state folder stays")
    add_arguments(p)
    p.add_argument("--node", metavar="NODE", help="reset this node only (as named in the inventory)")
    p.add_argument("--yes-delete-etcd-data", action="store_true",
                   help="also stop the etcd members on the chosen nodes and delete their data (the cluster's state)")
    p.set_defaults(handler=_cmd)
