"""``kha install --dry-run`` onto a real, untouched node: every phase answers with what it would do
(the online path included: upstream's packages, image pulls, the flannel manifest), and the node and
the state folder are left exactly as they were."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from harness.pytest_plugin import Topologies
from installer import install, topology
from installer.connect import Connector
from installer.phases import Status
from scenarios import catalog

pytestmark = pytest.mark.integration

#: What an install writes on a node; a dry run must leave every one of them as it found it.
PROBE = ("ls -la /etc/kubernetes /etc/kha /etc/apt/sources.list.d /etc/apt/keyrings /etc/etcd /etc/nginx "
         "/etc/containerd 2>&1; dpkg-query -W -f '${Package} ${Version}\\n' | sha256sum; systemctl list-units "
         "--all --no-legend --plain kubelet.service etcd.service nginx.service containerd.service")


def online_variant(tmp_path: Path) -> Path:
    """allinone's inventory, as a user with internet would write it: a recent version and flannel."""
    text = Path(catalog.get("allinone").inventory).read_text()
    lines = [ln for ln in text.splitlines() if not ln.startswith(("kube_version=", "network_plugin="))]
    path = tmp_path / "allinone-online.ini"
    path.write_text("\n".join([*lines, 'kube_version="1.29.3"', 'network_plugin="flannel"']) + "\n")
    return path


def test_online_dry_run_says_everything_and_changes_nothing(kha_topologies: Topologies, tmp_path: Path) -> None:
    cluster = kha_topologies.fresh(kha_topologies.get("allinone", "lxc"))
    inventory, state, out = online_variant(tmp_path), tmp_path / "state", io.StringIO()
    host = topology.load(inventory).first_master
    with Connector(cluster.known_hosts, cluster.ssh_config) as connect:
        before = connect(host).run(["sh", "-c", PROBE], sudo=True, check=False).stdout
        result = install.run(inventory, state=state, ssh_config=cluster.ssh_config, known_hosts=cluster.known_hosts,
                             dry_run=True, out=out)
        after = connect(host).run(["sh", "-c", PROBE], sudo=True, check=False).stdout
    said = out.getvalue()
    assert result.paths(Status.FAILED) == [] and "kubernetes/ready" in result.paths(), said
    for line in (
        "would PKI store",
        "would fetch the repository key to /etc/apt/keyrings/kha-kubernetes.asc",
        "would write /etc/apt/sources.list.d/kha-kubernetes.list",
        "would install kubelet kubeadm kubectl cri-tools kubernetes-cni (1.29.3) and hold them",
        "kubeadm config images pull --kubernetes-version=v1.29.3 --image-repository=registry.k8s.io",
        "would write /etc/systemd/system/kubelet.service",
        "kubeadm init --config /etc/kha/kubeadm.yaml",
        "would kubectl apply -f /etc/kha/cni/kube-flannel.yaml",
        "would wait until 1 nodes are Ready",
    ):
        assert line in said, f"{line!r} missing from:\n{said}"
    # Online clusters keep CoreDNS: init is not told to skip it.
    assert "--skip-phases=addon/coredns" not in said
    assert after == before, "the dry run changed the node"
    assert not state.exists() or not any(state.rglob("*.key")), "the dry run made keys in the state folder"
