"""``kha upgrade`` without a cluster: the version checks (bad input, exit 2, before anything connects), and the
whole upgrade against a scripted cluster of Debian nodes (``FakeDebian`` plus kubectl, kubeadm and the
kubelet): the order kubeadm's guide asks for, one node at a time, each kubelet drained and uncordoned, a
second run that changes nothing, and a run interrupted half-way that resumes. No second Kubernetes version
can be built offline here, so this scripted cluster is where the upgrade path runs."""

from __future__ import annotations

import io
import shlex
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import variants
from test_kubernetes_source import PREREQS, FakeDebian

from installer import nodeops
from installer.context import open_context
from installer.errors import KubernetesError
from installer.facts import NodeFacts
from installer.kubernetes import packages, staticpods, upgrade
from installer.kubernetes.render import kubernetes_nodes
from installer.phases import Runner
from installer.settings import KubeVersion
from installer.topology import Topology
from kha import cli

OLD, NEW = "1.29.3", "1.30.2"


def madison(minor: str) -> str:
    patch = {"1.29": OLD, "1.30": NEW}[minor]
    return f"   kubeadm | {patch}-1.1 | https://pkgs.k8s.io/core:/stable:/v{minor}/deb  Packages\n"


@dataclass
class Cluster:
    """What the API and kubeadm's stored configuration say, shared by every scripted node."""

    version: str = OLD
    kubelets: dict[str, str] = field(default_factory=dict)
    cordoned: set[str] = field(default_factory=set)
    log: list[str] = field(default_factory=list)
    #: ``"node: command"`` that fails once (an interrupted run)
    fail: str | None = None


class Node(FakeDebian):
    def __init__(self, cluster: Cluster, name: str, *, control_plane: bool) -> None:
        super().__init__(installed={**PREREQS, **dict.fromkeys(packages.PINNED, f"{OLD}-1.1")})
        self.node, self.cluster, self.control_plane = name, cluster, control_plane
        self.static = OLD if control_plane else None
        cluster.kubelets[name] = OLD
        self.files[packages.DEB_KEY] = b"key"
        self.files[packages.DEB_LIST] = packages.repo_file(KubeVersion.parse(OLD), NodeFacts().os_family).content

    def _answer(self, argv: list[str]) -> tuple[int, str, str]:
        words = argv[1:] if argv[0] == "env" else argv
        while words and "=" in words[0]:
            words = words[1:]
        said = f"{self.node}: {shlex.join(words)}"
        if self.cluster.fail and said.startswith(self.cluster.fail):
            self.cluster.fail = None
            return 1, "", "connection lost"
        c = self.cluster
        match words:
            case ["apt-cache", "madison", "kubeadm"]:
                self.repo = madison("1.30" if b"v1.30" in self.files[packages.DEB_LIST] else "1.29")
            case [kubectl, _, "-n", "kube-system", "get", "configmap", "kubeadm-config", *_] if kubectl.endswith(
                    "/kubectl"):
                return 0, f"kind: ClusterConfiguration\nkubernetesVersion: v{c.version}\n", ""
            case [kubectl, _, "get", "nodes", "-o", _] if kubectl.endswith("/kubectl"):
                return 0, "".join(f"{n}=v{v}={'true' if n in c.cordoned else ''}=True\n"
                                  for n, v in c.kubelets.items()), ""
            case [kubectl, _, "drain", name, *_] if kubectl.endswith("/kubectl"):
                c.log.append(f"drain {name}")
                c.cordoned.add(name)
                return 0, "", ""
            case [kubectl, _, "uncordon", name] if kubectl.endswith("/kubectl"):
                c.log.append(f"uncordon {name}")
                c.cordoned.discard(name)
                return 0, "", ""
            case ["cat", path] if path == staticpods.APISERVER.manifest:
                if self.static is None:
                    return 1, "", "No such file"
                return 0, f"spec:\n  containers:\n  - image: registry.k8s.io/kube-apiserver:v{self.static}\n", ""
            case [kubeadm, "upgrade", verb, *rest] if kubeadm.endswith("/kubeadm"):
                if self.installed["kubeadm"] != f"{NEW}-1.1":
                    return 1, "", f"kubeadm {self.installed['kubeadm']} cannot upgrade to {NEW}"
                c.log.append(f"{self.node}: kubeadm upgrade {verb}")
                if verb != "plan" and self.control_plane and "--certificate-renewal=false" not in rest:
                    return 1, "", "kubeadm would renew the certificates kha's store owns"
                if verb == "apply":
                    assert rest[0] == f"v{NEW}" and "--etcd-upgrade=false" in rest
                    c.version = NEW
                if verb in ("apply", "node") and self.control_plane:
                    self.static = c.version
                return 0, "", ""
            case ["systemctl", "restart", "kubelet"]:
                c.log.append(f"{self.node}: restart kubelet")
                c.kubelets[self.node] = self.installed["kubelet"].split("-")[0]
                return 0, "", ""
            case ["systemctl", *_]:
                return 0, "", ""
        return super()._answer(argv)


