"""``kha reset`` takes the installed m-master back to before kha (issue 13, flow 3; kubeadm-ha's 99-reset).

On the installed m-master (reverted first): a dry run changes nothing; ``--node`` resets the worker only;
the whole cluster without ``--yes-delete-etcd-data`` leaves etcd running with its data; with it, etcd's
members are stopped and their data gone; a second reset has nothing left to do. The state folder stays.
This case breaks the cluster on purpose: the next one reverts it.
"""

from __future__ import annotations

import pytest
from flows import kha

from installer.etcd import ctl
from installer.kubernetes import reset
from installer.topology import Host
from scenarios.failover import run
from scenarios.installed import Installed

pytestmark = [pytest.mark.failover, pytest.mark.full_tier]

WORKER = "10.56.56.14"


def active(inst: Installed, h: Host, unit: str) -> bool:
    return inst.run(h, ["systemctl", "is-active", "--quiet", unit], check=False).ok


def exists(inst: Installed, h: Host, path: str) -> bool:
    return inst.run(h, ["test", "-e", path], check=False).ok


def test_reset_a_worker_then_the_cluster_then_etcd(kubernetes_m_master: Installed,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    inst = kubernetes_m_master
    run.fresh(inst, "reset")
    args = inst.cli_args()
    data = inst.topo.settings.etcd_data_dir
    worker, masters = inst.topo.host(WORKER), inst.topo.masters

    rc, out = kha(capsys, "reset", *args, "--dry-run", "--yes-delete-etcd-data")
    assert rc == 0, out
    assert f"would reset Kubernetes on {masters[0].name}" in out and "would stop and disable keepalived" in out, out
    assert all(reset.leftovers(inst.node(h)) for h in inst.kubernetes_nodes), "the dry run reset a node"

    rc, out = kha(capsys, "reset", *args, "--node", WORKER)
    assert rc == 0, out
    assert reset.leftovers(inst.node(worker)) == []
    assert all(reset.leftovers(inst.node(h)) for h in masters), "--node reset another node"
    assert all(active(inst, h, "kubelet") for h in masters)

    rc, out = kha(capsys, "reset", *args)
    assert rc == 0, out
    for h in masters:
        assert reset.leftovers(inst.node(h)) == [], h.name
    for h in inst.topo.lb:
        assert not active(inst, h, "haproxy") and not active(inst, h, "keepalived"), h.name
    assert inst.vip_holders() == [], "a node still holds the VIP"
    assert "etcd kept" in out, out
    assert all(active(inst, h, "etcd") and exists(inst, h, data) for h in inst.topo.etcd)
    ctx = inst.etcd()
    try:
        ctx.admin().wait_healthy(ctl.client_urls(inst.topo.etcd), timeout=30)
    finally:
        ctx.connector.close()

    rc, out = kha(capsys, "reset", *args, "--yes-delete-etcd-data")
    assert rc == 0, out
    for h in inst.topo.etcd:
        assert not active(inst, h, "etcd") and not exists(inst, h, data), h.name
    assert (inst.state / "pki" / "ca" / "ca.crt").is_file(), "the reset removed the state folder's store"

    rc, out = kha(capsys, "reset", *args, "--yes-delete-etcd-data", "--dry-run")
    assert rc == 0, out
    assert "would" not in out, f"a second reset still finds something to do:\n{out}"
