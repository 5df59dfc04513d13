"""Workers leaving the cluster: which nodes leave, the PodDisruptionBudget guard, and the node reset against a
scripted node."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import variants

from core.errors import InputError
from installer import topology
from installer.context import InstallContext, open_context
from installer.errors import ConfigError
from installer.kubernetes import membership, reset
from installer.remote import Source, Transport
from kha import cli


def _pod(name: str, labels: dict[str, str], *, ns: str = "apps", owner: str = "ReplicaSet",
         phase: str = "Running") -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": ns, "labels": labels, "ownerReferences": [{"kind": owner}]},
            "status": {"phase": phase}}


def _pdb(name: str, selector: dict[str, Any], allowed: int, *, ns: str = "apps") -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": ns}, "spec": {"selector": selector},
            "status": {"disruptionsAllowed": allowed}}


def test_a_budget_that_allows_no_disruption_blocks_its_pods_only() -> None:
    pods = {"items": [_pod("web-1", {"app": "web"}), _pod("db-1", {"app": "db", "tier": "data"}),
                      _pod("agent-x", {"app": "web"}, owner="DaemonSet"),
                      _pod("job-1", {"app": "web"}, phase="Succeeded"),
                      _pod("web-other-ns", {"app": "web"}, ns="other")]}
    budgets = {"items": [_pdb("web", {"matchLabels": {"app": "web"}}, 0),
                         _pdb("db", {"matchExpressions": [{"key": "tier", "operator": "In", "values": ["data"]}]}, 1)]}
    assert membership.blocked(pods, budgets) == [
        "apps/web-1 (PodDisruptionBudget apps/web allows 0 disruptions)"]
    budgets["items"][1]["status"]["disruptionsAllowed"] = 0
    assert len(membership.blocked(pods, budgets)) == 2
    assert membership.blocked(pods, {"items": []}) == []


@pytest.mark.parametrize(("expr", "labels", "selected"), [
    ({"key": "tier", "operator": "In", "values": ["a", "b"]}, {"tier": "b"}, True),
    ({"key": "tier", "operator": "In", "values": ["a"]}, {}, False),
    ({"key": "tier", "operator": "NotIn", "values": ["a"]}, {}, True),
    ({"key": "tier", "operator": "NotIn", "values": ["a"]}, {"tier": "a"}, False),
    ({"key": "tier", "operator": "Exists"}, {"tier": ""}, True),
    ({"key": "tier", "operator": "DoesNotExist"}, {"tier": ""}, False),
    ({"key": "tier", "operator": "Bogus"}, {"tier": "a"}, False),
])
def test_label_selector_expressions(expr: dict[str, Any], labels: dict[str, str], selected: bool) -> None:
    pods = {"items": [_pod("p", labels)]}
    assert bool(membership.blocked(pods, {"items": [_pdb("b", {"matchExpressions": [expr]}, 0)]})) is selected


def test_an_empty_selector_covers_the_whole_namespace() -> None:
    assert membership.blocked({"items": [_pod("p", {})]}, {"items": [_pdb("all", {}, 0)]})


def _inventory(tmp_path: Path, **groups: list[str]) -> Path:
    tmp_path.mkdir(parents=True, exist_ok=True)
    inv = variants.inventory(tmp_path, "m-master")
    text = inv.read_text()
    for group, hosts in groups.items():
        header = f"[{group.replace('_', '-')}]"
        assert header in text, header
        text = text.replace(header, "\n".join([header, *hosts]), 1)
    inv.write_text(text)
    return inv


def test_the_leaving_workers_and_what_is_refused(tmp_path: Path) -> None:
    worker = _inventory(tmp_path / "w", del_worker=["node4"])
    assert [h.name for h in membership.leaving(topology.load(worker))] == ["node4"]
    # A control plane leaves ([del-master]); the first master too, and kha then talks through the second.
    first = topology.load(_inventory(tmp_path / "m", del_master=["node1"]))
    assert [h.name for h in membership.leaving(first)] == ["node1"]
    assert [h.name for h in membership.control_planes_leaving(first)] == ["node1"]
    assert first.first_master.name == "node2"
    # Its etcd membership is `kha etcd remove`'s (quorum guard): [del-node] / [del-etcd] here are refused.
    with pytest.raises(ConfigError, match=r"node2 is also an etcd member leaving: run `kha etcd remove`"):
        membership.leaving(topology.load(_inventory(tmp_path / "n", del_node=["node2"])))
    with pytest.raises(InputError, match=r"\[del-worker\], \[del-master\] and \[del-node\] are empty"):
        membership.leaving(topology.load(_inventory(tmp_path / "e")))


def test_removing_every_master_or_adding_at_the_same_time_is_refused_at_its_line(tmp_path: Path) -> None:
    every = _inventory(tmp_path / "a", del_master=["node1", "node2", "node3"])
    with pytest.raises(ConfigError, match=r":\d+: this would remove every master; keep at least one"):
        topology.load(every)
    both = _inventory(tmp_path / "b", del_master=["node3"], new_etcd=["node4"])
    with pytest.raises(ConfigError, match=r":\d+: \[new-etcd\] and \[del-master\] are both filled"):
        topology.load(both)


def test_kha_node_remove_refuses_bad_input_before_connecting(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    inv = _inventory(tmp_path, del_node=["node1"])
    assert cli.main(["node", "remove", "-i", str(inv), "--state", str(tmp_path / "state")]) == 2
    assert "node1 is also an etcd member leaving" in capsys.readouterr().err
    assert not (tmp_path / "state").exists()


# -- the reset, on a scripted node ----------------------------------------------------------------
#: where an offline bundle put kubeadm: not on the RHEL family's sudo secure_path, nor where upstream's packages do
KUBEADM = "/usr/local/bin/kubeadm"


def _ctx(tmp_path: Path, *, dry_run: bool = False) -> InstallContext:
    """What ``kha reset`` and ``kha node remove`` hand the reset: no ``--bundle`` (they take none)."""
    return open_context(InstallContext, variants.inventory(tmp_path, "m-master"), state=tmp_path / "state",
                        known_hosts=tmp_path / "kh", write_secrets=False, dry_run=dry_run)


class JoinedWorker(Transport):
    """A worker as kubeadm join (from an offline bundle: kubeadm in /usr/local/bin) and kha left it: files, a
    running kubelet, the cni0 bridge."""

    node = "node4"

    def __init__(self, *, joined: bool = True, kubeadm: bool = True) -> None:
        self.paths = (set(reset._LEFT) if joined else set()) | ({KUBEADM} if kubeadm else set())
        self.kubelet, self.bridge, self.containers = joined, joined, joined
        self.out = ""
        self.log: list[str] = []

    @property
    def as_root(self) -> bool:
        return True

    def _exec(self, argv: tuple[str, ...], stdin: bytes | None, timeout: float | None
              ) -> tuple[int | None, bytes, bytes]:
        self.out = ""
        code = self._answer(list(argv))
        return code, self.out.encode(), b""

    def _answer(self, argv: list[str]) -> int:
        match argv:
            case ["test", "-e", path]:
                return 0 if path in self.paths else 1
            case ["systemctl", "is-active", "--quiet", "kubelet"]:
                return 0 if self.kubelet else 3
            case ["ip", "link", "show", reset.BRIDGE]:
                return 0 if self.bridge else 1
            case ["sh", "-c", script] if "crictl ps -q" in script:
                self.out = "c1\nc2\n" if self.containers else ""
                return 0
        self.log.append(" ".join(argv))
        match argv:
            case [program, *_] if "/" not in program and program in {"kubeadm", "kubectl", "crictl"}:
                raise AssertionError(f"{program} by bare name: sudo's secure_path may not find it")
            case [program, "reset", "--force"] if program == KUBEADM:
                self.paths -= {"/etc/kubernetes/kubelet.conf", *(p for p in self.paths if "/manifests/" in p)}
                self.kubelet = self.containers = False
            case ["systemctl", "disable", "--now", "kubelet"]:
                self.kubelet = False
            case ["rm", "-rf", "--", *paths]:
                self.paths -= set(paths)
            case ["ip", "link", "delete", reset.BRIDGE]:
                self.bridge = False
        return 0

    def put(self, src: Source, remote_path: str, *, mode: int | None = None, owner: str | None = None,
            group: str | None = None, sudo: bool = False) -> None:
        raise AssertionError("a reset writes nothing")

    def get(self, remote_path: str, local_path: object = None, *, sudo: bool = False) -> bytes:
        raise AssertionError("a reset reads nothing")

    def close(self) -> None:
        pass


def test_reset_takes_a_joined_worker_back_and_a_second_reset_does_nothing(tmp_path: Path) -> None:
    t = JoinedWorker()
    assert reset.kubernetes(_ctx(tmp_path), t) is True
    assert t.log[0] == f"{KUBEADM} reset --force"
    assert "systemctl disable --now kubelet" in t.log and "ip link delete cni0" in t.log
    assert any("-save | grep -v -e KUBE- -e CNI- | $t-restore" in line for line in t.log), t.log
    assert reset.leftovers(t) == []
    t.log.clear()
    assert reset.kubernetes(_ctx(tmp_path), t) is False
    assert t.log == []


def test_reset_without_kubeadm_still_removes_what_kha_left_and_a_dry_run_nothing(tmp_path: Path) -> None:
    t = JoinedWorker(kubeadm=False)
    dry = _ctx(tmp_path, dry_run=True)
    assert reset.kubernetes(dry, t) is True
    assert t.log == [] and "reset Kubernetes on node4" in str(dry.report[0])
    assert reset.kubernetes(_ctx(tmp_path), t) is True
    assert not any("kubeadm reset" in line for line in t.log)
    assert "/etc/kha/kubeadm.yaml" not in t.paths and not t.bridge
    assert "2 containers running" in reset.leftovers(t), "without kubeadm nobody stopped the pods"


def test_an_etcd_members_certificates_are_set_aside_around_kubeadm_reset(tmp_path: Path) -> None:
    """kubeadm reset empties /etc/kubernetes/pki; a co-located etcd member keeps its certificates there."""
    t = JoinedWorker()
    assert reset.kubernetes(_ctx(tmp_path), t, keep=("/etc/kubernetes/pki/etcd",)) is True
    names = [line.split()[-3] if line.startswith("sh -c") else line for line in t.log]
    at = names.index(f"{KUBEADM} reset --force")
    assert names[:at].count("set-aside") == 1 and names[at:].count("put-back") == 1, t.log
    assert f"rm -rf -- {reset.KEEP_DIR}" in t.log[at:], "the set-aside copy stays behind"
