"""RHEL-family node prep (Rocky 9, RHEL 9, CentOS Stream 9) against scripted Rocky 9 nodes: what a user's node
receives (SELinux permissive, firewalld stopped or opened per role, containerd.io's and pkgs.k8s.io's
repositories, etcd from its pinned release tarball, dnf), that a second run changes nothing, that a dry run
writes nothing, and that bad input is refused with the knob named before anything connects. No Rocky image
can be booted offline on this machine: these scripted nodes are where this path runs."""

from __future__ import annotations

import hashlib
import io
import re
from collections.abc import Mapping
from pathlib import Path

import pytest
import variants
from scripted import ScriptedNode
from test_install_bundle import make_bundle
from test_kubernetes_source import DNF_LIST, FakeDebian

from installer import install, topology
from installer.checks.target import Options, Target
from installer.context import InstallContext, open_context
from installer.errors import PackageError
from installer.etcd import release
from installer.facts import NodeFacts, OSFamily, os_major
from installer.kubernetes import membership, packages, upgrade
from installer.kubernetes.bundle import Bundle
from installer.nodeprep import firewall
from installer.nodeprep import render as prep
from installer.phases import Runner
from installer.settings import FirewalldMode, KubeVersion
from installer.topology import Topology
from kha import cli

ROCKY = NodeFacts(os_family=OSFamily.REDHAT, os_major=9)
SELINUX_CONFIG = "# This file controls the state of SELinux\nSELINUX=enforcing\nSELINUXTYPE=targeted\n"
TARBALL = b"etcd-v3.5.12-linux-amd64.tar.gz, scripted"
#: what ``etcd --version`` says of a binary other than the one the scripted tarball unpacks
ETCD_VERSIONS = {b"etcd 3.5.9": "3.5.9", b"etcd 3.6.0": "3.6.0"}
#: the prepare steps and the component steps that differ on the RHEL family
PATHS = ["prepare/selinux", "prepare/firewall", "prepare/repos", "etcd/packages", "kubernetes/runtime",
         "kubernetes/binaries"]
#: commands that change a node (a second run and a dry run send none of them)
CHANGES = ("dnf install", "setenforce", "systemctl disable", "systemctl restart", "curl", "tar", "useradd",
           "modprobe", "sysctl -q -w", "install -m")


#: where a loaded module shows (installer.nodeops._MODULE_PROBES), when not under /sys/module
_LOADED = {"br_netfilter": "/proc/sys/net/bridge/bridge-nf-call-iptables"}


