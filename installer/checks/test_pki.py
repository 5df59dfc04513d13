"""Certificates and keys on the nodes: what each node serves on 6443 (apiserver), 2379 and 2380 (etcd client
and peer) is the PKI store's certificate for that node, issued by the store's CA, and valid ``--warn-days``
more days; the kubelet's 10250 (its own self-signed certificate: kubeadm leaves serverTLSBootstrap off) is
valid as long. Every file the store ships to a node is there with the store's mode (keys and kubeconfigs
0600), and so is the kubelet.conf kubeadm writes.

The served chain is read on the node itself (``openssl s_client`` to its own address): the nodes may be
reachable only over SSH (a bastion, a network namespace)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509

from installer.checks import verdicts
from installer.checks.target import Target, output
from installer.etcd import render as etcd_render
from installer.kubernetes.phases import KUBELET_CONF
from installer.pki.store import CA_DIR, KEY_MODE, NODES_DIR, plan
from installer.topology import Host

#: The checks read files: what is wrong now stays wrong; the deadline only rides out a restart.
DEADLINE_S = 20.0
KUBELET_PORT = 10250
K8S_DIR = "/etc/kubernetes"


@dataclass(frozen=True)
class Served:
    """A port a node serves TLS on: the store's CA and leaf it must serve (None: not the store's)."""

    port: int
    what: str
    ca: str | None
    leaf: str | None


def _served(target: Target, h: Host) -> list[Served]:
    ports = []
    if h in target.topo.masters:
        ports.append(Served(target.topo.apiserver_port, "kube-apiserver", "ca", "apiserver"))
    if h in target.topo.etcd:
        ports.append(Served(etcd_render.CLIENT_PORT, "etcd client", "etcd/ca", "etcd/server"))
        ports.append(Served(etcd_render.PEER_PORT, "etcd peer", "etcd/ca", "etcd/peer"))
    if h in target.kubernetes_nodes:
        ports.append(Served(KUBELET_PORT, "kubelet", None, None))
    return ports


def _cert(path: Path) -> x509.Certificate | None:
    return x509.load_pem_x509_certificate(path.read_bytes()) if path.is_file() else None


def test_served(target: Target, note: list[str]) -> None:
    store, now = target.store, dt.datetime.now(dt.UTC)

    def look(h: Host) -> str | None:
        problems = []
        for s in _served(target, h):
            argv = ["openssl", "s_client", "-connect", f"{h.address}:{s.port}", "-showcerts"]
            res = target.run(h, argv, timeout=20)
            chain = verdicts.served_chain(res.stdout.encode())
            ca = _cert(store / CA_DIR / f"{s.ca}.crt") if s.ca else None
            leaf = _cert(store / NODES_DIR / h.name / "pki" / f"{s.leaf}.crt") if s.leaf else None
            problem, _seen = verdicts.served_problem(chain, ca=ca, store_leaf=leaf, now=now,
                                                     warn_days=target.warn_days)
            if problem:
                problems.append(f"{s.port} ({s.what}): {problem}" + ("" if chain else f"\n{output(res, 6)}"))
        return "\n".join(problems) or None

    target.until(lambda: target.each(target.topo.hosts, look), DEADLINE_S)
    ports = sum(len(_served(target, h)) for h in target.topo.hosts)
    note.append(f"{ports} ports, valid {target.warn_days}+ more days")


def test_files(target: Target, note: list[str]) -> None:
    files = plan(target.topo).node_files
    wanted: dict[str, list[tuple[str, int]]] = {}
    for f in files:
        # nodes/<node>/<path under /etc/kubernetes>
        rel = f.target.removeprefix(f"{NODES_DIR}/{f.node}/")
        wanted.setdefault(f.node, []).append((f"{K8S_DIR}/{rel}", f.mode))
    for h in target.kubernetes_nodes:
        wanted.setdefault(h.name, []).append((KUBELET_CONF, KEY_MODE))

    def look(h: Host) -> str | None:
        host = target.host(h)
        problems = []
        for path, mode in wanted.get(h.name, []):
            f = host.file(path)
            exists = f.exists
            if problem := verdicts.mode_problem(path, exists, f.mode if exists else 0, mode):
                problems.append(problem)
        return "; ".join(problems) or None

    hosts = [h for h in target.topo.hosts if h.name in wanted]
    target.until(lambda: target.each(hosts, look), DEADLINE_S)
    note.append(f"{sum(len(v) for v in wanted.values())} files")
