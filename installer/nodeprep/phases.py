"""``prepare``: what every node needs before etcd, the load balancer and Kubernetes land on it.

Children, in order: ``verify`` (the resource bar, for ``kube_proxy_mode=ipvs`` that the kernel can load
IPVS, and that a RHEL-family node is a 9: read-only, every node checked and every problem reported at
once, before anything is written), ``hosts`` (/etc/hosts), ``timezone``, ``proxy`` (containerd, apt),
then on RHEL-family nodes only ``selinux`` (permissive), ``firewall`` (``firewalld_mode``) and ``repos``
(containerd.io's), and ``time`` (chrony, then a wait until every node follows its source). Each step looks
first and changes only what differs; Debian nodes get none of the RHEL steps.
"""

from __future__ import annotations

import logging

from core import waiting
from installer import nodeops
from installer.context import InstallContext
from installer.errors import ConfigError, KubernetesError, Problem
from installer.facts import OSFamily
from installer.files import NodeFile
from installer.kubernetes import render as k8s
from installer.nodeprep import firewall, render
from installer.phases import Phase
from installer.remote import Transport
from installer.topology import Host, Role

log = logging.getLogger(__name__)

#: The RHEL-family release kha prepares (Rocky 9, RHEL 9, CentOS Stream 9, Alma 9).
SUPPORTED_REDHAT_MAJOR = 9
SELINUX_CONFIG = "/etc/selinux/config"
#: How long a node's chrony may take to select its source (iburst: four polls ~2 s apart, then selection).
TIME_SYNC_TIMEOUT_S = 90.0


def _nodes(ctx: InstallContext) -> tuple[Host, ...]:
    return render.nodes(ctx.topo)


# -- verify --------------------------------------------------------------------------------------
def resource_problem(ctx: InstallContext, host: Host) -> str | None:
    """Why ``host`` is below kha's bar (None: it is not): 2 CPUs and 2 GiB for a Kubernetes node, 4 GiB
    for the one node of a one-node cluster (master, etcd member and worker at once: allinone)."""
    roles = set(ctx.topo.roles(host.name))
    if not roles & {Role.MASTER, Role.WORKER, Role.NEW_MASTER, Role.NEW_WORKER}:
        return None
    facts = ctx.node_facts(host)
    allinone = {Role.MASTER, Role.WORKER, Role.ETCD} <= roles and len(render.nodes(ctx.topo)) == 1
    need_mib = render.MIN_MEMORY_ALLINONE_MIB if allinone else render.MIN_MEMORY_MIB
    if facts.cpus >= render.MIN_CPUS and facts.memory_mib >= need_mib:
        return None
    shape = "2 CPUs and 4 GiB (the one node of the cluster)" if allinone else "2 CPUs and 2 GiB"
    return (f"{host.name} has {facts.cpus} CPU(s) and {facts.memory_mib} MiB; a Kubernetes node needs {shape} "
            f"(at least {render.MIN_CPUS} CPUs and {need_mib} MiB MemTotal); set skip_verify_node=true to "
            "install anyway")


def ipvs_problem(ctx: InstallContext, host: Host) -> str | None:
    """Which IPVS module this node neither has nor can load (kube_proxy_mode=ipvs), and what modprobe said."""
    t = ctx.transport(host)
    for module in k8s.IPVS_MODULES:
        if nodeops.module_present(t, module):
            continue
        res = t.run(["modprobe", "--dry-run", module], sudo=True, check=False)
        if not res.ok:
            said = (res.stderr or res.stdout).strip().splitlines()
            return (f"{host.name}: kube_proxy_mode=ipvs needs kernel module {module}, which is neither loaded nor "
                    f"loadable here ({said[-1] if said else f'modprobe exit {res.exit_code}'}); a node that is a "
                    "container needs it loaded on its host; or use kube_proxy_mode=iptables")
    return None


def redhat_problem(ctx: InstallContext, host: Host) -> str | None:
    """Why kha cannot prepare this RHEL-family node (None: it can, or it is not of that family)."""
    facts = ctx.node_facts(host)
    if facts.os_family is not OSFamily.REDHAT:
        return None
    if facts.os_major != SUPPORTED_REDHAT_MAJOR:
        return (f"{host.name} runs a RHEL-family release {facts.os_major or 'without a VERSION_ID'}; kha prepares "
                f"the RHEL family at {SUPPORTED_REDHAT_MAJOR} only (Rocky, RHEL, CentOS Stream, Alma)")
    if ctx.bundle is not None and host in k8s.kubernetes_nodes(ctx.topo):
        return (f"{host.name} is of the RHEL family: the offline bundle is built from Debian (its CNI plugins' "
                "place is Debian's /usr/lib/cni) and containerd.io comes from Docker's repository; install "
                "without --bundle, from pkgs.k8s.io or a mirror of it (kube_repo_url, containerd_repo_url)")
    return None