class FakeRocky(ScriptedNode):
    """A Rocky 9 node as a cloud image boots: SELinux enforcing, firewalld running in zone public, the base
    repositories only (no containerd.io, no kubeadm without their repositories), sudo's secure_path without
    /usr/local/bin, x86_64."""

    def __init__(self, name: str, *, downloads: Mapping[str, bytes] | None = None) -> None:
        super().__init__(downloads=downloads)
        self.node = name
        self.selinux = "Enforcing"
        self.files["/etc/selinux/config"] = SELINUX_CONFIG.encode()
        self.firewalld = {"active": True, "enabled": True}
        self.ports: dict[bool, set[str]] = {False: {"22/tcp"}, True: {"22/tcp"}}  # by --permanent
        self.protocols: dict[bool, set[str]] = {False: set(), True: set()}
        self.rpms: dict[str, str] = {}
        self.users: set[str] = set()
        self.sysctls: dict[str, str] = {}
        #: what is where on the node: a bare name resolves through sudo's secure_path (sudoers(5))
        self.binaries = {"/usr/local/bin/kubectl"}

    def _repo(self, repo_id: str) -> bool:
        return any(p.startswith("/etc/yum.repos.d/") and f"[{repo_id}]".encode() in data
                   for p, data in self.files.items())

    def _available(self, name: str) -> bool:
        if name == "containerd.io":
            return self._repo(prep.CONTAINERD_REPO_ID)
        if name in packages.PACKAGES:
            return self._repo(packages.REPO_ID)
        return True  # BaseOS / AppStream

    def _answer(self, argv: list[str]) -> tuple[int, str, str]:
        match argv:
            case ["rpm", "-q", "--qf", "%{NAME}\n", *names]:
                out = [n if n in self.rpms else f"package {n} is not installed" for n in names]
                return (0 if all(n in self.rpms for n in names) else 1), "\n".join(out) + "\n", ""
            case ["rpm", "-q", "--qf", _, name]:
                return (0, self.rpms[name], "") if name in self.rpms else (1, f"package {name} is not installed", "")
            case ["dnf", "list", "--showduplicates", _, "kubeadm"]:
                return (0, DNF_LIST, "") if self._repo(packages.REPO_ID) else (1, "", "No matching Packages")
            case ["dnf", "install", "-y", "-q", *args]:
                wanted = [a for a in args if not a.startswith("-")]
                for a in wanted:
                    m = re.fullmatch(r"(.+?)-(\d[^-]*-[^-]+)", a)
                    name, version = (m.group(1), m.group(2)) if m else (a, "1.0-1.el9")
                    if not self._available(name):
                        return 1, "", f"Error: Unable to find a match: {name}"
                    self.rpms[name] = version
                return 0, "", ""
            case ["getenforce"]:
                return 0, self.selinux + "\n", ""
            case ["setenforce", "0"]:
                self.selinux = "Permissive"
                return 0, "", ""
            case ["systemctl", "is-active" | "is-enabled" as what, "--quiet", "firewalld"]:
                return (0 if self.firewalld["active" if what == "is-active" else "enabled"] else 3), "", ""
            case ["systemctl", "disable", "--now", "firewalld"]:
                self.firewalld = {"active": False, "enabled": False}
                return 0, "", ""
            case ["systemctl", *_]:
                return 0, "", ""
            case ["firewall-cmd", arg] if arg.startswith("--get-zone-of-interface="):
                return 0, "public\n", ""
            case ["firewall-cmd", *args] if any(a.startswith("--zone=") for a in args):
                permanent = "--permanent" in args
                if "--list-ports" in args:
                    return 0, " ".join(sorted(self.ports[permanent])) + "\n", ""
                if "--list-protocols" in args:
                    return 0, " ".join(sorted(self.protocols[permanent])) + "\n", ""
                for a in args:
                    if a.startswith("--add-port="):
                        self.ports[permanent].add(a.split("=", 1)[1])
                    elif a.startswith("--add-protocol="):
                        self.protocols[permanent].add(a.split("=", 1)[1])
                    elif a.startswith("--remove-port="):
                        self.ports[permanent].discard(a.split("=", 1)[1])
                    elif a.startswith("--remove-protocol="):
                        self.protocols[permanent].discard(a.split("=", 1)[1])
                return 0, "success\n", ""
            case ["uname", "-m"]:
                return 0, "x86_64\n", ""
            case [etcd, "--version"] if etcd == "/usr/bin/etcd":
                if etcd not in self.files:
                    return 1, "", ""
                version = ETCD_VERSIONS.get(self.files[etcd], release.VERSION)
                return 0, f"etcd Version: {version}\nGit SHA: e7b3bb6cc\n", ""
            case ["tar", "-xzf", _, "-C", folder, *members]:
                for m in members:
                    if not m.startswith("-"):
                        self.files[f"{folder}/{m.rsplit('/', 1)[-1]}"] = b"an etcd binary"
                return 0, "", ""
            case ["install", "-m", _, "-o", _, "-g", _, src, dst]:
                self.files[dst] = self.files[src]
                return 0, "", ""
            case ["rm", "-rf", folder]:
                self.files = {p: d for p, d in self.files.items() if not p.startswith(folder + "/")}
                return 0, "", ""
            case ["getent", "passwd", user]:
                return (0 if user in self.users else 2), "", ""
            case ["useradd", *_, user]:
                self.users.add(user)
                return 0, "", ""
            case ["grep", "-qw", "overlay", "/proc/filesystems"]:
                return 0, "", ""
            case ["modprobe", module]:
                self.files[_LOADED.get(module, f"/sys/module/{module}")] = b""
                return 0, "", ""
            case ["sysctl", "-q", "-w", setting]:
                key, _, value = setting.partition("=")
                self.sysctls[key] = value
                return 0, "", ""
            case ["sysctl", "-n", key]:
                return 0, self.sysctls.get(key, "0") + "\n", ""
            case ["swapon", "--show", "--noheadings"]:
                return 0, "", ""
            case [program, *_] if "/" not in program and program in {b.rsplit("/", 1)[-1] for b in self.binaries}:
                return 1, "", f"sudo: {program}: command not found"  # secure_path: /sbin:/bin:/usr/sbin:/usr/bin
            case [program, "--kubeconfig=/etc/kubernetes/admin.conf", "get", "node", name, "-o", "name"] if (
                    program in self.binaries):
                return 0, f"node/{name}\n", ""
        return super()._answer(argv)


