"""The control plane's hardening: every row of the CIS table holds in the rendered configs, the knobs turn
each item off (or on), the Secrets encryption key is per cluster and stable, haproxy runs confined."""

from __future__ import annotations

import base64
import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import variants
import yaml

from installer.etcd import render as etcd_render
from installer.kubernetes import hardening
from installer.kubernetes import render as k8s
from installer.kubernetes.hardening import CIS, Hardening, Status
from installer.loadbalancer import render as lb_render
from installer.render import node_files
from installer.secrets import ClusterSecrets
from installer.topology import Topology

SECRETS = ClusterSecrets("abcdef.0123456789abcdef", "pw123456", "11" * 32)


def rendered(topo: Topology) -> dict[str, bytes]:
    """The first master's files by path."""
    return {f.path: f.content for f in node_files(topo, SECRETS)[topo.first_master.name]}


def effective(files: dict[str, bytes], component: str) -> dict[str, Any]:
    """What the rendered files set for ``component``: flags as name → value, KubeletConfiguration fields
    by dotted path, a file's text by its path."""
    if component == "etcd":
        unit = files[etcd_render.UNIT_PATH].decode().replace("\\\n", " ")
        start = re.search(r"^ExecStart=(.*)$", unit, re.M)
        assert start is not None
        return dict(w[2:].split("=", 1) for w in shlex.split(start.group(1))[1:])
    if component == "file":
        return {p: c.decode() for p, c in files.items()}
    docs = {d["kind"]: d for d in yaml.safe_load_all(files[k8s.KUBEADM_CONFIG]) if d}
    cluster = docs["ClusterConfiguration"]
    if component == "kubelet":
        return dict(_flatten(docs["KubeletConfiguration"]))
    key = {"kube-apiserver": "apiServer", "kube-controller-manager": "controllerManager",
           "kube-scheduler": "scheduler"}[component]
    return dict(cluster.get(key, {}).get("extraArgs", {}))


