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

from installer import systemd
from installer.errors import ConfigError, Problem
from installer.etcd import render as etcd_render
from installer.files import NodeFile, dump_yaml, environment, render
from installer.kubernetes import hardening
from installer.pki.table import apiserver_sans
from installer.secrets import ClusterSecrets
from installer.settings import KubeVersion, ProxyMode, Settings
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
#: What kube-proxy's IPVS mode needs besides (https://kubernetes.io/docs/reference/networking/virtual-ips/#proxy-mode-ipvs,
#: pkg/proxy/ipvs/README.md): IPVS with its round-robin, weighted and source-hash schedulers, and conntrack.
IPVS_MODULES = ("ip_vs", "ip_vs_rr", "ip_vs_wrr", "ip_vs_sh", "nf_conntrack")
#: The node's tools for IPVS mode: kube-proxy's ipset sets, and ipvsadm to look at the virtual servers.
IPVS_PACKAGES = ("ipset", "ipvsadm")
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


def renamed(ref: str, source: str, repository: str) -> str:
    """An image reference under ``source`` (``k8s.gcr.io/pause:3.2``) as named under ``repository``; a
    reference from elsewhere is kept."""
    return f"{repository}/{ref[len(source) + 1:]}" if ref.startswith(f"{source}/") else ref


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


#: First lines of kubeadm.yaml. Fixed text: data goes into the YAML only, through the dumper.
_KUBEADM_HEADER = ("# Written by kha: kubeadm configuration. Edit the inventory, not this file.\n"
                   "# kha built the PKI under /etc/kubernetes/pki beforehand; kubeadm finds it there and only\n"
                   "# reuses it.\n")


def _args(api: str, values: dict[str, str]) -> dict[str, str] | list[dict[str, str]]:
    """Component flags: a map up to v1beta3, a list of name/value pairs from v1beta4."""
    if api == "v1beta4":
        return [{"name": k, "value": v} for k, v in values.items()]
    return dict(values)


def _node_registration(topo: Topology, host: Host, api: str) -> dict[str, object]:
    v = topo.settings.kube_version
    reg: dict[str, object] = {
        "name": host.name,
        "criSocket": cri_socket(v),
        "kubeletExtraArgs": _args(api, {"node-ip": str(host.address), "root-dir": topo.settings.kubelet_root_dir}),
    }
    if Role.WORKER in topo.roles(host.name) and _is_control_plane(topo, host):
        reg["taints"] = []  # allinone (a master that is also a worker): no control-plane taint
    return reg


def _is_control_plane(topo: Topology, host: Host) -> bool:
    return host.name in topo.groups[Role.MASTER] or host.name in topo.groups[Role.NEW_MASTER]


def init_config(topo: Topology, host: Host, secrets: ClusterSecrets, release: Release) -> NodeFile:
    s = topo.settings
    api = api_version(s.kube_version)
    h = hardening.Hardening.of(s)
    sans = apiserver_sans(topo, host)
    init: dict[str, object] = {
        "apiVersion": f"kubeadm.k8s.io/{api}",
        "kind": "InitConfiguration",
        "bootstrapTokens": [{
            "token": secrets.kubeadm_token,
            "description": "kha bootstrap token",
            "ttl": "24h0m0s",
            "groups": ["system:bootstrappers:kubeadm:default-node-token"],
            "usages": ["signing", "authentication"],
        }],
        "localAPIEndpoint": {"advertiseAddress": str(host.address), "bindPort": topo.apiserver_port},
    }
    if api == "v1beta4":
        init["timeouts"] = {"controlPlaneComponentHealthCheck": CONTROL_PLANE_TIMEOUT}
    init["nodeRegistration"] = _node_registration(topo, host, api)
    api_server: dict[str, object] = {
        "certSANs": [*sans.dns, *(str(i) for i in sans.ips)],
        "extraArgs": _args(api, {"service-node-port-range": s.kube_service_node_port_range,
                                 **hardening.apiserver_args(h)}),
    }
    if volumes := hardening.apiserver_volumes(h):
        api_server["extraVolumes"] = volumes
    if api != "v1beta4":
        api_server["timeoutForControlPlane"] = CONTROL_PLANE_TIMEOUT
    cluster = {
        "apiVersion": f"kubeadm.k8s.io/{api}",
        "kind": "ClusterConfiguration",
        "kubernetesVersion": f"v{release.version}",
        "clusterName": s.cluster_name,
        "controlPlaneEndpoint": str(topo.apiserver_endpoint),
        "imageRepository": release.image_repository,
        "certificatesDir": "/etc/kubernetes/pki",
        "networking": {"podSubnet": str(s.kube_pod_subnet), "serviceSubnet": str(s.kube_service_subnet),
                       "dnsDomain": s.kube_dns_domain},
        "etcd": {"external": {
            "endpoints": [etcd_render.Member(e.name, str(e.address)).client_url for e in topo.etcd],
            "caFile": "/etc/kubernetes/pki/etcd/ca.crt",
            "certFile": "/etc/kubernetes/pki/apiserver-etcd-client.crt",
            "keyFile": "/etc/kubernetes/pki/apiserver-etcd-client.key",
        }},
        "apiServer": api_server,
        "controllerManager": {"extraArgs": _args(api, {"node-cidr-mask-size": str(s.kube_network_node_prefix),
                                                       **hardening.component_args(h)})},
        "scheduler": {"extraArgs": _args(api, hardening.component_args(h))},
    }
    kubelet = {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "cgroupDriver": "systemd",
        "maxPods": s.kube_max_pods,
        "clusterDomain": s.kube_dns_domain,
        **hardening.kubelet_config(h),
        **kubelet_reservations(s),
    }
    proxy = {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "mode": s.kube_proxy_mode.value,
        "clusterCIDR": str(s.kube_pod_subnet),
        # 0: leave the host's conntrack table size alone (it is global; nodes may be containers).
        "conntrack": {"maxPerCore": 0},
    }
    return NodeFile(KUBEADM_CONFIG, dump_yaml([init, cluster, kubelet, proxy], _KUBEADM_HEADER), mode=0o600)


