"""``kha upgrade -i INVENTORY --to VERSION``: a running cluster moved to the next Kubernetes version, the way
kubeadm's upgrade guide does it (kubeadm-ha's 91-upgrade-cluster), one node at a time.

1. ``plan``: the version the cluster runs (kubeadm's stored ClusterConfiguration) and the target, checked
   before anything changes (exit 2): an exact version, the inventory's ``kube_version`` (so a later
   ``kha install`` agrees), newer than the running one, at most one minor version ahead (kubeadm's rule),
   from pkgs.k8s.io (1.24 and newer). An offline bundle holds one version, so a cluster installed from
   one has nothing to upgrade to here: that is refused the same way, with the reason.
2. ``etcd`` (only with ``--with-etcd``): each member's etcd moved, one member at a time, each back in a
   healthy cluster before the next: Debian's packages to what the node's repositories offer; on the RHEL
   family, to the release kha pins (``installer.etcd.release``, from its checked tarball).
3. ``first-control-plane``: kubeadm at the target, ``kubeadm upgrade plan``, then ``kubeadm upgrade apply``
   (``--certificate-renewal=false``: kha's PKI store owns the certificates; ``--etcd-upgrade=false``: etcd
   is external), then this node's kubelet.
4. ``control-planes``: the others, one at a time: kubeadm, ``kubeadm upgrade node``, then the kubelet.
5. ``workers``: one at a time: kubeadm, ``kubeadm upgrade node``, then the kubelet.

A kubelet is upgraded drained: ``kubectl drain``, kubelet and kubectl at the target, the kubelet restarted,
the node back Ready at the target, ``kubectl uncordon``. Every step looks first: a node whose packages, static
pods or kubelet are already at the target is passed over, so a second run changes nothing and an
interrupted run resumes (a node left cordoned is uncordoned). The pure part (``check``) is unit-tested; the
rest against a scripted cluster (``tests/unit/test_kubernetes_upgrade.py``): no second Kubernetes version
can be built offline on the machine kha is developed on, so no real cluster has been upgraded there.
"""

from __future__ import annotations

import argparse
import logging
import shlex
from dataclasses import dataclass

import yaml

from core import waiting
from installer import nodeops, topology
from installer.context import InstallContext, add_arguments, open_context, walk
from installer.errors import ConfigError, KubernetesError, Problem
from installer.etcd import ctl, release
from installer.facts import OSFamily
from installer.kubernetes import packages, staticpods
from installer.kubernetes.phases import kubectl
from installer.kubernetes.render import kubernetes_nodes
from installer.phases import Phase
from installer.settings import KubeVersion
from installer.topology import Host, Topology

log = logging.getLogger(__name__)

DRAIN_TIMEOUT_S = 300
#: from the kubelet's restart until its node reports Ready at the new version
KUBELET_TIMEOUT_S = 180.0
#: ``kubectl get nodes -o`` this: ``name=kubeletVersion=unschedulable`` per node
NODES_OUTPUT = ("jsonpath={range .items[*]}{.metadata.name}={.status.nodeInfo.kubeletVersion}="
                "{.spec.unschedulable}={.status.conditions[?(@.type=='Ready')].status}{'\\n'}{end}")


@dataclass(frozen=True)
class NodeState:
    """One node as the API sees it."""

    kubelet: str
    cordoned: bool
    ready: bool


def parse_nodes(out: str) -> dict[str, NodeState]:
    nodes = {}
    for line in out.splitlines():
        name, _, rest = line.partition("=")
        kubelet, _, rest = rest.partition("=")
        cordoned, _, ready = rest.partition("=")
        if name:
            nodes[name] = NodeState(kubelet.lstrip("v"), cordoned == "true", ready == "True")
    return nodes


def running_version(cluster_configuration: str) -> KubeVersion:
    """``kubernetesVersion`` of kubeadm's stored ClusterConfiguration (what ``upgrade apply`` last set)."""
    config = yaml.safe_load(cluster_configuration) if cluster_configuration.strip() else None
    text = config.get("kubernetesVersion") if isinstance(config, dict) else None
    if not isinstance(text, str):
        raise KubernetesError("kube-system/kubeadm-config holds no kubernetesVersion: not a cluster kubeadm "
                              "installed, or not installed yet (run kha install)")
    return KubeVersion.parse(text)


