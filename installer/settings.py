"""Typed cluster settings from an inventory's ``[all:vars]``.

One table (``KNOBS``) names every variable kubeadm-ha knows (its example/variables.yaml and example
inventories) and kha's own, each with its type, kha's default, kubeadm-ha's stock value and its *fate*:
``honoured`` (kha acts on it), ``refused`` (a FILE:LINE error saying why and what to use instead, unless
it holds kubeadm-ha's stock value) or ``no-op`` (accepted with a warning saying it changes nothing).
Nothing is silently dropped. ``Settings`` is the frozen, typed result of the honoured ones. Values that
do not parse become ``Problem``s naming the line and the variable. Variables in no row are kept
(``Settings.unknown``) and listed by ``kha inventory check``: a typo such as ``lb_kube_apiserver_Ip``
must show. ``kha inventory vars`` prints the table; README.md holds its output.
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

from installer import varsfile
from installer.errors import Problem
from installer.inventory import Value


class LBMode(StrEnum):
    NGINX = "nginx"
    HAPROXY = "haproxy"
    SLB = "slb"


class BalanceAlg(StrEnum):
    """haproxy's ``balance`` algorithms that suit a TCP backend of apiservers (haproxy's configuration manual)."""

    ROUNDROBIN = "roundrobin"
    STATIC_RR = "static-rr"
    LEASTCONN = "leastconn"
    FIRST = "first"
    SOURCE = "source"


class ContainerManager(StrEnum):
    #: the only one kha installs; ``docker`` is refused when the inventory is read.
    CONTAINERD = "containerd"


class NetworkPlugin(StrEnum):
    FLANNEL = "flannel"
    CALICO = "calico"
    #: the bridge + host-local CNI plugins with routes between nodes: what offline installs use.
    BRIDGE = "bridge"


class ProxyMode(StrEnum):
    IPTABLES = "iptables"
    IPVS = "ipvs"


class FirewalldMode(StrEnum):
    """What kha does with firewalld on RHEL-family nodes (``installer.nodeprep.firewall``)."""

    #: stopped and disabled: kubespray's advice (its docs: "You should disable your firewall"; its
    #: contrib/os-services playbook stops firewalld) and kubeadm-ha's ``firewalld_disabled: true``
    STOP = "stop"
    #: kept running, with exactly the ports each node's roles need opened (kubeadm's "Ports and Protocols")
    OPEN = "open"


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


def _text(text: str) -> str:
    return text


def _int(text: str) -> int:
    try:
        return int(text.strip())
    except ValueError:
        raise ValueError(f"{text!r} is not a whole number") from None


def _json(kind: type) -> Callable[[str], Any]:
    """A list or mapping, written as YAML in the variables file or as JSON on an [all:vars] line."""
    what = "list" if kind is list else "mapping"

    def parse(text: str) -> Any:
        t = text.strip()
        if not t:
            return kind()
        try:
            value = json.loads(t)
        except json.JSONDecodeError:
            raise ValueError(f"{text!r} is not a {what} (write it in the variables file as YAML, or as JSON)") from None
        if not isinstance(value, kind):
            raise ValueError(f"{text!r} is not a {what}")
        return value

    return parse


#: A registry path as container image references spell it (the distribution reference grammar): a registry
#: host (a name or address, optionally :port) and optional lower-case path components, no tag or digest.
_IMAGE_REPOSITORY = re.compile(
    r"[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*(:[0-9]{1,5})?"
    r"(/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*")


def _image_repository(text: str) -> str:
    """kubeadm's ``imageRepository``: ``registry.example.com/k8s`` (images are ``<it>/kube-apiserver:vX``)."""
    t = text.strip()
    if not _IMAGE_REPOSITORY.fullmatch(t):
        raise ValueError(f"{text!r} is not an image repository like registry.example.com/k8s or "
                         "10.0.0.5:5000/kubernetes (a registry host, optionally :port, then lower-case path "
                         "components; no https://, no :tag, no trailing /)")
    return t


def _host_name(text: str) -> str:
    """A server for chrony: an IP address or an RFC 1123 name (chrony.conf(5) ``server``)."""
    t = text.strip()
    try:
        return str(ipaddress.ip_address(t))
    except ValueError:
        return _dns_name(t)


def _servers(text: str) -> tuple[str, ...]:
    """kubeadm-ha's ``ntp_server``: one server, or a list of them (names or addresses)."""
    return tuple(_host_name(s) for s in _str_list(text))


#: tz database names (``Area/Location``, ``UTC``, ``Etc/GMT+8``): the characters tzfile paths use.
_TIMEZONE = re.compile(r"[A-Za-z][A-Za-z0-9_+-]*(/[A-Za-z0-9_+-]+){0,2}")


def _timezone(text: str) -> str:
    t = text.strip()
    if not _TIMEZONE.fullmatch(t) or ".." in t:
        raise ValueError(f"{text!r} is not a time zone name like Asia/Shanghai or UTC (a file under "
                         "/usr/share/zoneinfo)")
    return t


def _hosts_map(text: str) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """kubeadm-ha's ``custom_hosts``: a mapping of address to one name or a list of names (/etc/hosts lines)."""
    raw = _json(dict)(text)
    out = []
    for addr, names in raw.items():
        try:
            ip = str(ipaddress.ip_address(str(addr).strip()))
        except ValueError:
            raise ValueError(f"{addr!r} is not an IP address (custom_hosts maps addresses to names)") from None
        listed = [names] if isinstance(names, str) else names
        if not isinstance(listed, list) or not listed or not all(isinstance(n, str) for n in listed):
            raise ValueError(f"{addr}: give a name or a list of names, not {names!r}")
        out.append((ip, tuple(_dns_name(n) for n in listed)))
    return tuple(out)


