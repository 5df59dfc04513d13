"""The one topology model: an inventory resolved into hosts, roles, load-balancer shape and endpoints.

``load(path)`` reads a kubeadm-ha inventory, types its settings and checks every rule before anything
touches a node. All problems are gathered and raised together as one ``InventoryError`` whose lines
read ``FILE:LINE: message``. Rules that only make sense for a fresh install (odd etcd count, at least
one master, …) are not applied to remove runs (``del-*`` groups non-empty), so a broken cluster can
always be shrunk or repaired — kubespray users hit exactly that trap.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from functools import cached_property
from pathlib import Path

from installer import inventory, settings, varsfile
from installer.errors import InventoryError, Problem
from installer.settings import LBMode, Settings

# RFC 1123 subdomain, lowercase, as Kubernetes requires of node names.
_NODE_NAME = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_APISERVER_PORT = 6443
# A login name as useradd(8) takes it (NAME_REGEX), so it can sit in an ssh command line unquoted.
_USER_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,31}")
#: Host variables that carry secrets: never kept in ``Host.extra`` (which shows in ``repr``).
_SECRET_VARS = frozenset({"ansible_ssh_pass", "ansible_password", "ansible_become_pass", "ansible_become_password",
                          "ansible_ssh_private_key_passphrase"})


class Role(StrEnum):
    LB = "lb"
    ETCD = "etcd"
    MASTER = "kube-master"
    WORKER = "kube-worker"
    NEW_MASTER = "new-master"
    NEW_WORKER = "new-worker"
    NEW_ETCD = "new-etcd"
    DEL_WORKER = "del-worker"
    DEL_MASTER = "del-master"
    DEL_ETCD = "del-etcd"
    DEL_NODE = "del-node"


class Operation(StrEnum):
    """What a run of this inventory does, read from which groups are filled."""

    INSTALL = "install"
    ADD = "add"
    REMOVE = "remove"


class LBKind(StrEnum):
    VIP = "vip"  # haproxy/nginx on the [lb] nodes + keepalived holding lb_kube_apiserver_ip
    LOCAL = "local"  # haproxy/nginx on 127.0.0.1:port on every node
    SLB = "slb"  # an external load balancer: nothing to install


@dataclass(frozen=True)
class Host:
    """One machine from ``[all]``: how to reach it and its Kubernetes node name."""

    name: str
    address: ipaddress.IPv4Address
    port: int = 22
    user: str = "root"
    #: the SSH password: never in ``repr`` (logs, tracebacks, test failures), never printed.
    password: str | None = field(default=None, repr=False)
    key_file: str | None = None
    line: int = 0
    #: host variables kha does not interpret, kept as written.
    extra: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Endpoint:
    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        return f"https://{self}"


@dataclass(frozen=True)
class Topology:
    """A validated cluster: hosts in ``[all]`` order, role groups in file order, typed settings."""

    source: str
    hosts: tuple[Host, ...]
    groups: dict[Role, tuple[str, ...]]
    settings: Settings
    operation: Operation = Operation.INSTALL
    warnings: tuple[Problem, ...] = field(default=(), compare=False)

    # Lookups by name are dicts built once (``kha render`` asks them per host: a list scan made it
    # quadratic in the number of hosts). cached_property writes the instance's __dict__, which a
    # frozen dataclass allows.
    @cached_property
    def _by_name(self) -> dict[str, Host]:
        return {h.name: h for h in self.hosts}

    @cached_property
    def _groups(self) -> dict[Role, tuple[Host, ...]]:
        return {r: tuple(self._by_name[n] for n in self.groups.get(r, ())) for r in Role}

    @cached_property
    def _roles(self) -> dict[str, tuple[Role, ...]]:
        out: dict[str, list[Role]] = {h.name: [] for h in self.hosts}
        for r in Role:
            for n in dict.fromkeys(self.groups.get(r, ())):
                out.setdefault(n, []).append(r)
        return {n: tuple(rs) for n, rs in out.items()}

    def host(self, name: str) -> Host:
        return self._by_name[name]

    def group(self, role: Role) -> tuple[Host, ...]:
        return self._groups[role]

    def roles(self, name: str) -> tuple[Role, ...]:
        return self._roles.get(name, ())

    @property
    def masters(self) -> tuple[Host, ...]:
        return self.group(Role.MASTER)

    @property
    def etcd(self) -> tuple[Host, ...]:
        return self.group(Role.ETCD)

    @property
    def workers(self) -> tuple[Host, ...]:
        return self.group(Role.WORKER)

    @property
    def lb(self) -> tuple[Host, ...]:
        return self.group(Role.LB)

    @property
    def first_master(self) -> Host:
        """The control plane kha talks to the cluster through (and runs ``kubeadm init`` on): the first of
        [kube-master] that is not leaving in this run ([del-master], [del-node]), so the first master can be
        removed like any other. The inventory check keeps at least one master staying."""
        leaving = set(self.group(Role.DEL_MASTER)) | set(self.group(Role.DEL_NODE))
        return next((h for h in self.masters if h not in leaving), self.masters[0])

    @property
    def lb_kind(self) -> LBKind:
        s = self.settings
        if s.lb_mode is LBMode.SLB:
            return LBKind.SLB
        return LBKind.VIP if s.lb_kube_apiserver_ip is not None else LBKind.LOCAL

    @property
    def vip(self) -> ipaddress.IPv4Address | None:
        return self.settings.lb_kube_apiserver_ip if self.lb_kind is LBKind.VIP else None

    @property
    def apiserver_endpoint(self) -> Endpoint:
        """Where kubelets, kubeconfigs and kubeadm's controlPlaneEndpoint point."""
        port = self.settings.lb_kube_apiserver_port
        if self.lb_kind is LBKind.LOCAL:
            return Endpoint("127.0.0.1", port)
        assert self.settings.lb_kube_apiserver_ip is not None
        return Endpoint(str(self.settings.lb_kube_apiserver_ip), port)

    @property
    def apiserver_port(self) -> int:
        """The port each kube-apiserver itself binds (behind the load balancer)."""
        return _APISERVER_PORT

    @property
    def node_network(self) -> ipaddress.IPv4Network:
        """The network the nodes (and the VIP) live on."""
        if self.settings.node_subnet is not None:
            return self.settings.node_subnet
        anchor = self.lb[0] if self.lb else self.hosts[0]
        return ipaddress.IPv4Network(f"{anchor.address}/24", strict=False)

    @property
    def unknown_vars(self) -> dict[str, inventory.Value]:
        return dict(self.settings.unknown)


