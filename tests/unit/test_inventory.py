"""Inventories → topology: what users write, what kha resolves, and every way it says no."""

from __future__ import annotations

import ipaddress
import textwrap
from pathlib import Path

import pytest

from installer import topology
from installer.context import InstallContext, open_context
from installer.errors import InventoryError
from installer.remote import LocalTransport
from installer.settings import KubeVersion, LBMode, NetworkPlugin
from installer.topology import LBKind, Operation, Role
from kha import cli
from scenarios import catalog

SCENARIOS = Path(catalog.HERE) / "inventories"

BASE = """\
; a comment
# another comment
[all]
node1 ansible_host=10.0.0.11 ansible_port=22 ansible_user="root" ansible_ssh_pass="secret pass"
node2 ansible_host=10.0.0.12 ansible_port=2222 ansible_user="admin" ansible_ssh_private_key_file=/keys/id
node3 ansible_host=10.0.0.13
node4 ansible_host=10.0.0.14

[lb]
node1
node2

[etcd]
node1
node2
node3

[kube-master]
node1
node2
node3

[kube-worker]
node4

[new-master]

[new-worker]

[new-etcd]

[del-worker]

[del-master]

[del-etcd]

[del-node]

[all:vars]
skip_verify_node=false
kube_version="1.20.2"
lb_mode="haproxy"
lb_kube_apiserver_ip="10.0.0.10"
lb_kube_apiserver_port="8443"
kube_pod_subnet="10.244.0.0/18"
kube_service_subnet="10.244.64.0/18"
"""


def write(tmp_path: Path, text: str, name: str = "hosts.ini") -> Path:
    p = tmp_path / name
    p.write_text(textwrap.dedent(text))
    return p


def with_real_key(tmp_path: Path, text: str) -> str:
    """``text`` with node2's key file made real (commands that log in refuse a key file that is not there)."""
    return text.replace("/keys/id", str(write(tmp_path, "a key\n", "id")))


def line_of(text: str, needle: str, nth: int = 1) -> int:
    hits = [i for i, row in enumerate(text.splitlines(), start=1) if row.strip() == needle or row.startswith(needle)]
    return hits[nth - 1]


# -- the scenarios we ship -------------------------------------------------------------------------


@pytest.mark.parametrize("scenario", ["allinone", "s-master", "m-master"])
def test_shipped_inventories_resolve_and_variants_agree(scenario: str) -> None:
    sc = catalog.get(scenario)
    by_ip = topology.load(sc.inventory)
    by_name = topology.load(sc.inventory_hostname)

    def shape(t: topology.Topology) -> list[tuple[str, tuple[Role, ...]]]:
        return [(str(h.address), t.roles(h.name)) for h in t.hosts]

    assert shape(by_ip) == shape(by_name)
    assert by_ip.lb_kind == by_name.lb_kind
    assert by_ip.apiserver_endpoint == by_name.apiserver_endpoint
    assert by_ip.settings == by_name.settings
    # kubeadm-ha's examples set skip_verify_node (honoured: the resource check runs): no warning at all.
    assert [w.field for w in by_ip.warnings] == [w.field for w in by_name.warnings] == []
    assert [h.name for h in by_name.hosts] == [f"node{i}" for i in range(1, len(by_name.hosts) + 1)]
    assert [h.name for h in by_ip.hosts] == [str(h.address) for h in by_ip.hosts]


def test_m_master_has_a_vip_held_by_two_haproxy_lb_nodes() -> None:
    t = topology.load(catalog.get("m-master").inventory_hostname)
    assert t.lb_kind is LBKind.VIP
    assert t.settings.lb_mode is LBMode.HAPROXY
    assert [h.name for h in t.lb] == ["node1", "node2"]
    assert len(t.masters) == 3 and len(t.etcd) == 3
    assert t.vip not in {h.address for h in t.hosts}
    assert str(t.apiserver_endpoint) == f"{t.vip}:8443"


def test_allinone_is_one_node_with_a_node_local_lb() -> None:
    t = topology.load(catalog.get("allinone").inventory)
    assert len(t.hosts) == 1
    assert set(t.roles(t.hosts[0].name)) == {Role.ETCD, Role.MASTER, Role.WORKER}
    assert t.lb_kind is LBKind.LOCAL
    assert str(t.apiserver_endpoint) == "127.0.0.1:8443"


# -- parsing exactly as users write it ------------------------------------------------------------


def test_host_lines_quotes_ports_users_and_auth(tmp_path: Path) -> None:
    t = topology.load(write(tmp_path, BASE))
    n1, n2, n3 = t.host("node1"), t.host("node2"), t.host("node3")
    assert n1.password == "secret pass" and n1.user == "root" and n1.port == 22
    assert n2.port == 2222 and n2.user == "admin" and n2.key_file == "/keys/id" and n2.password is None
    assert n3.user == "root" and n3.port == 22
    assert n1.address == ipaddress.IPv4Address("10.0.0.11")
    assert t.operation is Operation.INSTALL


