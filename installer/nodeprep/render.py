"""The files that prepare a machine before any component lands on it: names, time, time zone, proxy.

What kubeadm-ha's ``prepare`` roles do, from the inventory's node-preparation knobs
(``chrony_enabled``, ``ntp_server``, ``timezone``, ``custom_hosts``, ``http_proxy``/``https_proxy``/
``no_proxy``) and the resource bar ``skip_verify_node`` skips. Every file here is rendered from the
topology and the node's facts alone, so ``kha render`` shows byte for byte what ``kha install`` writes.

Time: the first master serves time to the other nodes (``allow`` each node) and follows ``ntp_server``,
or its own clock at stratum 10 (chrony.conf(5) ``local``); every other node follows the first master. A
node that is a container shares its host's clock: chronyd runs there with ``-x`` (chronyd(8): "disables
the control of the system clock … still track its offset"), so it can serve and report time but never
sets the clock the host owns.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from installer import systemd
from installer.facts import NodeFacts, OSFamily
from installer.files import NodeFile
from installer.settings import Settings
from installer.topology import Host, Topology

#: kha's own list of names; ``nodeops.sync_block`` merges it into /etc/hosts between markers.
HOSTS_FILE = "/etc/kha/hosts"
ETC_HOSTS = "/etc/hosts"
HOSTS_MARKER = "kha: inventory nodes and custom_hosts"
CONTAINERD_PROXY = "/etc/systemd/system/containerd.service.d/http-proxy.conf"
APT_PROXY = "/etc/apt/apt.conf.d/95kha-proxy"
TIMEZONE_FILE = "/etc/timezone"  # Debian's (tzdata); /etc/localtime is the link every family reads
ZONEINFO = "/usr/share/zoneinfo"
#: Stratum the first master serves its own clock at when no ntp_server answers (chrony.conf(5) ``local``).
LOCAL_STRATUM = 10
#: kubeadm's own floor for a "2 GB" machine (preflight's Mem check: 1700 MB), and what a "4 GB" one shows
#: (the one node of an allinone cluster runs etcd, the control plane and pods).
MIN_CPUS = 2
MIN_MEMORY_MIB = 1700
MIN_MEMORY_ALLINONE_MIB = 3500


@dataclass(frozen=True)
class Chrony:
    """Where a family keeps chrony: its unit, its config file and the ExecStart that adds ``-x``."""

    unit: str
    config: str
    exec_start_x: str

    @classmethod
    def of(cls, facts: NodeFacts) -> Chrony:
        if facts.os_family is OSFamily.DEBIAN:
            # Debian's unit starts chronyd with "!" (as root; it drops to _chrony itself) and $DAEMON_OPTS.
            return cls("chrony", "/etc/chrony/chrony.conf", "!/usr/sbin/chronyd $DAEMON_OPTS -x")
        return cls("chronyd", "/etc/chrony.conf", "/usr/sbin/chronyd $OPTIONS -x")

    @property
    def dropin(self) -> str:
        # "zz-": systemd applies a unit's drop-ins in name order; this one's condition reset comes last.
        return f"/etc/systemd/system/{self.unit}.service.d/zz-kha-container.conf"


def nodes(topo: Topology) -> tuple[Host, ...]:
    """Every node with a role: what node preparation touches."""
    return tuple(h for h in topo.hosts if topo.roles(h.name))


def hosts_block(topo: Topology) -> bytes:
    """One line per node named by a hostname (an .ip.ini inventory names nodes by address: none), then
    ``custom_hosts``."""
    lines = [f"{h.address}\t{h.name}" for h in topo.hosts if h.name != str(h.address)]
    lines += [f"{addr}\t{' '.join(names)}" for addr, names in topo.settings.custom_hosts]
    return "".join(line + "\n" for line in lines).encode()


def time_server(topo: Topology) -> Host:
    """The node whose chrony serves the others: the first master (the first node when there is none)."""
    return topo.first_master if topo.masters else nodes(topo)[0]


def chrony_conf(topo: Topology, host: Host, facts: NodeFacts) -> bytes:
    s = topo.settings
    first = time_server(topo)
    out = ["# Written by kha: chrony_enabled. Edit the inventory, not this file."]
    if host == first:
        out += [f"server {server} iburst" for server in s.ntp_server]
        out.append(f"# serves its own clock when no server answers (and always when ntp_server is empty)\n"
                   f"local stratum {LOCAL_STRATUM}")
        out += [f"allow {h.address}" for h in nodes(topo) if h != first]
    else:
        out.append(f"server {first.address} iburst")
    out += ["driftfile /var/lib/chrony/chrony.drift", "makestep 1.0 3"]
    if not facts.container:
        out.append("rtcsync")  # a container has no RTC of its own
    return ("\n".join(out) + "\n").encode()


def chrony_dropin(facts: NodeFacts) -> bytes:
    c = Chrony.of(facts)
    return systemd.unit([
        "Written by kha: this node is a container and shares its host's clock. chronyd -x tracks and serves",
        "time but never sets the clock (chronyd(8)); the empty condition resets the unit's own conditions",
        "(ConditionCapability=CAP_SYS_TIME, a ConditionVirtualization=!container), which -x makes moot.",
    ], [("Unit", [("ConditionCapability", "")]), ("Service", [("ExecStart", ""), ("ExecStart", c.exec_start_x)])])


def no_proxy(topo: Topology) -> str:
    """``no_proxy`` plus what must never go through a proxy: this machine, the nodes, the VIP, the node, pod
    and service networks, and the cluster's service names."""
    s = topo.settings
    items = [*s.no_proxy, "localhost", "127.0.0.1", *(str(h.address) for h in topo.hosts)]
    if s.lb_kube_apiserver_ip is not None:
        items.append(str(s.lb_kube_apiserver_ip))
    items += [str(topo.node_network), str(s.kube_pod_subnet), str(s.kube_service_subnet), ".svc",
              f".{s.kube_dns_domain}"]
    return ",".join(dict.fromkeys(items))


