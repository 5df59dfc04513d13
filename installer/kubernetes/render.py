"""The files that make a node a Kubernetes node: kubeadm configuration (API version by Kubernetes
version), containerd's CRI config, the kubelet unit and kubeadm's drop-in, kernel modules, sysctls,
crictl's config.

kubeadm is told about everything kha prepared: the external etcd (from the etcd phase), the PKI
already in /etc/kubernetes/pki (from the PKI store), the control-plane endpoint (the VIP, 127.0.0.1
for a node-local LB, or the slb address), and the image repository of the bundle in use.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from installer.errors import ConfigError, Problem
from installer.etcd import render as etcd_render
from installer.files import NodeFile, environment, render
from installer.pki.table import apiserver_sans
from installer.secrets import ClusterSecrets
from installer.settings import KubeVersion
from installer.topology import Host, Role, Topology

KUBEADM_CONFIG = "/etc/kha/kubeadm.yaml"
CONTAINERD_CONFIG = "/etc/containerd/config.toml"
KUBELET_UNIT = "/etc/systemd/system/kubelet.service"
KUBELET_DROPIN = "/etc/systemd/system/kubelet.service.d/10-kubeadm.conf"
SYSCTL_FILE = "/etc/sysctl.d/90-kubernetes.conf"
MODULES_FILE = "/etc/modules-load.d/kubernetes.conf"
CRICTL_CONFIG = "/etc/crictl.yaml"
CRI_SOCKET = "/run/containerd/containerd.sock"
#: How long kubeadm waits for the static pods. Its 4 min default is too short for a TCG VM (shared/MACHINE.md).
CONTROL_PLANE_TIMEOUT = "10m0s"
#: Modules kubelet, kube-proxy and bridge CNI need (https://kubernetes.io/docs/setup/production-environment/container-runtimes/).
MODULES = ("overlay", "br_netfilter")
SYSCTLS = {
    "net.bridge.bridge-nf-call-iptables": "1",
    "net.bridge.bridge-nf-call-ip6tables": "1",
    "net.ipv4.ip_forward": "1",
}

_env = environment("installer.kubernetes")


@dataclass(frozen=True)
class Release:
    """What the node runs: where the binaries are, which image repository and pause image kubeadm uses."""

    version: str  # e.g. "1.20.2" (no leading v)
    image_repository: str = "k8s.gcr.io"
    pause_tag: str = "3.2"
    bin_dir: str = "/usr/local/bin"
    cni_bin_dir: str = "/usr/lib/cni"

    @property
    def sandbox_image(self) -> str:
        return f"{self.image_repository}/pause:{self.pause_tag}"

    @classmethod
    def upstream(cls, topo: Topology) -> Release:
        """Upstream's names for a version (kubeadm's defaults); an offline bundle's manifest overrides them."""
        v = topo.settings.kube_version
        if v.patch is None:
            raise ConfigError([Problem(topo.source, topo.settings.line("kube_version"),
                                       f"kube_version={v}: kubeadm needs an exact version (e.g. 1.20.2)",
                                       "kube_version")])
        # The registry moved in 1.25 (https://kubernetes.io/blog/2022/11/28/registry-k8s-io-faster-cheaper-ga/).
        repo = "registry.k8s.io" if v.at_least(1, 25) else "k8s.gcr.io"
        return cls(f"{v.major}.{v.minor}.{v.patch}", repo, _PAUSE.get(v.minor, _PAUSE[max(_PAUSE)]))


#: kubeadm's default pause image tag per minor version (``kubeadm config images list``).
_PAUSE = {20: "3.2", 21: "3.4.1", 22: "3.5", 23: "3.6", 24: "3.7", 25: "3.8", 26: "3.9", 27: "3.9", 28: "3.9",
          29: "3.9", 30: "3.9", 31: "3.10", 32: "3.10"}


def api_version(v: KubeVersion) -> str:
    """kubeadm's config API for a Kubernetes version: v1beta2 (≤ 1.21), v1beta3 (1.22–1.30), v1beta4 (1.31+)."""
    if not v.at_least(1, 22):
        return "v1beta2"
    if not v.at_least(1, 31):
        return "v1beta3"
    return "v1beta4"


def cri_socket(v: KubeVersion) -> str:
    # From 1.24 kubeadm wants the URL form; 1.20's kubeadm takes the path.
    return f"unix://{CRI_SOCKET}" if v.at_least(1, 24) else CRI_SOCKET


def ca_cert_hash(ca_pem: bytes) -> str:
    """kubeadm's discovery hash: sha256 of the CA's SubjectPublicKeyInfo (DER)."""
    cert = x509.load_pem_x509_certificate(ca_pem)
    spki = cert.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return "sha256:" + hashlib.sha256(spki).hexdigest()