def _verify(ctx: InstallContext) -> None:
    s = ctx.topo.settings
    problems = []
    for host in _nodes(ctx):
        with ctx.node(host.name):
            if why := redhat_problem(ctx, host):
                problems.append(Problem(ctx.topo.source, host.line, why))
            if not s.skip_verify_node and (why := resource_problem(ctx, host)):
                problems.append(Problem(ctx.topo.source, host.line, why, "skip_verify_node"))
            if s.kube_proxy_mode.value == "ipvs" and host in k8s.kubernetes_nodes(ctx.topo) and (
                    why := ipvs_problem(ctx, host)):
                problems.append(Problem(ctx.topo.source, s.line("kube_proxy_mode") or host.line, why,
                                        "kube_proxy_mode"))
    if problems:
        raise ConfigError(problems)


# -- hosts, time zone, proxy ---------------------------------------------------------------------
def _hosts(ctx: InstallContext) -> None:
    block = render.hosts_block(ctx.topo)
    for host in _nodes(ctx):
        with ctx.node(host.name):
            t = ctx.transport(host)
            nodeops.sync_file(ctx, t, NodeFile(render.HOSTS_FILE, block))
            nodeops.sync_block(ctx, t, render.ETC_HOSTS, render.HOSTS_MARKER, block)


def _timezone(ctx: InstallContext) -> None:
    zone = ctx.topo.settings.timezone
    if zone is None:
        return
    target = f"{render.ZONEINFO}/{zone}"
    for host in _nodes(ctx):
        with ctx.node(host.name):
            t = ctx.transport(host)
            facts = ctx.node_facts(host)
            nodeops.ensure_packages(ctx, t, facts, ["tzdata"])
            if not ctx.dry_run and not t.run(["test", "-f", target], sudo=True, check=False).ok:
                raise ConfigError([Problem(ctx.topo.source, ctx.topo.settings.line("timezone"),
                                           f"{host.name} has no {target}: not a time zone tzdata knows", "timezone")])
            if t.run(["readlink", "/etc/localtime"], sudo=True, check=False).stdout.strip() != target and not ctx.would(
                    f"link /etc/localtime to {target}"):
                t.run(["ln", "-sfn", target, "/etc/localtime"], sudo=True)
            nodeops.sync_files(ctx, t, [f for f in render.files(ctx.topo, host, facts)
                                        if f.path == render.TIMEZONE_FILE])


def _proxy(ctx: InstallContext) -> None:
    for host in _nodes(ctx):
        with ctx.node(host.name):
            t = ctx.transport(host)
            files = render.proxy_files(ctx.topo, ctx.node_facts(host))
            # containerd is (re)started by kubernetes/runtime: the mark makes it pick the drop-in up.
            nodeops.sync_files(ctx, t, files, restarts="containerd")


# -- the RHEL family: SELinux, firewalld, containerd's repository ---------------------------------
def _redhat(ctx: InstallContext) -> list[Host]:
    return [h for h in _nodes(ctx) if ctx.node_facts(h).os_family is OSFamily.REDHAT]


def _has_redhat(ctx: InstallContext) -> bool:
    return bool(_redhat(ctx))


def selinux_permissive(config: str) -> str:
    """/etc/selinux/config with ``SELINUX=enforcing`` made ``permissive`` (``disabled`` and permissive stay)."""
    return "".join("SELINUX=permissive\n" if line.strip() == "SELINUX=enforcing" else line
                   for line in config.splitlines(keepends=True))


def _selinux(ctx: InstallContext) -> None:
    """kubeadm's RHEL steps: SELinux permissive now (setenforce 0) and at boot (/etc/selinux/config), so
    containers can read the host's filesystem as pod networks and kubelet need
    (https://kubernetes.io/docs/setup/production-environment/tools/kubeadm/install-kubeadm/)."""
    for host in _redhat(ctx):
        with ctx.node(host.name):
            t = ctx.transport(host)
            mode = t.run(["getenforce"], sudo=True, check=False).stdout.strip()
            if mode == "Enforcing" and not ctx.would("set SELinux permissive now (setenforce 0)"):
                t.run(["setenforce", "0"], sudo=True)
                log.warning("%s: SELinux was enforcing: now permissive (kubeadm's requirement); it stays permissive "
                            "after a reboot (%s)", host.name, SELINUX_CONFIG)
            if nodeops.exists(t, SELINUX_CONFIG):
                nodeops.edit_file(ctx, t, SELINUX_CONFIG, selinux_permissive,
                                  f"set SELINUX=permissive in {SELINUX_CONFIG} (it stays so after a reboot)")