def kubelet_reservations(s: Settings) -> dict[str, object]:
    """kubeReserved, systemReserved and evictionHard from kubeadm-ha's knobs; only what the inventory set
    (kubelet keeps its own defaults for the rest). Reservations lower the node's allocatable; kubelet
    enforces them on pods (enforceNodeAllocatable: pods), not on the daemons themselves.
    https://kubernetes.io/docs/tasks/administer-cluster/reserve-compute-resources/"""
    def resources(cpu: str | None, memory: str | None, storage: str | None) -> dict[str, str]:
        pairs = (("cpu", cpu), ("memory", memory), ("ephemeral-storage", storage))
        return {k: v for k, v in pairs if v is not None}

    out: dict[str, object] = {}
    if kube := resources(s.kube_cpu_reserved, s.kube_memory_reserved, s.kube_ephemeral_storage_reserved):
        out["kubeReserved"] = kube
    system = resources(s.system_cpu_reserved, s.system_memory_reserved, s.system_ephemeral_storage_reserved)
    if s.system_reserved_enabled and system:
        out["systemReserved"] = system
    eviction = {k: v for k, v in (("memory.available", s.eviction_hard_memory_available),
                                  ("nodefs.available", s.eviction_hard_nodefs_available),
                                  ("nodefs.inodesFree", s.eviction_hard_nodefs_inodes_free),
                                  ("imagefs.available", s.eviction_hard_imagefs_available)) if v is not None}
    if eviction:
        # Setting evictionHard replaces kubelet's whole default map: thresholds left out are not enforced.
        out["evictionHard"] = eviction
    return out


def join_config(topo: Topology, host: Host, secrets: ClusterSecrets, release: Release, ca_pem: bytes) -> NodeFile:
    api = api_version(topo.settings.kube_version)
    join: dict[str, object] = {
        "apiVersion": f"kubeadm.k8s.io/{api}",
        "kind": "JoinConfiguration",
        "discovery": {"bootstrapToken": {"apiServerEndpoint": str(topo.apiserver_endpoint),
                                         "token": secrets.kubeadm_token, "caCertHashes": [ca_cert_hash(ca_pem)]}},
        "nodeRegistration": _node_registration(topo, host, api),
    }
    if _is_control_plane(topo, host):
        join["controlPlane"] = {"localAPIEndpoint": {"advertiseAddress": str(host.address),
                                                     "bindPort": topo.apiserver_port}}
    return NodeFile(KUBEADM_CONFIG, dump_yaml([join], _KUBEADM_HEADER), mode=0o600)