def _topo(tmp_path: Path, version: str = NEW) -> Topology:
    return variants.topo(tmp_path, "m-master", kube_version=version)


def _run(tmp_path: Path, cluster: Cluster, nodes: dict[str, Node], *, dry_run: bool = False,
         target: str = NEW) -> upgrade.UpgradeContext:
    inv = variants.inventory(tmp_path, "m-master", kube_version=NEW)
    ctx = open_context(upgrade.UpgradeContext, inv, state=tmp_path / "state", known_hosts=tmp_path / "kh",
                       write_secrets=False, dry_run=dry_run, target=KubeVersion.parse(target))
    ctx.connector = lambda host: nodes[host.name]  # type: ignore[assignment]
    for name in nodes:
        ctx.facts[name] = NodeFacts()
    Runner([upgrade.UPGRADE], dry_run=dry_run, out=io.StringIO()).run(ctx)
    return ctx


def _cluster(tmp_path: Path) -> tuple[Cluster, dict[str, Node], Topology]:
    topo = _topo(tmp_path)
    cluster = Cluster()
    nodes = {h.name: Node(cluster, h.name, control_plane=h in topo.masters) for h in kubernetes_nodes(topo)}
    return cluster, nodes, topo


def test_the_cluster_moves_one_node_at_a_time_in_kubeadms_order(tmp_path: Path) -> None:
    cluster, nodes, topo = _cluster(tmp_path)
    _run(tmp_path, cluster, nodes)
    first, *others = [h.name for h in topo.masters]
    workers = [name for name in nodes if name not in {h.name for h in topo.masters}]
    assert workers, "the m-master inventory has a worker"
    expected = [f"{first}: kubeadm upgrade plan", f"{first}: kubeadm upgrade apply",
                f"drain {first}", f"{first}: restart kubelet", f"uncordon {first}"]
    for name in others:
        expected += [f"{name}: kubeadm upgrade node", f"drain {name}", f"{name}: restart kubelet", f"uncordon {name}"]
    for name in workers:
        expected += [f"{name}: kubeadm upgrade node", f"drain {name}", f"{name}: restart kubelet", f"uncordon {name}"]
    assert cluster.log == expected
    assert cluster.version == NEW and set(cluster.kubelets.values()) == {NEW} and not cluster.cordoned
    for node in nodes.values():
        assert {n: node.installed[n] for n in packages.PINNED} == dict.fromkeys(packages.PINNED, f"{NEW}-1.1")
        assert set(packages.PINNED) <= node.held
        assert b"/v1.30/deb/" in node.files[packages.DEB_LIST]


def test_a_second_run_changes_nothing(tmp_path: Path) -> None:
    cluster, nodes, _ = _cluster(tmp_path)
    _run(tmp_path, cluster, nodes)
    cluster.log.clear()
    for node in nodes.values():
        node.log.clear()
    _run(tmp_path, cluster, nodes)
    assert cluster.log == []
    assert not [c for node in nodes.values() for c in node.log if c.startswith(("apt-get install", "apt-mark"))]


def test_an_interrupted_run_resumes_where_it_stopped(tmp_path: Path) -> None:
    cluster, nodes, topo = _cluster(tmp_path)
    second = topo.masters[1].name
    cluster.fail = f"{second}: systemctl restart kubelet"
    with pytest.raises(Exception, match="connection lost"):
        _run(tmp_path, cluster, nodes)
    assert second in cluster.cordoned  # drained, kubelet not restarted
    cluster.log.clear()
    _run(tmp_path, cluster, nodes)
    # No second `upgrade apply`, nothing again on the first control plane; the second one finishes.
    assert not [line for line in cluster.log if "apply" in line or line.startswith(topo.masters[0].name)]
    # drained again (the interrupted drain may have left pods), then the kubelet the first run did not restart
    assert cluster.log[:3] == [f"drain {second}", f"{second}: restart kubelet", f"uncordon {second}"]
    assert set(cluster.kubelets.values()) == {NEW} and not cluster.cordoned


