"""kubeadm, containerd and kubelet files per topology and Kubernetes version."""

from __future__ import annotations

import dataclasses
import hashlib
import re
import subprocess
from pathlib import Path

import pytest
import variants
import yaml

from installer.errors import ConfigError
from installer.files import dump_yaml
from installer.kubernetes import render as k8s
from installer.pki.store import Store
from installer.render import node_files
from installer.secrets import ClusterSecrets
from installer.settings import KubeVersion

SECRETS = ClusterSecrets("abcdef.0123456789abcdef", "pw123456", "00" * 32)


def docs(f: k8s.NodeFile) -> dict[str, dict]:  # type: ignore[type-arg]
    return {d["kind"]: d for d in yaml.safe_load_all(f.content.decode()) if d}


@pytest.mark.parametrize(("version", "api"), [("1.20.2", "v1beta2"), ("1.21.14", "v1beta2"), ("1.22.0", "v1beta3"),
                                              ("1.30.4", "v1beta3"), ("1.31.0", "v1beta4")])
def test_kubeadm_api_follows_the_version(version: str, api: str) -> None:
    assert k8s.api_version(KubeVersion.parse(version)) == api


def test_m_master_init_uses_the_vip_external_etcd_and_our_pki(tmp_path: Path) -> None:
    t = variants.topo(tmp_path, "m-master")
    cfg = docs(k8s.init_config(t, t.first_master, SECRETS, k8s.Release.upstream(t)))
    init, cluster = cfg["InitConfiguration"], cfg["ClusterConfiguration"]
    assert init["apiVersion"] == "kubeadm.k8s.io/v1beta2"
    assert init["localAPIEndpoint"] == {"advertiseAddress": "10.56.56.11", "bindPort": 6443}
    assert init["nodeRegistration"]["name"] == "node1"
    assert "taints" not in init["nodeRegistration"]  # a master that is not a worker keeps its taint
    assert init["bootstrapTokens"][0]["token"] == SECRETS.kubeadm_token
    assert cluster["controlPlaneEndpoint"] == "10.56.56.10:8443"
    assert cluster["kubernetesVersion"] == "v1.20.2"
    assert cluster["etcd"]["external"]["endpoints"] == [f"https://10.56.56.1{i}:2379" for i in (1, 2, 3)]
    assert cluster["etcd"]["external"]["certFile"] == "/etc/kubernetes/pki/apiserver-etcd-client.crt"
    assert cluster["networking"] == {"podSubnet": "10.244.0.0/18", "serviceSubnet": "10.244.64.0/18",
                                     "dnsDomain": "cluster.local"}
    assert {"10.56.56.10", "10.56.56.12", "10.244.64.1", "kubernetes.default.svc.cluster.local"} <= set(
        cluster["apiServer"]["certSANs"])
    assert cluster["apiServer"]["timeoutForControlPlane"] == k8s.CONTROL_PLANE_TIMEOUT
    assert cfg["KubeletConfiguration"]["cgroupDriver"] == "systemd"
    assert cfg["KubeProxyConfiguration"]["conntrack"] == {"maxPerCore": 0}


def test_allinone_is_untainted_and_points_at_the_local_lb(tmp_path: Path) -> None:
    t = variants.topo(tmp_path, "allinone")
    cfg = docs(k8s.init_config(t, t.first_master, SECRETS, k8s.Release.upstream(t)))
    assert cfg["InitConfiguration"]["nodeRegistration"]["taints"] == []
    assert cfg["ClusterConfiguration"]["controlPlaneEndpoint"] == "127.0.0.1:8443"


def test_joins_carry_the_ca_hash_and_control_plane_only_for_masters(tmp_path: Path) -> None:
    t = variants.topo(tmp_path, "m-master")
    store = tmp_path / "pki"
    Store(store, t).init()
    ca_pem = (store / "ca" / "ca.crt").read_bytes()
    files = node_files(t, SECRETS, ca_pem=ca_pem)
    by_node = {n: {f.path: f for f in fs} for n, fs in files.items()}
    join2 = docs(by_node["node2"][k8s.KUBEADM_CONFIG])["JoinConfiguration"]
    join4 = docs(by_node["node4"][k8s.KUBEADM_CONFIG])["JoinConfiguration"]
    assert join2["controlPlane"]["localAPIEndpoint"]["advertiseAddress"] == "10.56.56.12"
    assert "controlPlane" not in join4
    assert join4["discovery"]["bootstrapToken"]["apiServerEndpoint"] == "10.56.56.10:8443"
    # kubeadm's hash: sha256 over the CA public key in DER, as openssl computes it.
    pub = subprocess.run(["openssl", "x509", "-pubkey", "-noout", "-in", str(store / "ca" / "ca.crt")],
                         capture_output=True, check=True).stdout
    der = subprocess.run(["openssl", "pkey", "-pubin", "-outform", "der"], input=pub, capture_output=True,
                         check=True).stdout
    assert join4["discovery"]["bootstrapToken"]["caCertHashes"] == ["sha256:" + hashlib.sha256(der).hexdigest()]
    assert by_node["node1"][k8s.KUBEADM_CONFIG].mode == 0o600  # holds the bootstrap token


