"""kha install: phase selection and the local-only pki phase (node phases are tested on harness nodes)."""

from __future__ import annotations

from pathlib import Path

import pytest

from kha import cli
from scenarios import catalog


def test_install_only_pki_builds_the_store_and_reruns_cleanly(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    inv = str(catalog.get("m-master").inventory_hostname)
    state = tmp_path / "state"
    assert cli.main(["install", "-i", inv, "--state", str(state), "--only", "pki"]) == 0
    out = capsys.readouterr().out
    assert "✓ pki" in out and "etcd" not in out.replace("- etcd (skipped)", "")
    assert (state / "pki" / "nodes" / "node1" / "pki" / "etcd" / "server.crt").is_file()
    before = {p: p.read_bytes() for p in state.rglob("*") if p.is_file()}
    assert cli.main(["install", "-i", inv, "--state", str(state), "--only", "pki"]) == 0
    assert {p: p.read_bytes() for p in state.rglob("*") if p.is_file()} == before


def test_unknown_phase_is_refused_before_anything_runs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    inv = str(catalog.get("allinone").inventory)
    state = tmp_path / "state"
    assert cli.main(["install", "-i", inv, "--state", str(state), "--only", "etcd/bootstrapp"]) == 2
    err = capsys.readouterr().err
    assert "etcd/bootstrapp" in err and "etcd/start" in err
    assert not state.exists()


def test_dry_run_of_local_phase_writes_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    inv = str(catalog.get("allinone").inventory)
    state = tmp_path / "state"
    assert cli.main(["install", "-i", inv, "--state", str(state), "--only", "pki", "--dry-run"]) == 0
    assert "would create or bring up to date the PKI store" in capsys.readouterr().out
    assert not state.exists()
