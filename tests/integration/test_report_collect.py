"""``kha report collect`` on a real m-master (etcd + load balancers installed by the real installer,
``m_master_installed``): no secret reaches the report, every node gives its artefacts, and a powered-off node
costs the collection nothing but its own artefacts, each listed as missing with the reason. A fixture's install
that fails leaves a report its failure names (``install_or_fail``, what the e2e and failover fixtures use).

Canaries are planted in every place a secret lives — the state folder's secrets (``secrets.json``), the
inventory (keepalived's password, a host's ``ansible_ssh_pass``), a node's /etc/kubernetes (a PEM private key,
a kubeconfig with ``client-key-data``) and a node's journal (a join command, an ``auth_pass`` line, a private
key, a state secret in a form no pattern knows) — then every byte of the report is searched for them.
"""

from __future__ import annotations

import base64
import json
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from installer import topology
from scenarios.installed import Installed
from scenarios.report.collect import CLUSTER, collect
from scenarios.report.model import open_report
from scenarios.report.pytest_plugin import install_or_fail

pytestmark = pytest.mark.integration

TOKEN = "kanary.0123456789canary"  # a bootstrap token's shape: [a-z0-9]{6}.[a-z0-9]{16}
CERT_KEY = "ca11ab1e" * 8  # kubeadm's certificate key: 32 bytes in hex
VRRP = "cnry7vrp"  # keepalived's PASS authentication keeps 8 characters
SSH_PASS = "canarySshPass42"
ODD = "c4nary0dd5ecret"  # only the literal net knows this one (planted in the state, logged in no known form)
PLANTED_KEY = "/etc/kubernetes/pki/canary.key"
PLANTED_CONF = "/etc/kubernetes/canary.conf"


def _pem() -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


def _body(pem: str) -> str:
    return "".join(line for line in pem.splitlines() if not line.startswith("-----"))


@pytest.fixture
def canaried(etcd_lb: Installed, tmp_path: Path) -> Iterator[tuple[Installed, list[str]]]:
    """The installed m-master seen through an inventory and a state folder full of canaries, with canaries on
    its first node; the needles to search the report for."""
    inv = tmp_path / "hosts.canary.ini"
    text = etcd_lb.inventory.read_text()
    last = etcd_lb.topo.hosts[-1].name
    text = "\n".join(f"{line} ansible_ssh_pass={SSH_PASS}" if line.startswith(f"{last} ") else line
                     for line in text.splitlines())
    inv.write_text(text.replace("[all:vars]", f"[all:vars]\nlb_keepalived_password={VRRP}", 1) + "\n")
    state = tmp_path / "state"
    shutil.copytree(etcd_lb.state, state)
    (state / "secrets.json").write_text(json.dumps({"kubeadm_token": TOKEN, "vrrp_password": ODD,
                                                    "certificate_key": CERT_KEY}))
    inst = Installed(etcd_lb.cluster, topology.load(inv), inv, state, etcd_lb.bundle)
    key_pem, conf_pem = _pem(), _pem()
    node = etcd_lb.topo.hosts[0]
    conf = f"apiVersion: v1\nkind: Config\nusers:\n- name: canary\n  user:\n    client-key-data: " \
           f"{base64.b64encode(conf_pem.encode()).decode()}\n"
    with etcd_lb.connector() as connect:  # closed here: a transport left open outlives the namespace
        t = connect(node)
        t.put(key_pem.encode(), PLANTED_KEY, mode=0o600, sudo=True)
        t.put(conf.encode(), PLANTED_CONF, mode=0o600, sudo=True)
        # What components print to their logs, at a priority the warnings journal keeps.
        for message in (f"kubeadm join 10.56.56.10:8443 --token {TOKEN} --control-plane --certificate-key {CERT_KEY}",
                        f"vrrp_instance VI_1 {{ authentication {{ auth_type PASS auth_pass {VRRP} }} }}",
                        f"kubeconfig follows\n{key_pem}", f"an odd form |{ODD}|", f"login with {SSH_PASS}"):
            t.run(["logger", "-p", "user.warning", "-t", "canary", message], sudo=True)
    needles = [TOKEN, CERT_KEY, VRRP, SSH_PASS, ODD, _body(key_pem)[20:60], _body(conf_pem)[20:60],
               base64.b64encode(conf_pem.encode()).decode()[20:60]]
    try:
        yield inst, needles
    finally:
        inst.close()


def _hits(folder: Path, needles: list[str]) -> list[str]:
    found = []
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            data = path.read_bytes()
            found += [f"{path.relative_to(folder)}: {n}" for n in needles if n.encode() in data]
    return found


