"""A worker leaves the running HA cluster and joins it again (issue 13, flows 1 and 2 for workers).

On the installed m-master (reverted first), with a pod on the worker that a PodDisruptionBudget protects:
``kha node remove`` refuses and changes nothing; ``--force`` drains, deletes and resets the worker while the
clients record; a second run has nothing to do. Then the worker is listed under ``[new-worker]`` and
``kha install`` joins it again, Ready. The promises: the API through the VIP stays up (no control plane
restarts), 0 acknowledged writes lost, exactly one VIP holder, etcd's hashes equal.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

import pytest
from flows import Measured, kha, promises

from installer.kubernetes import reset, source
from installer.kubernetes.bundle import Bundle
from scenarios.failover import run
from scenarios.installed import Installed

pytestmark = [pytest.mark.failover, pytest.mark.full_tier]

WORKER = "10.56.56.14"
SPAN_S = 600.0
NAMESPACE = "kha-guard"


def guarded(inst: Installed) -> None:
    """A pod pinned to the worker that its PodDisruptionBudget forbids evicting (the pause image every node has)."""
    assert inst.bundle is not None
    image = source.release(inst.topo, Bundle.load(inst.bundle, verify=False)).sandbox_image
    labels = {"app": "guarded"}
    objects = [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}},
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "guarded", "namespace": NAMESPACE},
         "spec": {"replicas": 1, "selector": {"matchLabels": labels}, "template": {
             "metadata": {"labels": labels},
             "spec": {"nodeSelector": {"kubernetes.io/hostname": node_label(inst)},
                      "terminationGracePeriodSeconds": 1,
                      "containers": [{"name": "main", "image": image, "imagePullPolicy": "Never"}]}}}},
        {"apiVersion": "policy/v1beta1", "kind": "PodDisruptionBudget",
         "metadata": {"name": "guarded", "namespace": NAMESPACE},
         "spec": {"minAvailable": 1, "selector": {"matchLabels": labels}}},
    ]
    inst.kubectl("apply", "-f", "-", stdin=json.dumps({"apiVersion": "v1", "kind": "List", "items": objects}))
    inst.kubectl("-n", NAMESPACE, "rollout", "status", "deployment/guarded", "--timeout=120s", timeout=150)


def node_label(inst: Installed) -> str:
    return str(inst.kubectl_json("get", "node", WORKER)["metadata"]["labels"]["kubernetes.io/hostname"])


def nodes(inst: Installed) -> dict[str, Any]:
    return {n["metadata"]["name"]: n for n in inst.kubectl_json("get", "nodes")["items"]}


def ready(node: dict[str, Any]) -> bool:
    conditions = node["status"]["conditions"]
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def test_a_worker_leaves_and_joins_the_running_cluster(
    kubernetes_m_master: Installed, tmp_path: Path, measured: Measured, capsys: pytest.CaptureFixture[str]
) -> None:
    inst = kubernetes_m_master
    run.fresh(inst, "node-membership")
    guarded(inst)
    pod_range = str(nodes(inst)[WORKER]["spec"]["podCIDR"])
    # A copy of the state folder: the store keeps the inventory it was last used with, and the cases after
    # this one need the original.
    state = tmp_path / "state"
    shutil.copytree(inst.state, state)
    remove = inst.inventory_with(tmp_path / "hosts.del.ini", del_worker=[WORKER])
    args = inst.cli_args(remove, state)

    rc, out = kha(capsys, "node", "remove", *args)
    assert rc == 1, out
    assert f"{NAMESPACE}/guarded-" in out and f"PodDisruptionBudget {NAMESPACE}/guarded allows 0 disruptions" in out
    assert "Nothing was changed" in out, out
    assert not nodes(inst)[WORKER]["spec"].get("unschedulable"), "the refused removal cordoned the node"

    rc, out = kha(capsys, "node", "remove", *args, "--force", "--dry-run")
    assert rc == 0, out
    assert f"would kubectl drain {WORKER}" in out and f"would kubectl delete node {WORKER}" in out, out
    assert f"would reset Kubernetes on {WORKER}" in out, out
    assert WORKER in nodes(inst) and reset.leftovers(inst.node(WORKER)), "the dry run changed something"

    removed = run.record(inst, SPAN_S, lambda: kha(capsys, "node", "remove", *args, "--force"))
    promises(inst, removed, "node remove --force", measured)
    assert WORKER not in nodes(inst)
    assert reset.leftovers(inst.node(WORKER)) == []
    for h in inst.topo.masters:
        assert not inst.run(h, ["ip", "route", "show", pod_range]).stdout.strip(), f"{h.name} still routes {pod_range}"
        unit = inst.run(h, ["cat", "/etc/systemd/system/kha-pod-routes.service"]).stdout
        assert pod_range not in unit, f"{h.name}'s routes unit still names {pod_range}"

    started = time.monotonic()
    rc, out = kha(capsys, "node", "remove", *args, "--force")
    assert rc == 0, out
    measured(f"second node remove: {time.monotonic() - started:.1f}s, nothing left to remove")

    # It joins again: listed under [new-worker] (and no longer under [kube-worker]), `kha install`.
    text = inst.inventory.read_text().replace(f"[kube-worker]\n{WORKER}\n", "[kube-worker]\n")
    text = text.replace("[new-worker]\n", f"[new-worker]\n{WORKER}\n")
    add = tmp_path / "hosts.add.ini"
    add.write_text(text)
    assert inst.bundle is not None
    joined = run.record(inst, SPAN_S, lambda: kha(capsys, "install", *inst.cli_args(add, state), "--bundle",
                                                  str(inst.bundle)))
    promises(inst, joined, "kha install with the worker under [new-worker]", measured)
    assert ready(nodes(inst)[WORKER]), nodes(inst)[WORKER]["status"]
