"""Every rendered load-balancer config passes its own daemon's check (haproxy -c, keepalived -t, nginx -t), and
every kubeadm init configuration is read by the bundle's own kubeadm."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from images import bundle
from installer import topology
from installer.kubernetes import render as k8s_render
from installer.loadbalancer import render as lb_render
from installer.render import node_files
from installer.secrets import ClusterSecrets
from installer.settings import BalanceAlg
from scenarios import catalog

pytestmark = pytest.mark.integration

SECRETS = ClusterSecrets("abcdef.0123456789abcdef", "pw123456", "00" * 32)


def need(binary: str) -> str:
    path = shutil.which(binary) or (f"/usr/sbin/{binary}" if Path(f"/usr/sbin/{binary}").exists() else None)
    if path is None:
        pytest.fail(f"{binary} is not installed: run scripts/setup.sh (Debian package {binary})")
    return path


def check(argv: list[str]) -> None:
    res = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    assert res.returncode == 0, f"{' '.join(argv)} failed ({res.returncode}):\n{res.stdout}\n{res.stderr}"


@pytest.mark.parametrize(("scenario", "variant"), [(s, v) for s in catalog.names() for v in ("ip", "hostname")])
def test_rendered_configs_pass_daemon_checks(tmp_path: Path, scenario: str, variant: str) -> None:
    sc = catalog.get(scenario)
    topo = topology.load(sc.inventory if variant == "ip" else sc.inventory_hostname)
    checked = 0
    for node, files in node_files(topo, SECRETS).items():
        d = tmp_path / node.replace(".", "_")
        d.mkdir(mode=0o755)
        by_path = {f.path: f for f in files}
        if lb_render.HAPROXY_CFG in by_path:
            (d / "haproxy.cfg").write_bytes(by_path[lb_render.HAPROXY_CFG].content)
            check([need("haproxy"), "-c", "-f", str(d / "haproxy.cfg")])
            checked += 1
        if lb_render.NGINX_CONF in by_path:
            (d / "nginx.conf").write_bytes(by_path[lb_render.NGINX_CONF].content)
            check([need("nginx"), "-t", "-q", "-c", str(d / "nginx.conf")])
            checked += 1
        if lb_render.KEEPALIVED_CONF in by_path:
            # keepalived refuses (exit 5) a tracked script that is missing: check it where it will be.
            script = d / "kha-check-lb.sh"
            script.write_bytes(by_path[lb_render.CHECK_SCRIPT].content)
            script.chmod(0o755)
            conf = by_path[lb_render.KEEPALIVED_CONF].content.decode().replace(lb_render.CHECK_SCRIPT, str(script))
            (d / "keepalived.conf").write_text(conf)
            check([need("keepalived"), "-t", "-l", "-f", str(d / "keepalived.conf")])
            checked += 1
    expected = {"allinone": 1, "s-master": 4, "m-master": 4}[scenario]
    assert checked == expected


@pytest.mark.parametrize("alg", [a.value for a in BalanceAlg])
def test_every_haproxy_balance_algorithm_passes_its_check(tmp_path: Path, alg: str) -> None:
    inv = tmp_path / "balance.ini"
    inv.write_text(Path(catalog.get("m-master").inventory).read_text() + f"lb_haproxy_balance_alg={alg}\n")
    topo = topology.load(inv)
    files = {f.path: f for f in node_files(topo, SECRETS)[topo.lb[0].name]}
    cfg = files[lb_render.HAPROXY_CFG].content.decode()
    assert f"    balance {alg}\n" in cfg
    (tmp_path / "haproxy.cfg").write_text(cfg)
    check([need("haproxy"), "-c", "-f", str(tmp_path / "haproxy.cfg")])


def test_unicast_keepalived_passes_its_check(tmp_path: Path) -> None:
    inv = tmp_path / "unicast.ini"
    inv.write_text(Path(catalog.get("m-master").inventory).read_text() + "lb_keepalived_unicast=true\n")
    topo = topology.load(inv)
    files = {f.path: f for f in node_files(topo, SECRETS)[topo.lb[0].name]}
    script = tmp_path / "kha-check-lb.sh"
    script.write_bytes(files[lb_render.CHECK_SCRIPT].content)
    script.chmod(0o755)
    conf = files[lb_render.KEEPALIVED_CONF].content.decode()
    assert "unicast_peer" in conf
    (tmp_path / "keepalived.conf").write_text(conf.replace(lb_render.CHECK_SCRIPT, str(script)))
    check([need("keepalived"), "-t", "-l", "-f", str(tmp_path / "keepalived.conf")])


@pytest.mark.parametrize("scenario", catalog.names())
def test_kubeadm_reads_the_rendered_init_configuration(tmp_path: Path, scenario: str) -> None:
    """``kubeadm config images list --config`` parses every document (init, cluster, kubelet, kube-proxy) as
    ``kubeadm init`` would, touching nothing."""
    cached = bundle.get()
    if cached is None:
        pytest.fail("no cached Kubernetes bundle: build it (tests/integration/test_bundle_build.py or kha bundle)")
    topo = topology.load(catalog.get(scenario).inventory)
    (config,) = [f for f in node_files(topo, SECRETS)[topo.first_master.name] if f.path == k8s_render.KUBEADM_CONFIG]
    path = tmp_path / "kubeadm.yaml"
    path.write_bytes(config.content)
    check([str(cached.binary("kubeadm")), "config", "images", "list", "--config", str(path)])