def test_newer_versions_use_url_sockets_list_args_and_the_new_registry(tmp_path: Path) -> None:
    t = variants.topo(tmp_path, "m-master", kube_version="1.31.2")
    release = k8s.Release.upstream(t)
    assert release.image_repository == "registry.k8s.io" and release.pause_tag == "3.10"
    cfg = docs(k8s.init_config(t, t.first_master, SECRETS, release))
    init, cluster = cfg["InitConfiguration"], cfg["ClusterConfiguration"]
    assert init["apiVersion"] == "kubeadm.k8s.io/v1beta4"
    assert init["nodeRegistration"]["criSocket"] == "unix:///run/containerd/containerd.sock"
    assert {"name": "node-ip", "value": "10.56.56.11"} in init["nodeRegistration"]["kubeletExtraArgs"]
    args = cluster["apiServer"]["extraArgs"]
    assert args[0] == {"name": "service-node-port-range", "value": "30000-32767"}
    assert {"name": "profiling", "value": "false"} in args
    assert init["timeouts"]["controlPlaneComponentHealthCheck"] == k8s.CONTROL_PLANE_TIMEOUT


def test_runtime_files(tmp_path: Path) -> None:
    t = variants.topo(tmp_path, "allinone")
    files = {f.path: f.content.decode() for f in k8s.runtime_files(t, k8s.Release.upstream(t))}
    toml = files[k8s.CONTAINERD_CONFIG]
    assert "SystemdCgroup = true" in toml and 'sandbox_image = "k8s.gcr.io/pause:3.2"' in toml
    assert "br_netfilter" in files[k8s.MODULES_FILE]
    assert "net.ipv4.ip_forward = 1" in files[k8s.SYSCTL_FILE]


def test_a_version_without_patch_cannot_be_rendered(tmp_path: Path) -> None:
    t = variants.topo(tmp_path, "allinone", kube_version="1.20.x")
    with pytest.raises(ConfigError, match="exact version"):
        k8s.Release.upstream(t)


def test_a_value_with_newlines_or_colons_cannot_add_a_kubeadm_key(tmp_path: Path) -> None:
    """kubeadm.yaml is dumped from data: even a value that bypassed inventory validation stays one string."""
    t = variants.topo(tmp_path, "m-master")
    sneaky = "30000-32767\n    authorization-mode: AlwaysAllow\nfoo: bar"
    settings = dataclasses.replace(t.settings, kube_service_node_port_range=sneaky,
                                   kube_dns_domain="cluster.local\nkind: Evil", cluster_name='x" : y')
    t = dataclasses.replace(t, settings=settings)
    clean = docs(k8s.init_config(variants.topo(tmp_path, "m-master"), t.first_master, SECRETS,
                                 k8s.Release.upstream(t)))
    cfg = docs(k8s.init_config(t, t.first_master, SECRETS, k8s.Release.upstream(t)))
    assert set(cfg) == set(clean)  # no document kind added
    api = cfg["ClusterConfiguration"]["apiServer"]["extraArgs"]
    assert set(api) == set(clean["ClusterConfiguration"]["apiServer"]["extraArgs"])
    assert api["service-node-port-range"] == sneaky
    assert cfg["ClusterConfiguration"]["networking"]["dnsDomain"] == "cluster.local\nkind: Evil"
    assert cfg["ClusterConfiguration"]["clusterName"] == 'x" : y'
    for kind, doc in cfg.items():
        assert set(doc) == set(clean[kind]), kind


@pytest.mark.parametrize("value", ["a\n  b: c", "x\n---\nkind: Evil", "|", "- x", "key: value", "# c", "...",
                                   " lead\n", "trail \n", "tab\tx\n", "nel\x85x", "ls\u2028x", "a\n\n", "\n",
                                   "'q'\n\"d\"", "yes", "0o17", "1e3", "~", ""])
def test_the_yaml_dumper_round_trips_any_string(value: str) -> None:
    doc = {"kind": "Test", "value": value, "list": [value], "nested": {value: value}}
    assert list(yaml.safe_load_all(dump_yaml([doc, doc], "# header\n"))) == [doc, doc]


def test_every_kubeadm_document_has_a_kind_as_kubeadm_splits_them(tmp_path: Path) -> None:
    """kubeadm cuts its config at each ``---`` line and needs apiVersion and kind in every piece; a piece of
    only comments (the header before a leading ``---``) made kubeadm 1.20 refuse the file on a real node."""
    t = variants.topo(tmp_path, "m-master")
    text = k8s.init_config(t, t.first_master, SECRETS, k8s.Release.upstream(t)).content.decode()
    pieces = re.split(r"^---$", text, flags=re.M)
    assert len(pieces) == 4
    for piece in pieces:
        doc = yaml.safe_load(piece)
        assert isinstance(doc, dict) and doc.get("apiVersion") and doc.get("kind"), piece
