"""Nodes leave the cluster: ``kha node remove`` (kubeadm-ha's del-worker, del-master and del-node playbooks).

The nodes listed under ``[del-worker]``, ``[del-master]`` and ``[del-node]`` leave one at a time:

1. ``guard``: a pod on a leaving node whose PodDisruptionBudget allows no disruption now would make the
   drain wait for ever. kha refuses before changing anything (not even a cordon) and names the pod and the
   budget, unless ``--force``: then the drain deletes the pods instead of evicting them.
2. ``drain``: ``kubectl drain`` (cordon, evict everything but DaemonSet pods).
3. ``loadbalancer``: when control planes leave, every load balancer's backends without them, reloaded
   (one node at a time; haproxy and nginx hand over without dropping the listener, the VIP stays).
4. ``delete``: ``kubectl delete node``; the node's pod range is remembered for step 6.
5. ``reset``: on the node itself, ``installer.kubernetes.reset``: kubeadm reset (on a control plane this
   stops its static pods and takes it out of kubeadm's ClusterStatus), the kubelet stopped and disabled,
   kha's CNI config, routes unit, bridge and iptables rules gone. An etcd member's certificates stay.
6. ``routes``: every node that stays drops its route to the removed pod range (bridge CNI has no overlay;
   the routes unit is rewritten without it).

The first master can leave like any other: kha talks to the cluster through the first master that stays
(``Topology.first_master``). A control plane that is also an etcd member stays a member: its membership is
``kha etcd remove`` (quorum guard, apiservers following), run first; listing it in [del-etcd] or
[del-node] here is refused at its line. The other apiservers' certificates still name the removed node
until ``kha pki rollout`` (or ``kha install``) with the node out of the inventory.

A node no longer in the API and without a kubelet.conf has nothing left to remove: a second run changes
nothing. Adding a node needs no command of its own: list it under ``[new-worker]`` or ``[new-master]`` and
run ``kha install`` (the PKI store issues what it needs, every load balancer gets the new backend, the join
phases join a node without a kubelet.conf with a fresh bootstrap token), then move it to its group.
"""
from __future__ import annotations

import json
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from core.errors import InputError
from installer import inventory, nodeops, topology
from installer.context import InstallContext, open_context, walk
from installer.errors import ConfigError, KubernetesError, Problem
from installer.etcd import render as etcd_render
from installer.files import NodeFile
from installer.kubernetes import render as k8s
from installer.kubernetes import reset
from installer.kubernetes.phases import POD_CIDRS_OUTPUT, ROUTES_UNIT, kubectl_argv, pod_ranges, routes_unit
from installer.loadbalancer import phases as lb_phases
from installer.phases import Phase
from installer.settings import NetworkPlugin
from installer.topology import Host, Role, Topology

#: a drain evicts pods one by one and waits for each to be gone
DRAIN_TIMEOUT_S = 300


@dataclass(kw_only=True)
class NodeContext(InstallContext):
    #: ``--force``: drain even when a PodDisruptionBudget forbids it (pods deleted, not evicted)
    force: bool = False
    #: leaving node → the pod range it had (read before its Node object is deleted)
    removed_ranges: dict[str, str] = field(default_factory=dict)


def leaving(topo: Topology) -> tuple[Host, ...]:
    """The nodes to remove, in [all] order: workers in [del-worker]/[del-node], control planes in
    [del-master]/[del-node]. A leaving control plane that is also leaving etcd is bad input (exit 2, at its
    line): etcd's membership goes first, with its quorum guard, through ``kha etcd remove``."""
    named = set(topo.groups[Role.DEL_WORKER]) | set(topo.groups[Role.DEL_NODE]) | set(topo.groups[Role.DEL_MASTER])
    etcd_too = named & (set(topo.groups[Role.DEL_ETCD]) | set(topo.groups[Role.DEL_NODE])) & set(topo.groups[Role.ETCD])
    if etcd_too:
        raw = inventory.read(topo.source)
        raise ConfigError([
            Problem(topo.source, line, f"{name} is also an etcd member leaving: run `kha etcd remove` for its "
                    "membership first (quorum guard, apiservers following), then list it in [del-master] only")
            for role in (Role.DEL_NODE, Role.DEL_ETCD)
            for name, line in raw.groups.get(role.value, []) if name in etcd_too])
    hosts = tuple(h for h in topo.hosts if h.name in named)
    if not hosts:
        raise InputError(f"{topo.source}: [del-worker], [del-master] and [del-node] are empty: list the nodes to "
                         "remove there")
    return hosts


