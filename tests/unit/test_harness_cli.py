"""The harness subcommands' parsing and error reporting through the real CLI boundary (nothing is booted here)."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.errors import EXIT_BAD_INPUT
from kha import cli, harness_cli
from scenarios import catalog


@pytest.fixture(autouse=True)
def state_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("KHA_STATE_DIR", str(tmp_path / "clusters"))
    return tmp_path / "clusters"


def test_up_arguments_become_a_spec() -> None:
    args = cli.build_parser().parse_args(["up", "m-master", "--driver", "qemu", "--isolated", "--name", "ci"])
    assert args.isolated
    spec = harness_cli.spec_for(args)
    assert (spec.cluster, spec.driver, len(spec.nodes)) == ("ci", "qemu", 4)


def test_up_from_an_inventory_file() -> None:
    path = catalog.get("allinone").inventory_hostname
    args = cli.build_parser().parse_args(["up", "-i", str(path)])
    spec = harness_cli.spec_for(args)
    assert spec.cluster == "allinone-hostname"
    assert not args.isolated  # the default is the workstation's system libvirt


def test_up_needs_exactly_one_source(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["up", "m-master", "-i", "x.ini"]) == EXIT_BAD_INPUT
    assert "either a scenario name or -i INVENTORY" in capsys.readouterr().err


def test_unknown_scenario_is_bad_input(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["up", "no-such-scenario"]) == 2
    assert "unknown scenario 'no-such-scenario'" in capsys.readouterr().err


def test_status_without_clusters(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["status"]) == 0
    assert "no clusters" in capsys.readouterr().out


def test_commands_on_a_missing_cluster_fail_clearly(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["ssh", "node1"]) == 1
    assert "no cluster is up" in capsys.readouterr().err
    assert cli.main(["snapshot", "s1", "--name", "ghost"]) == 1
    assert "no cluster state" in capsys.readouterr().err
    assert cli.main(["down", "--name", "ghost"]) == 1
    assert "no cluster ghost" in capsys.readouterr().err


def test_ssh_takes_name_after_the_node_and_the_command_after_double_dash() -> None:
    def request(*argv: str) -> tuple[str, str | None, list[str]]:
        args = cli.build_parser().parse_args(["ssh", *argv])
        return (args.node, *harness_cli.ssh_request(args))

    assert request("10.56.56.11", "--name", "c1", "--", "sudo", "ls", "-l") == (
        "10.56.56.11", "c1", ["sudo", "ls", "-l"])
    assert request("--name", "c1", "10.56.56.11", "--", "uptime") == ("10.56.56.11", "c1", ["uptime"])
    assert request("10.56.56.11") == ("10.56.56.11", None, [])
