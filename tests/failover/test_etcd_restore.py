"""The whole Kubernetes cluster back from the backup timer's snapshot after etcd lost quorum (issue 13, flow 6;
Talos' recovery test, kubeadm-ha's 93/94).

On the installed m-master (reverted first): objects are written, the timer's service takes a snapshot on the
first member (what ``etcd_backup_hour`` would have run), more objects are written, then two of the three
members lose their data: no quorum, the API through the VIP stops answering. ``kha etcd snapshot restore``
with the timer's file brings back every object written before the snapshot and none after, with every node
Ready, etcd healthy with equal hashes, the VIP on one node, and the API taking writes again. A snapshot of
another cluster, and one with a changed byte, are refused first (exit 2) with the broken cluster as it was.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from flows import Measured, kha

from installer.etcd import backup
from installer.kubernetes import staticpods
from scenarios.failover import run
from scenarios.installed import Installed

pytestmark = [pytest.mark.failover, pytest.mark.full_tier]

NAMESPACE = "default"
LABEL = "kha.io/restore-test"
#: from the restore's end until the topology is whole: the kubelets' next lease renewal and node status
WHOLE_TIMEOUT_S = 300.0


def configmaps(prefix: str, n: int) -> str:
    return "".join(f"---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {prefix}-{i:02d}\n  namespace: "
                   f"{NAMESPACE}\n  labels:\n    {LABEL}: {prefix}\ndata:\n  i: \"{i}\"\n" for i in range(n))


def names(inst: Installed, prefix: str) -> list[str]:
    got = inst.kubectl_json("get", "configmaps", "-n", NAMESPACE, "-l", f"{LABEL}={prefix}")
    return sorted(item["metadata"]["name"] for item in got["items"])


def test_restore_the_whole_cluster_from_the_timers_snapshot(
    kubernetes_m_master: Installed, tmp_path: Path, measured: Measured, capsys: pytest.CaptureFixture[str]
) -> None:
    inst = kubernetes_m_master
    run.fresh(inst, "restore")
    first, *rest = inst.topo.etcd
    data = inst.topo.settings.etcd_data_dir

    inst.kubectl("apply", "-f", "-", stdin=configmaps("before", 20))
    assert len(names(inst, "before")) == 20
    # What the timer runs at etcd_backup_hour, now.
    inst.run(first, ["systemctl", "start", backup.SERVICE], timeout=180)
    listing = inst.run(first, ["ls", "-1", backup.BACKUP_DIR]).stdout.split()
    (name,) = [n for n in listing if n.startswith(backup.PREFIX) and n.endswith(".db")]
    snap = tmp_path / name
    for f in (name, f"{name}.sha256", f"{name}.json"):
        (tmp_path / f).write_bytes(inst.node(first).get(f"{backup.BACKUP_DIR}/{f}", sudo=True))
    inst.kubectl("apply", "-f", "-", stdin=configmaps("after", 5))

    # Two members' data gone: no quorum, no API.
    for h in rest:
        inst.run(h, ["systemctl", "stop", "etcd"], timeout=120)
        inst.run(h, ["rm", "-rf", "--", f"{data}/member"])
    broken = time.monotonic()
    assert inst.kubectl("get", "--raw", "/readyz", check=False, timeout=30).stdout.strip() != "ok"

    # Refused before anything stops: a changed byte, and a snapshot of another cluster.
    good, meta = snap.read_bytes(), backup.sidecars(snap)[1]
    snap.write_bytes(good[:-1] + bytes([good[-1] ^ 0xFF]))
    rc, out = kha(capsys, "etcd", "snapshot", "restore", str(snap), *inst.cli_args())
    assert rc == 2 and "corrupt or truncated" in out, out
    snap.write_bytes(good)
    meta_text = meta.read_text()
    meta.write_text(meta_text.replace('"etcd_ca": "sha256:', '"etcd_ca": "sha256:00'))
    rc, out = kha(capsys, "etcd", "snapshot", "restore", str(snap), *inst.cli_args())
    assert rc == 2 and "another cluster" in out, out
    meta.write_text(meta_text)
    assert inst.run(first, ["systemctl", "is-active", "etcd"], check=False).stdout.strip() == "active", \
        "a refused restore stopped the surviving member"

    started = time.monotonic()
    rc, out = kha(capsys, "etcd", "snapshot", "restore", str(snap), *inst.cli_args())
    took = time.monotonic() - started
    assert rc == 0, out
    whole, said = run.wait_whole(inst, WHOLE_TIMEOUT_S, since=time.time() - 1)
    assert whole is not None, f"not whole {WHOLE_TIMEOUT_S:.0f}s after the restore: {said}"
    measured(f"etcd snapshot restore of the whole cluster: {took:.1f}s; whole (every node Ready, VIP on one "
             f"node, etcd healthy) {whole:.1f}s later; API through the VIP down {time.monotonic() - broken:.1f}s "
             "from the quorum loss", restore_s=took, whole_after_s=whole)

    assert names(inst, "before") == [f"before-{i:02d}" for i in range(20)]
    assert names(inst, "after") == [], "objects written after the snapshot came back"
    equal, detail = run.hashkv(inst)
    assert equal, detail
    # The restored cluster takes writes, through the restarted apiservers.
    inst.kubectl("apply", "-f", "-", stdin=configmaps("restored", 1))
    assert names(inst, "restored") == ["restored-00"]
    # Every control plane's static pods were restarted to read the restored data.
    for h in inst.topo.masters:
        for pod in staticpods.CONTROL_PLANE:
            text = inst.run(h, ["cat", pod.manifest]).stdout
            assert "to read the restored etcd" in text, (h.name, pod.name)