def test_dry_run_says_what_it_would_do_and_changes_nothing(tmp_path: Path) -> None:
    cluster, nodes, topo = _cluster(tmp_path)
    ctx = _run(tmp_path, cluster, nodes, dry_run=True)
    said = "\n".join(str(w) for w in ctx.report)
    assert f"kubeadm upgrade apply v{NEW} --yes --certificate-renewal=false --etcd-upgrade=false" in said
    assert f"kubectl drain {topo.masters[0].name}" in said and "kubeadm upgrade node" in said
    assert cluster.log == [] and cluster.version == OLD
    assert all(n.installed["kubeadm"] == f"{OLD}-1.1" for n in nodes.values())


def test_a_kubelet_that_never_comes_back_names_the_node(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cluster, nodes, topo = _cluster(tmp_path)
    monkeypatch.setattr(upgrade, "KUBELET_TIMEOUT_S", 0.1)
    first = topo.masters[0].name
    original = Node._answer

    def stuck(self: Node, argv: list[str]) -> tuple[int, str, str]:
        if argv == ["systemctl", "restart", "kubelet"]:
            return 0, "", ""  # restarted, but still the old binary's version
        return original(self, argv)

    monkeypatch.setattr(Node, "_answer", stuck)
    with pytest.raises(Exception, match=rf"{first} not Ready at {NEW}.*journalctl -u kubelet"):
        _run(tmp_path, cluster, nodes)


# -- bad input: exit 2 before anything connects ---------------------------------------------------
@pytest.mark.parametrize(("inventory_version", "to", "said"), [
    (NEW, "1.30", "an exact version is needed"),
    ("1.30.1", NEW, "kube_version=1.30.1 but --to 1.30.2: set kube_version=1.30.2"),
    ("1.21.14", "1.21.14", "pkgs.k8s.io starts at 1.24, and an offline bundle holds the one version"),
    (NEW, "one.two", "is not a Kubernetes version"),
])
def test_bad_targets_are_refused_before_anything_connects(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], inventory_version: str, to: str, said: str
) -> None:
    inv = variants.inventory(tmp_path, "m-master", kube_version=inventory_version)
    assert cli.main(["upgrade", "-i", str(inv), "--to", to, "--state", str(tmp_path / "state")]) == 2
    assert said in capsys.readouterr().err
    assert not (tmp_path / "state").exists(), "a refused upgrade wrote the state folder"


@pytest.mark.parametrize(("running", "said"), [
    ("1.31.0", "older than the 1.31.0 the cluster runs: kubeadm does not downgrade"),
    ("1.28.9", "kubeadm moves one minor version at a time: upgrade to 1.29.x first"),
])
def test_versions_the_running_cluster_cannot_go_to(tmp_path: Path, running: str, said: str) -> None:
    problems = upgrade.check(_topo(tmp_path), KubeVersion.parse(NEW), KubeVersion.parse(running))
    assert [p.message for p in problems if said in p.message], problems


def test_the_plan_phase_refuses_a_downgrade_with_nothing_changed(tmp_path: Path) -> None:
    cluster, nodes, _ = _cluster(tmp_path)
    cluster.version = "1.31.0"
    with pytest.raises(Exception, match="kubeadm does not downgrade") as err:
        _run(tmp_path, cluster, nodes)
    assert getattr(err.value, "cli_exit_code", None) == 2
    assert cluster.log == [] and all(n.installed["kubeadm"] == f"{OLD}-1.1" for n in nodes.values())


def test_running_version_comes_from_kubeadms_stored_configuration() -> None:
    assert upgrade.running_version("kubernetesVersion: v1.29.3\n") == KubeVersion(1, 29, 3)
    with pytest.raises(KubernetesError, match="no kubernetesVersion"):
        upgrade.running_version("")


def test_node_states_are_read_from_kubectl() -> None:
    nodes = upgrade.parse_nodes("a=v1.29.3=true=True\nb=v1.30.2==False\n")
    assert nodes == {"a": upgrade.NodeState("1.29.3", cordoned=True, ready=True),
                     "b": upgrade.NodeState("1.30.2", cordoned=False, ready=False)}


def test_the_etcd_packages_move_only_when_asked_and_the_os_offers_newer() -> None:
    policy = ("etcd-server:\n  Installed: 3.4.23-4+b1\n  Candidate: 3.4.30-1\n  Version table:\n"
              "etcd-client:\n  Installed: 3.4.30-1\n  Candidate: 3.4.30-1\n"
              "etcd:\n  Installed: (none)\n  Candidate: 3.4.30-1\n")
    assert nodeops.behind(policy) == ["etcd-server"]