#: What a proxy URL may hold: it lands in a systemd Environment= line and an apt.conf string.
_URL_CHARS = re.compile(r"[A-Za-z0-9._~:/@%+=-]+")


def _proxy_url(text: str) -> str | None:
    from urllib.parse import urlsplit  # noqa: PLC0415

    t = text.strip()
    if not t:
        return None  # kubeadm-ha's stock value: no proxy
    if not _URL_CHARS.fullmatch(t):
        raise ValueError(f"{text!r} is not a proxy URL like http://10.0.0.1:3128 (letters, digits and "
                         "._~:/@%+=- only)")
    try:
        url = urlsplit(t)
        port = url.port
    except ValueError as exc:
        raise ValueError(f"{text!r} is not a proxy URL like http://10.0.0.1:3128 ({exc})") from None
    if url.scheme not in ("http", "https") or not url.hostname or url.path not in ("", "/") or port == 0:
        raise ValueError(f"{text!r} is not a proxy URL like http://10.0.0.1:3128 (http or https, a host, "
                         "an optional port, no path)")
    return t.rstrip("/")


def _repo_url(text: str) -> str:
    """The base URL of a package repository or download mirror: http(s), a host, a path; no query, no
    fragment, no ``$`` variables (kha appends the parts that vary). It lands in a dnf .repo file, an apt list
    file and a curl argument, so it holds the same plain characters as a proxy URL."""
    from urllib.parse import urlsplit  # noqa: PLC0415

    t = text.strip().rstrip("/")
    example = "like https://mirror.example.com/kubernetes (http or https, a host, a path)"
    if not t or not _URL_CHARS.fullmatch(t):
        raise ValueError(f"{text!r} is not a URL {example}; letters, digits and ._~:/@%+=- only")
    try:
        url = urlsplit(t)
        port = url.port
    except ValueError as exc:
        raise ValueError(f"{text!r} is not a URL {example} ({exc})") from None
    if url.scheme not in ("http", "https") or not url.hostname or port == 0 or url.query or url.fragment:
        raise ValueError(f"{text!r} is not a URL {example}")
    return t


def _no_proxy(text: str) -> tuple[str, ...]:
    """Hosts, domains (``.example.com``) and CIDR networks that bypass the proxy."""
    out = []
    for item in _str_list(text):
        try:
            net = ipaddress.ip_network(item, strict=False) if "/" in item else ipaddress.ip_address(item)
            out.append(str(net))
            continue
        except ValueError:
            pass
        name = item[1:] if item.startswith(".") else item
        if name == "localhost":
            out.append(item)
            continue
        try:
            _dns_name(name)
        except ValueError:
            raise ValueError(f"{item!r} is not an address, network (CIDR) or domain name") from None
        out.append(item.lower())
    return tuple(out)


#: A Kubernetes quantity as kubelet reads it (resource.Quantity): a number with an optional suffix.
_QUANTITY = re.compile(r"(\d+(\.\d+)?)(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?")


def _quantity(text: str) -> str:
    t = text.strip()
    if not _QUANTITY.fullmatch(t):
        raise ValueError(f"{text!r} is not a Kubernetes quantity like 100m, 256Mi or 1G")
    return t


def _threshold(text: str) -> str:
    """An eviction threshold: a percentage (``10%``) or a quantity (``100Mi``)."""
    t = text.strip()
    if t.endswith("%"):
        try:
            pct = float(t[:-1])
        except ValueError:
            raise ValueError(f"{text!r} is not a percentage like 10%") from None
        if not 0 < pct < 100:
            raise ValueError(f"{text!r} must be above 0% and below 100%")
        return t
    try:
        return _quantity(t)
    except ValueError:
        raise ValueError(f"{text!r} is not an eviction threshold like 10% or 100Mi") from None


def _container_manager(text: str) -> ContainerManager:
    if text.strip().lower() == "docker":
        raise ValueError("docker is refused: kha installs containerd (dockershim left Kubernetes in 1.24); "
                         "set container_manager=containerd or leave it out")
    return ContainerManager(_enum(ContainerManager)(text))


def _lb_mode(text: str) -> LBMode:
    if text.strip().lower() in ("openresty", "envoy"):
        raise ValueError(f"{text.strip()} is refused: kha installs nginx or haproxy (from the distribution or "
                         "its bundle, not as images); use lb_mode=nginx or lb_mode=haproxy")
    return LBMode(_enum(LBMode)(text))


def _kube_version(text: str) -> KubeVersion:
    return KubeVersion.parse(text)


class Fate(StrEnum):
    """What kha does with a kubeadm-ha variable."""

    #: read and acted on (the doc says how).
    HONOURED = "honoured"
    #: any value but kubeadm-ha's stock one is a FILE:LINE error saying why and what to use instead; the
    #: stock value (what copying example/variables.yaml gives) asks for nothing special and is accepted
    #: with a warning, so the stock file runs unchanged.
    REFUSED = "refused"
    #: accepted (its type checked) with a warning that says it changes nothing and what kha does instead.
    NOOP = "no-op"


#: No stock value: a variable kubeadm-ha does not have (kha's own) or sets in its inventories only.
NO_STOCK: Any = object()