def test_settings_are_typed_with_defaults(tmp_path: Path) -> None:
    t = topology.load(write(tmp_path, BASE))
    s = t.settings
    assert s.kube_version == KubeVersion(1, 20, 2)
    assert s.lb_kube_apiserver_port == 8443
    assert s.kube_network_node_prefix == 24 and s.kube_max_pods == 110
    assert s.network_plugin is NetworkPlugin.CALICO  # kubeadm-ha's default when unset
    assert s.etcd_data_dir == "/var/lib/etcd"
    assert s.kube_certs_expired == 365 and s.kube_ca_certs_expired == 3650


def test_unknown_variables_are_kept_and_listed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    p = write(tmp_path, with_real_key(tmp_path, BASE) + 'lb_kube_apiserver_Ip="10.0.0.99"\nmy_custom_knob=1  ; note\n')
    t = topology.load(p)
    assert t.unknown_vars["my_custom_knob"].text == "1"
    assert "lb_kube_apiserver_Ip" in t.unknown_vars
    line = line_of(p.read_text(), "lb_kube_apiserver_Ip=")
    assert any("lb_kube_apiserver_Ip" in str(w) and f":{line}:" in str(w) for w in t.warnings)
    assert cli.main(["inventory", "check", str(p)]) == 0
    out, err = capsys.readouterr()
    assert "unknown variables (kept, unused): lb_kube_apiserver_Ip, my_custom_knob" in out
    assert f"{p}:{line}: warning: lb_kube_apiserver_Ip: unknown variable" in err


def test_version_forms_and_lists(tmp_path: Path) -> None:
    text = BASE.replace('kube_version="1.20.2"', 'kube_version="v1.29.x"') + (
        'kube_master_external_ip=["203.0.113.7", "203.0.113.8"]\nkube_master_external_domain="api.example.com"\n'
    )
    t = topology.load(write(tmp_path, text))
    assert t.settings.kube_version == KubeVersion(1, 29, None)
    assert t.settings.kube_version.at_least(1, 29)
    assert t.settings.kube_master_external_ip == ("203.0.113.7", "203.0.113.8")
    assert t.settings.kube_master_external_domain == ("api.example.com",)


def test_empty_lb_and_no_vip_means_node_local(tmp_path: Path) -> None:
    text = BASE.replace("[lb]\nnode1\nnode2\n", "[lb]\n").replace('lb_kube_apiserver_ip="10.0.0.10"\n', "")
    t = topology.load(write(tmp_path, text))
    assert t.lb_kind is LBKind.LOCAL and t.vip is None


def test_remove_run_is_not_blocked_by_fresh_install_rules(tmp_path: Path) -> None:
    # After a failed etcd member, the user removes node3: etcd ends up even, that is fine for a remove run.
    text = BASE.replace("[del-etcd]\n", "[del-etcd]\nnode3\n")
    t = topology.load(write(tmp_path, text))
    assert t.operation is Operation.REMOVE
    # The same inventory with four etcd members would be refused for an install.
    four = BASE.replace("[etcd]\nnode1\nnode2\nnode3\n", "[etcd]\nnode1\nnode2\nnode3\nnode4\n")
    with pytest.raises(InventoryError):
        topology.load(write(tmp_path, four, "four.ini"))
    topology.load(write(tmp_path, four.replace("[del-etcd]\n", "[del-etcd]\nnode4\n"), "four-del.ini"))


# -- bad inventories: each is refused with FILE:LINE and what to change ---------------------------