def check(topo: Topology, target: KubeVersion, running: KubeVersion | None = None) -> list[Problem]:
    """Why the cluster cannot go to ``target`` (``--to``), from ``running``: the flag and the inventory first
    (``running`` None: before any node is asked), then the versions."""
    to = f"--to {target}"
    s = topo.settings
    if target.patch is None:
        return [Problem(to, None, "an exact version is needed (e.g. 1.30.2): kubeadm upgrades to one release")]
    out = []
    if (s.kube_version.major, s.kube_version.minor, s.kube_version.patch) != (
            target.major, target.minor, target.patch):
        out.append(Problem(topo.source, s.line("kube_version"),
                           f"kube_version={s.kube_version} but {to}: set kube_version={target} in the inventory "
                           "first, so that kha install and every later command agree", "kube_version"))
    if not target.at_least(1, packages.FIRST_MINOR):
        out.append(Problem(to, None, f"pkgs.k8s.io starts at 1.{packages.FIRST_MINOR}, and an offline bundle holds "
                           "the one version it was built with (kha bundle build: Debian's 1.20.2): there is "
                           "nothing to upgrade to offline. Upgrade a cluster whose nodes reach pkgs.k8s.io"))
    if running is None or running.patch is None:
        return out
    now = (running.major, running.minor, running.patch)
    new = (target.major, target.minor, target.patch)
    if new < now:
        out.append(Problem(to, None, f"older than the {running} the cluster runs: kubeadm does not downgrade"))
    elif (target.major, target.minor) > (running.major, running.minor + 1):
        out.append(Problem(to, None, f"the cluster runs {running}; kubeadm moves one minor version at a time: "
                           f"upgrade to 1.{running.minor + 1}.x first"))
    return out


@dataclass(kw_only=True)
class UpgradeContext(InstallContext):
    target: KubeVersion
    #: ``--with-etcd``: also move each member's etcd package, one member at a time
    with_etcd: bool = False
    #: what the plan phase read: the version the control plane runs
    running: KubeVersion | None = None


def _nodes(ctx: UpgradeContext) -> dict[str, NodeState]:
    return parse_nodes(kubectl(ctx, "get", "nodes", "-o", NODES_OUTPUT))


# -- phases --------------------------------------------------------------------------------------
def _connect(ctx: UpgradeContext) -> None:
    for host in kubernetes_nodes(ctx.topo):
        with ctx.node(host.name):
            ctx.node_facts(host)


def _plan(ctx: UpgradeContext) -> None:
    with ctx.node(ctx.topo.first_master.name):
        stored = kubectl(ctx, "-n", "kube-system", "get", "configmap", "kubeadm-config", "-o",
                          "jsonpath={.data.ClusterConfiguration}")
    ctx.running = running_version(stored)
    problems = check(ctx.topo, ctx.target, ctx.running)
    if problems:
        raise ConfigError(problems)
    behind = [name for name, n in _nodes(ctx).items() if n.kubelet != str(ctx.target)]
    log.info("the control plane runs %s; kubelets not at %s yet: %s", ctx.running, ctx.target,
             ", ".join(behind) or "none")


def _etcd(ctx: UpgradeContext) -> None:
    if not ctx.with_etcd:
        return
    for host in ctx.topo.etcd:
        with ctx.node(host.name):
            t = ctx.transport(host)
            facts = ctx.node_facts(host)
            if facts.os_family is OSFamily.REDHAT:
                moved = release.upgrade(ctx, t, ctx.topo.settings)  # the pinned release tarball
            else:
                moved = bool(nodeops.upgrade_packages(ctx, t, facts, ("etcd-server", "etcd-client")))
            if not moved:
                continue
            if not ctx.would("restart etcd and wait for a healthy cluster"):
                nodeops.systemctl(t, "restart", "etcd")
                ctl.wait_healthy(ctx, ctx.topo.etcd)


def _kubeadm_package(ctx: UpgradeContext, host: Host) -> None:
    packages.upgrade(ctx, ctx.transport(host), ctx.node_facts(host), ctx.target, ("kubeadm",),
                     s=ctx.topo.settings)


def _kubeadm(ctx: UpgradeContext, host: Host, *args: str, timeout: float = 1200) -> None:
    """``kubeadm ARGS`` on ``host`` (the upgraded package's), or what it would run in a dry run."""
    if not ctx.would("kubeadm " + shlex.join(args)):
        kubeadm = f"{packages.release(ctx.topo).bin_dir}/kubeadm"
        ctx.transport(host).run([kubeadm, *args], sudo=True, timeout=timeout)


def _at_target(ctx: UpgradeContext, host: Host) -> bool:
    """This control plane's static pods already run the target's images (``upgrade apply|node`` got through)."""
    text = staticpods.manifest(ctx.transport(host), staticpods.APISERVER)
    return text is not None and f":v{ctx.target}" in text


def _first(ctx: UpgradeContext) -> None:
    host = ctx.topo.first_master
    with ctx.node(host.name):
        _kubeadm_package(ctx, host)
        if not _at_target(ctx, host):
            v = f"v{ctx.target}"
            _kubeadm(ctx, host, "upgrade", "plan", v, timeout=300)
            _kubeadm(ctx, host, "upgrade", "apply", v, "--yes", "--certificate-renewal=false", "--etcd-upgrade=false")
        _kubelet(ctx, host)


def _node(ctx: UpgradeContext, host: Host, *, control_plane: bool) -> None:
    with ctx.node(host.name):
        _kubeadm_package(ctx, host)
        done = _at_target(ctx, host) if control_plane else _nodes(ctx).get(host.name) == NodeState(
            str(ctx.target), cordoned=False, ready=True)
        if not done:
            _kubeadm(ctx, host, "upgrade", "node", *(["--certificate-renewal=false"] if control_plane else []))
        _kubelet(ctx, host)


