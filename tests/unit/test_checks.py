"""``kha check`` without a cluster: the catalogue and its order, ``--only``, bad input (exit 2, the flag or file
named, no traceback), the testinfra backend on kha's transport, every verdict the checks reach from what a
node printed, and the whole pytest run against nodes that do not answer (every check red, naming why)."""

from __future__ import annotations

import datetime as dt
import socket
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509

from installer import topology
from installer.checks import GROUPS, backend, verdicts
from installer.checks import run as checks
from installer.checks.plugin import check_name, evidence, selected
from installer.checks.target import CheckFailed, Options
from installer.etcd import ctl
from installer.loadbalancer import render as lb_render
from installer.pki import crypto
from installer.pki.table import SANs
from installer.remote import LocalTransport
from installer.secrets import ClusterSecrets
from installer.settings import KeyType
from kha import cli

ROOT = Path(__file__).resolve().parents[2]
NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
CHECKS = ROOT / "installer" / "checks"
M_MASTER = ROOT / "scenarios/inventories/hosts.m-master.ip.ini"


# -- catalogue, names, --only ----------------------------------------------------------------------
def test_every_check_module_is_a_group_and_runs_in_order() -> None:
    assert {p.stem.removeprefix("test_") for p in CHECKS.glob("test_*.py")} == set(GROUPS)
    names = checks.catalogue()
    assert len(names) == len(set(names))
    groups = [n.split("/")[0] for n in names]
    assert groups == sorted(groups, key=GROUPS.index)
    assert names[0] == "node/time" and names[-1] == "pki/files"
    assert {"etcd/hashkv", "loadbalancer/vip", "loadbalancer/keepalived", "apiserver/readyz",
            "kubernetes/nodes", "kubernetes/system-pods", "pki/served"} <= set(names)


def test_names_and_selection() -> None:
    assert check_name("installer.checks.test_kubernetes", "test_system_pods") == "kubernetes/system-pods"
    assert selected("etcd/members", ())
    assert selected("etcd/members", ("etcd",)) and selected("etcd/members", ("etcd/",))
    assert selected("etcd/members", ("pki", "etcd/members"))
    assert not selected("etcd/members", ("etcd/member",)) and not selected("etcd/members", ("et",))


def test_evidence_is_the_checks_own_words() -> None:
    assert evidence(CheckFailed("node2: haproxy is not running")) == "node2: haproxy is not running"
    assert evidence(KeyError("x")) == "KeyError: 'x'"


# -- bad input: exit 2, named, before any connection -----------------------------------------------
@pytest.fixture
def cluster_files(tmp_path: Path) -> Path:
    """The allinone inventory with a built PKI store and an empty known_hosts beside it."""
    inv = tmp_path / "hosts.ini"
    inv.write_text((ROOT / "scenarios/inventories/hosts.allinone.ip.ini").read_text())
    assert cli.main(["pki", "init", "-i", str(inv), "--dir", str(tmp_path / "hosts.kha" / "pki")]) == 0
    (tmp_path / "hosts.kha" / "known_hosts").write_text("")
    return inv


@pytest.mark.parametrize(("args", "said"), [
    (["--only", "etcd/nope"], "--only etcd/nope: no such check; the checks are: node/time"),
    (["--warn-days", "-1"], "--warn-days -1: must be 0 or more days"),
    (["--timeout", "-3"], "--timeout -3: must be 0"),
    (["--state", "{tmp}/empty"], "no PKI store there"),
    (["--known-hosts", "{tmp}/absent"], "--known-hosts"),
    (["--ssh-config", "{tmp}/absent"], "--ssh-config"),
    (["--junitxml", "{tmp}"], "--junitxml"),
])
def test_bad_input_is_exit_2_naming_the_flag(cluster_files: Path, capsys: pytest.CaptureFixture[str],
                                            args: list[str], said: str) -> None:
    tmp = cluster_files.parent
    (tmp / "empty").mkdir()
    code = cli.main(["check", "-i", str(cluster_files), *(a.format(tmp=tmp) for a in args)])
    err = capsys.readouterr().err
    assert code == 2, err
    assert said in err and "Traceback" not in err


def test_a_bad_inventory_or_none_is_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["check", "-i", str(tmp_path / "nope.ini")]) == 2
    assert "nope.ini" in capsys.readouterr().err
    assert cli.main(["check"]) == 2
    assert "-i INVENTORY" in capsys.readouterr().err


