"""The one table of every certificate and key pair kha issues, and what decides each field.

This module owns *what* is issued, never how or where: each row names a certificate the way kubeadm
does (``apiserver``, ``etcd/server``, …), its signing CA, CN, O (which depends on the Kubernetes
version), key and extended key usages, SANs as a function of the topology and the node, whether it
is per node or cluster-wide, and which node roles receive it. ``installer.pki.crypto`` turns a row
into bytes, ``installer.pki.store`` decides where those bytes live and when they are (re)issued.

The rows follow kubeadm's own list (cmd/kubeadm/app/phases/certs/certlist.go) for a control plane
with *external* etcd, which is how kubeadm-ha lays a cluster out: etcd runs on the ``[etcd]`` nodes
with its own CA, control-plane nodes only get ``etcd/ca.crt`` and ``apiserver-etcd-client``.
Three separate CAs (cluster, etcd, front proxy), as CIS 2.7 asks. See shared/FACTS.md, "kubeadm's PKI".

``kubelet.conf`` is deliberately absent: kubelets get their client certificate through TLS
bootstrapping (a bootstrap token, then a CSR the controller-manager signs), so kha never holds a
kubelet's key, exactly as ``kubeadm join`` works.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import StrEnum

from cryptography.x509.oid import ExtendedKeyUsageOID, ObjectIdentifier

from installer.settings import KubeVersion, Settings
from installer.topology import Host, LBKind, Role, Topology

__all__ = [
    "CAS",
    "CERTS",
    "SA",
    "CASpec",
    "CertSpec",
    "KeyPairSpec",
    "Kind",
    "SANs",
    "Scope",
    "apiserver_sans",
    "ca_spec",
    "cert_spec",
    "etcd_sans",
    "first_service_ip",
    "members",
    "node_roles",
    "role_map",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

SERVER_AUTH = ExtendedKeyUsageOID.SERVER_AUTH
CLIENT_AUTH = ExtendedKeyUsageOID.CLIENT_AUTH


class Scope(StrEnum):
    """How many of a certificate there are."""

    CLUSTER = "cluster"  # one certificate, the same bytes on every node that gets it
    NODE = "node"  # one per node: it names the node (etcd) or carries the node's addresses (apiserver)


class Kind(StrEnum):
    """How a certificate is shipped."""

    PKI = "pki"  # pki/<name>.crt + pki/<name>.key
    KUBECONFIG = "kubeconfig"  # <name> in /etc/kubernetes, certificate and key embedded


# -- roles ---------------------------------------------------------------------------------------
# A node in a day-2 group ([new-master], …) gets the tree of the role it is joining, and the
# certificates of everyone else must already cover it (the apiserver SANs list every master).
_JOINING: dict[Role, Role] = {Role.MASTER: Role.NEW_MASTER, Role.ETCD: Role.NEW_ETCD, Role.WORKER: Role.NEW_WORKER}


def members(topo: Topology, role: Role) -> tuple[Host, ...]:
    """Hosts that hold ``role`` (MASTER, ETCD or WORKER) for the PKI: current members, then joining ones."""
    by_name = {h.name: h for h in topo.hosts}
    names = dict.fromkeys([*topo.groups.get(role, ()), *topo.groups.get(_JOINING[role], ())])
    return tuple(by_name[n] for n in names)


def role_map(topo: Topology) -> dict[str, frozenset[Role]]:
    """The PKI roles (MASTER, ETCD, WORKER) of every host, by name, in one pass over the groups.

    Loops over hosts use this, never ``node_roles`` per host: that is a pass over the groups each
    time, and ``kha pki init`` of 1,000 hosts went quadratic on it.
    """
    out: dict[str, set[Role]] = {h.name: set() for h in topo.hosts}
    for role, joining in _JOINING.items():
        for name in (*topo.groups.get(role, ()), *topo.groups.get(joining, ())):
            out.setdefault(name, set()).add(role)
    return {name: frozenset(roles) for name, roles in out.items()}


def node_roles(topo: Topology, host: Host) -> frozenset[Role]:
    """The PKI roles (MASTER, ETCD, WORKER) of one host."""
    return role_map(topo).get(host.name, frozenset())


# -- SANs ----------------------------------------------------------------------------------------
def _as_ip(text: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


@dataclass(frozen=True)
class SANs:
    """Subject alternative names, in a stable order, without duplicates.

    A name that parses as an IP address is an IP SAN: a node named ``10.56.56.11`` (kubeadm-ha's
    ``hosts.*.ip.ini``) must be matched by TLS clients as an address, and a DNS SAN would not be.
    """

    dns: tuple[str, ...] = ()
    ips: tuple[IPAddress, ...] = ()

    @classmethod
    def of(cls, *names: str | IPAddress) -> SANs:
        dns: list[str] = []
        ips: list[IPAddress] = []
        for name in names:
            ip = name if not isinstance(name, str) else _as_ip(name)
            if ip is not None:
                if ip not in ips:
                    ips.append(ip)
            elif isinstance(name, str) and name.lower() not in dns:
                dns.append(name.lower())
        return cls(tuple(dns), tuple(ips))

    def __or__(self, other: SANs) -> SANs:
        return SANs.of(*self.dns, *self.ips, *other.dns, *other.ips)

    def __bool__(self) -> bool:
        return bool(self.dns or self.ips)

    def missing_from(self, have: SANs) -> SANs:
        """The names of ``self`` that ``have`` lacks."""
        return SANs(tuple(d for d in self.dns if d not in have.dns), tuple(i for i in self.ips if i not in have.ips))

    def __str__(self) -> str:
        return ", ".join([*(f"DNS:{d}" for d in self.dns), *(f"IP:{i}" for i in self.ips)])


def first_service_ip(topo: Topology) -> ipaddress.IPv4Address:
    """The ClusterIP of the ``kubernetes`` Service: the first host of the service subnet."""
    return topo.settings.kube_service_subnet.network_address + 1


def apiserver_sans(topo: Topology, host: Host) -> SANs:
    """kube-apiserver serving SANs on one control-plane node.

    kubeadm's own list (GetAPIServerAltNames): the node name and advertise address, the first service IP,
    ``kubernetes``, ``kubernetes.default``, ``kubernetes.default.svc``, ``kubernetes.default.svc.<domain>``,
    the control-plane endpoint, then the extra ``certSANs``. kubeadm does not add
    ``kubernetes.default.svc.cluster`` (some cfssl guides do); neither do we. Like kubeadm-ha we also name
    every master, so a client that reaches any apiserver by any master's address accepts it, and a
    node-local load balancer (127.0.0.1) is covered by ``127.0.0.1`` and ``localhost``.
    """
    s = topo.settings
    names: list[str | IPAddress] = [
        host.name,
        host.address,
        "kubernetes",
        "kubernetes.default",
        "kubernetes.default.svc",
        f"kubernetes.default.svc.{s.kube_dns_domain}",
        first_service_ip(topo),
    ]
    for m in members(topo, Role.MASTER):
        names += [m.name, m.address]
    names.append(topo.apiserver_endpoint.host)
    if topo.lb_kind is LBKind.LOCAL:
        names += ["127.0.0.1", "localhost"]
    names += [*s.kube_master_external_ip, *s.kube_master_external_domain]
    return SANs.of(*names)


def etcd_sans(topo: Topology, host: Host) -> SANs:
    """etcd server and peer SANs: kubeadm's (node name, localhost, node IP, 127.0.0.1, ::1)."""
    return SANs.of(host.name, "localhost", host.address, "127.0.0.1", "::1")


