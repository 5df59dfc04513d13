"""What an online install applies for the pod network: flannel's manifest, calico's operator and
Installation, nothing for bridge; and the inventory rules only calico has."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import variants
import yaml

from installer import topology
from installer.errors import ConfigError
from installer.kubernetes import cni


def inventory(tmp_path: Path, plugin: str, **overrides: str) -> Path:
    """m-master's inventory with another network plugin and [all:vars] values replaced or added."""
    return variants.inventory(tmp_path, "m-master", network_plugin=plugin, **overrides)


def topo(tmp_path: Path, plugin: str, **overrides: str) -> topology.Topology:
    return topology.load(inventory(tmp_path, plugin, **overrides))


def docs(m: cni.Manifest) -> list[dict[str, Any]]:
    assert m.content is not None
    return [d for d in yaml.safe_load_all(m.content.decode()) if d]


def find(items: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    (doc,) = [d for d in items if d["kind"] == kind]
    return doc


def line_of(path: Path, prefix: str) -> int:
    return next(i for i, ln in enumerate(path.read_text().splitlines(), 1) if ln.startswith(prefix))


# -- flannel ---------------------------------------------------------------------------------------
def test_flannel_is_one_rendered_manifest_of_complete_kubernetes_objects(tmp_path: Path) -> None:
    (m,) = cni.manifests(topo(tmp_path, "flannel"))
    assert m.url is None
    assert m.name == "kube-flannel.yaml"
    objects = docs(m)
    for d in objects:
        assert d["apiVersion"] and d["kind"] and d["metadata"]["name"]
    assert {d["kind"] for d in objects} == {"Namespace", "ServiceAccount", "ClusterRole", "ClusterRoleBinding",
                                            "ConfigMap", "DaemonSet"}
    ns = find(objects, "Namespace")
    assert ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "privileged"
    # The marker names something the manifest really creates.
    kind, name, namespace = m.marker
    ds = find(objects, "DaemonSet")
    assert (kind, name, namespace) == ("daemonset", ds["metadata"]["name"], ds["metadata"]["namespace"])


@pytest.mark.parametrize("subnet", ["10.244.0.0/18", "172.20.0.0/16"])
def test_flannel_network_is_the_inventory_pod_subnet(tmp_path: Path, subnet: str) -> None:
    (m,) = cni.manifests(topo(tmp_path, "flannel", kube_pod_subnet=subnet))
    data = find(docs(m), "ConfigMap")["data"]
    assert json.loads(data["net-conf.json"]) == {"Network": subnet, "Backend": {"Type": "vxlan"}}


def test_flannel_cni_conf_is_a_valid_conflist(tmp_path: Path) -> None:
    (m,) = cni.manifests(topo(tmp_path, "flannel"))
    conf = json.loads(find(docs(m), "ConfigMap")["data"]["cni-conf.json"])
    assert conf["cniVersion"] == "0.3.1"
    assert conf["name"] == "cbr0"
    assert [p["type"] for p in conf["plugins"]] == ["flannel", "portmap"]
    assert conf["plugins"][0]["delegate"] == {"hairpinMode": True, "isDefaultGateway": True}


def test_flannel_daemonset_runs_the_pinned_images_on_every_node(tmp_path: Path) -> None:
    t = topo(tmp_path, "flannel")
    (m,) = cni.manifests(t, cni_bin_dir="/usr/lib/cni")
    pod = find(docs(m), "DaemonSet")["spec"]["template"]["spec"]
    init = {c["name"]: c for c in pod["initContainers"]}
    (flanneld,) = pod["containers"]
    assert init["install-cni-plugin"]["image"] == "docker.io/flannel/flannel-cni-plugin:v1.5.1-flannel2"
    assert init["install-cni"]["image"] == flanneld["image"] == "docker.io/flannel/flannel:v0.25.6"
    assert init["install-cni"]["args"][-1] == "/etc/cni/net.d/10-flannel.conflist"
    assert {"--ip-masq", "--kube-subnet-mgr"} <= set(flanneld["args"])
    assert flanneld["securityContext"]["privileged"] is False
    assert set(flanneld["securityContext"]["capabilities"]["add"]) == {"NET_ADMIN", "NET_RAW"}
    assert pod["hostNetwork"] is True
    assert pod["priorityClassName"] == "system-node-critical"
    assert {"operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    # The plugin lands where containerd looks for CNI binaries on the node.
    assert volumes["cni-plugin"]["hostPath"]["path"] == "/usr/lib/cni"
    assert volumes["xtables-lock"]["hostPath"] == {"path": "/run/xtables.lock", "type": "FileOrCreate"}
    assert volumes["flannel-cfg"]["configMap"]["name"] == find(docs(m), "ConfigMap")["metadata"]["name"]


# -- calico ----------------------------------------------------------------------------------------
def test_calico_applies_the_pinned_operator_then_our_installation(tmp_path: Path) -> None:
    operator, installation = cni.manifests(topo(tmp_path, "calico"))
    assert operator.content is None
    assert operator.url == (
        "https://raw.githubusercontent.com/projectcalico/calico/v3.28.2/manifests/tigera-operator.yaml")
    assert cni.CALICO_VERSION in operator.url
    assert installation.url is None
    objects = docs(installation)
    for d in objects:
        assert d["apiVersion"] == "operator.tigera.io/v1"
        assert d["metadata"]["name"] == "default"
    assert {d["kind"] for d in objects} == {"Installation", "APIServer"}
    assert installation.marker == ("installations.operator.tigera.io", "default", None)


@pytest.mark.parametrize(("subnet", "prefix"), [("10.244.0.0/18", "24"), ("172.20.0.0/16", "25")])
def test_calico_pool_follows_the_inventory(tmp_path: Path, subnet: str, prefix: str) -> None:
    _, installation = cni.manifests(topo(tmp_path, "calico", kube_pod_subnet=subnet, kube_network_node_prefix=prefix))
    network = find(docs(installation), "Installation")["spec"]["calicoNetwork"]
    (pool,) = network["ipPools"]
    assert pool["cidr"] == subnet
    assert pool["blockSize"] == int(prefix)
    assert pool["encapsulation"] == "VXLANCrossSubnet"
    assert pool["natOutgoing"] == "Enabled"
    assert pool["nodeSelector"] == "all()"


def test_calico_finds_node_addresses_in_node_subnet_when_set(tmp_path: Path) -> None:
    _, installation = cni.manifests(topo(tmp_path, "calico"))
    spec = find(docs(installation), "Installation")["spec"]
    assert spec["calicoNetwork"]["nodeAddressAutodetectionV4"] == {"firstFound": True}
    _, installation = cni.manifests(topo(tmp_path, "calico", node_subnet="10.56.56.0/24"))
    spec = find(docs(installation), "Installation")["spec"]
    assert spec["calicoNetwork"]["nodeAddressAutodetectionV4"] == {"cidrs": ["10.56.56.0/24"]}


def test_calico_refuses_a_block_size_it_cannot_use(tmp_path: Path) -> None:
    path = inventory(tmp_path, "calico", kube_pod_subnet="172.16.0.0/12", kube_network_node_prefix="16")
    t = topology.load(path)
    (problem,) = cni.problems(t)
    assert problem.field == "kube_network_node_prefix"
    assert problem.file == str(path)
    assert problem.line == line_of(path, "kube_network_node_prefix=")
    assert not problem.warning
    with pytest.raises(ConfigError) as exc:
        cni.manifests(t)
    assert f"{path}:{problem.line}: kube_network_node_prefix:" in str(exc.value)


def test_the_same_prefix_is_fine_for_flannel(tmp_path: Path) -> None:
    t = topo(tmp_path, "flannel", kube_pod_subnet="172.16.0.0/12", kube_network_node_prefix="16")
    assert cni.problems(t) == []
    (m,) = cni.manifests(t)
    data = find(docs(m), "ConfigMap")["data"]
    assert json.loads(data["net-conf.json"])["Network"] == "172.16.0.0/12"


# -- bridge ----------------------------------------------------------------------------------------
def test_bridge_applies_nothing(tmp_path: Path) -> None:
    t = topo(tmp_path, "bridge")
    assert cni.manifests(t) == []
    assert cni.problems(t) == []
