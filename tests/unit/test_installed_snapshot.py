"""``Installed.snapshot``/``revert`` keep the state folder in step with the nodes: what the installer recorded
after the snapshot (a restored etcd's new cluster ID, a renewed certificate) goes back with the nodes."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

from installer.topology import Topology
from scenarios.installed import Installed


class _Cluster:
    """What ``Installed`` asks of a harness cluster for a snapshot: a scratch folder and the two verbs."""

    def __init__(self, root: Path) -> None:
        self.state = SimpleNamespace(state_dir=root)
        self.scratch = root / "scratch"
        self.calls: list[tuple[str, str]] = []

    def snapshot(self, name: str) -> None:
        self.calls.append(("snapshot", name))

    def revert(self, name: str) -> None:
        self.calls.append(("revert", name))


def _installed(tmp_path: Path) -> tuple[Installed, _Cluster]:
    cluster = _Cluster(tmp_path / "cluster")
    state = tmp_path / "state"
    (state / "pki").mkdir(parents=True)
    (state / "pki" / "identity.json").write_text('{"etcd_cluster_id": "aa"}')
    (state / "secrets.json").write_text("{}")
    inst = Installed(cast(Any, cluster), cast(Topology, None), tmp_path / "hosts.ini", state)
    return inst, cluster


def test_revert_brings_the_state_folder_back_with_the_nodes(tmp_path: Path) -> None:
    inst, cluster = _installed(tmp_path)
    inst.snapshot("kubernetes")
    (inst.state / "pki" / "identity.json").write_text('{"etcd_cluster_id": "bb"}')  # a restore ran
    (inst.state / "pki" / "new.crt").write_text("renewed")
    inst.revert("kubernetes")
    assert cluster.calls == [("snapshot", "kubernetes"), ("revert", "kubernetes")]
    assert (inst.state / "pki" / "identity.json").read_text() == '{"etcd_cluster_id": "aa"}'
    assert not (inst.state / "pki" / "new.crt").exists()
    assert (inst.state / "secrets.json").read_text() == "{}"


def test_a_snapshot_taken_again_replaces_the_copy_and_another_name_has_none(tmp_path: Path) -> None:
    inst, _ = _installed(tmp_path)
    inst.snapshot("s")
    (inst.state / "secrets.json").write_text('{"v": 2}')
    inst.snapshot("s")
    (inst.state / "secrets.json").write_text('{"v": 3}')
    inst.revert("s")
    assert (inst.state / "secrets.json").read_text() == '{"v": 2}'
    inst.revert("taken-by-kha-snapshot")  # no copy: the state folder is left as it is
    assert (inst.state / "secrets.json").read_text() == '{"v": 2}'