# -- rows ----------------------------------------------------------------------------------------
Organization = Callable[[KubeVersion], tuple[str, ...]]
Lifetime = Callable[[Settings], int]

_MASTERS_GROUP = "system:masters"
# kubeadm 1.29 (KEP-4214, kubernetes/kubernetes#121305) moved admin.conf and the apiserver's kubelet client
# out of system:masters into this group, bound to cluster-admin by a ClusterRoleBinding kubeadm creates.
_CLUSTER_ADMINS_GROUP = "kubeadm:cluster-admins"


def _no_o(_: KubeVersion) -> tuple[str, ...]:
    return ()


def _always_masters(_: KubeVersion) -> tuple[str, ...]:
    return (_MASTERS_GROUP,)


def _masters_until_1_28_then_cluster_admins(v: KubeVersion) -> tuple[str, ...]:
    return (_CLUSTER_ADMINS_GROUP,) if v.at_least(1, 29) else (_MASTERS_GROUP,)


def _masters_until_1_28_then_none(v: KubeVersion) -> tuple[str, ...]:
    # kubeadm 1.29 dropped the O from the etcd client certificates: etcd does not read it.
    return () if v.at_least(1, 29) else (_MASTERS_GROUP,)


def _kube_ca_days(s: Settings) -> int:
    return s.kube_ca_certs_expired


