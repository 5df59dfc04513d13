"""The control plane's static pods: which files each one reads, and restarting one so it reads them again.

kubeadm runs kube-apiserver, kube-controller-manager and kube-scheduler as static pods: the kubelet starts
whatever manifest lies in /etc/kubernetes/manifests. They read their certificates, kubeconfigs, the
Secrets encryption config and the audit policy once, at start: a renewed certificate copied onto a node
is not served until its pod restarts ("restart the control plane components", kubeadm's certificate
management guide), and a year later every node is NotReady.

A restart is an edit of the manifest: the kubelet sees another pod, stops the old one and starts the new
one. kha changes one thing in it, the annotation ``kha.io/restarted`` (when, and why), or the one flag a
caller rewrites (``installer.etcd.apiservers``: ``--etcd-servers``). The component counts as back once
exactly one process of it runs, that process is not the one from before, and it answers its health
endpoint: the kubelet starts the new pod while the old one is still stopping, and until that one is gone
it holds the port and answers. Callers restart one control plane at a time: haproxy checks ``/readyz`` on
every backend, so the API through the VIP keeps being served by the others.

The pure parts (who reads what, the annotated manifest) are unit-tested without a node.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass

import yaml

from core import waiting
from installer import nodeops
from installer.errors import KubernetesError
from installer.files import NodeFile
from installer.kubernetes import hardening
from installer.phases import Context
from installer.remote import Transport

log = logging.getLogger(__name__)

MANIFESTS = "/etc/kubernetes/manifests"
#: the annotation a restart sets (the kubelet replaces a static pod whose manifest changed)
RESTARTED = "kha.io/restarted"
#: From the manifest's change until the new process answers: the kubelet notices the file (inotify, else
#: its 20 s re-read), stops the old pod (up to its grace period), starts the new one.
RESTART_TIMEOUT_S = 240.0
#: The CA the pki phase places on every node (what the apiserver's certificate chains to).
CLUSTER_CA = "/etc/kubernetes/pki/ca.crt"


@dataclass(frozen=True)
class StaticPod:
    """A control-plane component kubeadm runs as a static pod."""

    name: str
    #: its health endpoint on the node: the apiserver's on the node's address (``port`` 0: the topology's
    #: apiserver port), the others' on 127.0.0.1 (kubeadm binds them there, with self-signed certificates)
    port: int
    health: str

    @property
    def manifest(self) -> str:
        return f"{MANIFESTS}/{self.name}.yaml"

    def health_url(self, address: str, apiserver_port: int) -> str:
        if self.port == 0:
            return f"https://{address}:{apiserver_port}/{self.health}"
        return f"https://127.0.0.1:{self.port}/{self.health}"


APISERVER = StaticPod("kube-apiserver", 0, "readyz")
CONTROLLER_MANAGER = StaticPod("kube-controller-manager", 10257, "healthz")
SCHEDULER = StaticPod("kube-scheduler", 10259, "healthz")
#: in the order a control plane restarts them: the API first, its clients after
CONTROL_PLANE = (APISERVER, CONTROLLER_MANAGER, SCHEDULER)

_K8S = "/etc/kubernetes/"
#: /etc/kubernetes files by who reads them (paths under /etc/kubernetes; a prefix ends with "/" or ".")
_READERS: tuple[tuple[str, tuple[StaticPod, ...]], ...] = (
    ("admin.conf", ()),
    ("super-admin.conf", ()),
    ("kubelet.conf", ()),  # kubeadm's, the kubelet's own (it rotates its client certificate itself)
    ("controller-manager.conf", (CONTROLLER_MANAGER,)),
    ("scheduler.conf", (SCHEDULER,)),
    ("pki/ca.crt", (APISERVER, CONTROLLER_MANAGER)),
    ("pki/ca.key", (CONTROLLER_MANAGER,)),  # it signs the kubelets' CSRs
    ("pki/sa.key", (CONTROLLER_MANAGER,)),
    ("pki/front-proxy-ca.crt", (APISERVER, CONTROLLER_MANAGER)),
    ("pki/front-proxy-ca.key", ()),
    ("pki/etcd/ca.key", ()),
)


def readers(path: str) -> tuple[StaticPod, ...]:
    """The components that must restart to read ``path`` again; a file kha does not know of restarts the
    apiserver, which reads the most (its certificates, sa.pub, the etcd CA, the encryption config, the
    audit policy)."""
    rel = path.removeprefix(_K8S)
    if path in (hardening.ENCRYPTION_CONFIG, hardening.AUDIT_POLICY):
        return (APISERVER,)
    for known, pods in _READERS:
        if rel == known:
            return pods
    if rel.startswith(("manifests/", "kubelet")):
        return ()
    return (APISERVER,)


def stamped(manifest: str, why: str, now: dt.datetime, path: str) -> str:
    """The manifest with ``kha.io/restarted`` saying when and why: a new pod to the kubelet, the same spec."""
    pod = yaml.safe_load(manifest)
    meta = pod.get("metadata") if isinstance(pod, dict) else None
    if not isinstance(meta, dict):
        raise KubernetesError(f"{path}: not a pod manifest (no metadata); kha restarts only the static pods "
                              "kubeadm wrote")
    annotations = meta.get("annotations") or {}
    annotations[RESTARTED] = f"{now.astimezone(dt.UTC):%Y-%m-%dT%H:%M:%SZ} {why}"
    meta["annotations"] = annotations
    return yaml.safe_dump(pod, sort_keys=False, width=1 << 20)


# -- on a node -----------------------------------------------------------------------------------
def manifest(t: Transport, pod: StaticPod) -> str | None:
    """The pod's manifest on the node, or None when it has none (not a control plane, or not joined yet)."""
    res = t.run(["cat", pod.manifest], sudo=True, check=False)
    return res.stdout if res.ok else None