def _topo(tmp_path: Path, scenario: str = "m-master", **knobs: str) -> tuple[Path, Topology]:
    inv = variants.inventory(tmp_path, scenario, kube_version="1.29.3", **knobs)
    return inv, variants.topo(tmp_path, scenario, kube_version="1.29.3", **knobs)


def _nodes(topo: Topology) -> dict[str, FakeRocky]:
    url = release.url(topo.settings, "amd64")
    return {h.name: FakeRocky(h.name, downloads={url: TARBALL}) for h in topo.hosts if topo.roles(h.name)}


@pytest.fixture(autouse=True)
def _pinned(monkeypatch: pytest.MonkeyPatch) -> None:
    """The scripted tarball stands in for etcd's release: pin its checksum as kha pins the real one."""
    monkeypatch.setitem(release.SHA256, "amd64", hashlib.sha256(TARBALL).hexdigest())


def _run(tmp_path: Path, inv: Path, nodes: Mapping[str, ScriptedNode], *, facts: NodeFacts = ROCKY,
         dry_run: bool = False, paths: list[str] = PATHS) -> InstallContext:
    ctx = open_context(InstallContext, inv, state=tmp_path / "state", known_hosts=tmp_path / "kh",
                       write_secrets=False, dry_run=dry_run)
    ctx.connector = lambda host: nodes[host.name]  # type: ignore[assignment]
    for name in nodes:
        ctx.facts[name] = facts
    Runner(install.phases(), only=paths, dry_run=dry_run, out=io.StringIO()).run(ctx)
    return ctx


# -- the kubectl of kha node remove -----------------------------------------------------------------
def test_node_remove_runs_kubectl_by_its_path_not_through_sudos_secure_path(tmp_path: Path) -> None:
    """An offline install puts kubectl in /usr/local/bin; sudo on the RHEL family does not search it."""
    inv = variants.inventory(tmp_path, "m-master")
    ctx = open_context(membership.NodeContext, inv, state=tmp_path / "state", known_hosts=tmp_path / "kh",
                       write_secrets=False, bundle=Bundle.load(make_bundle(tmp_path / "bundle")))
    node = FakeRocky("node1")
    ctx.connector = lambda host: node  # type: ignore[assignment]
    assert membership._in_api(ctx, ctx.topo.host("node4"))
    assert node.log == ["/usr/local/bin/kubectl --kubeconfig=/etc/kubernetes/admin.conf get node node4 -o name"]


# -- pure: facts, the ports table, the files ----------------------------------------------------------
def test_kha_check_runs_kubectl_by_its_path_not_through_sudos_secure_path(tmp_path: Path) -> None:
    inv = variants.inventory(tmp_path, "m-master")
    node = FakeRocky("node1")
    node.files["/usr/local/bin/kubectl"] = b"kubectl from a bundle"
    target = Target(Options(inventory=inv), topology.load(inv), lambda _host: node)  # type: ignore[arg-type]
    assert target.kubectl("get", "node", "node4", "-o", "name").stdout == "node/node4\n"
    assert target.kubectl("get", "node", "node1", "-o", "name").ok
    assert not node.ran("kubectl") and len(node.ran("test -e /usr/bin/kubectl")) == 1  # looked for once