def _etcd_ca_days(s: Settings) -> int:
    return s.etcd_ca_certs_expired


def _kube_days(s: Settings) -> int:
    return s.kube_certs_expired


def _etcd_days(s: Settings) -> int:
    return s.etcd_certs_expired


@dataclass(frozen=True)
class CASpec:
    """A certificate authority: self-signed, created once, never replaced (every node trusts it)."""

    name: str  # path-like, as under /etc/kubernetes/pki: "ca", "front-proxy-ca", "etcd/ca"
    cn: str
    lifetime: Lifetime  # days
    cert_roles: frozenset[Role]  # nodes with one of these roles get <name>.crt
    key_roles: frozenset[Role]  # … and <name>.key (they sign with it)


@dataclass(frozen=True)
class KeyPairSpec:
    """A bare key pair (the service-account signing key): created once, never replaced."""

    name: str
    roles: frozenset[Role]


@dataclass(frozen=True)
class CertSpec:
    """One row: a leaf certificate and everything that decides its content."""

    name: str  # "apiserver", "etcd/server", or a kubeconfig file name ("admin.conf")
    ca: str  # CASpec.name of the signer
    cn: str  # "{node}" stands for the node name
    organization: Organization
    usages: tuple[ObjectIdentifier, ...]  # extended key usages; key usage is always digitalSignature+keyEncipherment
    scope: Scope
    roles: frozenset[Role]  # nodes with one of these roles get it
    lifetime: Lifetime  # days
    sans: Callable[[Topology, Host], SANs] | None = None  # NODE scope only
    kind: Kind = Kind.PKI
    since: tuple[int, int] | None = None  # only issued from this Kubernetes (major, minor) on
    first_master_only: bool = False  # kubeadm writes it on the node that ran `kubeadm init` only

    def common_name(self, host: Host | None) -> str:
        if "{node}" in self.cn:
            assert host is not None, f"{self.name} is per node"
            return self.cn.replace("{node}", host.name)
        return self.cn

    def issued_for(self, topo: Topology) -> bool:
        """Whether this cluster's Kubernetes version has this certificate at all."""
        return self.since is None or topo.settings.kube_version.at_least(*self.since)

    def receivers(self, topo: Topology, roles: dict[str, frozenset[Role]] | None = None) -> tuple[Host, ...]:
        """The nodes that get this certificate, in inventory order (``roles``: ``role_map(topo)``, if at hand)."""
        if not self.issued_for(topo):
            return ()
        if self.first_master_only:
            masters = members(topo, Role.MASTER)
            return masters[:1]
        roles = role_map(topo) if roles is None else roles
        return tuple(h for h in topo.hosts if roles.get(h.name, frozenset()) & self.roles)

    def required_sans(self, topo: Topology, host: Host | None) -> SANs:
        if self.sans is None or host is None:
            return SANs()
        return self.sans(topo, host)


MASTER = frozenset({Role.MASTER})
ETCD = frozenset({Role.ETCD})

#: The three CAs. Workers and masters get the cluster CA certificate (kubelet, kube-proxy trust it);
#: no node gets the etcd CA key: etcd is external to kubeadm, kha issues every etcd certificate itself.
CAS: tuple[CASpec, ...] = (
    CASpec("ca", "kubernetes", _kube_ca_days, frozenset({Role.MASTER, Role.WORKER}), MASTER),
    CASpec("front-proxy-ca", "front-proxy-ca", _kube_ca_days, MASTER, MASTER),
    CASpec("etcd/ca", "etcd-ca", _etcd_ca_days, frozenset({Role.MASTER, Role.ETCD}), frozenset()),
)