def test_no_known_hosts_beside_the_store_is_exit_2(cluster_files: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (cluster_files.parent / "hosts.kha" / "known_hosts").unlink()
    assert cli.main(["check", "-i", str(cluster_files)]) == 2
    assert "no known_hosts there" in capsys.readouterr().err


def test_list_prints_the_catalogue(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["check", "--list"]) == 0
    assert capsys.readouterr().out.split() == checks.catalogue()


# -- the whole run through pytest, against a node that does not answer -----------------------------
def _unanswered(inv: Path) -> str:
    """An ssh_config sending the inventory's node to a port on 127.0.0.1 where nothing listens."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])  # closed again when the block ends
    config = inv.parent / "ssh_config"
    config.write_text(f"Host 10.56.56.11\n    HostName 127.0.0.1\n    Port {port}\n")
    return str(config)


def _kha_check(*args: str) -> subprocess.CompletedProcess[str]:
    # A process of its own: kha check runs pytest in-process, and this is a pytest run already.
    return subprocess.run([sys.executable, "-m", "kha", "check", *args], capture_output=True, text=True,
                          timeout=120, check=False)


def _lines(out: str) -> list[str]:
    return [ln for ln in out.splitlines() if ln[:2] in ("✓ ", "✗ ", "- ")]


def test_every_check_goes_red_naming_the_node_when_it_cannot_log_in(cluster_files: Path) -> None:
    junit = cluster_files.parent / "checks.xml"
    proc = _kha_check("-i", str(cluster_files), "--ssh-config", _unanswered(cluster_files), "--timeout", "0",
                      "--junitxml", str(junit))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    lines = _lines(proc.stdout)
    assert [ln.split()[1] for ln in lines] == checks.catalogue()
    # allinone has no VIP: those two are skipped, saying why; every other check is red.
    assert [ln for ln in lines if ln.startswith("- ")] == [
        "- loadbalancer/vip (skipped: no VIP: local load balancer)",
        "- loadbalancer/keepalived (skipped: no VIP: local load balancer)"]
    assert all(ln.startswith("✗ ") for ln in lines if not ln.startswith("- "))
    assert "10.56.56.11: cannot connect to root@127.0.0.1:" in proc.stdout
    assert "Traceback" not in proc.stdout + proc.stderr
    assert f"{len(checks.catalogue()) - 2} of {len(checks.catalogue())} checks failed" in proc.stderr
    cases = list(ET.parse(junit).getroot().iter("testcase"))
    assert len(cases) == len(checks.catalogue())
    assert sum(c.find("failure") is not None for c in cases) == len(cases) - 2
    # The evidence a user read under each ✗ is in the XML too, as a property of its test case.
    props = [{p.get("name"): p.get("value", "") for p in c.iter("property")} for c in cases]
    assert all("10.56.56.11: cannot connect" in p["evidence"] for p in props if "evidence" in p)
    assert sum("evidence" in p for p in props) == len(cases) - 2


def test_only_runs_the_named_checks_in_order(cluster_files: Path) -> None:
    proc = _kha_check("-i", str(cluster_files), "--ssh-config", _unanswered(cluster_files), "--timeout", "0",
                      "--only", "pki/files,etcd")
    assert [ln.split()[1] for ln in _lines(proc.stdout)] == ["etcd/health", "etcd/members", "etcd/hashkv",
                                                            "etcd/backup", "pki/files"], proc.stdout


# -- testinfra on kha's transport ------------------------------------------------------------------
def test_testinfra_modules_run_over_a_kha_transport(tmp_path: Path) -> None:
    host = backend.host(LocalTransport())
    f = tmp_path / "it's a file"
    f.write_text("x")
    f.chmod(0o640)
    assert host.file(str(f)).exists and host.file(str(f)).mode == 0o640
    # testinfra quotes its own arguments into the line; the transport carries the line as one argv word.
    assert host.run("printf %s", "a b'c").stdout == "a b'c"
    assert host.run("exit 3").rc == 3
    assert isinstance(host.sysctl("kernel.pid_max"), int)


# -- verdicts --------------------------------------------------------------------------------------
TRACKING = "A29FC87B,162.159.200.123,3,1700000000.1,{offset},0.000001,0.0002,-12.3,0.001,0.05,0.01,0.001,64.2,Normal"


def test_time() -> None:
    synced = verdicts.Clock(chronyd=True, tracking=TRACKING.format(offset="0.000123"))
    assert verdicts.time_verdict(synced, chrony_enabled=True, sync_problem=None) == (
        None, "chrony offset +0.000123s stratum 3")
    off = verdicts.Clock(chronyd=True, tracking=TRACKING.format(offset="-0.9"))
    assert "more than 0.5s off" in str(verdicts.time_verdict(off, chrony_enabled=False, sync_problem=None)[0])
    assert verdicts.time_verdict(synced, chrony_enabled=True, sync_problem="not synchronised")[0] == (
        "chrony: not synchronised")
    # Not kha's chrony (chrony_enabled=false): the node's own, never synchronised (a VM with no reachable
    # source): still red, saying what to do.
    said = str(verdicts.time_verdict(synced, chrony_enabled=False, sync_problem="not synchronised")[0])
    assert said.startswith("chrony: not synchronised (chrony_enabled=false: ") and "set chrony_enabled=true" in said
    stopped = verdicts.Clock(chronyd=False, container=True)
    assert verdicts.time_verdict(stopped, chrony_enabled=True, sync_problem=None)[0] == (
        "chrony_enabled=true but chronyd is not running")
    assert verdicts.time_verdict(stopped, chrony_enabled=False, sync_problem=None) == (
        None, "no time service (a container: its host's clock)")
    unsynced = verdicts.Clock(chronyd=False, timesyncd=True, ntp_synchronized="no")
    assert verdicts.time_verdict(unsynced, chrony_enabled=False, sync_problem=None)[0] == (
        "systemd-timesyncd runs but NTPSynchronized=no")
    bare = verdicts.Clock(chronyd=False)
    assert "no time service runs" in str(verdicts.time_verdict(bare, chrony_enabled=False, sync_problem=None)[0])


def test_swap() -> None:
    header = "Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n"
    assert verdicts.active_swap(header) == []
    assert verdicts.active_swap(header + "/swapfile  file  1048572  0  -2\n") == ["/swapfile file 1048572"]


def test_etcd_verdicts() -> None:
    hosts = list(topology.load(M_MASTER).etcd)
    urls = ctl.client_urls(hosts)
    health = [ctl.EndpointHealth(urls[0], True), ctl.EndpointHealth(urls[1], False, "context deadline exceeded")]
    assert verdicts.health_problem(health, urls) == f"{urls[1]}: context deadline exceeded; {urls[2]}: no answer"
    members = [ctl.MemberInfo(i, h.name, (ctl.member_of(h).peer_url,), (u,))
               for i, (h, u) in enumerate(zip(hosts, urls, strict=True), 1)]
    assert verdicts.members_problem(members, hosts) is None
    stranger = ctl.MemberInfo(9, "old", ("https://10.9.9.9:2380",), ())
    learner = ctl.MemberInfo(3, hosts[2].name, (ctl.member_of(hosts[2]).peer_url,), (), is_learner=True)
    assert verdicts.members_problem([*members[:2], learner, stranger], hosts) == (
        f"{hosts[2].name} is still a learner; members the inventory does not name: old https://10.9.9.9:2380")
    assert verdicts.members_problem(members[:2], hosts) == (
        f"{hosts[2].name} ({ctl.member_of(hosts[2]).peer_url}) is not a member")
    assert verdicts.hashkv_problem({u: (7, 100) for u in urls}, urls) is None
    assert "members differ" in str(verdicts.hashkv_problem({**{u: (7, 100) for u in urls}, urls[0]: (8, 100)}, urls))
    assert verdicts.hashkv_problem({urls[0]: (7, 100)}, urls) == f"no hash from {urls[1]}, {urls[2]}"


def test_load_balancer_verdicts() -> None:
    assert verdicts.backends_problem({"node1": True, "node2": True}, ["node2", "node1"]) is None
    assert verdicts.backends_problem({"node1": True, "node2": False}, ["node1", "node2"]) == "DOWN: node2 (UP: node1)"
    assert verdicts.backends_problem({"node1": True}, ["node1", "node2"]) == (
        "servers ['node1'], expected the masters ['node1', 'node2']")
    assert verdicts.vip_problem(["node1"], "10.0.0.1") is None
    assert verdicts.vip_problem([], "10.0.0.1") == "VIP 10.0.0.1 on no node"
    assert verdicts.vip_problem(["a", "b"], "10.0.0.1") == "VIP 10.0.0.1 on a, b: more than one node"


def test_nginx_upstreams_read_the_config_kha_renders(tmp_path: Path) -> None:
    inv = tmp_path / "hosts.ini"
    text = "\n".join(ln for ln in M_MASTER.read_text().splitlines() if not ln.startswith("lb_mode="))
    inv.write_text(text + '\nlb_mode="nginx"\n')
    topo = topology.load(inv)
    [conf] = [f for f in lb_render.files(topo, topo.lb[0], ClusterSecrets.generate())
              if f.path == lb_render.NGINX_CONF]
    assert conf.content is not None
    assert sorted(verdicts.nginx_upstreams(conf.content.decode())) == sorted(
        f"{m.address}:{topo.apiserver_port}" for m in topo.masters)


def _node(name: str, ready: str = "True", version: str = "v1.20.2", cidr: str | None = "10.244.0.0/24") -> Any:
    return {"metadata": {"name": name}, "spec": {"podCIDR": cidr} if cidr else {},
            "status": {"conditions": [{"type": "Ready", "status": ready, "message": "kubelet says"}],
                       "nodeInfo": {"kubeletVersion": version}}}


def _pod(name: str, node: str, phase: str = "Running", ready: bool = True) -> Any:
    return {"metadata": {"name": name}, "spec": {"nodeName": node},
            "status": {"phase": phase, "containerStatuses": [{"name": "c", "ready": ready}]}}


def test_kubernetes_verdicts() -> None:
    assert verdicts.nodes_problem([_node("a"), _node("b")], ["a", "b"], "v1.20.2") is None
    assert verdicts.nodes_problem([_node("a", ready="False"), _node("c")], ["a", "b"], "v1.20.2") == (
        "not registered: b; nodes the inventory does not name: c; a: Ready=False (kubelet says)")
    assert verdicts.nodes_problem([_node("a", version="v1.19.0", cidr=None)], ["a"], "v1.20.2") == (
        "a: no pod range (spec.podCIDR): the controller-manager allocates none; a: kubelet v1.19.0, expected v1.20.2")
    pods = [_pod("kube-apiserver-a", "a"), _pod("kube-proxy-x", "a"), _pod("kube-proxy-y", "b")]
    assert verdicts.pods_problem(pods, ["kube-apiserver-a"], ["a", "b"]) is None
    assert verdicts.pods_problem([_pod("kube-apiserver-a", "a", "Pending", False), pods[1]],
                                 ["kube-apiserver-a", "kube-scheduler-a"], ["a", "b"]) == (
        "kube-apiserver-a on a: Pending, not ready: c; no pod: kube-scheduler-a; no kube-proxy pod on b")


def _ca(cn: str) -> tuple[x509.Certificate, crypto.PrivateKey]:
    key = crypto.new_key(KeyType.ECDSA)
    return crypto.self_signed_ca(key, cn, 3650, NOW - dt.timedelta(days=1)), key


def _leaf(ca: tuple[x509.Certificate, crypto.PrivateKey], days: int) -> x509.Certificate:
    return crypto.issue(ca[0], ca[1], crypto.new_key(KeyType.ECDSA), cn="kube-apiserver", organization=(),
                        usages=[x509.oid.ExtendedKeyUsageOID.SERVER_AUTH], sans=SANs.of("node1"),
                        valid_for=dt.timedelta(days=days), now=NOW - dt.timedelta(days=1))


def test_served_certificates() -> None:
    ca, other = _ca("kubernetes"), _ca("another")
    leaf = _leaf(ca, 365)
    chain = verdicts.served_chain(b"CONNECTED\n" + crypto.cert_pem(leaf) + b"---\n" + crypto.cert_pem(ca[0]))
    assert [c.subject for c in chain] == [leaf.subject, ca[0].subject]
    assert verdicts.served_problem(chain, ca=ca[0], store_leaf=leaf, now=NOW, warn_days=30)[0] is None
    said = verdicts.served_problem(chain, ca=other[0], store_leaf=leaf, now=NOW, warn_days=30)[0]
    assert said is not None and "is not issued by the store's CA CN=another" in said
    said = verdicts.served_problem(chain, ca=ca[0], store_leaf=_leaf(ca, 365), now=NOW, warn_days=30)[0]
    assert said is not None and "not the store's" in said and "restart it" in said
    short = _leaf(ca, 10)
    said = verdicts.served_problem([short], ca=ca[0], store_leaf=None, now=NOW, warn_days=30)[0]
    assert said is not None and "expires 2026-01-10 (9 days left, --warn-days 30)" in said
    assert verdicts.served_problem([short], ca=None, store_leaf=None, now=NOW, warn_days=5)[0] is None
    assert verdicts.served_problem([], ca=ca[0], store_leaf=None, now=NOW, warn_days=5)[0] == "served no certificate"


def test_modes() -> None:
    assert verdicts.mode_problem("/k", True, 0o600, 0o600) is None
    assert verdicts.mode_problem("/k", True, 0o644, 0o600) == "/k has mode 0644, expected 0600"
    assert verdicts.mode_problem("/k", False, 0, 0o600) == "/k is missing"


def test_options_defaults(tmp_path: Path) -> None:
    o = Options(inventory=tmp_path / "hosts.x.ini")
    assert o.state_dir.root == tmp_path / "hosts.x.kha"
    assert o.known_hosts_file == tmp_path / "hosts.x.kha" / "known_hosts"
