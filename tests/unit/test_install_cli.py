"""kha install: phase selection and the local-only pki phase (node phases are tested on harness nodes)."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from installer import install
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


def test_a_dry_run_on_a_fresh_state_says_what_the_pki_phase_would_create(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    inv, state, out = catalog.get("m-master").inventory, tmp_path / "state", io.StringIO()
    kw = {"state": state, "known_hosts": tmp_path / "known_hosts", "only": ["pki"], "out": out}
    install.run(inv, dry_run=True, **kw)  # type: ignore[arg-type]
    assert "would PKI store" in out.getvalue() and "created" in out.getvalue()
    assert not (state / "pki").exists()  # the real store is not made by a dry run
    assert list((tmp_path / "tmp").iterdir()) == []  # and its scratch copy is gone
    install.run(inv, **kw)  # type: ignore[arg-type]
    out.truncate(0)
    install.run(inv, dry_run=True, **kw)  # type: ignore[arg-type]
    assert "would PKI store" not in out.getvalue()  # an up-to-date store: nothing to say
