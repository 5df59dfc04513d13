"""``kha kubeconfig``: the operator's admin kubeconfig from the PKI store, pointing where a workstation
reaches the cluster, written 0600, never over another file without --force."""

from __future__ import annotations

import shutil
import stat
from pathlib import Path

import pytest

from installer.pki import kubeconfig
from kha import cli
from tests.unit import variants


def _cluster(tmp_path: Path, name: str) -> tuple[Path, Path]:
    """An inventory copied into tmp_path and its state folder, built by ``kha pki init``."""
    inv = tmp_path / name
    shutil.copy(variants.INVENTORIES / name, inv)
    state = tmp_path / "state"
    assert cli.main(["pki", "init", "-i", str(inv), "--dir", str(state / "pki")]) == 0
    return inv, state


def test_vip_cluster_prints_a_kubeconfig_for_the_vip(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    inv, state = _cluster(tmp_path, "hosts.m-master.ip.ini")
    capsys.readouterr()
    assert cli.main(["kubeconfig", "-i", str(inv), "--state", str(state)]) == 0
    out = capsys.readouterr().out.encode()
    kc = kubeconfig.parse(out, "stdout")
    admin = kubeconfig.parse((state / "pki" / "cluster" / "admin.conf").read_bytes(), "admin.conf")
    assert kc.server == "https://10.56.56.10:8443"
    assert (kc.ca_pem, kc.cert_pem, kc.key_pem, kc.user) == (admin.ca_pem, admin.cert_pem, admin.key_pem, admin.user)


def test_node_local_lb_points_at_the_first_master_and_writes_0600(tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    inv, state = _cluster(tmp_path, "hosts.s-master.ip.ini")
    out = tmp_path / "kube" / "config"
    out.parent.mkdir()
    assert cli.main(["kubeconfig", "-i", str(inv), "--state", str(state), "-o", str(out)]) == 0
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    first_master = next(line.split()[0] for line in inv.read_text().split("[kube-master]")[1].splitlines()[1:]
                        if line.strip() and not line.startswith((";", "#")))
    assert kubeconfig.parse(out.read_bytes(), str(out)).server == f"https://{first_master}:6443"
    assert "admin kubeconfig for" in capsys.readouterr().err
    # Again: the same bytes, nothing to do.
    assert cli.main(["kubeconfig", "-i", str(inv), "--state", str(state), "-o", str(out)]) == 0
    assert "(unchanged)" in capsys.readouterr().err
    assert sorted(p.name for p in out.parent.iterdir()) == ["config"]  # no staging left behind


def test_a_different_existing_file_is_kept_unless_forced(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    inv, state = _cluster(tmp_path, "hosts.allinone.ip.ini")
    out = tmp_path / "config"
    out.write_text("someone else's kubeconfig\n")
    assert cli.main(["kubeconfig", "-i", str(inv), "--state", str(state), "-o", str(out)]) == 2
    assert "--force" in capsys.readouterr().err
    assert out.read_text() == "someone else's kubeconfig\n"
    assert cli.main(["kubeconfig", "-i", str(inv), "--state", str(state), "-o", str(out), "--force"]) == 0
    assert kubeconfig.parse(out.read_bytes(), str(out)).server.endswith(":6443")
    assert stat.S_IMODE(out.stat().st_mode) == 0o600


def test_no_store_is_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    inv = tmp_path / "hosts.allinone.ip.ini"
    shutil.copy(variants.INVENTORIES / "hosts.allinone.ip.ini", inv)
    assert cli.main(["kubeconfig", "-i", str(inv), "--state", str(tmp_path / "nothing")]) == 2
    assert "no admin kubeconfig in the PKI store" in capsys.readouterr().err


def test_the_vip_may_come_from_the_variables_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    inv, state = _cluster(tmp_path, "hosts.m-master.ip.ini")
    vf = tmp_path / "variables.yaml"
    vf.write_text("lb_kube_apiserver_port: 9443\n")
    capsys.readouterr()
    assert cli.main(["kubeconfig", "-i", str(inv), "--state", str(state), "-e", f"@{vf}"]) == 0
    assert kubeconfig.parse(capsys.readouterr().out.encode(), "stdout").server == "https://10.56.56.10:9443"