@dataclass(frozen=True)
class Knob:
    """One variable: its type (``parse`` raises ValueError), kha's default, its fate and what it does."""

    name: str
    parse: Callable[[str], Any]
    default: Any
    doc: str
    fate: Fate = Fate.HONOURED
    #: kubeadm-ha's value in example/variables.yaml, as YAML loads it.
    stock: Any = NO_STOCK
    #: the stock value is a secret kubeadm-ha publishes (kubeadm_token "abcdef.0123456789abcdef"): it is
    #: ignored with a warning and kha generates one per cluster (installer.secrets).
    public_secret: bool = False

    def is_stock(self, text: str) -> bool:
        """Whether ``text`` is kubeadm-ha's stock value (``true``/``yes`` alike for booleans)."""
        if self.stock is NO_STOCK:
            return False
        if isinstance(self.stock, bool):
            try:
                return _bool(text) is self.stock
            except ValueError:
                return False
        return text.strip() == varsfile.as_text(self.stock).strip()


def _refused(name: str, parse: Callable[[str], Any], stock: Any, why: str) -> Knob:
    return Knob(name, parse, None, why, Fate.REFUSED, stock)


def _noop(name: str, parse: Callable[[str], Any], stock: Any, why: str) -> Knob:
    return Knob(name, parse, None, why, Fate.NOOP, stock)


DEFAULT_KUBE_REPO_URL = "https://pkgs.k8s.io/core:/stable:"
#: Docker's repository for EL, where containerd.io lives (https://docs.docker.com/engine/install/centos/); RHEL 9
#: and its rebuilds carry no containerd of their own.
DEFAULT_CONTAINERD_REPO_URL = "https://download.docker.com/linux/centos"
DEFAULT_ETCD_DOWNLOAD_URL = "https://github.com/etcd-io/etcd/releases/download"
DEFAULT_POD_SUBNET = ipaddress.IPv4Network("10.244.0.0/18")
DEFAULT_SERVICE_SUBNET = ipaddress.IPv4Network("10.244.64.0/18")

_IMAGES = ("kha picks every image itself (upstream's registries or its offline bundle) and runs haproxy, nginx, "
           "keepalived and etcd from packages, not images: remove it")
_ADDON = ("kha installs no add-ons (ingress, dashboard, metrics-server, cert-manager): install them once the "
          "cluster is up")
_DOCKER = "kha installs containerd, not docker: nothing reads it"
_CONTAINERD = ("kha writes containerd's config itself (systemd cgroups, overlayfs, runc, /etc/containerd/certs.d); "
               "remove it (a registry mirror goes in /etc/containerd/certs.d on the nodes)")
_REPOS = ("kha installs from pkgs.k8s.io and the distribution's own repositories, or from an offline bundle "
          "(kha bundle build): remove it")
_OS_REPOS = ("kha uses the node's own BaseOS/AppStream repositories as the node has them configured (a mirror "
             "there is dnf's own configuration): remove it")
_CONTAINERD_REPO = ("set containerd_repo_url to the mirror's base (the folder that holds gpg and 9/$basearch/stable), "
                    "not a templated baseurl: remove it")
_KUBE_REPO = ("kubernetes.io's old yum/apt repositories are gone; set kube_repo_url to a mirror of pkgs.k8s.io's "
              "stable channel: remove it")
_CONTROLLER = "kha keeps kube-controller-manager's defaults: remove it"
_EXTRA = "kha does not pass extra flags or volumes to the control plane: remove it"
_AUDIT = "kha writes its own audit policy (metadata only) and log rotation: use kubernetes_audit to turn it off"
_CALICO = "kha installs calico with its defaults (IP-in-IP with BGP, MTU detected): remove it"
_LB_EXTRAS = "kha's load balancer carries the apiserver only, and haproxy has no stats page: remove it"

