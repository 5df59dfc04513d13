"""The fault catalogue is one consistent table: every case's selector and action exist, names are unique,
each bound is computed from the inventory's timers with its formula and source, and the CLI refuses what
cannot run (an unknown case, a topology without a VIP, a cluster that is not up) with exit 2 before
anything is touched."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.errors import EXIT_BAD_INPUT
from installer import topology
from kha import cli
from scenarios import catalog
from scenarios.failover import actions, catalogue, run, selectors

M_MASTER = topology.load(catalog.get("m-master").inventory)


def test_every_case_names_a_known_selector_and_action_once() -> None:
    names = [c.name for c in catalogue.CASES]
    assert len(names) == len(set(names))
    assert len(names) >= 15
    for case in catalogue.CASES:
        assert case.selector in selectors.SELECTORS, case.name
        assert case.action in actions.ACTIONS, case.name


@pytest.mark.parametrize("case", catalogue.CASES, ids=lambda c: c.name)
def test_every_bound_is_derived_from_the_timers_with_its_source(case: catalogue.Case) -> None:
    bound = case.bound(M_MASTER)
    assert 0 < bound.seconds < 600
    assert bound.formula and bound.source
    assert case.margin >= 1.0


def test_the_stopped_haproxy_bound_follows_the_keepalived_timers() -> None:
    # check 1 s × fall 2 + skew (256 − 140)/256 for the second [lb] node (priority 150 − 10), + one probe timeout.
    bound = catalogue.get("stop-haproxy-on-vrrp-master").bound(M_MASTER)
    skew = (256 - 140) / 256
    assert bound.seconds == pytest.approx(2 + skew + 1), bound.formula


def test_cases_that_need_their_own_clock_or_kernel_are_refused_on_lxc() -> None:
    assert run.problem(catalogue.get("clock-jump"), M_MASTER, "lxc") is not None
    assert run.problem(catalogue.get("netem-etcd-leader"), M_MASTER, "lxc") is not None
    assert run.problem(catalogue.get("clock-jump"), M_MASTER, "qemu") is None
    allinone = topology.load(catalog.get("allinone").inventory)
    said = run.problem(catalogue.get("kill-etcd-leader"), allinone, "lxc")
    assert said is not None and "VIP" in said


@pytest.mark.parametrize(("argv", "says"), [
    (["fault", "run", "no-such-case", "--name", "x", "-i", str(catalog.get("m-master").inventory)],
     "unknown case 'no-such-case'"),
    (["fault", "run", "kill-etcd-leader", "--name", "x", "-i", str(catalog.get("allinone").inventory)],
     "needs a VIP on two or more [lb] nodes"),
    (["fault", "run", "kill-etcd-leader", "--name", "kha-no-such-cluster", "-i",
      str(catalog.get("m-master").inventory)], "cluster kha-no-such-cluster is not up"),
])
def test_the_cli_refuses_with_exit_2_and_one_line(argv: list[str], says: str, capsys: pytest.CaptureFixture[str],
                                                   monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("KHA_STATE_DIR", str(tmp_path / "clusters"))
    assert cli.main(argv) == EXIT_BAD_INPUT
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and says in err[0], err


def test_fault_list_shows_every_case_with_its_bound(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["fault", "list", "-i", str(catalog.get("m-master").inventory)]) == 0
    out = capsys.readouterr().out
    for case in catalogue.CASES:
        assert case.name in out
    assert "3 × advert_int 1s" in out
