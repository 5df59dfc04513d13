"""etcd membership changed on a running HA Kubernetes, and Kubernetes follows (issue 13, flow 4).

On the installed m-master (reverted first), with the clients recording the whole time: ``kha etcd add``
brings the worker in as a fourth member, then ``kha etcd remove`` takes it out again. After each, every
apiserver's static pod manifest and its running process name exactly etcd's voting members in
``--etcd-servers``, and so does the ClusterConfiguration kubeadm keeps; a second ``add`` restarts nothing.
The promises: the API through the VIP stays up within the rolling-restart bound, 0 acknowledged writes
lost, exactly one VIP holder, etcd's hashes equal.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import yaml
from flows import Measured, kha, promises

from installer.etcd import apiservers, ctl
from installer.kubernetes.phases import APISERVER_MANIFEST
from scenarios.failover import run
from scenarios.installed import Installed

pytestmark = pytest.mark.failover

WORKER = "10.56.56.14"
#: the clients may run this long per command (a rolling restart of three apiservers on LXC takes ~1-2 min)
SPAN_S = 600.0


def manifest_flags(inst: Installed) -> dict[str, list[str]]:
    return {h.name: sorted(apiservers.flag_of(inst.run(h, ["cat", APISERVER_MANIFEST]).stdout))
            for h in inst.topo.masters}


def running(inst: Installed) -> dict[str, tuple[str, list[str]]]:
    """Per control plane: the running kube-apiserver's PID and the members its command line names."""
    out = {}
    for h in inst.topo.masters:
        line = inst.run(h, ["pgrep", "-a", "-x", "kube-apiserver"]).stdout.strip()
        assert len(line.splitlines()) == 1, f"{h.name}: {line!r}"
        flag = next(a for a in line.split() if a.startswith("--etcd-servers="))
        out[h.name] = (line.split()[0], sorted(flag.split("=", 1)[1].split(",")))
    return out


def stored(inst: Installed) -> list[str]:
    cm = inst.kubectl_json("-n", "kube-system", "get", "configmap", "kubeadm-config")
    return sorted(yaml.safe_load(cm["data"]["ClusterConfiguration"])["etcd"]["external"]["endpoints"])


def test_etcd_add_then_remove_and_every_apiserver_follows(
    kubernetes_m_master: Installed, tmp_path: Path, measured: Measured, capsys: pytest.CaptureFixture[str]
) -> None:
    inst = kubernetes_m_master
    run.fresh(inst, "etcd-membership")
    three = sorted(ctl.client_urls(inst.topo.etcd))
    four = sorted([*three, f"https://{WORKER}:2379"])
    assert manifest_flags(inst) == {h.name: three for h in inst.topo.masters}

    add = inst.inventory_with(tmp_path / "hosts.add.ini", new_etcd=[WORKER])
    rc, out = kha(capsys, "etcd", "add", "--dry-run", *inst.cli_args(add))
    assert rc == 0, out
    assert f"would rewrite --etcd-servers in {APISERVER_MANIFEST} to {','.join(four)}" in out, out
    assert manifest_flags(inst) == {h.name: three for h in inst.topo.masters}, "the dry run changed a manifest"
    added = run.record(inst, SPAN_S, lambda: kha(capsys, "etcd", "add", *inst.cli_args(add)))
    promises(inst, added, "etcd add", measured, four)
    assert manifest_flags(inst) == {h.name: four for h in inst.topo.masters}
    before = running(inst)
    assert {name: urls for name, (_pid, urls) in before.items()} == {h.name: four for h in inst.topo.masters}
    assert stored(inst) == four

    started = time.monotonic()
    rc, out = kha(capsys, "etcd", "add", *inst.cli_args(add))
    assert rc == 0, out
    assert running(inst) == before, "a second `kha etcd add` restarted an apiserver"
    measured(f"second etcd add: {time.monotonic() - started:.1f}s, no apiserver restarted")

    remove = inst.inventory_with(tmp_path / "hosts.del.ini", etcd=[WORKER], del_etcd=[WORKER])
    removed = run.record(inst, SPAN_S, lambda: kha(capsys, "etcd", "remove", *inst.cli_args(remove)))
    promises(inst, removed, "etcd remove", measured, three)
    assert manifest_flags(inst) == {h.name: three for h in inst.topo.masters}
    assert {name: urls for name, (_pid, urls) in running(inst).items()} == {h.name: three for h in inst.topo.masters}
    assert stored(inst) == three