def processes(t: Transport, pod: StaticPod) -> list[tuple[int, list[str]]]:
    """(pid, argv) of each process of the component (matched on its command line: the kernel's process
    name stops at 15 characters, kube-controller-manager's does not fit)."""
    out = t.run(["pgrep", "-a", "-f", f"^{re.escape(pod.name)}( |$)"], check=False).stdout
    found = []
    for line in out.splitlines():
        pid, _, cmdline = line.partition(" ")
        if pid.isdigit():
            found.append((int(pid), cmdline.split()))
    return found


def back(t: Transport, pod: StaticPod, url: str, old: Sequence[int], flag: str | None = None) -> str | None:
    """None once one process of ``pod`` runs, none of ``old``, with ``flag`` (when given), and ``url`` answers
    ok; else what is still wrong."""
    procs = processes(t, pod)
    if len(procs) != 1:
        return f"{len(procs)} {pod.name} processes" + (" (the old one still stopping)" if procs else "")
    pid, argv = procs[0]
    if pid in old or (flag is not None and flag not in argv):
        return f"the old {pod.name} still runs"
    return unhealthy(t, pod, url)


def unhealthy(t: Transport, pod: StaticPod, url: str) -> str | None:
    """None when the pod's health endpoint ``url`` answers ok on the node; else what it answered."""
    ca = ["--cacert", CLUSTER_CA] if pod is APISERVER else ["--insecure"]  # the others' certs are self-signed
    res = t.run(["curl", "-sS", "--max-time", "5", *ca, url], check=False)
    said = res.stdout.strip()
    return None if said == "ok" else f"/{pod.health}: {(said + res.stderr).strip()[:200] or 'no answer'}"


def restart(ctx: Context, t: Transport, pod: StaticPod, new_manifest: str, url: str, *,
            flag: str | None = None, timeout: float = RESTART_TIMEOUT_S) -> float:
    """Write ``new_manifest`` (it must differ from the node's) and wait until the new process is back (see
    ``back``); the seconds that took."""
    old = [pid for pid, _ in processes(t, pod)]
    nodeops.sync_file(ctx, t, NodeFile(pod.manifest, new_manifest.encode(), 0o600))
    took = waiting.until(lambda: back(t, pod, url, old, flag), timeout=timeout, interval=1.0,
                         error=lambda said: KubernetesError(
                             f"{t.node}: {pod.name} not back {timeout:.0f}s after its manifest changed ({said}); "
                             "check `crictl ps -a` and the kubelet's journal there, then run the command again "
                             "(the control planes after this one were not touched)"))
    log.info("%s: %s restarted in %.1fs", t.node, pod.name, took)
    return took


def restart_stamped(ctx: Context, t: Transport, pod: StaticPod, address: str, port: int, *, why: str) -> bool:
    """Restart ``pod`` with its spec unchanged (``kha.io/restarted`` says when and ``why``), wait until it is
    back; False when the node has no manifest of it (not a control plane, or not joined yet)."""
    text = manifest(t, pod)
    if text is None:
        return False
    if ctx.would(f"restart {pod.name} ({why}) and wait for its /{pod.health}"):
        return True
    restart(ctx, t, pod, stamped(text, why, dt.datetime.now(dt.UTC), pod.manifest), pod.health_url(address, port))
    return True
