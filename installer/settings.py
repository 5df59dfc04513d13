"""Typed cluster settings from an inventory's ``[all:vars]``.

One table (``KNOBS``) names every variable kha understands, its type, its default and what it is for;
``Settings`` is the frozen, typed result. Values that do not parse become ``Problem``s naming the
line and the variable. Variables kha does not know are kept (``Settings.unknown``) and listed by
``kha inventory check``, never silently dropped: a typo such as ``lb_kube_apiserver_Ip`` must show.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from enum import StrEnum
from typing import Any

from installer.errors import Problem
from installer.inventory import Value


class LBMode(StrEnum):
    NGINX = "nginx"
    HAPROXY = "haproxy"
    SLB = "slb"


class ContainerManager(StrEnum):
    CONTAINERD = "containerd"
    DOCKER = "docker"


class NetworkPlugin(StrEnum):
    FLANNEL = "flannel"
    CALICO = "calico"
    #: the bridge + host-local CNI plugins with routes between nodes: what offline installs use.
    BRIDGE = "bridge"


class ProxyMode(StrEnum):
    IPTABLES = "iptables"
    IPVS = "ipvs"


class KeyType(StrEnum):
    RSA = "rsa"
    ECDSA = "ecdsa"


@dataclass(frozen=True, order=True)
class KubeVersion:
    """A Kubernetes version as users write it: ``1.20.2``, ``v1.27.16`` or ``1.20.x`` (patch unknown)."""

    major: int
    minor: int
    patch: int | None = None

    @classmethod
    def parse(cls, text: str) -> KubeVersion:
        m = re.fullmatch(r"v?(\d+)\.(\d+)(?:\.(\d+|x))?", text.strip())
        if not m:
            raise ValueError(f"{text!r} is not a Kubernetes version like 1.20.2")
        patch = m.group(3)
        return cls(int(m.group(1)), int(m.group(2)), None if patch in (None, "x") else int(patch))

    def at_least(self, major: int, minor: int) -> bool:
        return (self.major, self.minor) >= (major, minor)

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}." + ("x" if self.patch is None else str(self.patch))


def _bool(text: str) -> bool:
    low = text.strip().lower()
    if low in ("true", "yes", "on", "1"):
        return True
    if low in ("false", "no", "off", "0"):
        return False
    raise ValueError(f"{text!r} is not a boolean (true or false)")


def _int_range(lo: int, hi: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            n = int(text.strip())
        except ValueError:
            raise ValueError(f"{text!r} is not a whole number") from None
        if not lo <= n <= hi:
            raise ValueError(f"{n} is outside {lo}..{hi}")
        return n

    return parse


def _port(text: str) -> int:
    return _int_range(1, 65535)(text)


def _ip(text: str) -> ipaddress.IPv4Address:
    try:
        return ipaddress.IPv4Address(text.strip())
    except ValueError:
        raise ValueError(f"{text!r} is not an IPv4 address") from None


def _net(text: str) -> ipaddress.IPv4Network:
    try:
        return ipaddress.IPv4Network(text.strip(), strict=True)
    except ValueError as exc:
        raise ValueError(f"{text!r} is not a network in CIDR form like 10.244.0.0/18 ({exc})") from None


def _enum(kind: type[StrEnum]) -> Callable[[str], StrEnum]:
    def parse(text: str) -> StrEnum:
        try:
            return kind(text.strip().lower())
        except ValueError:
            raise ValueError(f"{text!r} is not one of {', '.join(m.value for m in kind)}") from None

    return parse


def _str_list(text: str) -> tuple[str, ...]:
    """Ansible list syntax (``["a", "b"]``) or a comma-separated string."""
    t = text.strip()
    if not t:
        return ()
    if t.startswith("["):
        try:
            items = json.loads(t.replace("'", '"'))
        except json.JSONDecodeError:
            raise ValueError(f"{text!r} is not a list like [\"a\", \"b\"]") from None
        if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
            raise ValueError(f"{text!r} must be a list of strings")
        return tuple(i.strip() for i in items if i.strip())
    return tuple(i.strip() for i in t.split(",") if i.strip())


def _abs_path(text: str) -> str:
    t = text.strip()
    if not t.startswith("/"):
        raise ValueError(f"{text!r} must be an absolute path")
    return t.rstrip("/") or "/"


def _token(text: str) -> str:
    # kubeadm's bootstrap token format: https://kubernetes.io/docs/reference/access-authn-authz/bootstrap-tokens/
    if not re.fullmatch(r"[a-z0-9]{6}\.[a-z0-9]{16}", text.strip()):
        raise ValueError(f"{text!r} is not a bootstrap token like abcdef.0123456789abcdef")
    return text.strip()


def _dns_name(text: str) -> str:
    t = text.strip().lower()
    if not re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*", t):
        raise ValueError(f"{text!r} is not a DNS name")
    return t


def _str(text: str) -> str:
    return text


@dataclass(frozen=True)
class Knob:
    name: str
    parse: Callable[[str], Any]
    default: Any
    doc: str


DEFAULT_POD_SUBNET = ipaddress.IPv4Network("10.244.0.0/18")
DEFAULT_SERVICE_SUBNET = ipaddress.IPv4Network("10.244.64.0/18")

#: Every [all:vars] variable kha understands. Defaults follow kubeadm-ha where it has one, and
#: kubeadm's own defaults for certificate lifetimes (leaves 1 year, CAs 10 years).
KNOBS: tuple[Knob, ...] = (
    Knob("kube_version", KubeVersion.parse, KubeVersion(1, 20, 2), "Kubernetes version to install"),
    Knob("container_manager", _enum(ContainerManager), ContainerManager.CONTAINERD, "container runtime"),
    Knob("lb_mode", _enum(LBMode), LBMode.NGINX, "apiserver load balancer: nginx, haproxy or slb"),
    Knob("lb_kube_apiserver_ip", _ip, None, "the VIP (keepalived) or the slb address"),
    Knob("lb_kube_apiserver_port", _port, 8443, "port of the apiserver load balancer"),
    Knob("lb_keepalived_router_id", _int_range(1, 255), None,
         "VRRP virtual_router_id; derived from the cluster name when unset"),
    Knob("lb_keepalived_password", _str, None, "VRRP auth password; generated per cluster when unset"),
    Knob("lb_keepalived_unicast", _bool, False, "send VRRP adverts to the other [lb] nodes instead of multicast"),
    Knob("lb_keepalived_interface", _str, None, "interface that carries the VIP (default: the route to it)"),
    Knob("node_subnet", _net, None, "the nodes' network; the VIP must be inside it (default: the [lb] nodes' /24)"),
    Knob("kube_pod_subnet", _net, DEFAULT_POD_SUBNET, "pod network"),
    Knob("kube_service_subnet", _net, DEFAULT_SERVICE_SUBNET, "service network"),
    Knob("kube_network_node_prefix", _int_range(8, 30), 24, "prefix length of each node's pod range"),
    Knob("kube_max_pods", _int_range(1, 10000), 110, "pods per node"),
    Knob("network_plugin", _enum(NetworkPlugin), NetworkPlugin.CALICO, "CNI: flannel, calico or bridge"),
    Knob("kube_proxy_mode", _enum(ProxyMode), ProxyMode.IPTABLES, "kube-proxy mode"),
    Knob("kube_dns_domain", _dns_name, "cluster.local", "cluster DNS domain"),
    Knob("kube_service_node_port_range", _str, "30000-32767", "NodePort range"),
    Knob("kube_master_external_ip", _str_list, (), "extra apiserver certificate IP SANs"),
    Knob("kube_master_external_domain", _str_list, (), "extra apiserver certificate DNS SANs"),
    Knob("kubelet_root_dir", _abs_path, "/var/lib/kubelet", "kubelet root directory"),
    Knob("etcd_data_dir", _abs_path, "/var/lib/etcd", "etcd data directory"),
    Knob("containerd_storage_dir", _abs_path, "/var/lib/containerd", "containerd root"),
    Knob("docker_storage_dir", _abs_path, "/var/lib/docker", "docker root"),
    Knob("kube_ca_certs_expired", _int_range(1, 36500), 3650, "CA lifetime in days (cluster, front proxy)"),
    Knob("kube_certs_expired", _int_range(1, 36500), 365, "leaf certificate lifetime in days"),
    Knob("etcd_ca_certs_expired", _int_range(1, 36500), 3650, "etcd CA lifetime in days"),
    Knob("etcd_certs_expired", _int_range(1, 36500), 365, "etcd leaf certificate lifetime in days"),
    Knob("cert_key_type", _enum(KeyType), KeyType.RSA, "key type for every certificate: rsa (2048) or ecdsa (P-256)"),
    Knob("cluster_name", _dns_name, "kubernetes", "cluster name (kubeconfigs, VRRP router id)"),
    Knob("kubeadm_token", _token, None, "bootstrap token; generated per cluster when unset"),
    Knob("skip_verify_node", _bool, False, "skip the CPU/memory check of nodes"),
)

#: Variables kubeadm-ha documents that kha reads but does not act on; listed as known, not as typos.
ACCEPTED_UNUSED: frozenset[str] = frozenset({"kube_image_repository", "kube_upgrade"})


@dataclass(frozen=True)
class Settings:
    """The typed view of ``[all:vars]``. Defaults match ``KNOBS``."""

    kube_version: KubeVersion = KubeVersion(1, 20, 2)
    container_manager: ContainerManager = ContainerManager.CONTAINERD
    lb_mode: LBMode = LBMode.NGINX
    lb_kube_apiserver_ip: ipaddress.IPv4Address | None = None
    lb_kube_apiserver_port: int = 8443
    lb_keepalived_router_id: int | None = None
    lb_keepalived_password: str | None = None
    lb_keepalived_unicast: bool = False
    lb_keepalived_interface: str | None = None
    node_subnet: ipaddress.IPv4Network | None = None
    kube_pod_subnet: ipaddress.IPv4Network = DEFAULT_POD_SUBNET
    kube_service_subnet: ipaddress.IPv4Network = DEFAULT_SERVICE_SUBNET
    kube_network_node_prefix: int = 24
    kube_max_pods: int = 110
    network_plugin: NetworkPlugin = NetworkPlugin.CALICO
    kube_proxy_mode: ProxyMode = ProxyMode.IPTABLES
    kube_dns_domain: str = "cluster.local"
    kube_service_node_port_range: str = "30000-32767"
    kube_master_external_ip: tuple[str, ...] = ()
    kube_master_external_domain: tuple[str, ...] = ()
    kubelet_root_dir: str = "/var/lib/kubelet"
    etcd_data_dir: str = "/var/lib/etcd"
    containerd_storage_dir: str = "/var/lib/containerd"
    docker_storage_dir: str = "/var/lib/docker"
    kube_ca_certs_expired: int = 3650
    kube_certs_expired: int = 365
    etcd_ca_certs_expired: int = 3650
    etcd_certs_expired: int = 365
    cert_key_type: KeyType = KeyType.RSA
    cluster_name: str = "kubernetes"
    kubeadm_token: str | None = None
    skip_verify_node: bool = False
    #: which line each explicitly set variable came from (for messages).
    lines: Mapping[str, int] = field(default_factory=dict, compare=False)
    #: variables kha does not know: name → value as written, with its line.
    unknown: Mapping[str, Value] = field(default_factory=dict, compare=False)

    def line(self, name: str) -> int | None:
        return self.lines.get(name)


_FIELD_NAMES = {f.name for f in fields(Settings)} - {"lines", "unknown"}
assert {k.name for k in KNOBS} == _FIELD_NAMES, "KNOBS and Settings disagree"


def from_vars(path: str, raw: Mapping[str, Value]) -> tuple[Settings, list[Problem]]:
    """Build typed settings; returns every problem instead of stopping at the first."""
    values: dict[str, Any] = {}
    lines: dict[str, int] = {}
    unknown: dict[str, Value] = {}
    problems: list[Problem] = []
    by_name = {k.name: k for k in KNOBS}
    for name, val in raw.items():
        knob = by_name.get(name)
        if knob is None:
            if name not in ACCEPTED_UNUSED:
                unknown[name] = val
            continue
        lines[name] = val.line
        if val.text.strip() == "" and knob.default is None:
            continue  # an empty optional value means "unset", as in kubeadm-ha's examples
        try:
            values[name] = knob.parse(val.text)
        except ValueError as exc:
            problems.append(Problem(path, val.line, str(exc), name))
    return Settings(**values, lines=lines, unknown=unknown), problems