def control_plane_files(topo: Topology, secrets: ClusterSecrets) -> list[NodeFile]:
    """What each control plane needs before kubeadm starts its apiserver: the Secrets encryption config
    (0600: it holds the key) and the audit policy, as the inventory's hardening knobs ask."""
    h = hardening.Hardening.of(topo.settings)
    out = []
    if h.encryption_at_rest:
        out.append(NodeFile(hardening.ENCRYPTION_CONFIG, dump_yaml([hardening.encryption_config(secrets)]), mode=0o600))
    if h.audit:
        out.append(NodeFile(hardening.AUDIT_POLICY, dump_yaml([hardening.audit_policy()]), mode=0o600))
    return out


def modules(topo: Topology) -> tuple[str, ...]:
    """The kernel modules every Kubernetes node loads (and modules-load.d loads at boot)."""
    ipvs = topo.settings.kube_proxy_mode is ProxyMode.IPVS
    return MODULES + (IPVS_MODULES if ipvs else ())


def runtime_files(topo: Topology, release: Release, snapshotter: str = "overlayfs") -> list[NodeFile]:
    """Kernel modules, sysctls, containerd and crictl config (``snapshotter`` from the node's facts)."""
    return [
        NodeFile(MODULES_FILE, ("# Written by kha\n" + "\n".join(modules(topo)) + "\n").encode()),
        NodeFile(SYSCTL_FILE, ("# Written by kha\n" + "".join(f"{k} = {v}\n" for k, v in SYSCTLS.items())).encode()),
        NodeFile(CONTAINERD_CONFIG, render(
            _env, "containerd.toml.j2", root=topo.settings.containerd_storage_dir,
            sandbox_image=release.sandbox_image, cni_bin_dir=release.cni_bin_dir, runc_binary=None,
            snapshotter=snapshotter)),
        NodeFile(CRICTL_CONFIG, dump_yaml([{"runtime-endpoint": f"unix://{CRI_SOCKET}",
                                            "image-endpoint": f"unix://{CRI_SOCKET}", "timeout": 10}])),
    ]


#: kubeadm's drop-in passes these to kubelet; systemd expands each into words (systemd.service(5)).
_KUBELET_ENV = ("KUBELET_KUBECONFIG_ARGS", "KUBELET_CONFIG_ARGS", "KUBELET_KUBEADM_ARGS", "KUBELET_EXTRA_ARGS")


def kubelet_files(release: Release) -> list[NodeFile]:
    kubelet = f"{release.bin_dir}/kubelet"
    unit = systemd.unit(["Written by kha: kubelet, configured by kubeadm's drop-in (10-kubeadm.conf)."], [
        ("Unit", [("Description", "kubelet: The Kubernetes Node Agent"),
                  ("Documentation", "https://kubernetes.io/docs/"),
                  ("Wants", "network-online.target containerd.service"),
                  ("After", "network-online.target containerd.service")]),
        ("Service", [("ExecStart", systemd.command([kubelet])), ("Restart", "always"),
                     ("StartLimitInterval", "0"), ("RestartSec", "10")]),
        ("Install", [("WantedBy", "multi-user.target")]),
    ])
    # The drop-in kubeadm expects (as upstream's kubelet package ships it): the $VARs are meant to expand.
    kubeconfigs = (
        "--bootstrap-kubeconfig=/etc/kubernetes/bootstrap-kubelet.conf --kubeconfig=/etc/kubernetes/kubelet.conf")
    dropin = systemd.unit(["Written by kha: the drop-in kubeadm expects (as the upstream kubelet package ships it)."], [
        ("Service", [
            ("Environment", systemd.environment("KUBELET_KUBECONFIG_ARGS", kubeconfigs)),
            ("Environment", systemd.environment("KUBELET_CONFIG_ARGS", "--config=/var/lib/kubelet/config.yaml")),
            ("EnvironmentFile", systemd.path("/var/lib/kubelet/kubeadm-flags.env", optional=True)),
            ("EnvironmentFile", systemd.path("/etc/default/kubelet", optional=True)),
            ("ExecStart", ""),
            ("ExecStart", systemd.command([kubelet]) + "".join(f" ${v}" for v in _KUBELET_ENV)),
        ]),
    ])
    return [NodeFile(KUBELET_UNIT, unit), NodeFile(KUBELET_DROPIN, dropin)]


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
    if _is_control_plane(topo, host):
        out += control_plane_files(topo, secrets)
    if host == topo.first_master:
        out.append(init_config(topo, host, secrets, release))
    elif ca_pem is not None:
        out.append(join_config(topo, host, secrets, release, ca_pem))
    return out


def store_ca(pki_root: Path) -> bytes | None:
    """The cluster CA certificate from a PKI store, when one has been built."""
    path = pki_root / "ca" / "ca.crt"
    return path.read_bytes() if path.exists() else None