def control_planes_leaving(topo: Topology) -> tuple[Host, ...]:
    return tuple(h for h in leaving(topo) if h in topo.masters)


# -- the PodDisruptionBudget guard (pure) ----------------------------------------------------------
def _matches(selector: Mapping[str, Any] | None, labels: Mapping[str, str]) -> bool:
    """A label selector (matchLabels, matchExpressions) against a pod's labels. An empty selector selects
    every pod of the namespace (policy/v1's meaning; v1beta1 selected none, refusing more is the safe side)."""
    selector = selector or {}
    for k, v in (selector.get("matchLabels") or {}).items():
        if labels.get(k) != v:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr.get("key"), expr.get("operator"), set(expr.get("values") or ())
        has = key in labels
        ok = {"In": has and labels.get(key) in values, "NotIn": not has or labels.get(key) not in values,
              "Exists": has, "DoesNotExist": not has}.get(op, False)
        if not ok:
            return False
    return True


def _daemonset_pod(pod: Mapping[str, Any]) -> bool:
    return any(o.get("kind") == "DaemonSet" for o in pod.get("metadata", {}).get("ownerReferences") or [])


def blocked(pods: Mapping[str, Any], budgets: Mapping[str, Any]) -> list[str]:
    """The pods (``kubectl get pods -o json`` of one node) a drain could not evict now: each one a budget
    (``kubectl get pdb -A -o json``) covers allows no disruption for. DaemonSet pods are not evicted."""
    out = []
    for pod in pods.get("items") or []:
        meta = pod.get("metadata", {})
        if _daemonset_pod(pod) or pod.get("status", {}).get("phase") in ("Succeeded", "Failed"):
            continue
        ns, labels = meta.get("namespace"), meta.get("labels") or {}
        for pdb in budgets.get("items") or []:
            pmeta = pdb.get("metadata", {})
            if pmeta.get("namespace") != ns or not _matches(pdb.get("spec", {}).get("selector"), labels):
                continue
            allowed = pdb.get("status", {}).get("disruptionsAllowed", 0)
            if allowed < 1:
                out.append(f"{ns}/{meta.get('name')} (PodDisruptionBudget {ns}/{pmeta.get('name')} allows "
                           f"{allowed} disruptions)")
    return out


# -- phases --------------------------------------------------------------------------------------
def _kubectl(ctx: NodeContext, *args: str, check: bool = True, timeout: float = 60) -> tuple[int, str]:
    """kubectl with the admin kubeconfig on the first control plane that is not leaving."""
    t = ctx.transport(ctx.topo.first_master)
    res = t.run(kubectl_argv(ctx, t, *args), sudo=True, check=check, timeout=timeout)
    return res.exit_code, res.stdout + (res.stderr if not res.ok else "")


def _in_api(ctx: NodeContext, host: Host) -> bool:
    code, said = _kubectl(ctx, "get", "node", host.name, "-o", "name", check=False)
    if code != 0 and "NotFound" not in said:
        raise KubernetesError(f"cannot ask the API about node {host.name}: {said.strip()[:300]}")
    return code == 0


def _connect(ctx: NodeContext) -> None:
    for host in (ctx.topo.first_master, *leaving(ctx.topo)):
        with ctx.node(host.name):
            ctx.node_facts(host)


def _guard(ctx: NodeContext) -> None:
    budgets = json.loads(_kubectl(ctx, "get", "pdb", "--all-namespaces", "-o", "json")[1])
    refused = []
    for host in leaving(ctx.topo):
        if not _in_api(ctx, host):
            continue
        pods = json.loads(_kubectl(ctx, "get", "pods", "--all-namespaces", "-o", "json",
                                   f"--field-selector=spec.nodeName={host.name}")[1])
        refused += [f"{host.name}: {b}" for b in blocked(pods, budgets)]
    if refused and not ctx.force:
        raise KubernetesError("a drain would wait for ever: " + "; ".join(refused) + ". Nothing was changed. "
                              "Scale the workload or relax its budget, or pass --force to delete those pods")
    for line in refused:
        ctx.would(f"delete {line} despite its budget (--force)")


