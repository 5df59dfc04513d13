"""kha render: what lands on each node for etcd and the load balancer, per topology shape."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from installer import topology
from installer.errors import ConfigError
from installer.etcd import render as etcd_render
from installer.loadbalancer import render as lb_render
from installer.render import node_files
from installer.secrets import ClusterSecrets
from installer.state import StateDir
from kha import cli
from scenarios import catalog

SECRETS = ClusterSecrets("abcdef.0123456789abcdef", "pw123456", "00" * 32)


def load(name: str, variant: str = "hostname") -> topology.Topology:
    sc = catalog.get(name)
    return topology.load(sc.inventory_hostname if variant == "hostname" else sc.inventory)


def paths(files: dict[str, list[object]], node: str) -> set[str]:
    return {f.path for f in files[node]}  # type: ignore[attr-defined]


def test_m_master_puts_haproxy_and_keepalived_on_lb_nodes_only() -> None:
    files = node_files(load("m-master"), SECRETS)
    lb = {"/etc/haproxy/haproxy.cfg", "/etc/keepalived/keepalived.conf", "/etc/keepalived/kha-check-lb.sh",
          "/etc/systemd/system/keepalived.service.d/kha.conf"}
    etcd = {"/etc/systemd/system/etcd.service", "/etc/kha/etcd-initial.env"}
    lb_or_etcd = lb | etcd

    def ours(node: str) -> set[str]:
        return {p for p in paths(files, node) if p in lb_or_etcd}

    assert ours("node1") == lb | etcd
    assert ours("node2") == lb | etcd
    assert ours("node3") == etcd
    assert ours("node4") == set()


def text(files: dict[str, list[object]], node: str, path: str) -> str:
    (f,) = [f for f in files[node] if f.path == path]  # type: ignore[attr-defined]
    return f.content.decode()  # type: ignore[attr-defined, no-any-return]


def test_haproxy_backends_are_every_master_with_a_readyz_check() -> None:
    files = node_files(load("m-master"), SECRETS)
    cfg = text(files, "node1", "/etc/haproxy/haproxy.cfg")
    assert re.findall(r"^ *server (\S+) (\S+)$", cfg, re.M) == [
        ("node1", "10.56.56.11:6443"), ("node2", "10.56.56.12:6443"), ("node3", "10.56.56.13:6443")]
    assert "uri /readyz" in cfg and "expect status 200" in cfg and "check-ssl" in cfg
    assert "bind 0.0.0.0:8443" in cfg


def test_haproxy_balances_as_lb_haproxy_balance_alg_says(tmp_path: Path) -> None:
    cfg = "/etc/haproxy/haproxy.cfg"
    assert "    balance roundrobin\n" in text(node_files(load("m-master"), SECRETS), "node1", cfg)
    stock = Path(catalog.get("m-master").inventory_hostname).read_text()
    inv = tmp_path / "hosts.ini"
    inv.write_text(stock + "lb_haproxy_balance_alg=leastconn\n")
    assert "    balance leastconn\n" in text(node_files(topology.load(inv), SECRETS), "node1", cfg)
    inv.write_text(stock + "lb_haproxy_balance_alg=random\n")
    line = len(inv.read_text().splitlines())
    with pytest.raises(ConfigError, match=rf":{line}: lb_haproxy_balance_alg: 'random' is not one of roundrobin, "):
        topology.load(inv)


def test_keepalived_first_lb_node_has_top_priority_and_same_router_id() -> None:
    topo = load("m-master")
    files = node_files(topo, SECRETS)
    k1 = text(files, "node1", "/etc/keepalived/keepalived.conf")
    k2 = text(files, "node2", "/etc/keepalived/keepalived.conf")
    p1 = int(re.search(r"priority (\d+)", k1).group(1))  # type: ignore[union-attr]
    p2 = int(re.search(r"priority (\d+)", k2).group(1))  # type: ignore[union-attr]
    assert p1 > p2
    rid = re.findall(r"virtual_router_id (\d+)", k1 + k2)
    assert len(set(rid)) == 1 and 1 <= int(rid[0]) <= 255
    assert "10.56.56.10/24 dev eth0" in k1
    # tracks the local LB port, not the apiserver through the VIP
    check = text(files, "node1", "/etc/keepalived/kha-check-lb.sh")
    assert "127.0.0.1/8443" in check and "10.56.56.10" not in check
    assert "weight" not in re.sub(r"#.*", "", k1)  # FAULT on failure: fastest takeover


def test_router_id_is_stable_and_differs_between_clusters(tmp_path: Path) -> None:
    topo = load("m-master")
    assert lb_render.router_id(topo) == lb_render.router_id(load("m-master"))
    other = Path(catalog.get("m-master").inventory_hostname).read_text() + 'cluster_name="other"\n'
    (tmp_path / "o.ini").write_text(other)
    assert lb_render.router_id(topology.load(tmp_path / "o.ini")) != lb_render.router_id(topo)
    pinned = Path(catalog.get("m-master").inventory_hostname).read_text() + "lb_keepalived_router_id=77\n"
    (tmp_path / "p.ini").write_text(pinned)
    assert lb_render.router_id(topology.load(tmp_path / "p.ini")) == 77


def test_unicast_peers_when_asked(tmp_path: Path) -> None:
    inv = Path(catalog.get("m-master").inventory_hostname).read_text() + "lb_keepalived_unicast=true\n"
    (tmp_path / "u.ini").write_text(inv)
    files = node_files(topology.load(tmp_path / "u.ini"), SECRETS)
    k1 = text(files, "node1", "/etc/keepalived/keepalived.conf")
    assert "unicast_src_ip 10.56.56.11" in k1 and "10.56.56.12" in k1.split("unicast_peer")[1]


def test_node_local_lb_on_every_node_listens_on_loopback() -> None:
    files = node_files(load("s-master"), SECRETS)
    for node in ("node1", "node2", "node3", "node4"):
        cfg = text(files, node, "/etc/haproxy/haproxy.cfg")
        assert "bind 127.0.0.1:8443" in cfg
        assert "keepalived" not in " ".join(paths(files, node))
    nginx = text(node_files(load("allinone"), SECRETS), "node1", "/etc/nginx/nginx.conf")
    assert "listen 127.0.0.1:8443;" in nginx and "server 10.56.56.11:6443" in nginx


def test_backends_follow_masters_being_added_and_removed(tmp_path: Path) -> None:
    base = Path(catalog.get("m-master").inventory_hostname).read_text()
    added = base.replace("[new-master]\n", "[new-master]\nnode4\n").replace("[kube-worker]\nnode4\n", "[kube-worker]\n")
    (tmp_path / "add.ini").write_text(added)
    cfg = text(node_files(topology.load(tmp_path / "add.ini"), SECRETS), "node1", "/etc/haproxy/haproxy.cfg")
    assert "server node4 10.56.56.14:6443" in cfg
    removed = base.replace("[del-master]\n", "[del-master]\nnode3\n")
    (tmp_path / "del.ini").write_text(removed)
    cfg = text(node_files(topology.load(tmp_path / "del.ini"), SECRETS), "node1", "/etc/haproxy/haproxy.cfg")
    assert "node3" not in cfg and "server node2" in cfg


def test_etcd_unit_has_tls_everywhere_and_initial_cluster() -> None:
    topo = load("m-master")
    files = node_files(topo, SECRETS)
    unit = text(files, "node2", "/etc/systemd/system/etcd.service")
    for flag in ("--client-cert-auth=true", "--peer-client-cert-auth=true", "--auto-tls=false",
                 "--peer-auto-tls=false", "--trusted-ca-file=/etc/kubernetes/pki/etcd/ca.crt",
                 "--listen-peer-urls=https://10.56.56.12:2380", "--data-dir=/var/lib/etcd", "User=etcd"):
        assert flag in unit
    assert "Restart=on-failure" in unit  # a removed member exits 0 and must stay down
    env = text(files, "node2", "/etc/kha/etcd-initial.env")
    assert ('ETCD_INITIAL_CLUSTER="node1=https://10.56.56.11:2380,node2=https://10.56.56.12:2380,'
            'node3=https://10.56.56.13:2380"') in env
    assert 'ETCD_INITIAL_CLUSTER_STATE="new"' in env
    assert etcd_render.cluster_token(topo) in env


def test_slb_installs_nothing(tmp_path: Path) -> None:
    inv = (Path(catalog.get("m-master").inventory_hostname).read_text()
           .replace("[lb]\nnode1\nnode2\n", "[lb]\n").replace('lb_mode="haproxy"', 'lb_mode="slb"'))
    (tmp_path / "slb.ini").write_text(inv)
    files = node_files(topology.load(tmp_path / "slb.ini"), SECRETS)
    assert all(not p.startswith(("/etc/haproxy", "/etc/keepalived", "/etc/nginx"))
               for n in files for p in paths(files, n))


@pytest.mark.parametrize("scenario", ["allinone", "s-master", "m-master"])
def test_render_cli_is_deterministic_and_keeps_secrets(tmp_path: Path, scenario: str) -> None:
    inv = catalog.get(scenario).inventory
    state = tmp_path / "state"
    assert cli.main(["render", "-i", str(inv), "--dir", str(tmp_path / "a"), "--state", str(state)]) == 0
    secrets_before = (state / "secrets.json").read_bytes()
    assert (state / "secrets.json").stat().st_mode & 0o777 == 0o600
    assert cli.main(["render", "-i", str(inv), "--dir", str(tmp_path / "b"), "--state", str(state)]) == 0
    assert (state / "secrets.json").read_bytes() == secrets_before
    a = {p.relative_to(tmp_path / "a"): p.read_bytes() for p in (tmp_path / "a").rglob("*") if p.is_file()}
    b = {p.relative_to(tmp_path / "b"): p.read_bytes() for p in (tmp_path / "b").rglob("*") if p.is_file()}
    assert a and a == b


def test_default_state_dir_sits_beside_the_inventory(tmp_path: Path) -> None:
    assert StateDir.for_inventory(tmp_path / "hosts.x.ini").root == tmp_path / "hosts.x.kha"


def test_a_template_value_cannot_add_a_line_to_a_config(monkeypatch: pytest.MonkeyPatch) -> None:
    topo = load("m-master")
    evil = lb_render.Backend("node1\n    server evil 10.0.0.66", "10.56.56.11", 6443)
    monkeypatch.setattr(lb_render, "backends", lambda _topo: [evil])
    with pytest.raises(ValueError, match="spans lines"):
        lb_render.files(topo, topo.hosts[0], SECRETS)