def _firewall(ctx: InstallContext) -> None:
    for host in _redhat(ctx):
        with ctx.node(host.name):
            firewall.ensure(ctx, ctx.transport(host), ctx.topo, host, ctx.node_facts(host).interface)


def _repos(ctx: InstallContext) -> None:
    """containerd.io's repository on the Kubernetes nodes (pkgs.k8s.io's is written by kubernetes/binaries,
    for the minor version it installs; etcd comes from its release tarball: installer.etcd.release)."""
    for host in _redhat(ctx):
        if host not in k8s.kubernetes_nodes(ctx.topo):
            continue
        with ctx.node(host.name):
            nodeops.sync_file(ctx, ctx.transport(host), render.containerd_repo(ctx.topo.settings, ctx.node_facts(host)))


# -- time ----------------------------------------------------------------------------------------
def _time(ctx: InstallContext) -> None:
    if not ctx.topo.settings.chrony_enabled:
        return
    hosts = _nodes(ctx)
    for host in hosts:  # the first master first: the others follow it
        with ctx.node(host.name):
            t = ctx.transport(host)
            facts = ctx.node_facts(host)
            c = render.Chrony.of(facts)
            # The -x drop-in goes on before chrony is installed or started: on a container chronyd must never
            # run without it (it would step the host's clock where the container keeps CAP_SYS_TIME).
            ours = [f for f in render.files(ctx.topo, host, facts) if f.path in (c.config, c.dropin)]
            changed = nodeops.sync_files(ctx, t, [f for f in ours if f.path == c.dropin], restarts=c.unit)
            nodeops.ensure_packages(ctx, t, facts, ["chrony"])
            changed += nodeops.sync_files(ctx, t, [f for f in ours if f.path == c.config], restarts=c.unit)
            nodeops.ensure_service(ctx, t, c.unit, changed=bool(changed))
    if ctx.dry_run:
        return  # the wait changes nothing, and a dry run has started no chrony to wait for
    for host in hosts:
        with ctx.node(host.name):
            _wait_synced(host, ctx.transport(host))


def _wait_synced(host: Host, t: Transport) -> None:
    def problem() -> str | None:
        return time_problem(t.run(["chronyc", "-n", "-c", "tracking"], sudo=True, check=False).stdout)

    waiting.until(problem, timeout=TIME_SYNC_TIMEOUT_S, interval=2, error=lambda why: KubernetesError(
        f"{host.name}: chrony not in sync after {TIME_SYNC_TIMEOUT_S:.0f}s: {why}"))


def time_problem(tracking_csv: str) -> str | None:
    """None when ``chronyc -n -c tracking`` says the clock follows a source (a server, or the local clock the
    first master serves); else what it says. Fields (chronyc(1), -c): reference ID, its address, stratum,
    reference time, system time offset, … leap status last."""
    fields = tracking_csv.strip().split(",")
    if len(fields) < 14:
        return f"chronyc tracking gave {tracking_csv.strip()!r}"
    ref, leap = fields[0], fields[-1]
    if ref == "00000000" or leap == "Not synchronised":
        return f"not synchronised (reference {ref}, leap status {leap})"
    return None


PHASE: Phase[InstallContext] = Phase(
    "prepare",
    children=(
        Phase("verify", _verify, description="resources (skip_verify_node) and IPVS modules, read-only, every node"),
        Phase("hosts", _hosts, description="/etc/hosts: every node by name, and custom_hosts"),
        Phase("timezone", _timezone, description="timezone: /etc/localtime"),
        Phase("proxy", _proxy, description="http_proxy/https_proxy/no_proxy for containerd and apt"),
        Phase("selinux", _selinux, run_if=_has_redhat, description="RHEL family: SELinux permissive, now and at boot"),
        Phase("firewall", _firewall, run_if=_has_redhat,
              description="RHEL family: firewalld stopped, or open for each node's roles (firewalld_mode)"),
        Phase("repos", _repos, run_if=_has_redhat, description="RHEL family: containerd.io's repository"),
        Phase("time", _time, description="chrony_enabled: chrony, the first master serving the others"),
    ),
    description="node preparation before any component",
)
