"""Node preparation as rendered (installer/nodeprep, kubelet's reservations, IPVS modules): what ``kha render``
shows for the node-prep knobs, the /etc/hosts block merge, the time and resource checks' verdicts."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import variants
import yaml

from installer import nodeops, topology
from installer.facts import NodeFacts, OSFamily
from installer.kubernetes import render as k8s
from installer.nodeprep import phases as prep
from installer.nodeprep import render
from installer.render import node_files
from installer.secrets import ClusterSecrets
from kha import cli

SECRETS = ClusterSecrets("abcdef.0123456789abcdef", "pw123456", "00" * 32)


def _by_path(files: list[Any]) -> dict[str, str]:
    return {f.path: f.content.decode() for f in files}


def test_chrony_first_master_serves_the_others_follow_it(tmp_path: Path) -> None:
    t = variants.topo(tmp_path, "m-master", chrony_enabled="true", ntp_server="ntp1.example.org,10.0.0.5")
    files = node_files(t, SECRETS)
    first = _by_path(files["node1"])["/etc/chrony/chrony.conf"].splitlines()
    assert "server ntp1.example.org iburst" in first and "server 10.0.0.5 iburst" in first
    assert f"local stratum {render.LOCAL_STRATUM}" in first
    assert [ln for ln in first if ln.startswith("allow ")] == [f"allow 10.56.56.1{i}" for i in (2, 3, 4)]
    other = _by_path(files["node4"])["/etc/chrony/chrony.conf"].splitlines()
    assert [ln for ln in other if ln.startswith("server ")] == ["server 10.56.56.11 iburst"]
    assert not [ln for ln in other if ln.startswith(("allow", "local"))]
    # No chrony_enabled: no chrony file anywhere.
    plain = node_files(variants.topo(tmp_path, "m-master"), SECRETS)
    assert not [f for fs in plain.values() for f in fs if "chrony" in f.path]


def test_a_container_runs_chronyd_with_minus_x_and_a_vm_as_its_unit_says(tmp_path: Path) -> None:
    t = variants.topo(tmp_path, "allinone", chrony_enabled="true")
    host = t.first_master
    lxc = _by_path(render.files(t, host, NodeFacts(container=True)))
    dropin = lxc["/etc/systemd/system/chrony.service.d/zz-kha-container.conf"]
    assert "ExecStart=\nExecStart=!/usr/sbin/chronyd $DAEMON_OPTS -x\n" in dropin
    assert "\nConditionCapability=\n" in dropin
    assert "rtcsync" not in lxc["/etc/chrony/chrony.conf"]
    vm = _by_path(render.files(t, host, NodeFacts(container=False)))
    assert not [p for p in vm if ".service.d/" in p and "chrony" in p]
    assert "rtcsync" in vm["/etc/chrony/chrony.conf"]
    rh = _by_path(render.files(t, host, NodeFacts(os_family=OSFamily.REDHAT, container=True)))
    rh_dropin = rh["/etc/systemd/system/chronyd.service.d/zz-kha-container.conf"]
    assert "ExecStart=/usr/sbin/chronyd $OPTIONS -x" in rh_dropin
    assert "/etc/chrony.conf" in rh


def test_hosts_name_every_node_and_custom_hosts(tmp_path: Path) -> None:
    extra = tmp_path / "vars.yaml"
    extra.write_text('custom_hosts:\n  "10.1.2.3": reg.example.org\n  "10.1.2.4": [a.b, c.d]\n')
    t = topology.load(variants.inventory(tmp_path, "m-master"), [extra])
    block = render.hosts_block(t).decode().splitlines()
    assert block[:2] == ["10.56.56.11\tnode1", "10.56.56.12\tnode2"]
    assert block[-2:] == ["10.1.2.3\treg.example.org", "10.1.2.4\ta.b c.d"]
    # An inventory that names nodes by address adds no line for them.
    ip = variants.write(tmp_path / "ip.ini", "allinone.ip")
    assert render.hosts_block(topology.load(ip)) == b""


def test_the_hosts_block_is_merged_kept_and_replaced() -> None:
    base = "127.0.0.1\tlocalhost\n10.0.0.9 other"
    once = nodeops.merge_block(base, "m", "1.2.3.4\ta\n")
    assert once == "127.0.0.1\tlocalhost\n10.0.0.9 other\n# BEGIN m\n1.2.3.4\ta\n# END m\n"
    assert nodeops.merge_block(once, "m", "1.2.3.4\ta\n") == once  # a second run changes nothing
    again = nodeops.merge_block(once + "after\n", "m", "5.6.7.8\tb\n")
    assert again == "127.0.0.1\tlocalhost\n10.0.0.9 other\n# BEGIN m\n5.6.7.8\tb\n# END m\nafter\n"


def test_proxy_for_containerd_and_apt_with_the_cluster_kept_direct(tmp_path: Path) -> None:
    t = variants.topo(tmp_path, "m-master", http_proxy="http://proxy.example.org:3128",
                      https_proxy="http://10.9.9.9:3128/", no_proxy=".corp.example,192.168.0.0/16")
    files = _by_path(node_files(t, SECRETS)["node3"])
    dropin = files[render.CONTAINERD_PROXY]
    assert 'Environment="HTTP_PROXY=http://proxy.example.org:3128"' in dropin
    assert 'Environment="HTTPS_PROXY=http://10.9.9.9:3128"' in dropin
    no_proxy = dropin.split("NO_PROXY=")[1].split('"')[0].split(",")
    assert no_proxy[:2] == [".corp.example", "192.168.0.0/16"]
    assert {"localhost", "127.0.0.1", "10.56.56.10", "10.56.56.11", "10.244.0.0/18", "10.244.64.0/18", ".svc",
            ".cluster.local"} <= set(no_proxy)
    assert files[render.APT_PROXY].splitlines()[1:] == ['Acquire::http::Proxy "http://proxy.example.org:3128";',
                                                        'Acquire::https::Proxy "http://10.9.9.9:3128";']
    none = _by_path(node_files(variants.topo(tmp_path, "m-master"), SECRETS)["node3"])
    assert render.CONTAINERD_PROXY not in none and render.APT_PROXY not in none


def test_timezone_file_only_when_set(tmp_path: Path) -> None:
    t = variants.topo(tmp_path, "allinone", timezone="Europe/Berlin")
    assert _by_path(node_files(t, SECRETS)[t.first_master.name])["/etc/timezone"] == "Europe/Berlin\n"
    plain = variants.topo(tmp_path, "allinone")
    assert "/etc/timezone" not in _by_path(node_files(plain, SECRETS)[plain.first_master.name])


def _kubelet(tmp_path: Path, **knobs: str) -> dict[str, Any]:
    t = variants.topo(tmp_path, "allinone", **knobs)
    f = k8s.init_config(t, t.first_master, SECRETS, k8s.Release.upstream(t))
    return next(d for d in yaml.safe_load_all(f.content) if d and d["kind"] == "KubeletConfiguration")


def test_kubelet_reservations_and_eviction(tmp_path: Path) -> None:
    cfg = _kubelet(tmp_path, kube_cpu_reserved="100m", kube_memory_reserved="256M", system_memory_reserved="512Mi",
                   eviction_hard_memory_available="100Mi", eviction_hard_nodefs_available="10%")
    assert cfg["kubeReserved"] == {"cpu": "100m", "memory": "256M"}
    assert cfg["systemReserved"] == {"memory": "512Mi"}
    assert cfg["evictionHard"] == {"memory.available": "100Mi", "nodefs.available": "10%"}
    off = _kubelet(tmp_path, system_memory_reserved="512Mi", system_reserved_enabled="false")
    assert "systemReserved" not in off
    assert not {"kubeReserved", "systemReserved", "evictionHard"} & set(_kubelet(tmp_path))


def test_ipvs_loads_and_persists_its_modules(tmp_path: Path) -> None:
    t = variants.topo(tmp_path, "allinone", kube_proxy_mode="ipvs")
    files = _by_path(node_files(t, SECRETS)[t.first_master.name])
    loaded = files[k8s.MODULES_FILE].splitlines()[1:]
    assert loaded == ["overlay", "br_netfilter", "ip_vs", "ip_vs_rr", "ip_vs_wrr", "ip_vs_sh", "nf_conntrack"]
    kubeadm = yaml.safe_load_all(files[k8s.KUBEADM_CONFIG])
    assert next(d for d in kubeadm if d and d["kind"] == "KubeProxyConfiguration")["mode"] == "ipvs"
    plain = variants.topo(tmp_path, "allinone")
    assert "ip_vs" not in _by_path(node_files(plain, SECRETS)[plain.first_master.name])[k8s.MODULES_FILE]


def test_kha_render_shows_the_node_prep_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    inv = variants.inventory(tmp_path, "allinone", chrony_enabled="true", http_proxy="http://127.0.0.1:3128")
    assert cli.main(["render", "-i", str(inv), "--dir", str(tmp_path / "out"), "--state", str(tmp_path / "s")]) == 0
    out = capsys.readouterr().out
    for path in ("/etc/kha/hosts", "/etc/chrony/chrony.conf", render.CONTAINERD_PROXY, render.APT_PROXY):
        assert f"  {path}  " in out, path
    assert (tmp_path / "out/nodes/node1/etc/chrony/chrony.conf").read_text().startswith("# Written by kha")


@pytest.mark.parametrize(("csv", "ok"), [
    ("0A383A0B,10.56.56.11,3,1700000000.1,0.000001,0.0,0.0,1.0,0.0,0.1,0.001,0.001,64.0,Normal", True),
    ("7F7F0101,,10,1700000000.1,0.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0,Normal", True),
    ("00000000,,0,0.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0,Not synchronised", False),
    ("", False),
])
def test_time_check_verdict(csv: str, ok: bool) -> None:
    assert (prep.time_problem(csv) is None) is ok


@pytest.mark.parametrize(("roles", "cpus", "mib", "ok"), [
    ("worker", 2, 1800, True), ("worker", 1, 8000, False), ("worker", 2, 1600, False),
    ("allinone", 2, 1800, False), ("allinone", 2, 3900, True)
])
def test_resource_bar(tmp_path: Path, roles: str, cpus: int, mib: int, ok: bool) -> None:
    # s-master's node1 is master, etcd member and worker too, but not alone: the 2 GiB bar.
    t = variants.topo(tmp_path, {"allinone": "allinone", "s-master-node1": "s-master"}.get(roles, "m-master"))
    host = {"worker": "node4", "allinone": "node1", "s-master-node1": "node1"}[roles]
    facts = NodeFacts(cpus=cpus, memory_mib=mib)
    ctx = SimpleNamespace(topo=t, node_facts=lambda _h: facts)
    why = prep.resource_problem(ctx, t.host(host))  # type: ignore[arg-type]
    assert (why is None) is ok, why
    if why:
        assert "skip_verify_node=true" in why and host in why


def test_memory_from_meminfo() -> None:
    assert nodeops.memory_mib("MemTotal:        2030612 kB\nMemFree: 1 kB\n") == 1983
