"""Which etcd members the apiservers are pointed at after a membership change, without a cluster: the flag
in kubeadm's static pod manifest, read and rewritten, and the ClusterConfiguration kubeadm stores."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import variants
import yaml
from scripted import ScriptedNode

from installer.errors import EtcdError
from installer.etcd import apiservers
from installer.etcd.context import EtcdContext
from installer.etcd.ctl import MemberInfo
from installer.phases import Context
from installer.topology import Host

A, B, C, D = (f"https://10.56.56.1{i}:2379" for i in (1, 2, 3, 4))

# Shaped like kubeadm 1.20's kube-apiserver.yaml (abridged; the flag lines are its own).
MANIFEST = f"""apiVersion: v1
kind: Pod
metadata:
  name: kube-apiserver
  namespace: kube-system
spec:
  containers:
  - command:
    - kube-apiserver
    - --advertise-address=10.56.56.11
    - --etcd-cafile=/etc/kubernetes/pki/etcd/ca.crt
    - --etcd-certfile=/etc/kubernetes/pki/apiserver-etcd-client.crt
    - --etcd-keyfile=/etc/kubernetes/pki/apiserver-etcd-client.key
    - --etcd-servers={A},{B},{C}
    - --secure-port=6443
    image: k8s.gcr.io/kube-apiserver:v1.20.2
"""


def member(i: int, url: str, *, learner: bool = False, started: bool = True) -> MemberInfo:
    return MemberInfo(i, f"m{i}" if started else "", (url.replace("2379", "2380"),),
                      (url,) if started else (), is_learner=learner)


def test_servers_are_the_started_voters_sorted() -> None:
    members = [member(3, C), member(1, A), member(4, D, learner=True), member(5, D, started=False), member(2, B)]
    assert apiservers.servers(members) == [A, B, C]


def test_no_voter_at_all_is_an_error() -> None:
    with pytest.raises(EtcdError, match="no started voting member"):
        apiservers.servers([member(4, D, learner=True)])


def test_the_flag_is_read_from_kubeadms_manifest() -> None:
    assert apiservers.flag_of(MANIFEST) == [A, B, C]


def test_an_added_member_is_written_into_the_flag_and_nothing_else_changes() -> None:
    new = apiservers.with_servers(MANIFEST, [A, B, C, D])
    assert new is not None
    assert apiservers.flag_of(new) == [A, B, C, D]
    assert new.replace(f"{A},{B},{C},{D}", f"{A},{B},{C}") == MANIFEST
    assert yaml.safe_load(new)["spec"]["containers"][0]["command"][5] == f"--etcd-servers={A},{B},{C},{D}"


def test_a_removed_member_leaves_the_flag() -> None:
    new = apiservers.with_servers(MANIFEST, [A, C])
    assert new is not None and apiservers.flag_of(new) == [A, C]


def test_the_same_members_in_another_order_change_nothing() -> None:
    assert apiservers.with_servers(MANIFEST, [C, A, B]) is None


@pytest.mark.parametrize("text", [MANIFEST.replace("--etcd-servers", "--etcd-server"),
                                  MANIFEST + f"    - --etcd-servers={D}\n"])
def test_a_manifest_kubeadm_did_not_write_is_refused(text: str) -> None:
    with pytest.raises(EtcdError, match=r"expected one `- --etcd-servers=…` line"):
        apiservers.with_servers(text, [A])


def configmap(endpoints: list[str]) -> dict[str, object]:
    config = {"apiVersion": "kubeadm.k8s.io/v1beta2", "kind": "ClusterConfiguration",
              "etcd": {"external": {"endpoints": endpoints, "caFile": "/etc/kubernetes/pki/etcd/ca.crt"}},
              "kubernetesVersion": "v1.20.2"}
    return {"data": {"ClusterConfiguration": yaml.safe_dump(config), "ClusterStatus": "x"}}


def test_the_stored_configuration_follows_and_keeps_the_rest() -> None:
    new = apiservers.stored_config(configmap([A, B, C]), [A, B, C, D])
    assert new is not None
    config = yaml.safe_load(new)
    assert config["etcd"]["external"] == {"endpoints": [A, B, C, D], "caFile": "/etc/kubernetes/pki/etcd/ca.crt"}
    assert config["kubernetesVersion"] == "v1.20.2"
    assert apiservers.stored_config(configmap([B, A, C]), [A, B, C]) is None


def test_a_stored_configuration_without_external_etcd_is_refused() -> None:
    with pytest.raises(EtcdError, match=r"no ClusterConfiguration with etcd\.external"):
        apiservers.stored_config({"data": {"ClusterConfiguration": "etcd:\n  local: {}\n"}}, [A])


def test_a_dry_run_says_which_flag_it_would_write_and_touches_no_node() -> None:
    """What `kha etcd add --dry-run` prints per control plane (the README and the flow test quote it)."""
    ctx = Context(dry_run=True)
    host = Host(name="node1", address="10.56.56.11")  # type: ignore[call-arg]
    assert apiservers._restart_one(ctx, host, None, MANIFEST, [A, B, C, D]) is True  # type: ignore[arg-type]
    assert [str(w) for w in ctx.report] == [
        f"would rewrite --etcd-servers in /etc/kubernetes/manifests/kube-apiserver.yaml to {A},{B},{C},{D} and "
        "wait for the restarted apiserver's /readyz"]
    assert apiservers._restart_one(ctx, host, None, MANIFEST, [A, B, C]) is False  # type: ignore[arg-type]


class ControlPlane(ScriptedNode):
    """A control plane installed from an offline bundle (kubectl in /usr/local/bin) whose sudo, as the RHEL
    family's, does not search /usr/local/bin (sudoers(5) ``secure_path``); it keeps kubeadm-config."""

    KUBECTL = "/usr/local/bin/kubectl"

    def __init__(self, endpoints: list[str]) -> None:
        super().__init__()
        self.files[self.KUBECTL] = b"kubectl"
        self.configmap = configmap(endpoints)

    def _answer(self, argv: list[str]) -> tuple[int, str, str]:
        match argv:
            case ["kubectl" | "kubeadm" as program, *_]:
                return 1, "", f"sudo: {program}: command not found"
            case [self.KUBECTL, "--kubeconfig=/etc/kubernetes/admin.conf", "-n", "kube-system", "get", "configmap",
                  "kubeadm-config", "-o", "json"]:
                return 0, json.dumps(self.configmap), ""
            case [self.KUBECTL, "--kubeconfig=/etc/kubernetes/admin.conf", "-n", "kube-system", "patch", "configmap",
                  "kubeadm-config", "--type=merge", "-p", patch]:
                self.configmap["data"].update(json.loads(patch)["data"])  # type: ignore[attr-defined]
                return 0, "", ""
        return super()._answer(argv)


def test_the_stored_configuration_is_written_with_kubectl_by_its_path(tmp_path: Path) -> None:
    """``kha etcd add`` takes no --bundle, yet finds the kubectl a bundle put in /usr/local/bin: by bare name,
    sudo's secure_path on the RHEL family would not."""
    ctx = EtcdContext.open(variants.inventory(tmp_path, "m-master"), state=tmp_path / "state",
                           known_hosts=tmp_path / "kh")
    node = ControlPlane([A, B, C])
    apiservers._store(ctx, node, [A, B, C, D])
    stored = yaml.safe_load(node.configmap["data"]["ClusterConfiguration"])  # type: ignore[index]
    assert stored["etcd"]["external"]["endpoints"] == [A, B, C, D]
    assert [c.split()[4] for c in node.ran(ControlPlane.KUBECTL)] == ["get", "patch"]