BAD: list[tuple[str, str, str, str]] = [
    # (id, replace-this, with-this, expected message fragment); line = first line of with-this's marker
    ("even-etcd", "[etcd]\nnode1\nnode2\nnode3\n", "[etcd]\nnode1\nnode2\n", "odd number"),
    ("undefined-member", "[kube-worker]\nnode4\n", "[kube-worker]\nnode4\nnode9\n", "node9, which is not defined"),
    ("dup-host", "node4 ansible_host=10.0.0.14\n", "node4 ansible_host=10.0.0.14\nnode4 ansible_host=10.0.0.15\n",
     "defined twice"),
    ("dup-address", "node4 ansible_host=10.0.0.14\n", "node4 ansible_host=10.0.0.13\n", "also used by node3"),
    ("bad-ip", "node4 ansible_host=10.0.0.14\n", "node4 ansible_host=10.0.0.300\n", "not an IPv4 address"),
    ("hostname-not-ip", "node4 ansible_host=10.0.0.14\n", "node4 ansible_host=node4.example\n",
     "add ansible_host=<ip>"),
    ("bad-port", "ansible_port=2222", "ansible_port=70000", "outside 1..65535"),
    ("uppercase-name", "node4 ansible_host=10.0.0.14\n\n", "Node4 ansible_host=10.0.0.14\n\n", "lowercase RFC 1123"),
    ("underscore-name", "node4 ansible_host=10.0.0.14\n\n", "node_4 ansible_host=10.0.0.14\n\n", "lowercase RFC 1123"),
    ("no-master", "[kube-master]\nnode1\nnode2\nnode3\n", "[kube-master]\n", "at least one master"),
    ("vip-is-node", 'lb_kube_apiserver_ip="10.0.0.10"', 'lb_kube_apiserver_ip="10.0.0.12"', "address of node2"),
    ("vip-bad", 'lb_kube_apiserver_ip="10.0.0.10"', 'lb_kube_apiserver_ip="10.0.0"', "not an IPv4 address"),
    ("vip-other-net", 'lb_kube_apiserver_ip="10.0.0.10"', 'lb_kube_apiserver_ip="10.9.0.10"',
     "not in the nodes' network"),
    ("vip-without-lb", "[lb]\nnode1\nnode2\n", "[lb]\n", "needs at least one node in [lb]"),
    ("lb-without-vip", 'lb_kube_apiserver_ip="10.0.0.10"\n', "", "lb_kube_apiserver_ip is not set"),
    ("pod-svc-overlap", 'kube_service_subnet="10.244.64.0/18"', 'kube_service_subnet="10.244.32.0/19"',
     "overlaps kube_pod_subnet"),
    ("pod-has-nodes", 'kube_pod_subnet="10.244.0.0/18"', 'kube_pod_subnet="10.0.0.0/16"', "contains node addresses"),
    ("svc-has-nodes", 'kube_service_subnet="10.244.64.0/18"', 'kube_service_subnet="10.0.0.0/24"',
     "contains node addresses"),
    ("svc-too-big", 'kube_service_subnet="10.244.64.0/18"', 'kube_service_subnet="172.0.0.0/8"', "larger than /12"),
    ("bad-cidr", 'kube_pod_subnet="10.244.0.0/18"', 'kube_pod_subnet="10.244.0.1/18"', "CIDR"),
    ("unknown-group", "[kube-worker]\n", "[kube-workers]\n", "did you mean [kube-worker]"),
    ("group-vars", "[all:vars]\n", "[etcd:vars]\nx=1\n[all:vars]\n", "not supported"),
    ("vars-twice", 'lb_mode="haproxy"\n', 'lb_mode="haproxy"\nlb_mode="nginx"\n', "set twice"),
    ("bad-lb-mode", 'lb_mode="haproxy"', 'lb_mode="traefik"', "not one of nginx, haproxy, slb"),
    ("envoy-refused", 'lb_mode="haproxy"', 'lb_mode="envoy"', "envoy is refused: kha installs nginx or haproxy"),
    ("bad-bool", "skip_verify_node=false", "skip_verify_node=maybe", "not a boolean"),
    ("bad-version", 'kube_version="1.20.2"', 'kube_version="latest"', "not a Kubernetes version"),
    ("old-version", 'kube_version="1.20.2"', 'kube_version="1.18.3"', "not supported"),
    ("docker-new-k8s", 'kube_version="1.20.2"', 'kube_version="1.27.16"\ncontainer_manager="docker"', "dockershim"),
    ("apiserver-port", 'lb_kube_apiserver_port="8443"', 'lb_kube_apiserver_port="6443"', "clashes with kube-apiserver"),
    ("two-new-etcd", "[new-etcd]\n", "[new-etcd]\nnode4\nnode3\n", "one at a time"),
    ("add-and-remove", "[new-master]\n\n[new-worker]\n\n[new-etcd]\n\n[del-worker]\n",
     "[new-master]\nnode4\n\n[new-worker]\n\n[new-etcd]\n\n[del-worker]\nnode4\n", "separate runs"),
    ("member-with-vars", "[kube-worker]\nnode4\n", "[kube-worker]\nnode4 ansible_port=22\n", "move"),
    ("max-pods", 'kube_service_subnet="10.244.64.0/18"\n',
     'kube_service_subnet="10.244.64.0/18"\nkube_network_node_prefix="26"\n', "kube_max_pods 110 does not fit"),
    ("relative-path", 'lb_mode="haproxy"\n', 'lb_mode="haproxy"\netcd_data_dir="var/lib/etcd"\n', "absolute path"),
    ("bad-token", 'lb_mode="haproxy"\n', 'lb_mode="haproxy"\nkubeadm_token="abcdef.0123"\n', "bootstrap token"),
    ("host-range", "node4 ansible_host=10.0.0.14\n", "node[4:5] ansible_host=10.0.0.14\n", "ranges"),
    ("del-not-master", "[del-master]\n", "[del-master]\nnode4\n", "not in [kube-master]"),
    ("unclosed-quote", 'lb_mode="haproxy"', 'lb_mode="haproxy', "quotes"),
]