#: The service-account token signing key pair (sa.key / sa.pub): RSA, as kubeadm makes it.
SA = KeyPairSpec("sa", MASTER)

#: Every leaf certificate, kubeconfig identities included.
CERTS: tuple[CertSpec, ...] = (
    CertSpec("apiserver", "ca", "kube-apiserver", _no_o, (SERVER_AUTH,), Scope.NODE, MASTER, _kube_days,
             sans=apiserver_sans),
    CertSpec("apiserver-kubelet-client", "ca", "kube-apiserver-kubelet-client",
             _masters_until_1_28_then_cluster_admins, (CLIENT_AUTH,), Scope.CLUSTER, MASTER, _kube_days),
    CertSpec("front-proxy-client", "front-proxy-ca", "front-proxy-client", _no_o, (CLIENT_AUTH,), Scope.CLUSTER,
             MASTER, _kube_days),
    CertSpec("apiserver-etcd-client", "etcd/ca", "kube-apiserver-etcd-client", _masters_until_1_28_then_none,
             (CLIENT_AUTH,), Scope.CLUSTER, MASTER, _etcd_days),
    CertSpec("etcd/server", "etcd/ca", "{node}", _no_o, (SERVER_AUTH, CLIENT_AUTH), Scope.NODE, ETCD, _etcd_days,
             sans=etcd_sans),
    CertSpec("etcd/peer", "etcd/ca", "{node}", _no_o, (SERVER_AUTH, CLIENT_AUTH), Scope.NODE, ETCD, _etcd_days,
             sans=etcd_sans),
    CertSpec("etcd/healthcheck-client", "etcd/ca", "kube-etcd-healthcheck-client", _masters_until_1_28_then_none,
             (CLIENT_AUTH,), Scope.CLUSTER, ETCD, _etcd_days),
    # kubeconfigs: the server each one points at is decided in installer.pki.kubeconfig.
    CertSpec("admin.conf", "ca", "kubernetes-admin", _masters_until_1_28_then_cluster_admins, (CLIENT_AUTH,),
             Scope.CLUSTER, MASTER, _kube_days, kind=Kind.KUBECONFIG),
    # The break-glass identity that stays in system:masters (kubeadm ≥ 1.29 writes it on the init node only).
    CertSpec("super-admin.conf", "ca", "kubernetes-super-admin", _always_masters, (CLIENT_AUTH,), Scope.CLUSTER,
             MASTER, _kube_days, kind=Kind.KUBECONFIG, since=(1, 29), first_master_only=True),
    CertSpec("controller-manager.conf", "ca", "system:kube-controller-manager", _no_o, (CLIENT_AUTH,), Scope.NODE,
             MASTER, _kube_days, kind=Kind.KUBECONFIG),
    CertSpec("scheduler.conf", "ca", "system:kube-scheduler", _no_o, (CLIENT_AUTH,), Scope.NODE, MASTER,
             _kube_days, kind=Kind.KUBECONFIG),
)


def ca_spec(name: str) -> CASpec:
    for c in CAS:
        if c.name == name:
            return c
    raise KeyError(name)


def cert_spec(name: str) -> CertSpec:
    for c in CERTS:
        if c.name == name:
            return c
    raise KeyError(name)


def _check_table(cas: Iterable[CASpec], certs: Iterable[CertSpec]) -> None:
    ca_names = {c.name for c in cas}
    names = [c.name for c in certs]
    assert len(names) == len(set(names)), "duplicate certificate names in the table"
    for c in certs:
        assert c.ca in ca_names, f"{c.name}: unknown CA {c.ca}"
        assert c.sans is None or c.scope is Scope.NODE, f"{c.name}: SANs need a node"
        assert "{node}" not in c.cn or c.scope is Scope.NODE, f"{c.name}: a per-node CN needs NODE scope"


_check_table(CAS, CERTS)
