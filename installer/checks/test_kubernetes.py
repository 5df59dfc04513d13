"""The cluster as Kubernetes sees it (kubectl on the first master, admin.conf): every inventory node
registered, Ready, at the inventory's ``kube_version``; every kube-system pod Running and ready, the
masters' static pods and a kube-proxy per node among them."""

from __future__ import annotations

import json
from typing import Any

import pytest

from installer.checks import verdicts
from installer.checks.target import Target, output

#: Nodes that joined last become Ready, and their pods (kube-proxy, the last master's control plane) start,
#: a little after the install's own wait: the e2e tier waited up to 180 s for them.
NODES_DEADLINE_S = 120.0
PODS_DEADLINE_S = 180.0
STATIC = ("kube-apiserver", "kube-controller-manager", "kube-scheduler")


def _items(target: Target, *args: str) -> tuple[list[Any] | None, str]:
    res = target.kubectl(*args, "-o", "json")
    if not res.ok:
        return None, output(res)
    return list(json.loads(res.stdout).get("items", [])), ""


def _masters(target: Target) -> None:
    if not target.topo.masters:
        pytest.skip("the inventory has no [kube-master] nodes: no Kubernetes to ask")


def test_nodes(target: Target, note: list[str]) -> None:
    _masters(target)
    expected = [h.name for h in target.kubernetes_nodes]
    version = f"v{target.topo.settings.kube_version}"

    def look() -> str | None:
        nodes, said = _items(target, "get", "nodes")
        return said or verdicts.nodes_problem(nodes or [], expected, version)

    target.until(look, NODES_DEADLINE_S)
    note.append(f"{len(expected)} Ready at {version}")


def test_system_pods(target: Target, note: list[str]) -> None:
    _masters(target)
    static = [f"{c}-{m.name}" for m in target.topo.masters for c in STATIC]
    nodes = [h.name for h in target.kubernetes_nodes]
    count: list[int] = []

    def look() -> str | None:
        pods, said = _items(target, "-n", "kube-system", "get", "pods")
        count[:] = [len(pods or [])]
        return said or verdicts.pods_problem(pods or [], static, nodes)

    target.until(look, PODS_DEADLINE_S)
    note.append(f"{count[0]} pods Running")
