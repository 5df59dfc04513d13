"""The etcd backup timer's files and the snapshot check a restore makes first, without a cluster: the
timer's hour, the script run by sh against stand-in etcdctl/sha256sum on this machine, and the sidecars
that refuse a corrupt or foreign snapshot."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
from pathlib import Path

import pytest
import variants

from installer.errors import ConfigError
from installer.etcd import backup
from installer.pki import crypto
from installer.settings import KeyType
from installer.topology import Topology
from kha import cli

NOW = dt.datetime(2026, 12, 5, 3, 0, tzinfo=dt.UTC)


def _ca_pem(cn: str = "etcd-ca") -> bytes:
    key = crypto.new_key(KeyType.ECDSA)
    return crypto.cert_pem(crypto.self_signed_ca(key, cn, 10, NOW))


@pytest.fixture
def topo(tmp_path: Path) -> Topology:
    return variants.topo(tmp_path, "m-master", etcd_backup_hour="5", etcd_backup_expiry="2")


def test_timer_runs_at_the_inventory_hour_and_catches_up_after_downtime(topo: Topology) -> None:
    service, timer = backup.units(topo, topo.etcd[0])
    text = timer.content.decode()
    assert "OnCalendar=*-*-* 05:00:00" in text and "Persistent=true" in text
    assert "etcd_backup_hour=5, etcd_backup_expiry=2" in text
    assert f"ExecStart={backup.SCRIPT_PATH}" in service.content.decode() and "Type=oneshot" in service.content.decode()
    assert service.path.endswith(backup.SERVICE) and timer.path.endswith(backup.TIMER)


def test_backup_knobs_are_checked(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="etcd_backup_hour"):
        variants.topo(tmp_path, "m-master", etcd_backup_hour="24")
    with pytest.raises(ConfigError, match="etcd_backup_expiry"):
        variants.topo(tmp_path, "m-master", etcd_backup_expiry="0")


#: etcdctl standing in: ``snapshot save`` writes its last argument, ``snapshot status`` succeeds
SAVES = '#!/bin/sh\ncase " $* " in *" snapshot save "*) shift $(($# - 1)); printf snapshot-bytes >"$1";; esac\n'
FAILS = "#!/bin/sh\necho 'context deadline exceeded' >&2\nexit 1\n"


def _run_script(topo: Topology, tmp_path: Path, ident: backup.Identity, out: Path,
                etcdctl: str = SAVES) -> subprocess.CompletedProcess[str]:
    """The node's script with its folder moved to ``out`` and ``etcdctl`` standing in; date, sha256sum and
    find are this machine's."""
    text = backup.script(topo, topo.etcd[0], ident).content.decode().replace(backup.BACKUP_DIR, str(out))
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    fake = bin_dir / "etcdctl"
    fake.write_text(etcdctl)
    fake.chmod(0o755)
    script = tmp_path / "kha-etcd-backup"
    script.write_text(text)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    return subprocess.run(["sh", str(script)], capture_output=True, text=True, env=env, check=False)


def test_the_script_keeps_a_snapshot_its_check_accepts_and_expires_old_ones(topo: Topology, tmp_path: Path) -> None:
    ident = backup.identity(topo, _ca_pem())
    out = tmp_path / "backups"
    out.mkdir()
    old = out / f"{backup.PREFIX}{topo.etcd[0].name}-20261101T030000Z.db"
    young = out / f"{backup.PREFIX}{topo.etcd[0].name}-20261204T030000Z.db"
    stranger = out / "mine.db"
    for f, days in ((old, 3), (young, 1), (stranger, 30)):
        f.write_bytes(b"x")
        stamp = (dt.datetime.now() - dt.timedelta(days=days)).timestamp()
        os.utime(f, (stamp, stamp))
    res = _run_script(topo, tmp_path, ident, out)
    assert res.returncode == 0, res.stderr
    names = sorted(p.name for p in out.iterdir())
    assert old.name not in names  # older than etcd_backup_expiry=2 days
    assert young.name in names and stranger.name in names  # younger, or not the timer's
    (new,) = [out / n for n in names if n.endswith(".db") and n not in (young.name, stranger.name)]
    assert new.read_bytes() == b"snapshot-bytes" and not list(out.glob(".*.part"))
    assert backup.check(new, new.read_bytes(), ident) == ([], True)
    assert subprocess.run(["sha256sum", "-c", f"{new.name}.sha256"], cwd=out, capture_output=True,
                          check=False).returncode == 0


