"""The Kubernetes API: every apiserver answers ``/readyz`` with ``ok`` on its own address, and so does the
control-plane endpoint (the VIP, or the node-local proxy) from every Kubernetes node — where kubelets
reach it from. curl verifies each answer against the cluster CA the node holds."""

from __future__ import annotations

import pytest

from installer.checks.target import Target, output
from installer.kubernetes.staticpods import CLUSTER_CA
from installer.topology import Host

#: An apiserver that just restarted is ready once its informers synced: well within this.
DEADLINE_S = 60.0


def _readyz(target: Target, on: Host, url: str) -> str | None:
    res = target.run(on, ["curl", "-sS", "--max-time", "10", "--cacert", CLUSTER_CA, f"{url}/readyz"], timeout=20)
    return None if res.ok and res.stdout.strip() == "ok" else output(res, 6)


def test_readyz(target: Target, note: list[str]) -> None:
    masters = target.topo.masters
    if not masters:
        pytest.skip("the inventory has no [kube-master] nodes")
    port = target.topo.apiserver_port
    # Asked on each master of itself: what the LB's health check asks, without the LB in between.
    target.until(lambda: target.each(masters, lambda m: _readyz(target, m, f"https://{m.address}:{port}")),
                 DEADLINE_S)
    note.append(f"{len(masters)} apiserver(s) ready")


def test_endpoint(target: Target, note: list[str]) -> None:
    nodes = target.kubernetes_nodes
    if not nodes:
        pytest.skip("the inventory has no Kubernetes nodes")
    url = target.topo.apiserver_endpoint.url
    target.until(lambda: target.each(nodes, lambda h: _readyz(target, h, url)), DEADLINE_S)
    note.append(f"{url} from {len(nodes)} node(s)")

