"""Install phases for the apiserver load balancer: packages, configs, services, and a check that the
VIP sits on exactly one ``[lb]`` node (or that the node-local proxy answers on 127.0.0.1).

Configs are rendered with the facts read from each node (its interface, its OS family), synced
only where they differ, and a changed config reloads the daemon rather than restarting it, so the
VIP does not move on a re-run.
"""

from __future__ import annotations

from core import waiting
from installer import nodeops
from installer.context import InstallContext
from installer.errors import LoadBalancerError
from installer.facts import OSFamily
from installer.files import NodeFile
from installer.loadbalancer import render, vip
from installer.phases import Phase
from installer.settings import LBMode
from installer.topology import Host, LBKind

VIP_TIMEOUT_S = 30.0


def _daemon(ctx: InstallContext) -> str:
    return "haproxy" if ctx.topo.settings.lb_mode is LBMode.HAPROXY else "nginx"


def _packages_for(ctx: InstallContext, family: OSFamily) -> list[str]:
    daemon = _daemon(ctx)
    pkgs = [daemon]
    if daemon == "nginx":
        pkgs.append("libnginx-mod-stream" if family is OSFamily.DEBIAN else "nginx-mod-stream")
    if ctx.topo.lb_kind is LBKind.VIP:
        pkgs.append("keepalived")
    return pkgs


def _nodes(ctx: InstallContext) -> tuple[Host, ...]:
    return render.lb_nodes(ctx.topo)


def _packages(ctx: InstallContext) -> None:
    for host in _nodes(ctx):
        with ctx.node(host.name):
            facts = ctx.node_facts(host)
            nodeops.ensure_packages(ctx, ctx.transport(host), facts, _packages_for(ctx, facts.os_family))


def _config(ctx: InstallContext) -> None:
    changed = ctx.lb_changed
    for host in _nodes(ctx):
        with ctx.node(host.name):
            files = render.files(ctx.topo, host, ctx.secrets, ctx.node_facts(host))
            t = ctx.transport(host)
            by_unit: dict[str, list[NodeFile]] = {}
            for f in files:
                keepalived = f.path.startswith("/etc/keepalived/") or f.path == render.KEEPALIVED_DROPIN
                unit = "keepalived" if keepalived else _daemon(ctx)
                by_unit.setdefault(unit, []).append(f)
            changed[host.name] = [path for unit, fs in by_unit.items()
                                  for path in nodeops.sync_files(ctx, t, fs, restarts=unit)]


def _start(ctx: InstallContext) -> None:
    changed = ctx.lb_changed
    daemon = _daemon(ctx)
    first_vrrp = ctx.topo.lb[0] if ctx.topo.lb_kind is LBKind.VIP else None
    for host in _nodes(ctx):
        with ctx.node(host.name):
            t = ctx.transport(host)
            paths = changed.get(host.name, [])
            for unit, conf in ((daemon, render.HAPROXY_CFG if daemon == "haproxy" else render.NGINX_CONF),
                               ("keepalived", render.KEEPALIVED_CONF)):
                if unit == "keepalived" and ctx.topo.lb_kind is not LBKind.VIP:
                    continue
                was_changed = (conf in paths or (unit == "keepalived" and render.CHECK_SCRIPT in paths)
                               or nodeops.is_pending(t, unit))
                # A running daemon reloads its new config (haproxy hands over without dropping the
                # listener; keepalived keeps its VRRP state); a stopped one starts.
                if was_changed and nodeops.is_active(t, unit):
                    if not ctx.would(f"reload {unit}"):
                        nodeops.systemctl(t, "reload", unit)
                        nodeops.clear_pending(ctx, t, unit)
                    was_changed = False
                started = nodeops.ensure_service(ctx, t, unit, changed=was_changed)
                if unit == "keepalived" and started and host == first_vrrp and not ctx.dry_run:
                    # First [lb] node = MASTER: with nopreempt the first instance ready wins, so let it
                    # win before the others start (a restart of a running cluster keeps its holder).
                    _wait_holder(ctx, host)


def reconcile(ctx: InstallContext) -> None:
    """The config phase and the start phase (reload where it changed) again: a day-2 change of the backends."""
    _config(ctx)
    _start(ctx)


def vip_holders(ctx: InstallContext) -> list[str]:
    return vip.holders(ctx.topo, ctx.transport)


def _wait_holder(ctx: InstallContext, host: Host) -> None:
    waiting.until(
        lambda: None if host.name in vip_holders(ctx) else "not yet", timeout=VIP_TIMEOUT_S, interval=0.3,
        error=lambda _: LoadBalancerError(f"{host.name} did not take the VIP {ctx.topo.vip} within "
                                          f"{VIP_TIMEOUT_S:.0f}s after keepalived started (check its log: "
                                          "journalctl -u keepalived)"))


def _wait(ctx: InstallContext) -> None:
    kind = ctx.topo.lb_kind
    if kind is LBKind.SLB:
        return
    if ctx.would("check the load balancer answers" + (" and the VIP is on one node" if kind is LBKind.VIP else "")):
        return
    port = str(ctx.topo.settings.lb_kube_apiserver_port)
    for host in _nodes(ctx):
        with ctx.node(host.name):
            probe = ["timeout", "2", "bash", "-c", 'exec 3<>"/dev/tcp/127.0.0.1/$1"', "probe", port]
            ctx.transport(host).run(probe)
    if kind is LBKind.VIP:

        def one_holder() -> str | None:
            holders = vip_holders(ctx)
            return None if len(holders) == 1 else ", ".join(holders) or "no node"

        waiting.until(one_holder, timeout=VIP_TIMEOUT_S, interval=0.5, error=lambda where: LoadBalancerError(
            f"VIP {ctx.topo.vip} is held by {where} after {VIP_TIMEOUT_S:.0f}s; expected exactly one [lb] node "
            "(check VRRP traffic between them)"))


PHASE: Phase[InstallContext] = Phase(
    "loadbalancer",
    children=(
        Phase("packages", _packages, description="haproxy or nginx (stream), keepalived for a VIP"),
        Phase("config", _config, description="proxy config with every master; keepalived with the VIP"),
        Phase("start", _start, description="start, or reload when the config changed"),
        Phase("wait", _wait, description="the proxy answers; the VIP is on exactly one [lb] node"),
    ),
    description="apiserver load balancer",
    run_if=lambda ctx: ctx.topo.lb_kind is not LBKind.SLB,
)