def test_os_release_major() -> None:
    assert os_major('NAME="Rocky Linux"\nVERSION_ID="9.4"\nID="rocky"\n') == 9
    assert os_major('ID="centos"\nVERSION_ID="9"\n') == 9
    assert os_major("ID=debian\n") is None


def test_each_node_opens_what_its_roles_serve(tmp_path: Path) -> None:
    """m-master: node1-3 control planes and etcd, node1-2 hold the VIP (haproxy + keepalived), node4 a worker."""
    _, topo = _topo(tmp_path, network_plugin="flannel")
    want = {h.name: firewall.openings(topo, h) for h in topo.hosts}
    kube = ("10250/tcp", "10256/tcp", "8472/udp")
    control = ("6443/tcp", "10257/tcp", "10259/tcp", "2379-2380/tcp")
    assert set(want["node1"].ports) == {*kube, *control, "8443/tcp"}
    assert want["node1"].protocols == ("vrrp",)
    assert set(want["node3"].ports) == {*kube, *control} and want["node3"].protocols == ()
    assert set(want["node4"].ports) == {*kube, "30000-32767/tcp", "30000-32767/udp"}
    # A node-local LB listens on 127.0.0.1 only; calico needs BGP, IP-in-IP and Typha; chrony's server, NTP.
    _, local = _topo(tmp_path, "allinone", chrony_enabled="true", network_plugin="calico")
    [host] = local.hosts
    got = firewall.openings(local, host)
    assert "vrrp" not in got.protocols and not [p for p in got.ports if p.startswith("8443")]
    assert {"179/tcp", "5473/tcp", "123/udp"} <= set(got.ports) and got.protocols == ("ipencap",)


def test_repositories_point_at_the_mirror_with_the_proxy_unless_no_proxy_names_it(tmp_path: Path) -> None:
    _, topo = _topo(tmp_path, containerd_repo_url="https://mirror.corp.example/docker-ce/linux/centos/",
                    kube_repo_url="https://mirror.corp.example/kubernetes-new/core/stable",
                    https_proxy="http://10.0.0.1:3128", no_proxy=".corp.example")
    s = topo.settings
    repo = prep.containerd_repo(s, ROCKY).content.decode()
    assert "baseurl=https://mirror.corp.example/docker-ce/linux/centos/9/$basearch/stable\n" in repo
    assert "gpgkey=https://mirror.corp.example/docker-ce/linux/centos/gpg\n" in repo
    assert "includepkgs=containerd.io\n" in repo and "proxy=" not in repo
    kube = packages.repo_file(s.kube_version, OSFamily.REDHAT, s).content.decode()
    assert "baseurl=https://mirror.corp.example/kubernetes-new/core/stable/v1.29/rpm/\n" in kube
    _, direct = _topo(tmp_path, https_proxy="http://10.0.0.1:3128")
    default = prep.containerd_repo(direct.settings, ROCKY).content.decode()
    assert "baseurl=https://download.docker.com/linux/centos/9/$basearch/stable\n" in default
    assert "proxy=http://10.0.0.1:3128\n" in default