def load(path: str | Path, extra_vars: Sequence[str | Path] = ()) -> Topology:
    """Read, type and validate an inventory. Raises InventoryError listing every problem.

    ``extra_vars``: kubeadm-ha variables files (``-e @variables.yaml``), which override ``[all:vars]``
    as Ansible's extra vars do; their values' problems name the variables file and its line.
    """
    raw = inventory.read(path)
    if extra_vars:
        raw.vars = varsfile.merge(raw.vars, extra_vars)
    return resolve(raw)


def resolve(raw: inventory.RawInventory) -> Topology:
    """Turn a parsed inventory into a validated Topology (or InventoryError with every problem)."""
    checker = _Checker(raw)
    topo = checker.run()
    if checker.problems:
        raise InventoryError(checker.problems)
    assert topo is not None
    return topo


class _Checker:
    """Collects every problem of one inventory; each rule is one method."""

    def __init__(self, raw: inventory.RawInventory) -> None:
        self.raw = raw
        self.path = raw.path
        self.problems: list[Problem] = []
        self.warnings: list[Problem] = []

    def error(self, line: int | None, message: str, fld: str | None = None) -> None:
        # A rule broken by a default value still points somewhere to act: the [all:vars] header.
        if line is None:
            line = self.raw.group_lines.get("all:vars") or self.raw.group_lines.get("all")
        self.problems.append(Problem(self.path, line, message, fld))

    def warn(self, line: int | None, message: str, fld: str | None = None) -> None:
        self.warnings.append(Problem(self.path, line, message, fld, warning=True))

    def run(self) -> Topology | None:
        sett, problems = settings.from_vars(self.path, self.raw.vars)
        self.problems.extend(p for p in problems if not p.warning)
        self.warnings.extend(p for p in problems if p.warning)
        for name, val in sett.unknown.items():
            self.warn(val.line, f"unknown variable {name} (kept, not used by kha); check the spelling", name)
        hosts = self._hosts()
        groups = self._groups({h.name for h in hosts})
        operation = self._operation(groups)
        if not hosts:
            return None
        topo = Topology(self.path, tuple(hosts), groups, sett, operation)
        self._roles(topo)
        self._load_balancer(topo)
        self._networks(topo)
        self._versions(topo)
        self._lifetimes(topo.settings)
        self._data_dirs(topo.settings)
        return Topology(self.path, tuple(hosts), groups, sett, operation, tuple(self.warnings))

    # -- hosts -------------------------------------------------------------------------------
    def _hosts(self) -> list[Host]:
        hosts: list[Host] = []
        seen_names: dict[str, int] = {}
        seen_addrs: dict[ipaddress.IPv4Address, tuple[str, int]] = {}
        if not self.raw.hosts:
            self.error(self.raw.group_lines.get("all"), "[all] defines no host")
        for hl in self.raw.hosts:
            v = {k: val.text for k, val in hl.vars.items()}
            ok = True
            if hl.name in seen_names:
                self.error(hl.line, f"host {hl.name} is defined twice (also at line {seen_names[hl.name]})")
                ok = False
            seen_names.setdefault(hl.name, hl.line)
            if not _NODE_NAME.fullmatch(hl.name) or len(hl.name) > 253:
                self.error(hl.line, f"node name {hl.name!r} is not a lowercase RFC 1123 name "
                           "(a-z, 0-9, '-' and '.', starting and ending with a letter or digit); "
                           "Kubernetes would reject it")
                ok = False
            addr_text = v.pop("ansible_host", hl.name)
            try:
                addr = ipaddress.IPv4Address(addr_text)
            except ValueError:
                what = "ansible_host" if "ansible_host" in hl.vars else "host name"
                self.error(hl.line, f"{what} {addr_text!r} is not an IPv4 address; kha needs each node's "
                           "address (certificates, etcd peers): add ansible_host=<ip>", "ansible_host")
                continue
            if addr.is_loopback or addr.is_unspecified or addr.is_multicast:
                self.error(hl.line, f"{addr} cannot be a node address", "ansible_host")
                ok = False
            if addr in seen_addrs:
                other, line = seen_addrs[addr]
                self.error(hl.line, f"address {addr} is also used by {other} (line {line}); "
                           "each node needs its own address", "ansible_host")
                ok = False
            seen_addrs.setdefault(addr, (hl.name, hl.line))
            port = 22
            if "ansible_port" in v:
                try:
                    port = settings._port(v.pop("ansible_port"))
                except ValueError as exc:
                    self.error(hl.line, str(exc), "ansible_port")
                    ok = False
            user = v.pop("ansible_user", "root") or "root"
            if not _USER_NAME.fullmatch(user):
                self.error(hl.line, f"{user!r} is not a login name (letters, digits, '_', '.', '-'; "
                           "32 characters at most)", "ansible_user")
                ok = False
            password = v.pop("ansible_ssh_pass", None) or v.pop("ansible_password", None)
            key_file = v.pop("ansible_ssh_private_key_file", None)
            if key_file is not None and not key_file.strip():
                self.error(hl.line, "is empty; name the private key file or leave the variable out",
                           "ansible_ssh_private_key_file")
                ok = False
            for name in ("ansible_become", "ansible_become_pass", "ansible_connection", "ansible_python_interpreter"):
                if name in v:
                    self.warn(hl.line, f"{name} is not used by kha (it uses sudo when the user is not root)", name)
            if ok:
                extra = tuple(sorted((k, x) for k, x in v.items() if k not in _SECRET_VARS))
                hosts.append(Host(hl.name, addr, port, user, password, key_file, hl.line, extra))
        return hosts

    # -- groups ------------------------------------------------------------------------------
    def _groups(self, defined: set[str]) -> dict[Role, tuple[str, ...]]:
        groups: dict[Role, tuple[str, ...]] = {}
        for role in Role:
            members: list[str] = []
            for name, line in self.raw.groups.get(role.value, []):
                if name not in defined:
                    self.error(line, f"[{role.value}] names {name}, which is not defined in [all]")
                    continue
                if name in members:
                    self.error(line, f"{name} is listed twice in [{role.value}]")
                    continue
                members.append(name)
            groups[role] = tuple(members)
        in_some = {n for members in groups.values() for n in members}
        for h in self.raw.hosts:
            if h.name in defined and h.name not in in_some:
                self.warn(h.line, f"{h.name} is in [all] but in no role group: kha will not touch it")
        return groups

    def _operation(self, groups: dict[Role, tuple[str, ...]]) -> Operation:
        new = [r for r in (Role.NEW_MASTER, Role.NEW_WORKER, Role.NEW_ETCD) if groups[r]]
        dels = [r for r in (Role.DEL_WORKER, Role.DEL_MASTER, Role.DEL_ETCD, Role.DEL_NODE) if groups[r]]
        if new and dels:
            self.error(self._group_line(dels[0]), f"[{new[0].value}] and [{dels[0].value}] are both filled; "
                       "add and remove nodes in separate runs")
        if dels:
            return Operation.REMOVE
        return Operation.ADD if new else Operation.INSTALL

    def _group_line(self, role: Role) -> int | None:
        members = self.raw.groups.get(role.value, [])
        return members[0][1] if members else self.raw.group_lines.get(role.value)

    # -- roles -------------------------------------------------------------------------------
    def _roles(self, t: Topology) -> None:
        g = t.groups
        fresh = t.operation is not Operation.REMOVE
        if fresh and not g[Role.MASTER]:
            self.error(self._group_line(Role.MASTER), "[kube-master] is empty: a cluster needs at least one master")
        if fresh and not g[Role.ETCD]:
            self.error(self._group_line(Role.ETCD), "[etcd] is empty: etcd needs at least one member")
        elif fresh and len(g[Role.ETCD]) % 2 == 0 and t.operation is Operation.INSTALL:
            self.error(self._group_line(Role.ETCD), f"[etcd] has {len(g[Role.ETCD])} members; etcd needs an odd "
                       "number (1, 3, 5, …) to keep a majority when one fails")
        if len(g[Role.NEW_ETCD]) > 1:
            self.error(self._group_line(Role.NEW_ETCD), "[new-etcd] has more than one node: add etcd members one "
                       "at a time (etcd refuses a second change until the first member has caught up)")
        for new, old in ((Role.NEW_MASTER, Role.MASTER), (Role.NEW_WORKER, Role.WORKER), (Role.NEW_ETCD, Role.ETCD)):
            for name in g[new]:
                if name in g[old]:
                    self.error(self._member_line(new, name), f"{name} is in [{new.value}] and already in "
                               f"[{old.value}]; list it only in [{new.value}] until it has joined")
        for gone, has in ((Role.DEL_MASTER, Role.MASTER), (Role.DEL_ETCD, Role.ETCD), (Role.DEL_WORKER, Role.WORKER)):
            for name in g[gone]:
                if name not in g[has]:
                    self.error(self._member_line(gone, name), f"{name} is in [{gone.value}] but not in "
                               f"[{has.value}]; there is nothing to remove")
        if g[Role.DEL_MASTER] and set(g[Role.MASTER]) <= set(g[Role.DEL_MASTER]) | set(g[Role.DEL_NODE]):
            self.error(self._group_line(Role.DEL_MASTER), "this would remove every master; keep at least one")
        if g[Role.DEL_ETCD] and set(g[Role.ETCD]) <= set(g[Role.DEL_ETCD]) | set(g[Role.DEL_NODE]):
            self.error(self._group_line(Role.DEL_ETCD), "this would remove every etcd member; keep at least one")

    def _member_line(self, role: Role, name: str) -> int | None:
        for n, line in self.raw.groups.get(role.value, []):
            if n == name:
                return line
        return None

    # -- load balancer -----------------------------------------------------------------------
    def _load_balancer(self, t: Topology) -> None:
        s = t.settings
        vip_line = s.line("lb_kube_apiserver_ip")
        lb_line = self._group_line(Role.LB)
        node_addrs = {h.address: h.name for h in t.hosts}
        if s.lb_mode is LBMode.SLB:
            if s.lb_kube_apiserver_ip is None:
                self.error(s.line("lb_mode"), "lb_mode=slb needs lb_kube_apiserver_ip set to the external "
                           "load balancer's address", "lb_kube_apiserver_ip")
            if t.lb:
                self.warn(lb_line, "[lb] is ignored with lb_mode=slb: nothing is installed for an external LB")
        elif s.lb_kube_apiserver_ip is not None:
            vip = s.lb_kube_apiserver_ip
            if not t.lb:
                self.error(vip_line, f"lb_kube_apiserver_ip={vip} needs at least one node in [lb] to hold it "
                           "(or remove the VIP and leave [lb] empty for a node-local load balancer)",
                           "lb_kube_apiserver_ip")
            elif len(t.lb) == 1 and t.operation is Operation.INSTALL:
                self.warn(lb_line, "[lb] has one node: the VIP cannot fail over; add a second [lb] node")
            if vip in node_addrs:
                self.error(vip_line, f"VIP {vip} is the address of {node_addrs[vip]}; pick an unused address",
                           "lb_kube_apiserver_ip")
            net = t.node_network if t.lb or s.node_subnet else None
            # A /31 or /32 has no network or broadcast address (RFC 3021).
            if net is not None and net.prefixlen <= 30 and vip in (net.network_address, net.broadcast_address):
                what = "network" if vip == net.network_address else "broadcast"
                self.error(vip_line, f"VIP {vip} is the {what} address of {net}; no host can hold it, pick an "
                           "unused address inside the network", "lb_kube_apiserver_ip")
            if net is not None and vip not in net:
                self.error(vip_line, f"VIP {vip} is not in the nodes' network {net}; keepalived can only move an "
                           "address inside the [lb] nodes' subnet (set node_subnet if the network is larger)",
                           "lb_kube_apiserver_ip")
            if net is not None:
                for h in t.lb:
                    if h.address not in net:
                        self.error(h.line, f"[lb] node {h.name} ({h.address}) is outside {net}, the VIP's network")
        elif t.lb:
            self.error(lb_line, "[lb] has nodes but lb_kube_apiserver_ip is not set: set the VIP for "
                       "haproxy/nginx + keepalived, or empty [lb] for a node-local load balancer")
        port = s.lb_kube_apiserver_port
        if s.lb_mode is not LBMode.SLB and port == _APISERVER_PORT:
            lb_nodes = {h.name for h in t.lb} if t.lb_kind is LBKind.VIP else {h.name for h in t.hosts}
            clash = lb_nodes & {h.name for h in t.masters}
            if clash:
                self.error(s.line("lb_kube_apiserver_port"), f"lb_kube_apiserver_port={port} clashes with "
                           f"kube-apiserver's own port on {', '.join(sorted(clash))}; use another port (e.g. 8443)",
                           "lb_kube_apiserver_port")

    # -- networks ----------------------------------------------------------------------------
    def _networks(self, t: Topology) -> None:
        s = t.settings
        pod, svc = s.kube_pod_subnet, s.kube_service_subnet
        pod_line, svc_line = s.line("kube_pod_subnet"), s.line("kube_service_subnet")
        if pod.overlaps(svc):
            self.error(svc_line or pod_line, f"kube_service_subnet {svc} overlaps kube_pod_subnet {pod}; "
                       "pick two separate ranges", "kube_service_subnet")
        addrs: list[tuple[str, ipaddress.IPv4Address]] = [(h.name, h.address) for h in t.hosts]
        if s.lb_kube_apiserver_ip is not None:
            addrs.append(("lb_kube_apiserver_ip", s.lb_kube_apiserver_ip))
        for net, fld, line in ((pod, "kube_pod_subnet", pod_line), (svc, "kube_service_subnet", svc_line)):
            inside = [f"{n} ({a})" for n, a in addrs if a in net]
            if inside:
                self.error(line, f"{fld} {net} contains node addresses: {', '.join(inside)}; "
                           "pods and services must not share the nodes' network", fld)
        if svc.prefixlen < 12:
            self.error(svc_line, f"kube_service_subnet {svc} is larger than /12, which kube-apiserver refuses",
                       "kube_service_subnet")
        prefix = s.kube_network_node_prefix
        if prefix <= pod.prefixlen:
            self.error(s.line("kube_network_node_prefix") or pod_line,
                       f"kube_network_node_prefix {prefix} must be longer than kube_pod_subnet's /{pod.prefixlen}",
                       "kube_network_node_prefix")
        else:
            capacity = 2 ** (prefix - pod.prefixlen)
            nodes = len({h.name for h in t.hosts})
            if capacity < nodes:
                self.error(pod_line, f"kube_pod_subnet {pod} split into /{prefix} gives {capacity} node ranges for "
                           f"{nodes} nodes; use a larger pod subnet or a longer prefix", "kube_pod_subnet")
            per_node = 2 ** (32 - prefix) - 2
            if s.kube_max_pods > per_node:
                self.error(s.line("kube_max_pods") or s.line("kube_network_node_prefix"),
                           f"kube_max_pods {s.kube_max_pods} does not fit in a /{prefix} per node "
                           f"({per_node} addresses); lower it or shorten kube_network_node_prefix",
                           "kube_max_pods")

    # -- versions ----------------------------------------------------------------------------
    def _versions(self, t: Topology) -> None:
        s = t.settings
        v = s.kube_version
        if not v.at_least(1, 20) or v.major != 1:
            self.error(s.line("kube_version"), f"kube_version {v} is not supported; kha installs 1.20 and newer",
                       "kube_version")


    # -- certificate lifetimes and data folders ------------------------------------------------
    def _lifetimes(self, s: Settings) -> None:
        # A leaf outliving its CA would be cut short to the CA's end without a word; say it instead.
        for ca, leaf in (("kube_ca_certs_expired", "kube_certs_expired"),
                         ("etcd_ca_certs_expired", "etcd_certs_expired")):
            ca_days, leaf_days = getattr(s, ca), getattr(s, leaf)
            if ca_days < leaf_days:
                last = max((ca, leaf), key=lambda k: s.line(k) or 0)  # the line most likely just edited
                self.error(s.line(last), f"{ca}={ca_days} is shorter than {leaf}={leaf_days}: a certificate "
                           "cannot outlive the CA that signed it (it would be cut short at the CA's end); make "
                           "the CA last at least as long as its leaves", last)

    def _data_dirs(self, s: Settings) -> None:
        # Each daemon owns its folder (kha creates it and etcd's replace wipes it): none inside another.
        knobs = ("etcd_data_dir", "kubelet_root_dir", "containerd_storage_dir")
        for i, a in enumerate(knobs):
            for b in knobs[i + 1:]:
                pa, pb = getattr(s, a), getattr(s, b)
                if pa == pb or pa.startswith(pb + "/") or pb.startswith(pa + "/"):
                    last = max((a, b), key=lambda k: s.line(k) or 0)  # the line most likely just edited
                    self.error(s.line(last), f"{a}={pa} and {b}={pb} overlap; give each daemon a folder "
                               "of its own", last)


