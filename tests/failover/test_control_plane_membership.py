"""A control plane leaves the running HA cluster and joins it again (issue 13, flows 1 and 2 for control planes).

On the installed m-master (reverted first), once for the third control plane and once for the first (the
one ``kubeadm init`` ran on, also the keepalived MASTER holding the VIP), each also an etcd member, which
it stays: it is listed under ``[del-master]``; ``kha node remove`` drains it, drops it from both load
balancers' backends (a reload: the VIP stays), deletes it and resets it while the clients record; a second
run has nothing to do. Then it is listed under ``[new-master]`` and ``kha install`` joins it again as a
control plane: every load balancer has it back, its apiserver answers, the node is Ready. The promises:
the API through the VIP within the backend-down bound, 0 acknowledged writes lost, exactly one VIP holder,
etcd's hashes equal.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

import pytest
from flows import Measured, kha, promises
from test_node_membership import ready

from installer.kubernetes import reset, staticpods
from installer.kubernetes.phases import ADMIN_CONF
from installer.loadbalancer import render as lb_render
from scenarios.failover import run
from scenarios.installed import Installed

pytestmark = [pytest.mark.failover, pytest.mark.full_tier]

SPAN_S = 900.0


def backends(inst: Installed, leaving: str) -> dict[str, bool]:
    """Whether each [lb] node's haproxy.cfg names the leaving control plane as a backend."""
    return {h.name: f"{leaving}:{inst.topo.apiserver_port}" in inst.run(h, ["cat", lb_render.HAPROXY_CFG]).stdout
            for h in inst.topo.lb}


@pytest.mark.parametrize("leaving", ["10.56.56.13", "10.56.56.11"], ids=["third", "first"])
def test_a_control_plane_leaves_and_joins_the_running_cluster(
    kubernetes_m_master: Installed, tmp_path: Path, measured: Measured, capsys: pytest.CaptureFixture[str],
    leaving: str,
) -> None:
    inst = kubernetes_m_master
    run.fresh(inst, "control-plane-membership")
    staying = [h for h in inst.topo.masters if h.name != leaving]

    def nodes() -> dict[str, Any]:
        """The API's nodes, asked on a control plane that stays (the leaving one loses its admin.conf)."""
        out = inst.run(staying[0], [f"{inst.bin_dir}/kubectl", f"--kubeconfig={ADMIN_CONF}", "get", "nodes",
                                    "-o", "json"]).stdout
        return {n["metadata"]["name"]: n for n in json.loads(out)["items"]}

    assert all(backends(inst, leaving).values())
    state = tmp_path / "state"
    shutil.copytree(inst.state, state)
    remove = inst.inventory_with(tmp_path / "hosts.del.ini", del_master=[leaving])
    args = inst.cli_args(remove, state)

    rc, out = kha(capsys, "node", "remove", *args, "--dry-run")
    assert rc == 0, out
    assert f"would kubectl drain {leaving}" in out and "would reload haproxy" in out, out
    assert leaving in nodes() and all(backends(inst, leaving).values()), "the dry run changed something"

    removed = run.record(inst, SPAN_S, lambda: kha(capsys, "node", "remove", *args), masters=staying)
    promises(inst, removed, f"node remove (control plane {leaving})", measured)
    assert leaving not in nodes()
    assert not any(backends(inst, leaving).values()), backends(inst, leaving)
    assert reset.leftovers(inst.node(leaving)) == []
    assert staticpods.processes(inst.node(leaving), staticpods.APISERVER) == [], "its apiserver still runs"
    assert inst.etcd_healthy(), "the control plane's etcd member did not stay"

    started = time.monotonic()
    rc, out = kha(capsys, "node", "remove", *args)
    assert rc == 0, out
    assert "reload" not in out, out
    measured(f"second node remove (control plane {leaving}): {time.monotonic() - started:.1f}s, nothing left to remove")

    text = inst.inventory.read_text()
    master_block = text.split("[kube-master]\n", 1)[1].split("\n[", 1)[0]
    text = text.replace(f"[kube-master]\n{master_block}", "[kube-master]\n" + master_block.replace(f"{leaving}\n", ""))
    text = text.replace("[new-master]\n", f"[new-master]\n{leaving}\n")
    add = tmp_path / "hosts.add.ini"
    add.write_text(text)
    assert inst.bundle is not None
    joined = run.record(inst, SPAN_S, lambda: kha(capsys, "install", *inst.cli_args(add, state), "--bundle",
                                                  str(inst.bundle)), masters=staying)
    promises(inst, joined, f"kha install with {leaving} under [new-master]", measured)
    assert ready(nodes()[leaving]), nodes()[leaving]["status"]
    assert all(backends(inst, leaving).values()), backends(inst, leaving)
    url = staticpods.APISERVER.health_url(leaving, inst.topo.apiserver_port)
    assert inst.run(leaving, ["curl", "-sS", "--cacert", staticpods.CLUSTER_CA, url]).stdout.strip() == "ok"