#: Every variable kubeadm-ha's example/variables.yaml and example inventories know, and kha's own, with
#: its fate. Defaults follow kubeadm-ha where it has one, and kubeadm's for certificate lifetimes
#: (leaves 1 year, CAs 10 years). kubeadm-ha's file is
#: https://github.com/TimeBye/kubeadm-ha/blob/master/example/variables.yaml; ``stock`` is its value there.
KNOBS: tuple[Knob, ...] = (
    # -- honoured: the cluster ----------------------------------------------------------------
    Knob("kube_version", _kube_version, KubeVersion(1, 20, 2), "Kubernetes version to install (1.20 and newer)",
         stock="1.26.7"),
    Knob("container_manager", _container_manager, ContainerManager.CONTAINERD,
         "container runtime: containerd (docker is refused: kha installs containerd)", stock="containerd"),
    Knob("lb_mode", _lb_mode, LBMode.NGINX,
         "apiserver load balancer: nginx, haproxy or slb (openresty and envoy are refused)", stock="nginx"),
    Knob("lb_kube_apiserver_ip", _ip, None, "the VIP (keepalived) or the slb address; unset: a node-local LB",
         stock="192.168.56.15"),
    Knob("lb_kube_apiserver_port", _port, 8443, "port of the apiserver load balancer", stock=8443),
    Knob("lb_keepalived_router_id", _int_range(1, 255), None,
         "VRRP virtual_router_id; derived from the cluster name when unset", stock=51),
    Knob("lb_keepalived_password", _vrrp_password, None,
         "VRRP auth password; generated per cluster when unset (kubeadm-ha's public \"d0cker\" is ignored)",
         stock="d0cker", public_secret=True),
    Knob("lb_keepalived_unicast", _bool, False, "send VRRP adverts to the other [lb] nodes instead of multicast"),
    Knob("lb_keepalived_interface", _interface, None, "interface that carries the VIP (default: the route to it)"),
    Knob("node_subnet", _net, None, "the nodes' network; the VIP must be inside it (default: the [lb] nodes' /24)"),
    Knob("kube_pod_subnet", _net, DEFAULT_POD_SUBNET, "pod network", stock="10.244.0.0/18"),
    Knob("kube_service_subnet", _net, DEFAULT_SERVICE_SUBNET, "service network", stock="10.244.64.0/18"),
    Knob("kube_network_node_prefix", _int_range(8, 30), 24, "prefix length of each node's pod range", stock=24),
    Knob("kube_max_pods", _int_range(1, 10000), 110, "pods per node (kubelet maxPods)", stock=110),
    Knob("network_plugin", _enum(NetworkPlugin), NetworkPlugin.CALICO, "CNI: flannel, calico or bridge",
         stock="calico"),
    Knob("kube_proxy_mode", _enum(ProxyMode), ProxyMode.IPTABLES, "kube-proxy mode: iptables or ipvs",
         stock="iptables"),
    Knob("kube_dns_domain", _dns_name, "cluster.local", "cluster DNS domain", stock="cluster.local"),
    Knob("kube_service_node_port_range", _port_range, "30000-32767", "NodePort range", stock="30000-32767"),
    Knob("kube_master_external_ip", _ip_list, (), "extra apiserver certificate IP SANs", stock=["8.8.8.8"]),
    Knob("kube_master_external_domain", _dns_list, (), "extra apiserver certificate DNS SANs",
         stock=["kubernetes.io"]),
    Knob("kubelet_root_dir", _data_dir("/var/lib/kubelet"), "/var/lib/kubelet", "kubelet root directory",
         stock="/var/lib/kubelet"),
    Knob("etcd_data_dir", _data_dir("/var/lib/etcd"), "/var/lib/etcd", "etcd data directory", stock="/var/lib/etcd"),
    Knob("etcd_backup_hour", _int_range(0, 23), 3, "hour (0-23, the node's clock) of each etcd member's daily "
         "snapshot (kha-etcd-backup.timer)", stock="3"),
    Knob("etcd_backup_expiry", _int_range(1, 3650), 7, "days an etcd snapshot is kept on its node", stock="7"),
    Knob("containerd_storage_dir", _data_dir("/var/lib/containerd"), "/var/lib/containerd", "containerd root",
         stock="/var/lib/containerd"),
    Knob("kube_ca_certs_expired", _int_range(1, 36500), 3650, "CA lifetime in days (cluster, front proxy)",
         stock=36500),
    Knob("kube_certs_expired", _int_range(1, 36500), 365, "leaf certificate lifetime in days", stock=3650),
    Knob("etcd_ca_certs_expired", _int_range(1, 36500), 3650, "etcd CA lifetime in days", stock=36500),
    Knob("etcd_certs_expired", _int_range(1, 36500), 365, "etcd leaf certificate lifetime in days", stock=3650),
    Knob("cert_key_type", _enum(KeyType), KeyType.RSA, "key type for every certificate: rsa (2048) or ecdsa (P-256)"),
    Knob("cluster_name", _dns_name, "kubernetes", "cluster name (kubeconfigs, VRRP router id)"),
    Knob("kubeadm_token", _token, None, "bootstrap token; generated per cluster when unset (kubeadm-ha's public "
         "abcdef.0123456789abcdef is ignored)", stock="abcdef.0123456789abcdef", public_secret=True),
    Knob("kube_encryption_at_rest", _bool, True, "Secrets stored aescbc-encrypted in etcd, one key per cluster"),
    Knob("kubernetes_audit", _bool, True, "audit log, metadata only (on by default; kubeadm-ha's is off)",
         stock=False),
    Knob("kube_profiling", _bool, False, "/debug/pprof on apiserver, controller-manager and scheduler"),
    Knob("kubelet_protect_kernel_defaults", _bool, False, "kubelet refuses kernel sysctls other than it expects"),
    Knob("lb_haproxy_chroot", _bool, True, "haproxy runs as user haproxy in a chroot"),
    Knob("lb_haproxy_balance_alg", _enum(BalanceAlg), BalanceAlg.ROUNDROBIN, "haproxy's balance algorithm over "
         "the apiservers: roundrobin, static-rr, leastconn, first or source (lb_mode=nginx balances least_conn "
         "and ignores it)", stock="leastconn"),
    Knob("kube_image_repository", _image_repository, None, "the registry path Kubernetes' images are named "
         "under: kubeadm's imageRepository (control plane, kube-proxy) and containerd's pause image; online "
         "they are pulled from it, from an offline bundle they are imported and tagged with it; unset: "
         "registry.k8s.io (k8s.gcr.io before 1.25)", stock="registry.aliyuncs.com/kubeadm-ha"),
    # -- honoured: node preparation (installer.nodeprep, kubelet's config) -----------------------
    Knob("skip_verify_node", _bool, False, "skip the resource check before anything is changed: every Kubernetes "
         "node needs 2 CPUs and 2 GiB (1700 MiB MemTotal), the one node of a one-node cluster 2 CPUs and 4 GiB",
         stock=False),
    Knob("chrony_enabled", _bool, False, "chrony on every node: the first master serves time (from ntp_server, "
         "or its own clock), the other nodes follow it; on nodes that are containers chronyd runs with -x "
         "(tracks time, never sets the clock the host owns)", stock=False),
    Knob("ntp_server", _servers, (), "the servers the first master's chrony follows (a name, an address or a "
         "list); empty: its own clock at stratum 10", stock="ntp.aliyun.com"),
    Knob("timezone", _timezone, None, "every node's time zone (/etc/localtime, /etc/timezone); unset: left as "
         "it is", stock="Asia/Shanghai"),
    Knob("custom_hosts", _hosts_map, (), "extra /etc/hosts lines (address: name or [names]) on every node, "
         "beside one line per inventory node named by hostname", stock={}),
    Knob("http_proxy", _proxy_url, None, "proxy for containerd's image pulls and the package manager (apt, dnf)",
         stock=""),
    Knob("https_proxy", _proxy_url, None, "as http_proxy, for https:// URLs", stock=""),
    Knob("no_proxy", _no_proxy, (), "what bypasses the proxy; kha adds localhost, the nodes, the node, pod and "
         "service networks and the cluster domain",
         stock="192.168.0.0/16,10.0.0.0/8,172.16.0.0/12,127.0.0.1,localhost"),
    Knob("kube_cpu_reserved", _quantity, None, "kubelet kubeReserved cpu", stock="100m"),
    Knob("kube_memory_reserved", _quantity, None, "kubelet kubeReserved memory", stock="256M"),
    Knob("kube_ephemeral_storage_reserved", _quantity, None, "kubelet kubeReserved ephemeral-storage", stock="1G"),
    Knob("system_reserved_enabled", _bool, True, "whether the system_*_reserved values are applied", stock=True),
    Knob("system_cpu_reserved", _quantity, None, "kubelet systemReserved cpu", stock="500m"),
    Knob("system_memory_reserved", _quantity, None, "kubelet systemReserved memory", stock="512M"),
    Knob("system_ephemeral_storage_reserved", _quantity, None, "kubelet systemReserved ephemeral-storage",
         stock="10G"),
    Knob("eviction_hard_imagefs_available", _threshold, None, "kubelet evictionHard imagefs.available",
         stock="15%"),
    Knob("eviction_hard_memory_available", _threshold, None, "kubelet evictionHard memory.available",
         stock="100Mi"),
    Knob("eviction_hard_nodefs_available", _threshold, None, "kubelet evictionHard nodefs.available", stock="10%"),
    Knob("eviction_hard_nodefs_inodes_free", _threshold, None, "kubelet evictionHard nodefs.inodesFree",
         stock="5%"),
    # -- honoured: the RHEL family (Rocky, RHEL, CentOS Stream 9; installer.nodeprep) -----------------
    Knob("firewalld_mode", _enum(FirewalldMode), FirewalldMode.STOP, "RHEL family: firewalld stopped and disabled "
         "(stop, as kubespray advises) or kept running with exactly the ports each node's roles need opened "
         "(open); Debian nodes: the firewall is left as it is"),
    Knob("kube_repo_url", _repo_url, DEFAULT_KUBE_REPO_URL, "where Kubernetes' packages come from online: "
         "pkgs.k8s.io's stable channel or a mirror of it (the part before /v1.29/rpm/ or /v1.29/deb/)"),
    Knob("containerd_repo_url", _repo_url, DEFAULT_CONTAINERD_REPO_URL, "RHEL family: where containerd.io comes "
         "from, Docker's CentOS/RHEL repository or a mirror of it (it holds gpg and 9/$basearch/stable/)"),
    Knob("etcd_download_url", _repo_url, DEFAULT_ETCD_DOWNLOAD_URL, "RHEL family: where etcd's release tarball "
         "comes from, etcd's GitHub releases or a mirror of them (it holds vVERSION/etcd-vVERSION-linux-ARCH.tar.gz; "
         "the sha256 is pinned in kha)"),
    # -- no-op: accepted with a warning -------------------------------------------------------
    _noop("nftables_to_iptables", _bool, False, "kha leaves the iptables backend as the distribution set it"),
    _noop("wait_plugins_ready", _bool, True, "kha always waits for each phase's readiness conditions"),
    _noop("docker_version", _text, "20.10.24", _DOCKER),
    _noop("docker_mirror", _str_list, ["https://reg-mirror.qiniu.com", "https://hub-mirror.c.163.com",
                                       "https://docker.mirrors.ustc.edu.cn"], _DOCKER),
    _noop("docker_insecure_registries", _str_list, ["{{ kube_pod_subnet }}", "{{ kube_service_subnet }}"], _DOCKER),
    _noop("docker_log_driver", _text, "json-file", _DOCKER),
    _noop("docker_log_level", _text, "warn", _DOCKER),
    _noop("docker_log_max_size", _text, "10m", _DOCKER),
    _noop("docker_log_max_file", _int, 3, _DOCKER),
    _noop("docker_storage_dir", _data_dir("/var/lib/docker"), "/var/lib/docker", _DOCKER),
    _noop("docker_bip", _text, "172.17.0.1/16", _DOCKER),
    _noop("docker_max_concurrent_downloads", _int, 10, _DOCKER),
    _noop("ingress_controller_enabled", _bool, True, _ADDON),
    _noop("ingress_controller_tpye", _text, "nginx", _ADDON),
    _noop("nginx_ingress_image", _text, "{{ kube_image_repository }}/ingress-nginx_controller:v1.5.1", _ADDON),
    _noop("nginx_ingress_webhook_certgen_image", _text,
          "{{ kube_image_repository }}/ingress-nginx_kube-webhook-certgen:v20220916-gd32f8c343", _ADDON),
    _noop("traefik_certs_expired", _int, 3650, _ADDON),
    _noop("traefik_ingress_image", _text, "{{ kube_image_repository }}/traefik:v2.9.6", _ADDON),
    _noop("kubernetesui_dashboard_enabled", _bool, True, _ADDON),
    _noop("kubernetesui_dashboard_certs_expired", _int, 3650, _ADDON),
    _noop("kubernetesui_dashboard_image", _text, "{{ kube_image_repository }}/kubernetesui_dashboard:v2.5.1", _ADDON),
    _noop("kubernetesui_metrics_scraper_image", _text,
          "{{ kube_image_repository }}/kubernetesui_metrics-scraper:v1.0.7", _ADDON),
    _noop("metrics_server_enabled", _bool, True, _ADDON),
    _noop("metrics_server_image", _text, "{{ kube_image_repository }}/metrics-server_metrics-server:v0.6.4", _ADDON),
    _noop("cert_manager_enabled", _bool, False, _ADDON),
    _noop("acme_email", _text, "yourname@gmail.com", _ADDON),
    _noop("acme_server", _text, "https://acme-v02.api.letsencrypt.org/directory", _ADDON),
    _noop("cert_manager_cainjector_image", _text,
          "{{ kube_image_repository }}/jetstack_cert-manager-cainjector:v1.10.1", _ADDON),
    _noop("cert_manager_webhook_image", _text, "{{ kube_image_repository }}/jetstack_cert-manager-webhook:v1.10.1",
          _ADDON),
    _noop("cert_manager_controller_image", _text,
          "{{ kube_image_repository }}/jetstack_cert-manager-controller:v1.10.1", _ADDON),
    # -- refused unless kubeadm-ha's stock value ----------------------------------------------
    _refused("firewalld_disabled", _bool, True, "use firewalld_mode: stop (the default, as firewalld_disabled: "
             "true) or open (firewalld keeps running, the ports each node needs opened)"),
    _refused("chrony_image", _text, "{{ kube_image_repository }}/setzero_chrony:3.5", _IMAGES),
    _refused("base_yum_repo", _text, "http://mirrors.aliyun.com/centos/$releasever/os/$basearch/", _OS_REPOS),
    _refused("epel_yum_repo", _text, "http://mirrors.aliyun.com/epel/$releasever/$basearch", _OS_REPOS),
    _refused("docker_yum_repo", _text, "https://mirrors.aliyun.com/docker-ce/linux/centos/"
             "{{ ansible_distribution_major_version }}/$basearch/stable", _CONTAINERD_REPO),
    _refused("kubernetes_yum_repo", _text, "https://mirrors.aliyun.com/kubernetes/yum/repos/"
             "kubernetes-el7-{{ ansible_architecture }}/", _KUBE_REPO),
    _refused("base_apt_repo", _text, "deb http://mirrors.aliyun.com/{{ host_distribution | lower }}/ "
             "{{ host_distribution_release }} main restricted universe multiverse", _REPOS),
    _refused("docker_apt_repo", _text, "deb [arch={{ host_architecture }}] https://mirrors.aliyun.com/docker-ce/"
             "linux/{{ host_distribution | lower }} {{ host_distribution_release }} stable", _REPOS),
    _refused("kubernetes_apt_repo", _text, "deb https://mirrors.aliyun.com/kubernetes/apt kubernetes-xenial main",
             _KUBE_REPO),
    _refused("containerd_version", _text, "1.6.20-1", "kha installs the containerd of the distribution or its "
             "bundle: remove it"),
    _refused("containerd_state_dir", _text, "/run/containerd", _CONTAINERD),
    _refused("containerd_oom_score", _int, -999, _CONTAINERD),
    _refused("containerd_grpc_max_recv_message_size", _int, 16777216, _CONTAINERD),
    _refused("containerd_grpc_max_send_message_size", _int, 16777216, _CONTAINERD),
    _refused("containerd_debug_level", _text, "info", _CONTAINERD),
    _refused("containerd_metrics_address", _text, "", _CONTAINERD),
    _refused("containerd_metrics_grpc_histogram", _bool, False, _CONTAINERD),
    _refused("containerd_max_container_log_line_size", _int, -1, _CONTAINERD),
    _refused("containerd_default_runtime", _text, "runc", _CONTAINERD),
    _refused("containerd_snapshotter", _text, "overlayfs", _CONTAINERD),
    _refused("containerd_runtimes", _json(list), [{"name": "runc", "type": "io.containerd.runc.v2", "engine": "",
                                                   "root": "", "options": {"SystemdCgroup": "true"}}], _CONTAINERD),
    _refused("containerd_use_systemd_cgroup", _text, "true", _CONTAINERD),
    _refused("containerd_registries_config_dir", _text, "/etc/containerd/certs.d", _CONTAINERD),
    _refused("containerd_registries", _json(dict), {"docker.io": "https://registry-1.docker.io"}, _CONTAINERD),
    _refused("containerd_extra_args", _text, "", _CONTAINERD),
    _refused("lb_kube_apiserver_healthcheck_port", _port, 8081, "kha's load balancers check each apiserver's "
             "/readyz directly and keepalived checks the local load balancer: there is no health-check port"),
    _refused("enabel_ingress_nodeport_lb", _bool, False, _LB_EXTRAS),
    _refused("enabel_ingress_tls_nodeport_lb", _bool, False, _LB_EXTRAS),
    _refused("lb_openresty_image", _text, "{{ kube_image_repository }}/openresty_openresty:1.19.3.1-alpine", _IMAGES),
    _refused("lb_nginx_image", _text, "{{ kube_image_repository }}/nginx:1.23-alpine", _IMAGES),
    _refused("lb_haproxy_image", _text, "{{ kube_image_repository }}/haproxy:2.3-alpine", _IMAGES),
    _refused("lb_haproxy_stats_bind_address", _int, 9090, _LB_EXTRAS),
    _refused("lb_haproxy_stats_uri", _text, "/stats", _LB_EXTRAS),
    _refused("lb_haproxy_stats_refresh", _int, 10, _LB_EXTRAS),
    _refused("lb_haproxy_stats_user", _text, "admin", _LB_EXTRAS),
    _refused("lb_haproxy_stats_password", _text, "admin", _LB_EXTRAS),
    _refused("lb_envoy_image", _text, "{{ kube_image_repository }}/envoyproxy_envoy:v1.16.2", _IMAGES),
    _refused("lb_envoy_admin_address_port", _int, 9090, "kha does not install envoy: use lb_mode=nginx or haproxy"),
    _refused("lb_keepalived_image", _text, "{{ kube_image_repository }}/osixia_keepalived:2.0.20", _IMAGES),
    _refused("etcd_image", _text, "{{ kube_image_repository }}/etcd:3.5.6-0", _IMAGES),
    _refused("pod_infra_container_image", _text, "{{ kube_image_repository }}/pause:3.9", _IMAGES),
    _refused("kube_cni_version", _text, "1.1.1", "kha installs the CNI plugins pkgs.k8s.io or its bundle carries "
             "for kube_version: remove it"),
    _refused("kube_encryption_algorithm", _text, "aescbc", "kha encrypts Secrets with aescbc only: remove it "
             "(kube_encryption_at_rest=false turns encryption off)"),
    _refused("kube_encrypt_token", _text, "GPG4RC0Vyk7+Mz/niQPttxLIeL4HF96oRCcBRyKNpfM=",
             "kha generates the Secrets encryption key per cluster and keeps it in the state folder "
             "(kubeadm-ha's published key is ignored): remove it"),
    _refused("audit_log_maxage", _int, 30, _AUDIT),
    _refused("audit_log_maxbackups", _int, 10, _AUDIT),
    _refused("audit_log_maxsize", _int, 100, _AUDIT),
    _refused("audit_log_hostpath", _text, "/var/log/kubernetes/audit", _AUDIT),
    _refused("audit_policy_file", _text, "/etc/kubernetes/config/apiserver-audit-policy.yaml", _AUDIT),
    _refused("audit_policy_custom_rules", _text, "- level: None\n  users: []\n  verbs: []\n  resources: []\n",
             _AUDIT),
    _refused("kube_apiserver_enable_admission_plugins", _str_list, ["NodeRestriction"],
             "kha keeps kube-apiserver's default admission plugins (NodeRestriction among them): remove it"),
    _refused("kube_apiserver_disable_admission_plugins", _str_list, [],
             "kha keeps kube-apiserver's default admission plugins: remove it"),
    _refused("kube_controller_node_monitor_grace_period", _text, "40s", _CONTROLLER),
    _refused("kube_controller_node_monitor_period", _text, "5s", _CONTROLLER),
    _refused("kube_controller_pod_eviction_timeout", _text, "2m0s", _CONTROLLER),
    _refused("kube_controller_terminated_pod_gc_threshold", _int, 10, _CONTROLLER),
    _refused("kube_kubeadm_apiserver_extra_args", _json(dict), {}, _EXTRA),
    _refused("kube_kubeadm_controller_extra_args", _json(dict), {}, _EXTRA),
    _refused("kube_kubeadm_scheduler_extra_args", _json(dict), {}, _EXTRA),
    _refused("apiserver_extra_volumes", _json(dict), {}, _EXTRA),
    _refused("controller_manager_extra_volumes", _json(dict), {}, _EXTRA),
    _refused("scheduler_extra_volumes", _json(dict), {}, _EXTRA),
    _refused("network_plugins_enabled", _bool, True, "kha always installs the CNI named by network_plugin"),
    _refused("calico_backend", _text, "bird", _CALICO),
    _refused("calico_veth_mtu", _int, 0, _CALICO),
    _refused("calico_felix_log_level", _text, "warning", _CALICO),
    _refused("calico_typha_image", _text, "{{ kube_image_repository }}/calico_typha:v3.24.5", _IMAGES),
    _refused("calico_cni_image", _text, "{{ kube_image_repository }}/calico_cni:v3.24.5", _IMAGES),
    _refused("calico_node_image", _text, "{{ kube_image_repository }}/calico_node:v3.24.5", _IMAGES),
    _refused("calico_kube_controllers_image", _text, "{{ kube_image_repository }}/calico_kube-controllers:v3.24.5",
             _IMAGES),
    _refused("calicoctl_image", _text, "{{ kube_image_repository }}/calico_ctl:v3.24.5", _IMAGES),
    _refused("flannel_backend", _text, "vxlan", "kha installs flannel with the vxlan backend: remove it"),
    _refused("flannel_image", _text, "{{ kube_image_repository }}/flannelcni_flannel:v0.20.2", _IMAGES),
    _refused("flannel_cni_plugin_image", _text, "{{ kube_image_repository }}/flannelcni_flannel-cni-plugin:v1.1.0",
             _IMAGES),
    _refused("kube_upgrade", _bool, False, "a running cluster is upgraded by a command, not a variable: set "
             "kube_version and run `kha upgrade -i INVENTORY --to VERSION`"),
)

