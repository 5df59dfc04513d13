"""Typed cluster settings from an inventory's ``[all:vars]``.

One table (``KNOBS``) names every variable kha understands, its type, its default and what it is for;
``Settings`` is the frozen, typed result. Values that do not parse become ``Problem``s naming the
line and the variable. Variables kha does not know are kept (``Settings.unknown``) and listed by
``kha inventory check``, never silently dropped: a typo such as ``lb_kube_apiserver_Ip`` must show.
"""

from __future__ import annotations

import ipaddress
import json
import posixpath
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


#: What a path may hold: nothing a shell, systemd (``%`` specifiers, ``$`` expansion, ``\\`` escapes,
#: quotes), YAML or TOML would read as more than a name. See systemd.unit(5) "Specifiers".
_PATH_CHARS = re.compile(r"[A-Za-z0-9._+@/-]+")

#: Folders the system owns. A data directory is none of these, nor a parent of one: kha creates, chowns
#: and (for etcd's ``replace``) wipes it.
SYSTEM_DIRS: frozenset[str] = frozenset({
    "/", "/bin", "/boot", "/dev", "/etc", "/etc/kubernetes", "/home", "/lib", "/lib64", "/opt", "/proc",
    "/root", "/run", "/sbin", "/srv", "/sys", "/tmp", "/usr", "/usr/bin", "/usr/lib", "/usr/local",
    "/usr/local/bin", "/usr/sbin", "/var", "/var/lib", "/var/lib/kubelet", "/var/log", "/var/run", "/var/tmp",
})


#: Trees that hold no daemon's data: memory-backed (gone at reboot), kernel views, or configuration.
_NOT_DATA_TREES: dict[str, str] = {
    "/proc": "the kernel's view of processes", "/sys": "the kernel's view of devices", "/dev": "device nodes",
    "/run": "memory-backed (emptied at every boot)", "/var/run": "memory-backed (emptied at every boot)",
    "/tmp": "for temporary files (often memory-backed, cleaned at boot)", "/var/tmp": "for temporary files",
    "/boot": "the boot loader's", "/etc": "for configuration, not data",
}


def _abs_path(text: str) -> str:
    """A normalised absolute path made of plain characters (a trailing ``/`` is dropped)."""
    t = text.strip()
    if not t.startswith("/"):
        raise ValueError(f"{text!r} must be an absolute path")
    if not _PATH_CHARS.fullmatch(t):
        bad = sorted({c for c in t if not _PATH_CHARS.fullmatch(c)})
        raise ValueError(f"{text!r} holds {', '.join(repr(c) for c in bad)}: a path here may use only letters, "
                         "digits and . _ + @ - / (it lands in systemd units and configs unquoted)")
    trimmed = t.rstrip("/") or "/"
    if posixpath.normpath(trimmed) != trimmed:
        raise ValueError(f"{text!r} is not a normalised path (no '.', '..' or '//'); "
                         f"write {posixpath.normpath(trimmed)!r}")
    return trimmed


def _data_dir(own_default: str) -> Callable[[str], str]:
    """A dedicated folder for one daemon's data: absolute, at least two levels deep, no system folder.

    ``own_default`` is the one system folder this knob may name (kubelet's own /var/lib/kubelet).
    """

    def parse(text: str) -> str:
        path = _abs_path(text)
        if path != own_default and (path in SYSTEM_DIRS or path.count("/") < 2):
            raise ValueError(f"{path!r} is a system folder (or too close to /); name a dedicated folder at least "
                             f"two levels deep, such as {own_default} (kha creates, owns and may wipe it)")
        under = next((d for d in _NOT_DATA_TREES if path.startswith(d + "/")), None)
        if under is not None:
            raise ValueError(f"{path!r} is under {under}, which is {_NOT_DATA_TREES[under]}; keep data under "
                             f"/var/lib or a disk of its own, such as {own_default}")
        return path

    return parse


def _token(text: str) -> str:
    # kubeadm's bootstrap token format: https://kubernetes.io/docs/reference/access-authn-authz/bootstrap-tokens/
    if not re.fullmatch(r"[a-z0-9]{6}\.[a-z0-9]{16}", text.strip()):
        raise ValueError(f"{text!r} is not a bootstrap token like abcdef.0123456789abcdef")
    return text.strip()


_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")


def _dns_name(text: str) -> str:
    """An RFC 1123 name: dot-separated labels of 1–63 [a-z0-9-], no '-' at either end, 253 at most."""
    t = text.strip().lower()
    labels = t.split(".")
    if len(t) > 253 or not all(_DNS_LABEL.fullmatch(label) for label in labels):
        raise ValueError(f"{text!r} is not an RFC 1123 DNS name (labels of 1-63 letters, digits and '-', "
                         "not starting or ending with '-', separated by '.', 253 characters at most)")
    return t