@pytest.mark.parametrize(("old", "new", "fragment"), [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_inventory_is_refused_with_file_and_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], old: str, new: str, fragment: str
) -> None:
    assert old in BASE, old
    text = BASE.replace(old, new, 1)
    path = write(tmp_path, text)
    with pytest.raises(InventoryError) as info:
        topology.load(path)
    hits = [p for p in info.value.problems if fragment in p.message]
    assert hits, f"no problem mentions {fragment!r}: {info.value}"
    for p in hits:
        assert p.file == str(path)
        assert p.line is not None, f"problem without a line: {p}"
        assert 1 <= p.line <= len(text.splitlines())
        assert str(p).startswith(f"{path}:{p.line}: ")
    # And the CLI prints it the same way and exits 2.
    assert cli.main(["inventory", "check", str(path)]) == cli.EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert f"{path}:{hits[0].line}: " in err and fragment in err


def test_problems_point_at_the_right_line(tmp_path: Path) -> None:
    text = BASE.replace('lb_kube_apiserver_ip="10.0.0.10"', 'lb_kube_apiserver_ip="10.0.0.12"')
    with pytest.raises(InventoryError) as info:
        topology.load(write(tmp_path, text))
    (p,) = [p for p in info.value.problems if "address of node2" in p.message]
    assert p.line == line_of(text, "lb_kube_apiserver_ip=")
    assert p.field == "lb_kube_apiserver_ip"


def test_every_problem_is_reported_not_just_the_first(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = (
        BASE.replace("[etcd]\nnode1\nnode2\nnode3\n", "[etcd]\nnode1\nnode2\n")
        .replace('lb_mode="haproxy"', 'lb_mode="envoy"')
        .replace("[kube-worker]\nnode4\n", "[kube-worker]\nnode9\n")
    )
    path = write(tmp_path, text)
    assert cli.main(["inventory", "check", str(path)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) >= 3
    assert any("odd number" in e for e in err)
    assert any("envoy" in e for e in err)
    assert any("node9" in e for e in err)
    assert all(e.startswith(f"{path}:") for e in err)


def test_missing_file_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["inventory", "check", str(tmp_path / "nope.ini")]) == 2
    assert "no such inventory file" in capsys.readouterr().err


def test_check_prints_the_resolved_topology(capsys: pytest.CaptureFixture[str]) -> None:
    path = catalog.get("m-master").inventory_hostname
    assert cli.main(["inventory", "check", str(path)]) == 0
    out = capsys.readouterr().out
    assert "node1  10.56.56.11" in out and "lb, etcd, kube-master" in out
    assert "node4  10.56.56.14" in out and "kube-worker" in out
    assert "haproxy + keepalived, VIP 10.56.56.10 on [node1, node2] (MASTER node1)" in out
    assert "apiserver endpoint: https://10.56.56.10:8443" in out
    assert "etcd members: node1=https://10.56.56.11:2380, node2=https://10.56.56.12:2380" in out


def test_help_lists_commands(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        cli.main(["--help"])
    assert info.value.code == 0
    assert "inventory" in capsys.readouterr().out


def test_the_ssh_password_never_shows(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = with_real_key(tmp_path, BASE).replace(
        "node3 ansible_host=10.0.0.13", "node3 ansible_host=10.0.0.13 ansible_become_pass=sudo-secret")
    p = write(tmp_path, text)
    t = topology.load(p)
    assert t.host("node1").password == "secret pass"
    assert "secret pass" not in repr(t) and "sudo-secret" not in repr(t)
    assert cli.main(["inventory", "check", str(p)]) == 0
    out, err = capsys.readouterr()
    assert "secret" not in out + err and "(password)" in out


def test_lb_keepalived_interface_is_the_interface_install_uses(tmp_path: Path) -> None:
    """Render shows lb_keepalived_interface; install must put the same on the node, not what it read there."""
    inv = write(tmp_path, with_real_key(tmp_path, BASE) + 'lb_keepalived_interface="bond0.12"\n')
    ctx = open_context(InstallContext, inv, state=tmp_path / "state", known_hosts=tmp_path / "kh", write_secrets=False)
    ctx.connector = lambda host: LocalTransport(host.name)  # type: ignore[assignment,misc]
    assert ctx.node_facts(ctx.topo.host("node1")).interface == "bond0.12"
    assert not (tmp_path / "state").exists()