KNOBS_BY_NAME: Mapping[str, Knob] = {k.name: k for k in KNOBS}
assert len(KNOBS_BY_NAME) == len(KNOBS), "a variable is in KNOBS twice"


def markdown_table() -> str:
    """The table as Markdown: ``kha inventory vars`` prints it and README.md holds it."""

    def cell(text: str) -> str:
        return text.replace("|", "\\|").replace("\n", " ")

    counts = {f: sum(1 for k in KNOBS if k.fate is f) for f in Fate}
    out = [f"{len(KNOBS)} variables: " + ", ".join(f"{n} {f.value}" for f, n in counts.items()) + ".", "",
           "| variable | fate | kubeadm-ha's value | in kha |", "|---|---|---|---|"]
    for k in KNOBS:
        stock = "—" if k.stock is NO_STOCK else f"`{cell(varsfile.as_text(k.stock)) or '(empty)'}`"
        out.append(f"| `{k.name}` | {k.fate.value} | {stock} | {cell(k.doc)} |")
    return "\n".join(out) + "\n"


@dataclass(frozen=True)
class Settings:
    """The typed view of ``[all:vars]`` (and ``-e @FILE``): one field per honoured knob, defaults as ``KNOBS``."""

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
    etcd_backup_hour: int = 3
    etcd_backup_expiry: int = 7
    containerd_storage_dir: str = "/var/lib/containerd"
    kube_ca_certs_expired: int = 3650
    kube_certs_expired: int = 365
    etcd_ca_certs_expired: int = 3650
    etcd_certs_expired: int = 365
    cert_key_type: KeyType = KeyType.RSA
    cluster_name: str = "kubernetes"
    kubeadm_token: str | None = None
    kube_encryption_at_rest: bool = True
    kubernetes_audit: bool = True
    kube_profiling: bool = False
    kubelet_protect_kernel_defaults: bool = False
    lb_haproxy_chroot: bool = True
    lb_haproxy_balance_alg: BalanceAlg = BalanceAlg.ROUNDROBIN
    kube_image_repository: str | None = None
    skip_verify_node: bool = False
    chrony_enabled: bool = False
    ntp_server: tuple[str, ...] = ()
    timezone: str | None = None
    custom_hosts: tuple[tuple[str, tuple[str, ...]], ...] = ()
    http_proxy: str | None = None
    https_proxy: str | None = None
    no_proxy: tuple[str, ...] = ()
    kube_cpu_reserved: str | None = None
    kube_memory_reserved: str | None = None
    kube_ephemeral_storage_reserved: str | None = None
    system_reserved_enabled: bool = True
    system_cpu_reserved: str | None = None
    system_memory_reserved: str | None = None
    system_ephemeral_storage_reserved: str | None = None
    eviction_hard_imagefs_available: str | None = None
    eviction_hard_memory_available: str | None = None
    eviction_hard_nodefs_available: str | None = None
    eviction_hard_nodefs_inodes_free: str | None = None
    firewalld_mode: FirewalldMode = FirewalldMode.STOP
    kube_repo_url: str = DEFAULT_KUBE_REPO_URL
    containerd_repo_url: str = DEFAULT_CONTAINERD_REPO_URL
    etcd_download_url: str = DEFAULT_ETCD_DOWNLOAD_URL
    #: which line each explicitly set variable came from (for messages).
    lines: Mapping[str, int] = field(default_factory=dict, compare=False)
    #: variables kha does not know: name → value as written, with its line.
    unknown: Mapping[str, Value] = field(default_factory=dict, compare=False)

    def line(self, name: str) -> int | None:
        return self.lines.get(name)