# -- a scripted Rocky 9 cluster ----------------------------------------------------------------------
def test_a_rocky_cluster_gets_selinux_firewalld_repos_and_packages(tmp_path: Path,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    inv, topo = _topo(tmp_path)
    nodes = _nodes(topo)
    _run(tmp_path, inv, nodes)
    for name, node in nodes.items():
        assert node.selinux == "Permissive", name
        assert b"\nSELINUX=permissive\nSELINUXTYPE=targeted\n" in node.files["/etc/selinux/config"]
        assert node.firewalld == {"active": False, "enabled": False}  # firewalld_mode=stop, the default
    assert "SELinux was enforcing: now permissive" in caplog.text
    worker, member = nodes["node4"], nodes["node1"]
    # containerd.io from Docker's repository (the base repositories have none), runc inside it, no CNI package:
    assert {"containerd.io", "conntrack-tools", "iptables-nft", "socat"} <= set(worker.rpms)
    assert "runc" not in worker.rpms and "containernetworking-plugins" not in worker.rpms
    assert worker.ran("dnf install") == ["dnf install -y -q containerd.io conntrack-tools iptables-nft socat",
                                         "dnf install -y -q --disableexcludes=kha-kubernetes kubelet-1.29.3-150500.1.1 "
                                         "kubeadm-1.29.3-150500.1.1 kubectl-1.29.3-150500.1.1 cri-tools kubernetes-cni"]
    assert worker.written.count(prep.CONTAINERD_REPO) == 1 and worker.written.count(packages.RPM_REPO) == 1
    # etcd from the pinned tarball, on the members only, with its user
    assert {f"/usr/bin/{b}" for b in release.BINARIES} <= set(member.files) and "etcd" in member.users
    assert member.ran("curl") == ["curl -fsSL --retry 3 -o /var/tmp/kha-etcd/etcd-v3.5.12-linux-amd64.tar.gz "
                                  "https://github.com/etcd-io/etcd/releases/download/v3.5.12/"
                                  "etcd-v3.5.12-linux-amd64.tar.gz"]
    assert not [p for p in member.files if p.startswith(release.WORK_DIR)]
    assert not worker.ran("curl", "useradd")

    # A second run finds everything in place: no command that changes a node, no file written.
    for node in nodes.values():
        node.log.clear()
        node.written.clear()
    _run(tmp_path, inv, nodes)
    for name, node in nodes.items():
        assert node.ran(*CHANGES) == [] and node.written == [], name


def test_firewalld_open_opens_each_nodes_ports_once_running_and_permanent(tmp_path: Path) -> None:
    inv, topo = _topo(tmp_path, firewalld_mode="open", network_plugin="flannel")
    nodes = _nodes(topo)
    _run(tmp_path, inv, nodes, paths=["prepare/firewall"])
    for name, node in nodes.items():
        want = firewall.openings(topo, topo.host(name))
        assert node.firewalld == {"active": True, "enabled": True}, name
        for permanent in (False, True):
            assert node.ports[permanent] == {"22/tcp", *want.ports}, name
            assert node.protocols[permanent] == set(want.protocols), name
    assert nodes["node4"].ran("firewall-cmd --zone=public --add") == [
        "firewall-cmd --zone=public --add-port=10250/tcp --add-port=10256/tcp --add-port=30000-32767/tcp "
        "--add-port=30000-32767/udp --add-port=8472/udp"]
    for node in nodes.values():
        node.log.clear()
    _run(tmp_path, inv, nodes, paths=["prepare/firewall"])
    assert not [c for node in nodes.values() for c in node.ran("firewall-cmd") if "--add-" in c]


def test_firewalld_open_closes_what_kha_opened_and_a_node_no_longer_serves(tmp_path: Path) -> None:
    """flannel → calico: 8472/udp closes, calico's ports open; what was open before kha came stays."""
    inv, topo = _topo(tmp_path, firewalld_mode="open", network_plugin="flannel")
    nodes = _nodes(topo)
    owners = nodes["node1"]  # its owner had opened flannel's port before kha came
    for permanent in (False, True):
        owners.ports[permanent].add("8472/udp")
    _run(tmp_path, inv, nodes, paths=["prepare/firewall"])
    worker = nodes["node4"]
    assert firewall.opened(worker).ports == firewall.openings(topo, topo.host("node4")).ports
    assert "8472/udp" not in firewall.opened(owners).ports
    (tmp_path / "calico").mkdir()
    inv2, topo2 = _topo(tmp_path / "calico", firewalld_mode="open", network_plugin="calico")
    _run(tmp_path, inv2, nodes, paths=["prepare/firewall"])
    for name, node in nodes.items():
        want = firewall.openings(topo2, topo2.host(name))
        theirs = {"22/tcp", "8472/udp"} if node is owners else {"22/tcp"}
        for permanent in (False, True):
            assert node.ports[permanent] == {*theirs, *want.ports}, name
            assert node.protocols[permanent] == set(want.protocols), name
    assert "8472/udp" not in worker.ports[True] and "179/tcp" in worker.ports[True]
    assert [c for c in worker.ran("firewall-cmd") if "--remove-" in c] == [
        "firewall-cmd --zone=public --remove-port=8472/udp",
        "firewall-cmd --permanent --zone=public --remove-port=8472/udp"]


def test_a_dry_run_says_what_it_would_do_and_writes_nothing(tmp_path: Path) -> None:
    inv, topo = _topo(tmp_path)
    nodes = _nodes(topo)
    ctx = _run(tmp_path, inv, nodes, dry_run=True)
    said = [str(w) for w in ctx.report]
    for expected in ("would set SELinux permissive now (setenforce 0)", "would set SELINUX=permissive in "
                     "/etc/selinux/config", "would stop and disable firewalld (firewalld_mode=stop)",
                     f"would write {prep.CONTAINERD_REPO}", "would download https://github.com/etcd-io/etcd/releases/"
                     "download/v3.5.12/etcd-v3.5.12-linux-amd64.tar.gz", "would create the system user etcd",
                     "would install packages containerd.io conntrack-tools iptables-nft socat"):
        assert any(w.startswith(expected) for w in said), expected
    for name, node in nodes.items():
        assert node.ran(*CHANGES) == [] and node.written == [], name
        assert node.selinux == "Enforcing" and node.firewalld["active"], name


def test_debian_nodes_get_none_of_it(tmp_path: Path) -> None:
    inv, topo = _topo(tmp_path, firewalld_mode="open")
    nodes = {h.name: FakeDebian() for h in topo.hosts if topo.roles(h.name)}
    ctx = _run(tmp_path, inv, nodes, facts=NodeFacts(), paths=["prepare/selinux", "prepare/firewall",
                                                                "prepare/repos"])
    assert [n.log for n in nodes.values()] == [[]] * len(nodes) and ctx.report == []


def test_a_mirror_serving_another_tarball_is_refused_before_anything_is_installed(tmp_path: Path) -> None:
    inv, topo = _topo(tmp_path, "allinone")
    nodes = {name: FakeRocky(name, downloads={release.url(topo.settings, "amd64"): b"something else"})
             for name in _nodes(topo)}
    with pytest.raises(Exception, match=r"has sha256 [0-9a-f]{64}, kha pins .*nothing was installed"):
        _run(tmp_path, inv, nodes, paths=["etcd/packages"])
    [node] = nodes.values()
    assert not [p for p in node.files if p.startswith(("/usr/bin/", release.WORK_DIR))]
    assert not node.ran("tar", "install -m")


def test_another_etcd_version_on_a_member_is_not_replaced(tmp_path: Path) -> None:
    inv, topo = _topo(tmp_path, "allinone")
    nodes = _nodes(topo)
    [node] = nodes.values()
    node.files["/usr/bin/etcd"] = b"old"
    real = node._answer
    node._answer = lambda argv: ((0, "etcd Version: 3.5.9\n", "") if argv[1:] == ["--version"]  # type: ignore[method-assign]
                                 else real(argv))
    with pytest.raises(Exception, match=r"has etcd 3\.5\.9 in /usr/bin/etcd; kha installs etcd 3\.5\.12") as err:
        _run(tmp_path, inv, nodes, paths=["etcd/packages"])
    assert isinstance(err.value.__cause__, PackageError)
    assert not node.ran("curl")


# -- kha upgrade --with-etcd ---------------------------------------------------------------------------
ETCD_MOVES = ("curl", "install -m", "systemctl restart etcd")


def _upgrade_etcd(tmp_path: Path, nodes: Mapping[str, ScriptedNode], monkeypatch: pytest.MonkeyPatch
                  ) -> list[tuple[str, ...]]:
    """``kha upgrade --with-etcd``'s etcd phase on scripted Rocky nodes; for each wait for a healthy cluster,
    the members restarted by then."""
    inv = variants.inventory(tmp_path, "m-master", kube_version="1.29.3")
    ctx = open_context(upgrade.UpgradeContext, inv, state=tmp_path / "state", known_hosts=tmp_path / "kh",
                       write_secrets=False, target=KubeVersion.parse("1.29.3"), with_etcd=True)
    ctx.connector = lambda host: nodes[host.name]  # type: ignore[assignment]
    for name in nodes:
        ctx.facts[name] = ROCKY
    healthy: list[tuple[str, ...]] = []

    def wait_healthy(_ctx: object, _members: object) -> None:
        healthy.append(tuple(n for n, node in nodes.items() if node.ran("systemctl restart etcd")))

    monkeypatch.setattr(upgrade.ctl, "wait_healthy", wait_healthy)
    upgrade._etcd(ctx)
    return healthy


def test_with_etcd_moves_each_member_to_the_pinned_release_one_at_a_time(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    _inv, topo = _topo(tmp_path)
    nodes = _nodes(topo)
    members = [h.name for h in topo.etcd]
    for name in members:
        nodes[name].files["/usr/bin/etcd"] = b"etcd 3.5.9"
    healthy = _upgrade_etcd(tmp_path, nodes, monkeypatch)
    # Each member restarted on the pinned release, and the cluster healthy again before the next one moved.
    assert healthy == [tuple(members[:i + 1]) for i in range(len(members))]
    for name in members:
        assert nodes[name].files["/usr/bin/etcd"] == b"an etcd binary"
        assert [c.split()[0] for c in nodes[name].ran(*ETCD_MOVES)][-1:] == ["systemctl"]
    # A second run finds every member on the release: nothing is fetched, installed or restarted.
    for node in nodes.values():
        node.log.clear()
    assert _upgrade_etcd(tmp_path, nodes, monkeypatch) == []
    assert not any(node.ran(*ETCD_MOVES) for node in nodes.values())


def test_with_etcd_refuses_a_member_newer_than_the_pinned_release(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    _inv, topo = _topo(tmp_path)
    nodes = _nodes(topo)
    first = topo.etcd[0].name
    nodes[first].files["/usr/bin/etcd"] = b"etcd 3.6.0"
    with pytest.raises(PackageError, match=r"has etcd 3\.6\.0 in /usr/bin/etcd, newer than the 3\.5\.12 kha"):
        _upgrade_etcd(tmp_path, nodes, monkeypatch)
    assert nodes[first].files["/usr/bin/etcd"] == b"etcd 3.6.0"
    assert not nodes[first].ran(*ETCD_MOVES)


def test_only_a_rhel_9_is_prepared_and_not_from_the_debian_bundle(tmp_path: Path) -> None:
    from installer.errors import ConfigError  # noqa: PLC0415

    inv, topo = _topo(tmp_path, "allinone")
    nodes = _nodes(topo)
    with pytest.raises(Exception, match=r"RHEL-family release 8; kha prepares the RHEL family at 9 only") as err:
        _run(tmp_path, inv, nodes, facts=NodeFacts(os_family=OSFamily.REDHAT, os_major=8), paths=["prepare/verify"])
    assert isinstance(err.value.__cause__, ConfigError)
    assert [n.ran(*CHANGES) for n in nodes.values()] == [[]]


# -- bad input: refused with the knob named, exit 2, before anything is touched -----------------------
@pytest.mark.parametrize(("knob", "value", "said"), [
    ("firewalld_mode", "off", "is not one of stop, open"),
    ("containerd_repo_url", "ftp://mirror.example/docker", "is not a URL"),
    ("kube_repo_url", "https://mirror.example/k8s/$releasever", "is not a URL"),
    ("etcd_download_url", "mirror.example/etcd", "is not a URL"),
    ("firewalld_disabled", "false", "use firewalld_mode"),
])
def test_bad_input_is_refused_with_the_knob_named_before_anything(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], knob: str, value: str, said: str) -> None:
    inv = variants.inventory(tmp_path, "m-master", kube_version="1.29.3", **{knob: value})
    state = tmp_path / "state"
    assert cli.main(["install", "-i", str(inv), "--state", str(state), "--known-hosts", str(tmp_path / "kh")]) == 2
    err = capsys.readouterr().err
    assert re.search(rf"{re.escape(str(inv))}:\d+: {knob}: .*{re.escape(said)}", err), err
    assert not state.exists()


def test_firewalld_mode_defaults_to_stop(tmp_path: Path) -> None:
    assert variants.topo(tmp_path, "allinone").settings.firewalld_mode is FirewalldMode.STOP
