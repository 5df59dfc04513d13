"""After etcd's membership changed, Kubernetes follows: every kube-apiserver's ``--etcd-servers`` names the
voting members etcd lists now, and so does the ClusterConfiguration kubeadm keeps in the cluster (the
``kubeadm-config`` ConfigMap, which ``kubeadm join --control-plane`` and ``kubeadm upgrade`` read).

kubeadm writes the apiserver's static pod manifest once (init, join), so a member added later is never
used and a member removed later stays in the list: an apiserver whose members are all gone stops. Here
the manifest's flag is rewritten on one control plane at a time; the kubelet restarts that apiserver, and
the next one is touched only once this one runs with the new flag and answers ``/readyz`` with ``ok``.
haproxy checks ``/readyz`` on every backend, so the API through the VIP keeps being served by the others.

A control plane whose flag already names the same members is left alone (a second run restarts
nothing); an etcd-only cluster (no manifest on any node) has nothing to follow. The pure parts (reading
and rewriting the flag, the stored configuration) are plain functions, unit-tested without a cluster.
"""

from __future__ import annotations

import json
import logging
import re
import shlex
from collections.abc import Sequence

import yaml

from installer.errors import EtcdError
from installer.etcd import ctl
from installer.etcd.context import EtcdContext
from installer.etcd.ctl import MemberInfo
from installer.kubernetes import staticpods
from installer.kubernetes.phases import APISERVER_MANIFEST, kubectl_argv
from installer.remote import Transport
from installer.topology import Host, Role

log = logging.getLogger(__name__)

_FLAG = re.compile(r"^(?P<indent>\s*-\s*)--etcd-servers=(?P<value>\S+)\s*$", re.M)


def servers(members: Sequence[MemberInfo]) -> list[str]:
    """The client URLs an apiserver should use: every started voting member's (a learner serves no
    linearizable request), sorted so the flag reads the same whichever member answered the list."""
    urls = {u for m in members if m.started and not m.is_learner for u in m.client_urls}
    if not urls:
        raise EtcdError("etcd lists no started voting member: the apiservers would have nothing to use")
    return sorted(urls)


def flag_of(manifest: str, path: str = APISERVER_MANIFEST) -> list[str]:
    """The URLs of the manifest's ``--etcd-servers`` (exactly one such line, as kubeadm writes it)."""
    found = [m.group("value") for m in _FLAG.finditer(manifest)]
    if len(found) != 1:
        raise EtcdError(f"{path}: expected one `- --etcd-servers=…` line, found {len(found)}; kha rewrites only "
                        "the manifest kubeadm wrote")
    return found[0].split(",")


def with_servers(manifest: str, urls: Sequence[str], path: str = APISERVER_MANIFEST) -> str | None:
    """The manifest with ``--etcd-servers`` naming ``urls``; None when it already names the same set."""
    if set(flag_of(manifest, path)) == set(urls):
        return None
    return _FLAG.sub(lambda m: f"{m.group('indent')}--etcd-servers={','.join(urls)}", manifest, count=1)


def stored_config(configmap: dict[str, object], urls: Sequence[str]) -> str | None:
    """``kubeadm-config``'s ClusterConfiguration with its external etcd endpoints set to ``urls``; None when
    they already are (or the cluster uses no external etcd, which kha never installs: an error then)."""
    data = configmap.get("data")
    text = data.get("ClusterConfiguration") if isinstance(data, dict) else None
    config = yaml.safe_load(text) if isinstance(text, str) else None
    external = config.get("etcd", {}).get("external") if isinstance(config, dict) else None
    if not isinstance(external, dict):
        raise EtcdError("kube-system/kubeadm-config has no ClusterConfiguration with etcd.external: not a "
                        "cluster kha installed")
    if set(external.get("endpoints") or ()) == set(urls):
        return None
    external["endpoints"] = list(urls)
    return yaml.safe_dump(config, sort_keys=False)