_FIELD_NAMES = {f.name for f in fields(Settings)} - {"lines", "unknown"}
assert {k.name for k in KNOBS if k.fate is Fate.HONOURED} == _FIELD_NAMES, "KNOBS and Settings disagree"


def from_vars(path: str, raw: Mapping[str, Value]) -> tuple[Settings, list[Problem]]:
    """Build typed settings; returns every problem (warnings among them) instead of stopping at the first.

    A value from another file (``-e @variables.yaml``) carries a ``FileLine``: its ``Problem`` names that file.
    """
    values: dict[str, Any] = {}
    lines: dict[str, int] = {}
    unknown: dict[str, Value] = {}
    problems: list[Problem] = []
    for name, val in raw.items():
        knob = KNOBS_BY_NAME.get(name)
        if knob is None:
            unknown[name] = val
            continue
        lines[name] = val.line

        def warn(message: str, *, knob: Knob = knob, val: Value = val) -> None:
            problems.append(Problem(path, val.line, message, knob.name, warning=True))

        if knob.fate is Fate.HONOURED and val.text.strip() == "" and knob.default is None:
            continue  # an empty optional value means "unset", as in kubeadm-ha's examples
        try:
            parsed = knob.parse(val.text)
        except ValueError as exc:
            problems.append(Problem(path, val.line, str(exc), name))
            continue
        if knob.fate is Fate.HONOURED:
            if knob.public_secret and knob.is_stock(val.text):
                warn(f"{val.text.strip()} is kubeadm-ha's published example, ignored: {knob.doc}")
            else:
                values[name] = parsed
        elif knob.fate is Fate.NOOP:
            warn(f"no-op: {knob.doc}")
        elif knob.is_stock(val.text):
            warn(f"kubeadm-ha's stock value, accepted and not used: {knob.doc}")
        else:
            problems.append(Problem(path, val.line, f"refused: {knob.doc}", name))
    return Settings(**values, lines=lines, unknown=unknown), problems


def fate_of(s: Settings, name: str) -> str:
    """What became of one variable the inventory set, as ``kha inventory check`` prints it."""
    knob = KNOBS_BY_NAME[name]
    if knob.fate is Fate.HONOURED and knob.public_secret and getattr(s, name) is None:
        return "honoured (kubeadm-ha's published value ignored: generated per cluster)"
    if knob.fate is Fate.REFUSED:
        return "refused (kubeadm-ha's stock value: accepted, not used)"
    return knob.fate.value