def _drain(ctx: NodeContext) -> None:
    for host in leaving(ctx.topo):
        with ctx.node(host.name):
            if not _in_api(ctx, host):
                continue
            argv = ["drain", host.name, "--ignore-daemonsets", "--delete-emptydir-data",
                    f"--timeout={DRAIN_TIMEOUT_S}s"]
            if ctx.force:
                argv += ["--force", "--disable-eviction"]
            if ctx.would("kubectl " + shlex.join(argv)):
                continue
            _kubectl(ctx, *argv, timeout=DRAIN_TIMEOUT_S + 60)


def _loadbalancer(ctx: NodeContext) -> None:
    """Before a control plane goes: every load balancer's backends without it, reloaded (haproxy and nginx
    hand over without dropping their listener; keepalived keeps the VIP where it is)."""
    if control_planes_leaving(ctx.topo):
        lb_phases.reconcile(ctx)


def _delete(ctx: NodeContext) -> None:
    for host in leaving(ctx.topo):
        with ctx.node(host.name):
            if not _in_api(ctx, host):
                continue
            cidr = _kubectl(ctx, "get", "node", host.name, "-o", "jsonpath={.spec.podCIDR}")[1].strip()
            if cidr:
                ctx.removed_ranges[host.name] = cidr
            if ctx.would(f"kubectl delete node {host.name}"):
                continue
            _kubectl(ctx, "delete", "node", host.name, "--wait=true", timeout=120)


def _reset(ctx: NodeContext) -> None:
    for host in leaving(ctx.topo):
        with ctx.node(host.name):
            keep = (etcd_render.PKI_DIR,) if host in ctx.topo.etcd else ()
            reset.kubernetes(ctx, ctx.transport(host), keep)


def _routes(ctx: NodeContext) -> None:
    """The nodes that stay: no route to a removed pod range, now or after a reboot (their routes unit)."""
    if ctx.topo.settings.network_plugin is not NetworkPlugin.BRIDGE or not ctx.removed_ranges:
        return
    gone = {h.name for h in leaving(ctx.topo)}
    staying = [h for h in k8s.kubernetes_nodes(ctx.topo) if h.name not in gone]
    ranges = {name: cidr for name, cidr in pod_ranges(_kubectl(ctx, "get", "nodes", "-o", POD_CIDRS_OUTPUT)[1]).items()
              if name not in gone}
    addresses = {h.name: str(h.address) for h in staying}
    for host in staying:
        with ctx.node(host.name):
            t = ctx.transport(host)
            if nodeops.sync_file(ctx, t, NodeFile(ROUTES_UNIT, routes_unit(host, ranges, addresses))) \
                    and not ctx.dry_run:
                nodeops.systemctl(t, "daemon-reload")
            for cidr in ctx.removed_ranges.values():
                present = t.run(["ip", "route", "show", cidr], check=False).stdout.strip()
                if present and not ctx.would(f"delete the route to {cidr}"):
                    t.run(["ip", "route", "del", cidr], sudo=True)


REMOVE: Phase[NodeContext] = Phase(
    "node-remove",
    children=(
        Phase("connect", _connect, description="log in to the first control plane and the leaving workers"),
        Phase("guard", _guard, description="refuse (changing nothing) when a PodDisruptionBudget forbids the drain"),
        Phase("drain", _drain, description="kubectl drain, one node at a time"),
        Phase("loadbalancer", _loadbalancer, description="leaving control planes dropped from every load "
                                                         "balancer's backends (reload, the VIP stays)"),
        Phase("delete", _delete, description="kubectl delete node (its pod range kept for the routes)"),
        Phase("reset", _reset, description="on each leaving node: kubeadm reset, kubelet off, kha's CNI files gone"),
        Phase("routes", _routes, description="the nodes that stay lose their route to the removed pod ranges"),
    ),
    description="nodes leave the cluster ([del-worker], [del-master], [del-node])",
)


def remove(inventory: str, *, state: str | None = None, known_hosts: str | None = None,
           ssh_config: str | None = None, trust_unknown: bool = False, force: bool = False,
           dry_run: bool = False) -> None:
    """``kha node remove``: the inventory is checked (exit 2) before anything connects."""
    topo = topology.load(inventory)
    leaving(topo)
    ctx = open_context(NodeContext, inventory, topo=topo, state=state, known_hosts=known_hosts,
                       ssh_config=ssh_config, trust_unknown=trust_unknown, dry_run=dry_run, write_secrets=False,
                       force=force)
    walk(REMOVE, ctx)