def test_a_failed_snapshot_keeps_every_old_one(topo: Topology, tmp_path: Path) -> None:
    ident = backup.identity(topo, _ca_pem())
    out = tmp_path / "backups"
    out.mkdir()
    old = out / f"{backup.PREFIX}{topo.etcd[0].name}-old.db"
    old.write_bytes(b"x")
    stamp = (dt.datetime.now() - dt.timedelta(days=30)).timestamp()
    os.utime(old, (stamp, stamp))
    res = _run_script(topo, tmp_path, ident, out, FAILS)
    assert res.returncode != 0 and "context deadline exceeded" in res.stderr
    assert sorted(p.name for p in out.iterdir()) == [old.name]  # no partial file, and the old one kept


def _saved(tmp_path: Path, ident: backup.Identity, data: bytes = b"etcd-bytes") -> Path:
    snap = tmp_path / "etcd.db"
    snap.write_bytes(data)
    backup.write_sidecars(snap, data, ident, "10.56.56.11", NOW)
    return snap


def test_check_accepts_a_whole_snapshot_of_this_cluster(topo: Topology, tmp_path: Path) -> None:
    ident = backup.identity(topo, _ca_pem())
    snap = _saved(tmp_path, ident)
    assert backup.check(snap, snap.read_bytes(), ident) == ([], True)
    assert all(p.stat().st_mode & 0o777 == 0o600 for p in backup.sidecars(snap))


def test_check_refuses_a_changed_byte_naming_the_hash_file(topo: Topology, tmp_path: Path) -> None:
    ident = backup.identity(topo, _ca_pem())
    snap = _saved(tmp_path, ident)
    snap.write_bytes(b"etcd-bytez")
    (problem,), vouched = backup.check(snap, snap.read_bytes(), ident)
    assert vouched and str(problem).startswith(f"{snap}.sha256:1:")
    assert "corrupt or truncated" in str(problem)


def test_check_refuses_a_snapshot_of_another_cluster(topo: Topology, tmp_path: Path) -> None:
    theirs = backup.identity(topo, _ca_pem("other-etcd-ca"))
    snap = _saved(tmp_path, theirs)
    (problem,), _ = backup.check(snap, snap.read_bytes(), backup.identity(topo, _ca_pem()))
    assert str(problem).startswith(f"{snap}.json") and "another cluster" in str(problem)


def test_check_without_sidecars_leaves_it_to_the_trial_restore(topo: Topology, tmp_path: Path) -> None:
    snap = tmp_path / "plain.db"
    snap.write_bytes(b"x")
    assert backup.check(snap, b"x", backup.identity(topo, _ca_pem())) == ([], False)


def test_restore_of_a_missing_file_is_refused_before_anything(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    inv = variants.inventory(tmp_path, "m-master")
    missing = tmp_path / "missing.db"
    assert cli.main(["etcd", "snapshot", "restore", str(missing), "-i", str(inv), "--state",
                     str(tmp_path / "state")]) == 2
    assert f"{missing}: FILE: no such snapshot file" in capsys.readouterr().err
    assert not (tmp_path / "state").exists()


def test_check_refuses_an_unreadable_description(topo: Topology, tmp_path: Path) -> None:
    ident = backup.identity(topo, _ca_pem())
    snap = _saved(tmp_path, ident)
    backup.sidecars(snap)[1].write_text("{not json")
    (problem,), _ = backup.check(snap, snap.read_bytes(), ident)
    assert "not a kha snapshot description" in str(problem)