def _san_name(text: str) -> str:
    """A DNS name for a certificate: RFC 1123, or a wildcard ``*.`` in front of one."""
    return "*." + _dns_name(text[2:]) if text.startswith("*.") else _dns_name(text)


def _dns_list(text: str) -> tuple[str, ...]:
    return tuple(_san_name(name) for name in _str_list(text))


def _ip_list(text: str) -> tuple[str, ...]:
    out = []
    for item in _str_list(text):
        try:
            out.append(str(ipaddress.ip_address(item)))
        except ValueError:
            raise ValueError(f"{item!r} is not an IP address") from None
    return tuple(out)


def _port_range(text: str) -> str:
    m = re.fullmatch(r"(\d+)-(\d+)", text.strip())
    if not m or not 1 <= int(m.group(1)) < int(m.group(2)) <= 65535:
        raise ValueError(f"{text!r} is not a port range like 30000-32767")
    return f"{int(m.group(1))}-{int(m.group(2))}"


def _interface(text: str) -> str:
    """A network interface name as the kernel takes it (net/core/dev.c dev_valid_name): 1-15 characters,
    not '.' or '..', no '/', ':' or whitespace; kha further keeps to letters, digits and . _ - so the
    name can sit unquoted in keepalived.conf."""
    t = text.strip()
    if not 1 <= len(t) <= 15 or t in (".", "..") or not re.fullmatch(r"[A-Za-z0-9._-]+", t):
        raise ValueError(f"{text!r} is not a network interface name (1-15 letters, digits, '.', '_' or '-'; "
                         "not '.' or '..')")
    return t


#: keepalived.conf(5): ``auth_pass`` "only the first eight (8) characters are used".
VRRP_PASSWORD_MAX = 8


def _vrrp_password(text: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9._+=@-]+", text):
        raise ValueError("must use only letters, digits and . _ + = @ - (keepalived.conf reads quotes, '#', "
                         "'!' and spaces as syntax)")
    if len(text) > VRRP_PASSWORD_MAX:
        raise ValueError(f"is {len(text)} characters long; keepalived uses only the first {VRRP_PASSWORD_MAX} "
                         "of auth_pass (keepalived.conf(5)), so two clusters could share it without knowing: "
                         f"use at most {VRRP_PASSWORD_MAX}")
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
    Knob("lb_keepalived_password", _vrrp_password, None, "VRRP auth password; generated per cluster when unset"),
    Knob("lb_keepalived_unicast", _bool, False, "send VRRP adverts to the other [lb] nodes instead of multicast"),
    Knob("lb_keepalived_interface", _interface, None, "interface that carries the VIP (default: the route to it)"),
    Knob("node_subnet", _net, None, "the nodes' network; the VIP must be inside it (default: the [lb] nodes' /24)"),
    Knob("kube_pod_subnet", _net, DEFAULT_POD_SUBNET, "pod network"),
    Knob("kube_service_subnet", _net, DEFAULT_SERVICE_SUBNET, "service network"),
    Knob("kube_network_node_prefix", _int_range(8, 30), 24, "prefix length of each node's pod range"),
    Knob("kube_max_pods", _int_range(1, 10000), 110, "pods per node"),
    Knob("network_plugin", _enum(NetworkPlugin), NetworkPlugin.CALICO, "CNI: flannel, calico or bridge"),
    Knob("kube_proxy_mode", _enum(ProxyMode), ProxyMode.IPTABLES, "kube-proxy mode"),
    Knob("kube_dns_domain", _dns_name, "cluster.local", "cluster DNS domain"),
    Knob("kube_service_node_port_range", _port_range, "30000-32767", "NodePort range"),
    Knob("kube_master_external_ip", _ip_list, (), "extra apiserver certificate IP SANs"),
    Knob("kube_master_external_domain", _dns_list, (), "extra apiserver certificate DNS SANs"),
    Knob("kubelet_root_dir", _data_dir("/var/lib/kubelet"), "/var/lib/kubelet", "kubelet root directory"),
    Knob("etcd_data_dir", _data_dir("/var/lib/etcd"), "/var/lib/etcd", "etcd data directory"),
    Knob("containerd_storage_dir", _data_dir("/var/lib/containerd"), "/var/lib/containerd", "containerd root"),
    Knob("docker_storage_dir", _data_dir("/var/lib/docker"), "/var/lib/docker", "docker root"),
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
