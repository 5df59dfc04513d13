"""``kha matrix run --hosts FILE``: the hosts file (every bad line named by file and line, exit 2, nothing run)
and the runner giving each cell's pytest its host and recording it (the scheduler itself:
test_matrix_schedule.py). Pure logic: the cells' pytest is a fake."""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest

from core.errors import EXIT_BAD_INPUT, InputError
from kha import cli
from scenarios.matrix import hosts, results, runner
from scenarios.matrix.hosts import Hypervisor
from scenarios.matrix.model import MATRIX, Matrix, load
from scenarios.matrix.probe import Host

HV1 = "qemu+ssh://ci@hv1.example/system"
HV2 = "qemu+ssh://hv2.example:2222/system?keyfile=/k/id"
LOCAL = "qemu+unix:///system?socket=/run/kha-second/libvirt-sock"
#: a tier of cells on both drivers: allinone on LXC and on qemu, the failover cell (LXC)
BOTH = ("\n[tiers.both]\ndescription = \"both drivers\"\ninclude = [\n"
        '{ os = "debian-12", kubernetes = "1.20.2", topology = "allinone", lb = "local-nginx", suite = "install" },\n'
        '{ os = "debian-12", kubernetes = "1.20.2", topology = "m-master", lb = "haproxy-vip", driver = "lxc", '
        'suite = "failover" },\n]\n')


def both(tmp_path: Path) -> Matrix:
    path = tmp_path / "matrix.toml"
    path.write_text(MATRIX.read_text() + BOTH)
    return load(path)


def parse(text: str) -> list[Hypervisor]:
    return hosts.parse(text, "hosts.txt")


# -- the file ----------------------------------------------------------------------------------------------


def test_one_uri_per_line_with_cells_at_once_and_comments() -> None:
    found = parse(f"# nightly hypervisors\n\n{HV1}   2\n  {HV2}  # the small one\n{LOCAL} 1\n")
    assert [(h.text, h.slots, h.line) for h in found] == [(HV1, 2, 3), (HV2, 1, 4), (LOCAL, 1, 5)]
    assert [h.uri.local for h in found] == [False, False, True]


@pytest.mark.parametrize(("text", "message"), [
    (f"{HV1}\n{HV2} 2 extra\n", "hosts.txt:2: expected 'URI [CELLS_AT_ONCE]', got 3 words"),
    (f"{HV1} 0\n", "hosts.txt:1: cells at once '0': a whole number, at least 1"),
    (f"{HV1} two\n", "hosts.txt:1: cells at once 'two'"),
    ("# c\nhttp://hv1/system\n", "hosts.txt:2: host 'http://hv1/system': driver 'http'"),
    ("qemu+pigeon://hv1/system\n", "hosts.txt:1: host 'qemu+pigeon://hv1/system': transport 'pigeon'"),
    ("hv1.example\n", "hosts.txt:1: host 'hv1.example': not a URI"),
    # The same daemon, whichever driver its URI names:
    (f"{HV1}\n\n{HV1.replace('qemu', 'lxc', 1)} 3\n", "hosts.txt:3: host lxc+ssh://ci@hv1.example/system is "
                                                    "already listed on line 1"),
    ("# nothing but comments\n\n   \n", "hosts.txt: no hosts"),
    ("", "hosts.txt: no hosts"),
])
def test_bad_lines_name_the_file_and_line(text: str, message: str) -> None:
    with pytest.raises(InputError) as err:
        parse(text)
    assert str(err.value).startswith(message)


def test_an_unreadable_file_is_bad_input(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"--hosts .*/missing\.txt: cannot read it: No such file or directory"):
        hosts.load(tmp_path / "missing.txt")
    with pytest.raises(InputError, match="cannot read it: Is a directory"):
        hosts.load(tmp_path)


def test_lxc_goes_only_to_a_daemon_on_this_machine() -> None:
    remote, local = parse(f"{HV1}\n{LOCAL}\n")
    assert remote.takes("qemu") is None and local.takes("lxc") is None and local.takes("qemu") is None
    assert "LXC nodes need overlay mounts" in (remote.takes("lxc") or "")


