"""Renewed certificates reach the running nodes (issue 13, flow 5), with short-lived certificates instead of
a moved clock (the kubeadm maintainers' advice).

On the installed m-master (reverted first), on a copy of its state folder: ``kha pki renew --valid-for 15m``
re-issues every leaf, then ``kha pki rollout`` carries them onto the nodes while the clients record:
etcd members restarted one at a time, then each control plane's apiserver, controller-manager and
scheduler. Afterwards every port (6443, 2379, 2380) serves the store's new certificate, valid 15 minutes,
and ``kha pki check --nodes`` agrees; a second rollout restarts nothing; a renewal not rolled out is what
``kha pki check --nodes`` reports. The promises: the API through the VIP stays up within the rolling-restart
bound, 0 acknowledged writes lost, exactly one VIP holder, etcd's hashes equal.
"""

from __future__ import annotations

import datetime as dt
import shutil
import time
from pathlib import Path

import pytest
from cryptography import x509
from flows import Measured, kha, promises

from installer.checks import verdicts
from installer.etcd import render as etcd_render
from installer.kubernetes import staticpods
from installer.pki.store import NODES_DIR
from installer.topology import Host
from scenarios.failover import run
from scenarios.installed import Installed

pytestmark = pytest.mark.failover


#: the clients may run this long: three etcd restarts and three control planes' three static pods each
SPAN_S = 900.0
SHORT = dt.timedelta(minutes=15)


def ports(inst: Installed, h: Host) -> dict[int, str]:
    """The TLS ports a node serves from the store, and the store's leaf for each."""
    out = {}
    if h in inst.topo.masters:
        out[inst.topo.apiserver_port] = "apiserver"
    if h in inst.topo.etcd:
        out[etcd_render.CLIENT_PORT] = "etcd/server"
        out[etcd_render.PEER_PORT] = "etcd/peer"
    return out


def served(inst: Installed, h: Host, port: int) -> x509.Certificate:
    res = inst.run(h, ["openssl", "s_client", "-connect", f"{h.address}:{port}", "-showcerts"], check=False,
                   timeout=20)
    chain = verdicts.served_chain(res.stdout.encode())
    assert chain, f"{h.name}:{port} served no certificate: {res.stderr[-300:]}"
    return chain[0]


def in_store(state: Path, h: Host, leaf: str) -> x509.Certificate:
    return x509.load_pem_x509_certificate((state / "pki" / NODES_DIR / h.name / "pki" / f"{leaf}.crt").read_bytes())


def serving(inst: Installed) -> dict[tuple[str, int], str]:
    return {(h.name, port): verdicts.fingerprint(served(inst, h, port))
            for h in inst.topo.hosts for port in ports(inst, h)}


def processes(inst: Installed) -> dict[str, list[int]]:
    """Per node: the etcd main PID and each control-plane process's PID."""
    out: dict[str, list[int]] = {}
    for h in inst.topo.hosts:
        pids = []
        if h in inst.topo.etcd:
            pids.append(int(inst.run(h, ["systemctl", "show", "-p", "MainPID", "--value", "etcd"]).stdout))
        if h in inst.topo.masters:
            for pod in staticpods.CONTROL_PLANE:
                found = staticpods.processes(inst.node(h), pod)
                assert len(found) == 1, f"{h.name}: {len(found)} {pod.name} processes"
                pids.append(found[0][0])
        out[h.name] = pids
    return out


def test_renewed_certificates_reach_every_node_without_an_outage(
    kubernetes_m_master: Installed, tmp_path: Path, measured: Measured, capsys: pytest.CaptureFixture[str]
) -> None:
    inst = kubernetes_m_master
    run.fresh(inst, "pki-rollout")
    # A copy of the state folder: the installed snapshot keeps matching the original store for the cases after.
    state = tmp_path / "state"
    shutil.copytree(inst.state, state)
    args = inst.cli_args(state=state)
    before = serving(inst)

    rc, out = kha(capsys, "pki", "renew", "--dir", str(state / "pki"), "--valid-for", "15m")
    assert rc == 0, out
    rc, out = kha(capsys, "pki", "rollout", *args, "--dry-run")
    assert rc == 0, out
    assert "would restart etcd" in out and "would restart kube-apiserver" in out, out
    assert serving(inst) == before, "the dry run changed what a node serves"

    pids = processes(inst)
    rolled = run.record(inst, SPAN_S, lambda: kha(capsys, "pki", "rollout", *args))
    promises(inst, rolled, "pki rollout (every leaf)", measured)

    # Every etcd member and every control-plane component was restarted (the client certificates they
    # present, such as the apiserver's to etcd and to the kubelets, are read only at start) ...
    after = processes(inst)
    assert all(set(after[n]).isdisjoint(pids[n]) for n in pids), (pids, after)
    # ... and every port serves the store's renewed certificate, valid the 15 minutes asked for.
    for h in inst.topo.hosts:
        for port, leaf in ports(inst, h).items():
            got, want = served(inst, h, port), in_store(state, h, leaf)
            assert got.serial_number == want.serial_number, f"{h.name}:{port} serves another certificate than {leaf}"
            assert got.not_valid_after_utc - got.not_valid_before_utc <= SHORT + dt.timedelta(minutes=5), h.name
            assert (h.name, port) not in before or before[(h.name, port)] != verdicts.fingerprint(got)
    rc, out = kha(capsys, "pki", "check", "--nodes", *args, "--warn-days", "0")
    assert rc == 0, out

    # A second rollout restarts nothing.
    pids = after
    started = time.monotonic()
    rc, out = kha(capsys, "pki", "rollout", *args)
    assert rc == 0, out
    assert processes(inst) == pids, "a second `kha pki rollout` restarted something"
    measured(f"second pki rollout: {time.monotonic() - started:.1f}s, nothing restarted")

    # A renewal not rolled out yet: the store and the nodes differ, and the node check says where.
    rc, out = kha(capsys, "pki", "renew", "--dir", str(state / "pki"), "apiserver")
    assert rc == 0, out
    rc, out = kha(capsys, "pki", "check", "--nodes", *args, "--warn-days", "0")
    assert rc == 1, out
    first = inst.topo.masters[0]
    assert "pki/served" in out and first.name in out and f"{inst.topo.apiserver_port} (kube-apiserver)" in out, out