def _per_node(folder: Path) -> dict[str, int]:
    return {d.name: sum(1 for p in d.rglob("*") if p.is_file()) for d in sorted((folder / "nodes").iterdir())}


def test_no_secret_reaches_the_report(canaried: tuple[Installed, list[str]], tmp_path: Path) -> None:
    inst, needles = canaried
    into = tmp_path / "report"
    into.mkdir()
    got = collect(inst, into)
    assert _hits(into, needles) == []
    # The canaries did reach what was collected (or the test proves nothing): the journal holds the planted
    # lines, the listing names the planted files, the rendered configs carry the state's secrets.
    first = inst.topo.hosts[0].name
    assert "canary" in (into / "nodes" / first / "journal" / "warnings.log").read_text()
    listing = (into / "nodes" / first / "etc-kubernetes.txt").read_text()
    assert PLANTED_KEY in listing and PLANTED_CONF in listing, listing
    assert "[REDACTED]" in "".join(p.read_text() for p in (into / "config").rglob("*.conf"))
    per_node = _per_node(into)
    assert set(per_node) == {h.name for h in inst.topo.hosts}
    assert all(n >= 10 for n in per_node.values()), per_node
    assert got.artefacts >= sum(per_node.values())
    manifest = json.loads((into / "manifest.json").read_text())
    assert manifest["image"]["digest"] == inst.cluster.state.image.digest
    assert manifest["versions"]["etcd"].keys() >= {h.name for h in inst.topo.etcd}, manifest["versions"]
    assert (into / "cluster" / "etcd" / "member-list.json").is_file()
    assert len(json.loads((into / "cluster" / "vip.json").read_text())["holders"]) == 1
    assert not [m for m in got.missing if m.node != CLUSTER and "not reachable" in m.reason], got.missing


def test_a_powered_off_node_is_missing_not_fatal(etcd_lb: Installed, tmp_path: Path) -> None:
    dead = etcd_lb.topo.workers[0].name if etcd_lb.topo.workers else etcd_lb.topo.hosts[-1].name
    into = tmp_path / "report"
    into.mkdir()
    etcd_lb.cluster.power_off(dead)
    try:
        started = time.monotonic()
        got = collect(etcd_lb, into, probe_timeout=5.0)
        took = time.monotonic() - started
    finally:
        etcd_lb.cluster.power_on(dead)
        etcd_lb.wait_ready()
    gone = [m for m in got.missing if m.node == dead]
    assert len(gone) >= 10, got.missing
    assert all("not reachable" in m.reason for m in gone), gone
    listed = json.loads((into / "missing.json").read_text())
    assert {(m["node"], m["artefact"]) for m in listed} >= {(m.node, m.artefact) for m in gone}
    per_node = _per_node(into)
    assert all(n >= 10 for name, n in per_node.items() if name != dead), per_node
    # One probe timeout for the dead node, not one per artefact.
    assert took < 60, f"{took:.0f}s"


def test_a_fixtures_failed_install_leaves_a_report_its_failure_names(etcd_lb: Installed, tmp_path: Path) -> None:
    """CI once failed a cell in its install fixture and kept nothing but the runner's output: the controller-manager's
    log, which would have said why, was on a node long gone. A broken state (sa.pub that is no key) fails the pki
    phase here; the report holds the nodes as the failed install left them, the error and the runner's output."""
    state = tmp_path / "state"
    shutil.copytree(etcd_lb.state, state)
    sa_pub = next(state.rglob("sa.pub"))
    sa_pub.write_text("not a public key\n")
    inst = Installed(etcd_lb.cluster, etcd_lb.topo, etcd_lb.inventory, state, etcd_lb.bundle)
    with pytest.raises(pytest.fail.Exception) as failed:
        install_or_fail(inst, "with a broken sa.pub", reports=tmp_path / "reports", only=["pki"])
    said = str(failed.value)
    report = tmp_path / "reports" / f"install-{etcd_lb.cluster.name}.tar.gz"
    assert said.startswith("kha install with a broken sa.pub failed: "), said
    assert f"kha report: {report}\n  kha report show {report}\n--- runner output ---\n" in said, said
    opened = open_report(report, tmp_path / "unpacked")
    assert opened.origin.outcome == "failed" and opened.origin.install_only == ("pki",)
    error = (opened.folder / "install" / "error.txt").read_text()
    assert "sa.pub" in error and error.strip() in said
    assert "✗ pki" in (opened.folder / "install" / "output.txt").read_text()
    per_node = _per_node(opened.folder)
    assert set(per_node) == {h.name for h in etcd_lb.topo.hosts} and all(n >= 10 for n in per_node.values()), per_node