def _control_planes(ctx: UpgradeContext) -> None:
    for host in ctx.topo.masters:
        if host != ctx.topo.first_master:
            _node(ctx, host, control_plane=True)


def _workers(ctx: UpgradeContext) -> None:
    masters = set(ctx.topo.masters)
    for host in kubernetes_nodes(ctx.topo):
        if host not in masters:
            _node(ctx, host, control_plane=False)


def _kubelet(ctx: UpgradeContext, host: Host) -> None:
    """Drained, kubelet and kubectl at the target, restarted, Ready at the target, uncordoned."""
    wanted = str(ctx.target)
    state = _nodes(ctx).get(host.name)
    if state is None:
        raise KubernetesError(f"{host.name} is not a node of the cluster: join it first (kha install)")
    t = ctx.transport(host)
    if state.kubelet != wanted:
        drain = ["drain", host.name, "--ignore-daemonsets", "--delete-emptydir-data", f"--timeout={DRAIN_TIMEOUT_S}s"]
        if not ctx.would("kubectl " + shlex.join(drain)):
            kubectl(ctx, *drain, timeout=DRAIN_TIMEOUT_S + 60)
        packages.upgrade(ctx, t, ctx.node_facts(host), ctx.target, ("kubelet", "kubectl"), s=ctx.topo.settings)
        if ctx.would(f"restart the kubelet and wait until {host.name} is Ready at {wanted}"):
            return
        nodeops.systemctl(t, "daemon-reload")
        nodeops.systemctl(t, "restart", "kubelet")

        def back() -> str | None:
            now = _nodes(ctx).get(host.name)
            return None if now is not None and now.kubelet == wanted and now.ready else f"{now}"

        waiting.until(back, timeout=KUBELET_TIMEOUT_S, interval=2.0, error=lambda said: KubernetesError(
            f"{host.name} not Ready at {wanted} {KUBELET_TIMEOUT_S:.0f}s after its kubelet restarted ({said}); "
            "check `journalctl -u kubelet` there, then run the same command again"))
        state = _nodes(ctx)[host.name]
    if state.cordoned and not ctx.would(f"kubectl uncordon {host.name}"):
        kubectl(ctx, "uncordon", host.name)
    log.info("%s: kubelet %s", host.name, wanted)


UPGRADE: Phase[UpgradeContext] = Phase(
    "upgrade",
    children=(
        Phase("connect", _connect, description="log in to every Kubernetes node and read its facts"),
        Phase("plan", _plan, description="the running version and the target, checked (exit 2) before any change"),
        Phase("etcd", _etcd, description="with --with-etcd: each member's etcd package, one member at a time"),
        Phase("first-control-plane", _first, description="kubeadm upgrade plan, kubeadm upgrade apply, its kubelet"),
        Phase("control-planes", _control_planes, description="kubeadm upgrade node and the kubelet, one at a time"),
        Phase("workers", _workers, description="kubeadm upgrade node and the kubelet, drained, one at a time"),
    ),
    description="the cluster moved to --to VERSION, one node at a time",
)


def run(inventory: str, target: str, *, with_etcd: bool = False, state: str | None = None,
        known_hosts: str | None = None, ssh_config: str | None = None, trust_unknown: bool = False,
        dry_run: bool = False) -> None:
    """``kha upgrade``: the flag and the inventory are checked (exit 2) before anything connects."""
    try:
        version = KubeVersion.parse(target)
    except ValueError as exc:
        raise ConfigError([Problem(f"--to {target}", None, str(exc))]) from None
    topo = topology.load(inventory)
    problems = check(topo, version)
    if problems:
        raise ConfigError(problems)
    ctx = open_context(UpgradeContext, inventory, topo=topo, state=state, known_hosts=known_hosts,
                       ssh_config=ssh_config, trust_unknown=trust_unknown, dry_run=dry_run, write_secrets=False,
                       target=version, with_etcd=with_etcd)
    walk(UPGRADE, ctx)


def _cmd(args: argparse.Namespace) -> int:
    run(args.inventory, args.to, with_etcd=args.with_etcd, state=args.state, known_hosts=args.known_hosts,
        ssh_config=args.ssh_config, trust_unknown=args.trust_unknown_hosts, dry_run=args.dry_run)
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("upgrade", help="move a running cluster to the next Kubernetes version, one node at a time",
                       description="Move a running cluster to --to VERSION the way kubeadm's upgrade guide does: "
                                   "kubeadm upgrade apply on the first control plane, kubeadm upgrade node on the "
                                   "others one at a time, then every kubelet drained, upgraded and uncordoned, "
                                   "one node at a time. Packages come from pkgs.k8s.io (nodes with internet).")
    add_arguments(p)
    p.add_argument("--to", required=True, metavar="VERSION",
                   help="the exact version (e.g. 1.30.2), at most one minor version ahead; the inventory's "
                        "kube_version must say the same")
    p.add_argument("--with-etcd", action="store_true",
                   help="also move each etcd member, one at a time: Debian's packages to what the OS offers, "
                        "the RHEL family's to the etcd release kha pins")
    p.set_defaults(handler=_cmd)