def _flatten(d: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    for k, v in d.items():
        out += _flatten(v, f"{prefix}{k}.") if isinstance(v, dict) else [(f"{prefix}{k}", v)]
    return out


def holds(files: dict[str, bytes], row: hardening.Item) -> bool:
    have = effective(files, row.component).get(row.setting)
    if row.component == "file":
        return have is not None and row.value in have
    return have is not None and str(have).lower() == row.value


@pytest.fixture
def with_hardening(monkeypatch: pytest.MonkeyPatch) -> Any:
    """Render with the given hardening instead of the inventory's (the knobs live in settings.py)."""
    def use(h: Hardening) -> None:
        monkeypatch.setattr(Hardening, "of", classmethod(lambda cls, s: h))
    return use


@pytest.mark.parametrize("row", CIS, ids=[r.item for r in CIS])
def test_every_cis_row_is_what_the_rendered_config_says(tmp_path: Path, row: hardening.Item, with_hardening: Any
                                                        ) -> None:
    topo = variants.topo(tmp_path, "m-master")
    by_default = holds(rendered(topo), row)
    assert by_default is (row.status is Status.ON), f"{row.item} {row.title}: {row.status}, rendered {by_default}"
    if row.status is Status.NOT_APPLIED:
        assert row.knob is None and row.why
        return
    if row.knob is None:
        return  # always on (etcd's TLS, kubeadm's kubelet default)
    # The knob flips it.
    flipped = {"kube_profiling": Hardening(profiling=True), "kubernetes_audit": Hardening(audit=False),
               "kube_encryption_at_rest": Hardening(encryption_at_rest=False),
               "kubelet_protect_kernel_defaults": Hardening(protect_kernel_defaults=True)}[row.knob]
    with_hardening(flipped)
    assert holds(rendered(topo), row) is (row.status is Status.OPT_IN), row.item


def test_the_readme_table_has_every_row() -> None:
    table = hardening.cis_markdown()
    assert all(f"| {r.item} |" in table for r in CIS) and len(table.splitlines()) == len(CIS) + 2


def test_opting_out_removes_the_files_and_their_flags(tmp_path: Path, with_hardening: Any) -> None:
    topo = variants.topo(tmp_path, "m-master")
    on = rendered(topo)
    assert {hardening.ENCRYPTION_CONFIG, hardening.AUDIT_POLICY} <= set(on)
    cluster = {d["kind"]: d for d in yaml.safe_load_all(on[k8s.KUBEADM_CONFIG])}["ClusterConfiguration"]
    assert [v["hostPath"] for v in cluster["apiServer"]["extraVolumes"]] == [hardening.AUDIT_POLICY,
                                                                            hardening.AUDIT_LOG_DIR]
    with_hardening(Hardening(encryption_at_rest=False, audit=False))
    off = rendered(topo)
    assert not {hardening.ENCRYPTION_CONFIG, hardening.AUDIT_POLICY} & set(off)
    cluster = {d["kind"]: d for d in yaml.safe_load_all(off[k8s.KUBEADM_CONFIG])}["ClusterConfiguration"]
    assert "extraVolumes" not in cluster["apiServer"]
    assert not [a for a in cluster["apiServer"]["extraArgs"] if a.startswith(("audit", "encryption"))]
    # Workers get neither file.
    worker = {f.path for f in node_files(topo, SECRETS)["node4"]}
    assert not {hardening.ENCRYPTION_CONFIG, hardening.AUDIT_POLICY} & worker


def test_the_encryption_key_is_per_cluster_stable_and_private(tmp_path: Path) -> None:
    topo = variants.topo(tmp_path, "m-master")
    (f,) = [f for f in node_files(topo, SECRETS)["node2"] if f.path == hardening.ENCRYPTION_CONFIG]
    assert f.mode == 0o600
    cfg = yaml.safe_load(f.content)
    providers = cfg["resources"][0]["providers"]
    assert cfg["resources"][0]["resources"] == ["secrets"] and list(providers[0]) == ["aescbc"]
    key = base64.b64decode(providers[0]["aescbc"]["keys"][0]["secret"])
    assert len(key) == 32 and key == hardening.encryption_key(SECRETS)
    assert node_files(topo, SECRETS)["node2"] == node_files(topo, SECRETS)["node2"]  # same bytes every run
    other = ClusterSecrets(SECRETS.kubeadm_token, SECRETS.vrrp_password, "22" * 32)
    assert hardening.encryption_key(other) != key
    assert key.hex() not in SECRETS.certificate_key  # derived, not a copy


def test_the_audit_policy_never_logs_bodies() -> None:
    policy = hardening.audit_policy()
    levels = [r["level"] for r in policy["rules"]]
    assert set(levels) <= {"None", "Metadata"} and levels[-1] == "Metadata"
    secrets_rule = next(r for r in policy["rules"] if any("secrets" in g["resources"] for g in r.get("resources", [])))
    assert secrets_rule["level"] == "Metadata"


def test_haproxy_runs_as_its_user_in_a_chroot_and_keeps_a_root_only_runtime_api(
        tmp_path: Path, with_hardening: Any) -> None:
    topo = variants.topo(tmp_path, "m-master")
    cfg = node_files(topo, SECRETS)["node1"]
    text = next(f.content.decode() for f in cfg if f.path == lb_render.HAPROXY_CFG)
    glob = re.sub(r"#.*", "", text.split("\ndefaults")[0])
    assert {"chroot /var/lib/haproxy", "user haproxy", "group haproxy",
            "stats socket /run/haproxy/admin.sock mode 600 level admin"} <= {ln.strip() for ln in glob.splitlines()}
    assert "/dev/log" not in glob  # not reachable from the chroot
    with_hardening(Hardening(haproxy_chroot=False))
    text = next(f.content.decode() for f in node_files(topo, SECRETS)["node1"] if f.path == lb_render.HAPROXY_CFG)
    assert "chroot" not in re.sub(r"#.*", "", text) and "log /dev/log" in text


def test_the_readme_shows_this_table() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    assert hardening.cis_markdown() in readme, "README's CIS table is stale: paste hardening.cis_markdown()"