def proxy_for(s: Settings, url: str) -> str | None:
    """The proxy a download of ``url`` goes through (dnf's per-repository ``proxy=``, curl's ``--proxy``):
    ``https_proxy`` for https (``http_proxy`` when only that is set), ``http_proxy`` for http; none when
    ``no_proxy`` names the host, a domain it is in, or a network holding its address (an internal mirror)."""
    parts = urlsplit(url)
    proxy = (s.https_proxy or s.http_proxy) if parts.scheme == "https" else s.http_proxy
    host = (parts.hostname or "").lower()
    if proxy is None or host in ("localhost", "127.0.0.1"):
        return None
    try:
        address: ipaddress.IPv4Address | ipaddress.IPv6Address | None = ipaddress.ip_address(host)
    except ValueError:
        address = None
    for item in s.no_proxy:
        if address is not None and "/" in item and address in ipaddress.ip_network(item, strict=False):
            return None
        name = item.lstrip(".").lower()
        if host == name or host.endswith("." + name):
            return None
    return proxy


def yum_repo(path: str, repo_id: str, name: str, baseurl: str, gpgkey: str, *, s: Settings,
             extra: Sequence[tuple[str, str]] = ()) -> NodeFile:
    """A dnf repository kha owns (dnf.conf(5) [repository] options), signed, with its proxy when one applies
    (``http_proxy``/``https_proxy``, unless ``no_proxy`` names the mirror: ``proxy_for``)."""
    options = [("name", name), ("baseurl", baseurl), ("enabled", "1"), ("gpgcheck", "1"), ("gpgkey", gpgkey),
               *extra]
    if (proxy := proxy_for(s, baseurl)) is not None:
        options.append(("proxy", proxy))
    lines = [f"# Written by kha: {name} packages", f"[{repo_id}]", *(f"{k}={v}" for k, v in options)]
    return NodeFile(path, ("\n".join(lines) + "\n").encode())


#: containerd.io from Docker's repository (RHEL 9 and its rebuilds carry no containerd): only that package,
#: so nothing else of Docker's comes from it.
CONTAINERD_REPO = "/etc/yum.repos.d/kha-containerd.repo"
CONTAINERD_REPO_ID = "kha-containerd"


def containerd_repo(s: Settings, facts: NodeFacts) -> NodeFile:
    """Docker's layout (https://download.docker.com/linux/centos/docker-ce.repo): ``<base>/<major>/$basearch/stable``
    and ``<base>/gpg``. The major comes from os-release, not dnf's $releasever, which a RHEL release lock
    makes ``9.2`` (a folder Docker does not have)."""
    base = s.containerd_repo_url
    return yum_repo(CONTAINERD_REPO, CONTAINERD_REPO_ID, "containerd.io", f"{base}/{facts.os_major}/$basearch/stable",
                    f"{base}/gpg", s=s, extra=[("includepkgs", "containerd.io")])


def proxy_env(topo: Topology) -> list[tuple[str, str]]:
    s = topo.settings
    if s.http_proxy is None and s.https_proxy is None:
        return []
    pairs = [(n, v) for n, v in (("HTTP_PROXY", s.http_proxy), ("HTTPS_PROXY", s.https_proxy)) if v is not None]
    return [*pairs, ("NO_PROXY", no_proxy(topo))]


def proxy_files(topo: Topology, facts: NodeFacts) -> list[NodeFile]:
    """containerd's proxy (a unit drop-in) and apt's (apt.conf(5) ``Acquire::http::Proxy``)."""
    env = proxy_env(topo)
    if not env:
        return []
    s = topo.settings
    dropin = systemd.unit(["Written by kha: http_proxy/https_proxy/no_proxy for image pulls."],
                          [("Service", [("Environment", systemd.environment(n, v)) for n, v in env])])
    out = [NodeFile(CONTAINERD_PROXY, dropin)]
    if facts.os_family is OSFamily.DEBIAN:
        # The URLs are checked to hold no quote or ';' (settings._proxy_url); apt has no per-host
        # exceptions list, so no_proxy does not apply to it.
        lines = ["// Written by kha: http_proxy/https_proxy for apt."]
        lines += [f'Acquire::{scheme}::Proxy "{url}";' for scheme, url in (("http", s.http_proxy),
                                                                            ("https", s.https_proxy)) if url]
        out.append(NodeFile(APT_PROXY, ("\n".join(lines) + "\n").encode()))
    return out


def files(topo: Topology, host: Host, facts: NodeFacts | None = None) -> list[NodeFile]:
    """What ``kha render`` shows for one node (nothing for a node with no role)."""
    if host not in nodes(topo):
        return []
    facts = facts or NodeFacts()
    s = topo.settings
    out = [NodeFile(HOSTS_FILE, hosts_block(topo))]
    if s.timezone is not None and facts.os_family is OSFamily.DEBIAN:
        out.append(NodeFile(TIMEZONE_FILE, f"{s.timezone}\n".encode()))
    out += proxy_files(topo, facts)
    if s.chrony_enabled:
        c = Chrony.of(facts)
        out.append(NodeFile(c.config, chrony_conf(topo, host, facts)))
        if facts.container:
            out.append(NodeFile(c.dropin, chrony_dropin(facts)))
    return out