# -- the runner and the command line -----------------------------------------------------------------------


def here() -> Host:
    return Host(accel="tcg", accel_how="test", reachable=frozenset(), mem_available_mib=20000,
                images={"debian-12": None})


def fake_pytest(calls: list[list[str]]) -> runner.Execute:
    lock = threading.Lock()

    def run(argv: Sequence[str], logfile: Path, env: Mapping[str, str]) -> int:
        with lock:
            calls.append(list(argv))
        junit = Path(argv[argv.index("--junitxml") + 1])
        junit.write_text('<testsuite tests="2" failures="0" errors="0" skipped="0"/>')
        logfile.write_text("$ fake pytest\n")
        if "--kha-results" in argv:
            case = Path(argv[argv.index("--kha-results") + 1]) / "kill-etcd-leader"
            case.mkdir(parents=True)
            (case / "result.json").write_text(json.dumps({"case": "kill-etcd-leader", "ok": True,
                                                          "outage_s": 2.5, "bound_s": 9.0}))
        return 0

    return run


def test_each_cell_runs_with_its_host_and_the_results_say_which(tmp_path: Path) -> None:
    hv = parse(f"{HV1} 2\n{LOCAL}\n")
    out = tmp_path / "out"
    plan = runner.plan(both(tmp_path), "both", (), out, host=here(), hypervisors=hv)
    calls: list[list[str]] = []
    lines: list[str] = []
    ran = runner.run(plan, 1, out, lines.append, execute=fake_pytest(calls))
    assert ran.ok and ran.jobs == 3
    by_cell = {r.cell: r.host for r in ran.results}
    # LXC cells only on the daemon on this machine; the qemu cell on whichever host was free.
    assert {c: h for c, h in by_cell.items() if "/lxc/" in c} == {c: LOCAL for c in by_cell if "/lxc/" in c}
    for argv in calls:
        assert argv[-2] == "--kha-connect" and argv[-1] in (HV1, LOCAL)
    loaded = results.load_run(out)
    assert {r.cell: r.host for r in loaded.results} == by_cell
    assert json.loads((out / results.SUMMARY).read_text())["hosts"] == by_cell
    assert all(f"; on {by_cell[line.split()[1]]};" in line for line in lines[:-1])


def test_cells_no_listed_host_can_boot_are_refused_with_the_reason(tmp_path: Path) -> None:
    hv = parse(f"{HV1}\n")
    with pytest.raises(InputError, match="LXC nodes need overlay mounts"):
        runner.plan(both(tmp_path), "both", ["*/lxc/install"], tmp_path, host=here(), hypervisors=hv)
    plan = runner.plan(both(tmp_path), "both", (), tmp_path, host=here(), hypervisors=hv)
    assert [p.cell.driver for p in plan.runnable] == ["qemu"]
    assert all("/lxc/" in r.cell and "LXC nodes need overlay mounts" in r.reasons[-1] for r in plan.refused)


def test_cli_refuses_a_bad_hosts_file_before_anything_runs(tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "hosts.txt"
    bad.write_text(f"{HV1}\n{HV2} lots\n")
    out = tmp_path / "o"
    assert cli.main(["matrix", "run", "--tier", "pr", "--hosts", str(bad), "--out", str(out)]) == EXIT_BAD_INPUT
    assert f"{bad}:2: cells at once 'lots'" in capsys.readouterr().err
    assert cli.main(["matrix", "run", "--tier", "pr", "--hosts", str(tmp_path / "nope"), "--out", str(out)]) == 2
    assert "cannot read it" in capsys.readouterr().err
    bad.write_text(f"{HV1}\n")
    assert cli.main(["matrix", "run", "--tier", "pr", "--hosts", str(bad), "--jobs", "2", "--out", str(out)]) == 2
    assert "the hosts file says how many cells each host runs at once" in capsys.readouterr().err
    assert not out.exists()