def check_credentials(t: Topology) -> None:
    """Every SSH key file the inventory names exists and is a readable file: checked before any
    connection (and before the state folder is touched), each missing one named with its line."""
    problems = []
    for h in t.hosts:
        if h.key_file is None:
            continue
        key = Path(h.key_file).expanduser()
        if not key.exists():
            why = "does not exist"
        elif not key.is_file():
            why = "is not a file"
        elif not os.access(key, os.R_OK):
            why = "cannot be read (permission denied)"
        else:
            continue
        problems.append(Problem(t.source, h.line, f"{h.key_file} {why}; name the private key kha should log in "
                                f"to {h.name} with", "ansible_ssh_private_key_file"))
    if problems:
        raise InventoryError(problems)


def describe(t: Topology) -> list[str]:
    """Lines for ``kha inventory check``: the resolved topology as a person reads it."""
    s = t.settings
    out = [f"inventory: {t.source}", f"operation: {t.operation.value}",
           f"kubernetes: {s.kube_version}  runtime: {s.container_manager.value}  cni: {s.network_plugin.value}"]
    width = max(len(h.name) for h in t.hosts)
    out.append("hosts:")
    for h in t.hosts:
        roles = ", ".join(r.value for r in t.roles(h.name)) or "(no role)"
        auth = "key" if h.key_file else ("password" if h.password else "agent/default key")
        out.append(f"  {h.name:<{width}}  {h.address!s:<15}  ssh {h.user}, port {h.port} ({auth})  {roles}")
    lb = t.lb_kind
    if lb is LBKind.VIP:
        holders = ", ".join(h.name for h in t.lb)
        out.append(f"load balancer: {s.lb_mode.value} + keepalived, VIP {t.vip} on [{holders}] "
                   f"(MASTER {t.lb[0].name})")
    elif lb is LBKind.LOCAL:
        out.append(f"load balancer: node-local {s.lb_mode.value} on 127.0.0.1:{s.lb_kube_apiserver_port} on every node")
    else:
        out.append(f"load balancer: external (slb) at {s.lb_kube_apiserver_ip}")
    out.append(f"apiserver endpoint: {t.apiserver_endpoint.url}")
    out.append("etcd members: " + (", ".join(f"{h.name}=https://{h.address}:2380" for h in t.etcd) or "(none)"))
    out.append(f"pod subnet: {s.kube_pod_subnet}  service subnet: {s.kube_service_subnet}  "
               f"node prefix: /{s.kube_network_node_prefix}")
    if s.lines:
        out.append("variables (what kha does with each; `kha inventory vars` lists them all):")
        width = max(len(n) for n in s.lines)
        for name in sorted(s.lines, key=lambda n: (inventory.file_of(s.lines[n], t.source), s.lines[n])):
            line = s.lines[name]
            out.append(f"  {name:<{width}}  {settings.fate_of(s, name)}  ({inventory.file_of(line, t.source)}:{line})")
    if s.unknown:
        out.append("unknown variables (kept, unused): " + ", ".join(sorted(s.unknown)))
    return out