# -- on the nodes --------------------------------------------------------------------------------
def _restart_one(ctx: EtcdContext, host: Host, t: Transport, manifest: str, urls: Sequence[str]) -> bool:
    """Rewrite ``host``'s manifest and wait for its new apiserver; False when it had nothing to change."""
    new = with_servers(manifest, urls)
    if new is None:
        return False
    flag = f"--etcd-servers={','.join(urls)}"
    if ctx.would(f"rewrite --etcd-servers in {APISERVER_MANIFEST} to {','.join(urls)} and wait for the restarted "
                 "apiserver's /readyz"):
        return True
    url = staticpods.APISERVER.health_url(str(host.address), ctx.topo.apiserver_port)
    staticpods.restart(ctx, t, staticpods.APISERVER, new, url, flag=flag)
    log.info("%s: kube-apiserver restarted with %s", host.name, flag)
    return True


def _store(ctx: EtcdContext, t: Transport, urls: Sequence[str]) -> None:
    """The ClusterConfiguration kubeadm reads at the next join or upgrade (kubectl on a control plane)."""
    kubectl = kubectl_argv(ctx, t, "-n", "kube-system")
    got = t.run([*kubectl, "get", "configmap", "kubeadm-config", "-o", "json"], sudo=True, timeout=60)
    new = stored_config(json.loads(got.stdout), urls)
    if new is None:
        return
    patch = json.dumps({"data": {"ClusterConfiguration": new}})
    argv = [*kubectl, "patch", "configmap", "kubeadm-config", "--type=merge", "-p", patch]
    if ctx.would(shlex.join(argv[:-2]) + " (ClusterConfiguration etcd.external.endpoints)"):
        return
    t.run(argv, sudo=True, timeout=60)
    log.info("kube-system/kubeadm-config: etcd endpoints %s", ",".join(urls))


def follow(ctx: EtcdContext, urls: Sequence[str], reach: dict[str, Transport | None]) -> list[str]:
    """Every control plane's apiserver on the members ``urls``, one at a time, then kubeadm's stored
    configuration; returns the nodes whose apiserver was restarted. ``reach``: a transport per control
    plane, None for one that cannot be reached (it is reported after the others were done)."""
    manifests: dict[str, str | None] = {}
    for host in ctx.topo.masters:
        t = reach.get(host.name)
        manifests[host.name] = staticpods.manifest(t, staticpods.APISERVER) if t is not None else None
    if not any(text is not None for text in manifests.values()):
        log.info("no kube-apiserver manifest on any reachable control plane (etcd only, or Kubernetes not "
                 "installed yet): no apiserver to follow")
        return []
    restarted, missing = [], []
    for host in ctx.topo.masters:
        t, text = reach.get(host.name), manifests[host.name]
        if t is None or text is None:
            missing.append(f"{host.name} ({'unreachable' if t is None else 'no ' + APISERVER_MANIFEST})")
            continue
        with ctx.node(host.name):
            if _restart_one(ctx, host, t, text, urls):
                restarted.append(host.name)
    stored = next(h for h in ctx.topo.masters if manifests[h.name] is not None)
    with ctx.node(stored.name):
        t = reach[stored.name]
        assert t is not None  # it has a manifest, so it was reached
        _store(ctx, t, urls)
    if missing:
        raise EtcdError(f"etcd's members changed, but the apiserver on {', '.join(missing)} could not follow: bring "
                        "it back (or finish its join) and run the same command again; the others already use "
                        f"{','.join(urls)}")
    return restarted


def run_follow(ctx: EtcdContext) -> None:
    """The ``apiservers`` phase of ``kha etcd add|remove|replace``."""
    if not ctx.topo.masters:
        return
    leaving = ctx.topo.group(Role.DEL_ETCD)
    admin = ctx.admin(avoid={h.name for h in leaving})
    urls = servers(admin.member_list())
    if ctx.dry_run:
        # Nothing was added or removed: say what the apiservers would be given once it is.
        gone = set(ctl.client_urls(leaving))
        urls = sorted({*urls, *ctl.client_urls(ctx.topo.group(Role.NEW_ETCD))} - gone)
    follow(ctx, urls, {h.name: admin.reachable(h) for h in ctx.topo.masters})
