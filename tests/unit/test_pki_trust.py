"""A node that trusts another CA than the state folder's store is refused before anything is written to it.

Nodes are ``LocalTransport``s rooted in tmp_path (``/etc/kubernetes/pki/…`` of node1 is
``tmp_path/nodes/node1/etc/kubernetes/pki/…``). The foreign CA comes from a second store built from the
same inventory: exactly what a lost or renamed state folder makes on the next ``kha install``.
"""

from __future__ import annotations

import io
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import pytest
import variants

from installer import install, topology
from installer.context import InstallContext
from installer.errors import PhaseError, PKIError
from installer.etcd import phases as etcd_phases
from installer.kubernetes import phases as k8s_phases
from installer.phases import Runner
from installer.pki.store import Store
from installer.remote import LocalTransport
from installer.state import StateDir
from installer.topology import Host


@dataclass(kw_only=True)
class OnLocalNodes(InstallContext):
    """An install context whose nodes are folders on this machine."""

    nodes_root: Path

    def transport(self, host: Host) -> LocalTransport:
        return LocalTransport(host.name, root=self.nodes_root / host.name)


def snapshot(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture
def ctx(tmp_path: Path) -> OnLocalNodes:
    inv = variants.write(tmp_path / "hosts.ini", "m-master.hostname", cert_key_type="ecdsa")
    topo = topology.load(inv)
    state = StateDir(tmp_path / "state")
    Store(state.pki, topo).init(inv.read_bytes())
    Store(tmp_path / "lost-state" / "pki", topo).init(inv.read_bytes())  # the same inventory, another CA
    for host in topo.hosts:
        node = tmp_path / "nodes" / host.name
        (node / "etc").mkdir(parents=True)
        (node / "etc/os-release").write_text("ID=debian\nVERSION_ID=12\n")
    none = cast(Any, None)
    return OnLocalNodes(topo=topo, inventory=inv, state=state, connector=none, secrets=none,
                        nodes_root=tmp_path / "nodes")


def holds(ctx: OnLocalNodes, node: str, store: Path) -> Path:
    """Give ``node`` the /etc/kubernetes that ``store`` prepared for it (as an earlier install would have)."""
    etc = ctx.nodes_root / node / "etc/kubernetes"
    shutil.copytree(store / "nodes" / node, etc)
    return etc


def host(ctx: OnLocalNodes, name: str) -> Host:
    return ctx.topo.host(name)


def test_a_new_node_and_a_node_of_this_store_go_ahead(ctx: OnLocalNodes) -> None:
    holds(ctx, "node2", ctx.state.pki)
    for name in ("node1", "node2", "node4"):  # node1 and node4 hold nothing yet
        ctx.ensure_same_ca(host(ctx, name))
    pushed = [f.path for f in etcd_phases.cert_files(ctx, host(ctx, "node2"))]
    assert "/etc/kubernetes/pki/etcd/ca.crt" in pushed


def test_a_node_of_another_store_is_refused_by_every_phase_that_pushes_pki(
        ctx: OnLocalNodes, tmp_path: Path) -> None:
    lost = tmp_path / "lost-state" / "pki"
    holds(ctx, "node1", lost)
    before = snapshot(ctx.nodes_root)
    node1 = host(ctx, "node1")
    for push in (etcd_phases.cert_files, k8s_phases.pki_files):
        with pytest.raises(PKIError) as caught:
            push(ctx, node1)
        said = str(caught.value)
        assert said.startswith(f"node1 trusts another CA than the PKI store {ctx.state.pki}: "
                               "/etc/kubernetes/pki/ca.crt has key sha256:")
        assert "/etc/kubernetes/pki/front-proxy-ca.crt has key" in said and "/etc/kubernetes/pki/etcd/ca.crt" in said
        assert "nothing was written" in said and "--state DIR" in said and "--replace-ca" in said
    assert snapshot(ctx.nodes_root) == before

    # The install's connect phase reads it first, before any package, file or unit reaches a node.
    runner = Runner(install.phases(), only=["connect"], out=io.StringIO())
    with pytest.raises(PhaseError, match=r"phase connect failed on node1: node1 trusts another CA"):
        runner.run(ctx)
    assert snapshot(ctx.nodes_root) == before


def test_one_foreign_ca_is_enough(ctx: OnLocalNodes, tmp_path: Path) -> None:
    etc = holds(ctx, "node3", ctx.state.pki)
    (etc / "pki/etcd/ca.crt").write_bytes((tmp_path / "lost-state/pki/ca/etcd/ca.crt").read_bytes())
    with pytest.raises(PKIError, match=r"^node3 trusts another CA .*: /etc/kubernetes/pki/etcd/ca.crt has key sha256:"
                       r"\w+, the store's etcd/ca CA has sha256:\w+\. It belongs"):
        etcd_phases.cert_files(ctx, host(ctx, "node3"))
    (etc / "pki/etcd/ca.crt").write_text("garbage")
    with pytest.raises(PKIError, match=r"etcd/ca.crt has key \(not a PEM certificate\)"):
        ctx.ensure_same_ca(host(ctx, "node3"))


def test_replace_ca_moves_the_node_on_purpose(ctx: OnLocalNodes, tmp_path: Path,
                                              caplog: pytest.LogCaptureFixture) -> None:
    holds(ctx, "node1", tmp_path / "lost-state" / "pki")
    ctx.replace_ca = True
    with caplog.at_level(logging.WARNING, logger="installer.pki.trust"):
        assert k8s_phases.pki_files(ctx, host(ctx, "node1"))
    assert "node1: replacing the node's CA on request (--replace-ca)" in caplog.text