def _common(topo: Topology, host: Host, secrets: ClusterSecrets, release: Release) -> dict[str, object]:
    s = topo.settings
    v = s.kube_version
    return {
        "node": host.name,
        "address": str(host.address),
        "version": release.version,
        "api": api_version(v),
        "token": secrets.kubeadm_token,
        "endpoint": str(topo.apiserver_endpoint),
        "apiserver_port": topo.apiserver_port,
        "cri_socket": cri_socket(v),
        "kubelet_args": {"node-ip": str(host.address), "root-dir": s.kubelet_root_dir},
        # allinone (a master that is also a worker): no control-plane taint.
        "untaint": Role.WORKER in topo.roles(host.name) and _is_control_plane(topo, host),
    }


def _is_control_plane(topo: Topology, host: Host) -> bool:
    return host.name in topo.groups[Role.MASTER] or host.name in topo.groups[Role.NEW_MASTER]


def init_config(topo: Topology, host: Host, secrets: ClusterSecrets, release: Release) -> NodeFile:
    s = topo.settings
    sans = apiserver_sans(topo, host)
    text = render(
        _env, "kubeadm.yaml.j2", kind="init", **_common(topo, host, secrets, release),
        cluster_name=s.cluster_name, image_repository=release.image_repository,
        pod_subnet=str(s.kube_pod_subnet), service_subnet=str(s.kube_service_subnet), dns_domain=s.kube_dns_domain,
        etcd_endpoints=[etcd_render.Member(h.name, str(h.address)).client_url for h in topo.etcd],
        cert_sans=[*sans.dns, *(str(i) for i in sans.ips)],
        apiserver_args={"service-node-port-range": s.kube_service_node_port_range},
        controller_manager_args={"node-cidr-mask-size": str(s.kube_network_node_prefix)},
        control_plane_timeout=CONTROL_PLANE_TIMEOUT, max_pods=s.kube_max_pods, proxy_mode=s.kube_proxy_mode.value,
    )
    return NodeFile(KUBEADM_CONFIG, text, mode=0o600)


def join_config(topo: Topology, host: Host, secrets: ClusterSecrets, release: Release, ca_pem: bytes) -> NodeFile:
    text = render(
        _env, "kubeadm.yaml.j2", kind="join", **_common(topo, host, secrets, release),
        ca_cert_hash=ca_cert_hash(ca_pem), control_plane=_is_control_plane(topo, host),
    )
    return NodeFile(KUBEADM_CONFIG, text, mode=0o600)


def runtime_files(topo: Topology, release: Release, snapshotter: str = "overlayfs") -> list[NodeFile]:
    """Kernel modules, sysctls, containerd and crictl config (``snapshotter`` from the node's facts)."""
    return [
        NodeFile(MODULES_FILE, ("# Written by kha\n" + "\n".join(MODULES) + "\n").encode()),
        NodeFile(SYSCTL_FILE, ("# Written by kha\n" + "".join(f"{k} = {v}\n" for k, v in SYSCTLS.items())).encode()),
        NodeFile(CONTAINERD_CONFIG, render(
            _env, "containerd.toml.j2", root=topo.settings.containerd_storage_dir,
            sandbox_image=release.sandbox_image, cni_bin_dir=release.cni_bin_dir, runc_binary=None,
            snapshotter=snapshotter)),
        NodeFile(CRICTL_CONFIG, f"runtime-endpoint: unix://{CRI_SOCKET}\nimage-endpoint: unix://{CRI_SOCKET}\n"
                 "timeout: 10\n".encode()),
    ]


def kubelet_files(release: Release) -> list[NodeFile]:
    return [
        NodeFile(KUBELET_UNIT, render(_env, "kubelet.service.j2", bin_dir=release.bin_dir)),
        NodeFile(KUBELET_DROPIN, render(_env, "10-kubeadm.conf.j2", bin_dir=release.bin_dir)),
    ]


def kubernetes_nodes(topo: Topology) -> tuple[Host, ...]:
    """Every node that runs kubelet: masters and workers (new ones included), in [all] order."""
    wanted = set(topo.groups[Role.MASTER]) | set(topo.groups[Role.WORKER]) | set(topo.groups[Role.NEW_MASTER]) | set(
        topo.groups[Role.NEW_WORKER])
    return tuple(h for h in topo.hosts if h.name in wanted)


def files(
    topo: Topology, host: Host, secrets: ClusterSecrets, release: Release, ca_pem: bytes | None
) -> list[NodeFile]:
    """What ``kha render`` shows for one node: runtime, kubelet, and its kubeadm config (init on the
    first master, join elsewhere; the join needs the cluster CA for its discovery hash)."""
    if host not in kubernetes_nodes(topo):
        return []
    out = [*runtime_files(topo, release), *kubelet_files(release)]
    if host == topo.first_master:
        out.append(init_config(topo, host, secrets, release))
    elif ca_pem is not None:
        out.append(join_config(topo, host, secrets, release, ca_pem))
    return out


def store_ca(pki_root: Path) -> bytes | None:
    """The cluster CA certificate from a PKI store, when one has been built."""
    path = pki_root / "ca" / "ca.crt"
    return path.read_bytes() if path.exists() else None
