"""The matrix file, the cells it makes, what runs here and why not, and the runner (with a fake command)."""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest

from core.errors import InputError
from installer import topology
from installer.errors import ConfigError
from kha import cli
from scenarios import catalog
from scenarios.matrix import invocation, probe, results, runner, variant
from scenarios.matrix.model import MATRIX, Cell, load
from scenarios.matrix.probe import Host

ROOT = Path(__file__).resolve().parents[2]
PR_CELLS = [
    "debian-11/1.20.2/allinone/local-nginx/qemu/checks",
    "debian-12/1.20.2/allinone/local-nginx/lxc/install",
    "debian-13/1.20.2/m-master/slb/lxc/checks",
    "debian-12/1.20.2/m-master/nginx-vip/lxc/install",
    "debian-13/1.20.2/allinone/local-haproxy/lxc/checks",
    "debian-12/1.20.2/m-master/haproxy-vip/lxc/failover",
]


def host(**kw: object) -> Host:
    facts: dict[str, object] = {"accel": "tcg", "accel_how": "test", "reachable": frozenset(),
                                "mem_available_mib": 20000,
                                "images": {"debian-11": None, "debian-12": None, "debian-13": None}}
    facts.update(kw)
    return Host(**facts)  # type: ignore[arg-type]


def write_matrix(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "matrix.toml"
    path.write_text(text)
    return path


SMALL = """\
[axes]
os = ["debian-12", "debian-11"]
kubernetes = ["1.20.2", "latest"]
topology = ["allinone", "m-master"]
lb = ["local-nginx", "haproxy-vip"]
driver = ["lxc"]
suite = ["install"]

[[exclude]]
topology = "allinone"
lb = "haproxy-vip"
why = "no VIP on one node"

[[needs]]
kubernetes = "latest"
internet = ["dl.k8s.io"]
why = "online"

[[timeout]]
minutes = 30

[tiers.pr]
include = [
    { os = "debian-12", kubernetes = "1.20.2", topology = "m-master", lb = "haproxy-vip" },
    { os = "debian-12", kubernetes = "1.20.2", topology = "allinone" },
]
"""


# -- the matrix file ---------------------------------------------------------------------------------------


def test_the_pr_tier_is_the_ci_list_in_its_order() -> None:
    m = load()
    assert [c.id for c in m.tier_cells("pr")] == PR_CELLS


def test_each_pr_cell_is_the_tox_command_ci_ran(tmp_path: Path) -> None:
    """allinone, m-master (with another image and LB where the cell says so), failover-pr: the pytest
    arguments tox.ini gives them (the driver spelled out where tox leaves lxc to the default; JUnit and
    failover results put in the cell's folder)."""
    tox_ini = (ROOT / "tox.ini").read_text()
    for line in ("pytest -m e2e --kha-scenario {envname} tests/e2e",
                 "pytest -m failover --kha-tier pr tests/failover"):
        assert line in tox_ini
    expected = [
        ["-m", "e2e", "--kha-scenario", "allinone", "--kha-driver", "qemu", "--kha-os", "debian-11",
         "tests/e2e/test_checks.py"],
        ["-m", "e2e", "--kha-scenario", "allinone", "--kha-driver", "lxc", "tests/e2e"],
        ["-m", "e2e", "--kha-scenario", "m-master", "--kha-driver", "lxc", "--kha-os", "debian-13", "--kha-lb", "slb",
         "tests/e2e/test_checks.py"],
        ["-m", "e2e", "--kha-scenario", "m-master", "--kha-driver", "lxc", "--kha-lb", "nginx-vip", "tests/e2e"],
        ["-m", "e2e", "--kha-scenario", "allinone", "--kha-driver", "lxc", "--kha-os", "debian-13", "--kha-lb",
         "local-haproxy", "tests/e2e/test_checks.py"],
        ["-m", "failover", "--kha-tier", "pr", "--kha-driver", "lxc", "tests/failover"],
    ]
    for cell, want in zip(load().tier_cells("pr"), expected, strict=True):
        folder = tmp_path / cell.slug
        argv = invocation.argv(cell, "pr", folder)
        assert argv[1:4] == ["-m", "pytest", "--junitxml"] and argv[4] == str(folder / "junit.xml")
        rest = argv[5:]
        if "--kha-results" in rest:
            i = rest.index("--kha-results")
            assert rest[i + 1] == str(folder / "failover")
            del rest[i:i + 2]
        assert [str(Path(a).relative_to(ROOT)) if a.startswith(str(ROOT)) else a for a in rest] == want


def test_every_cell_has_a_timeout_and_tier_cells_are_not_excluded() -> None:
    m = load()
    for name in m.tiers:
        for cell in m.tier_cells(name):
            assert m.excluded(cell) is None
            assert m.timeout_minutes(cell) > 0
    assert all(m.excluded(c) is None for c in m.cells())
    assert Cell.parse(PR_CELLS[5]).suite == "failover"


def test_exclusions_and_needs_apply(tmp_path: Path) -> None:
    m = load(write_matrix(tmp_path, SMALL))
    ids = {c.id for c in m.cells()}
    assert "debian-12/1.20.2/allinone/haproxy-vip/lxc/install" not in ids
    assert len(ids) == 2 * 2 * 3  # os × kubernetes × (topology, lb) pairs left
    online = Cell("debian-12", "latest", "allinone", "local-nginx", "lxc", "install")
    assert [n.internet for n in m.needs_of(online)] == [("dl.k8s.io",)]
    assert [c.id for c in m.tier_cells("pr")] == [
        "debian-12/1.20.2/m-master/haproxy-vip/lxc/install",
        "debian-12/1.20.2/allinone/local-nginx/lxc/install",
    ]


@pytest.mark.parametrize(("change", "expected"), [
    (('topology = "m-master", lb = "haproxy-vip" }', 'topology = "m-mastr", lb = "haproxy-vip" }'),
     r"matrix\.toml:24: topology: unknown value 'm-mastr'"),
    (('[[exclude]]\ntopology', '[[exclude]]\ncolour = "red"\ntopology'), r"matrix\.toml:10: unknown axis 'colour'"),
    (('why = "no VIP on one node"\n', ''), r"matrix\.toml:9: why: a sentence is needed"),
    (('driver = ["lxc"]', 'driver = ["lxc", "lxc"]'), r"matrix\.toml:6: axes\.driver: a value is listed twice"),
    (('kubernetes = ["1.20.2", "latest"]', 'kubernetes = ["1.20.2", "newest"]'),
     r"matrix\.toml:3: axes\.kubernetes: 'newest' is neither"),
    (("[[timeout]]\nminutes = 30", "[[timeout]]\nminutes = 0"), r"minutes: a positive whole number"),
    (('{ os = "debian-12", kubernetes = "1.20.2", topology = "allinone" },',
      '{ os = "debian-12", kubernetes = "1.20.2", topology = "allinone", lb = "haproxy-vip" },'), None),
])
def test_bad_matrix_files_name_file_and_line(tmp_path: Path, change: tuple[str, str], expected: str | None) -> None:
    old, new = change
    assert old in SMALL
    path = write_matrix(tmp_path, SMALL.replace(old, new))
    if expected is None:  # that include entry now selects only excluded cells: still a valid tier
        load(path)
        return
    with pytest.raises(ConfigError) as err:
        load(path)
    assert re.search(expected, str(err.value)), str(err.value)


def test_a_tier_that_selects_nothing_is_refused(tmp_path: Path) -> None:
    text = SMALL.replace('include = [\n', 'include = [\n    { topology = "allinone", lb = "haproxy-vip" },\n')
    text = text.split("    { os = \"debian-12\", kubernetes = \"1.20.2\", topology = \"m-master\"")[0] + "]\n"
    with pytest.raises(ConfigError, match=r"matrix\.toml:\d+: tier pr: selects no cell"):
        load(write_matrix(tmp_path, text))


def test_not_toml_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not TOML"):
        load(write_matrix(tmp_path, "[axes\n"))


def test_selection_errors_name_the_flag() -> None:
    m = load()
    with pytest.raises(InputError, match="--tier nope: no such tier"):
        m.select("nope")
    with pytest.raises(InputError, match=r"no cell of tier pr matching --cells \*/s-master/\*"):
        m.select("pr", ["*/s-master/*"])
    with pytest.raises(InputError, match="--cells allinone: a cell id is"):
        m.select(None, ["allinone"])
    assert [c.id for c in m.select("pr", ["*/m-master/slb/*"])] == [PR_CELLS[2]]


# -- what runs here ------------------------------------------------------------------------------------------


def test_refusals_say_every_reason() -> None:
    m = load()
    cell = Cell("ubuntu-24.04", "latest", "m-master", "haproxy-vip", "qemu", "install")
    need = probe.needs(m, cell)
    assert need.kvm and "dl.k8s.io" in need.internet and need.ram_mib > 4096
    reasons = probe.refusals(cell, need, host(mem_available_mib=1000,
                                              images={"ubuntu-24.04": "no ubuntu mirror"}))
    text = "\n".join(reasons)
    for part in ("latest has no fixture yet", "not configured to reach", "needs a KVM", "MiB available",
                 "base image ubuntu-24.04: no ubuntu mirror"):
        assert part in text, part
    assert len(reasons) == 5


def test_old_runc_on_lxc_is_refused_where_the_bounding_set_lacks_a_capability(tmp_path: Path) -> None:
    m = load()
    cell = Cell("debian-11", "1.20.2", "allinone", "local-nginx", "lxc", "install")
    images = {"debian-11": None}
    assert probe.refusals(cell, probe.needs(m, cell), host(images=images)) == []
    (why,) = probe.refusals(cell, probe.needs(m, cell), host(images=images, missing_caps=("CAP_SYS_RESOURCE",)))
    assert "runc 1.0.0~rc93" in why and "lacks CAP_SYS_RESOURCE" in why and "run it on qemu" in why
    on_qemu = Cell("debian-11", "1.20.2", "allinone", "local-nginx", "qemu", "install")
    assert probe.refusals(on_qemu, probe.needs(m, on_qemu), host(images=images, missing_caps=("CAP_BPF",))) == []
    status, last = tmp_path / "status", tmp_path / "cap_last_cap"
    status.write_text("Name:\tx\nCapBnd:\t000001fffeffffff\n")
    last.write_text("40\n")
    assert probe.missing_capabilities(status, last) == ("CAP_SYS_RESOURCE",)
    status.write_text("CapBnd:\t000001ffffffffff\n")
    assert probe.missing_capabilities(status, last) == ()


def test_a_pr_cell_runs_on_a_machine_like_ours() -> None:
    m = load()
    for cell in m.tier_cells("pr"):
        assert probe.refusals(cell, probe.needs(m, cell), host()) == [], cell.id


def test_internet_is_configuration_only(tmp_path: Path) -> None:
    """Reachable hosts come from the apt configuration and KHA_REACHABLE_HOSTS; nothing is contacted."""
    m = load()
    cell = Cell("debian-12", "latest", "allinone", "local-nginx", "lxc", "install")
    apt = tmp_path / "apt"
    apt.mkdir()
    h = probe.probe(m, [cell], env={"KHA_REACHABLE_HOSTS": "dl.k8s.io,pkgs.k8s.io"}, meminfo=_meminfo(tmp_path))
    assert {"dl.k8s.io", "pkgs.k8s.io"} <= h.reachable
    assert h.accel is None  # no selected cell needs KVM: not probed
    offline = probe.probe(m, [cell], env={"KHA_OFFLINE": "1", "KHA_REACHABLE_HOSTS": "dl.k8s.io"},
                          meminfo=_meminfo(tmp_path))
    assert offline.reachable == frozenset()
    assert h.mem_available_mib == 12345


def test_kvm_is_probed_only_when_a_cell_needs_it(tmp_path: Path) -> None:
    m = load()
    asked: list[int] = []

    def kvm() -> tuple[str, str]:
        asked.append(1)
        return "kvm", "fake probe"

    qemu_multi = Cell("debian-12", "1.20.2", "m-master", "haproxy-vip", "qemu", "install")
    h = probe.probe(m, [qemu_multi], env={}, kvm=kvm, meminfo=_meminfo(tmp_path))
    assert (h.accel, asked) == ("kvm", [1])
    probe.probe(m, [Cell("debian-12", "1.20.2", "allinone", "local-nginx", "qemu", "install")], env={}, kvm=kvm,
                meminfo=_meminfo(tmp_path))
    assert asked == [1]  # allinone on qemu runs on TCG: no probe boot


def _meminfo(tmp_path: Path) -> Path:
    path = tmp_path / "meminfo"
    path.write_text("MemTotal:       24000000 kB\nMemAvailable:   12641280 kB\n")
    return path


def test_relative_versions_resolve_from_release_markers() -> None:
    pages = {"https://dl.k8s.io/release/stable.txt": "v1.34.2\n",
             "https://dl.k8s.io/release/stable-1.32.txt": "v1.32.9"}
    assert invocation.resolve("latest", pages.__getitem__) == invocation.Resolved(
        "latest", "1.34.2", "https://dl.k8s.io/release/stable.txt")
    assert invocation.resolve("latest-2", pages.__getitem__).version == "1.32.9"
    assert invocation.resolve("1.20.2", pages.__getitem__).source == "the offline bundle"
    with pytest.raises(ValueError, match="not a version"):
        invocation.resolve("latest", lambda url: "<html>")


# -- the runner ------------------------------------------------------------------------------------------


class FakePytest:
    """Stands in for the cell's pytest: writes JUnit, the e2e timing line and failover results."""

    def __init__(self, fail: set[str] | None = None) -> None:
        self.fail = fail or set()
        self.calls: list[tuple[list[str], Mapping[str, str]]] = []

    def __call__(self, argv: Sequence[str], logfile: Path, env: Mapping[str, str]) -> int:
        self.calls.append((list(argv), env))
        cell = env["KHA_MATRIX_CELL"]
        bad = cell in self.fail
        junit = Path(argv[argv.index("--junitxml") + 1])
        junit.write_text(f'<testsuites><testsuite tests="3" failures="{int(bad)}" errors="0" skipped="0"/>'
                         "</testsuites>")
        logfile.write_text("$ fake pytest\n=== kha e2e ===\n   151.3s  kha install (every phase)\n")
        if "--kha-results" in argv:
            case = Path(argv[argv.index("--kha-results") + 1]) / "kill-etcd-leader"
            case.mkdir(parents=True)
            (case / "result.json").write_text(json.dumps({"case": "kill-etcd-leader", "ok": True,
                                                          "outage_s": 2.5, "bound_s": 9.0}))
        return 1 if bad else 0


def test_run_writes_results_and_summary(tmp_path: Path) -> None:
    m = load()
    out = tmp_path / "out"
    plan = runner.plan(m, "pr", (), out, host=host())
    fake = FakePytest(fail={PR_CELLS[2]})
    lines: list[str] = []
    ran = runner.run(plan, 1, out, lines.append, execute=fake)
    assert [c[1]["KHA_MATRIX_CELL"] for c in fake.calls] == PR_CELLS
    assert all(c[1]["KHA_NO_SKIP"] == "1" for c in fake.calls)
    assert not ran.ok
    assert [r.ok for r in ran.results] == [True, True, False, True, True, True]
    loaded = results.load_run(out)
    assert [r.cell for r in loaded.results] == PR_CELLS
    failover = loaded.results[5]
    assert failover.figures == {"install_s": 151.3, "failover/kill-etcd-leader/outage_s": 2.5}
    assert failover.kubernetes == {"asked": "1.20.2", "version": "1.20.2", "source": "the offline bundle"}
    assert lines[2].startswith("✗ " + PR_CELLS[2])
    # the failed cell's log, under its line:
    assert lines[3] == "    $ fake pytest\n    === kha e2e ===\n       151.3s  kha install (every phase)"
    assert lines[4].startswith("✓ " + PR_CELLS[3])
    assert lines[-1].startswith("✗ matrix pr") and "5 passed, 1 failed, 0 refused" in lines[-1]


def test_a_cell_without_tests_or_with_a_failed_case_fails(tmp_path: Path) -> None:
    m = load()
    out = tmp_path / "out"
    plan = runner.plan(m, "pr", ["*/failover"], out, host=host())

    def broken_case(argv: Sequence[str], logfile: Path, env: Mapping[str, str]) -> int:
        case = Path(argv[argv.index("--kha-results") + 1]) / "stop-haproxy"
        case.mkdir(parents=True)
        (case / "result.json").write_text(json.dumps({"case": "stop-haproxy", "ok": False, "outage_s": None,
                                                      "bound_s": 7.0}))
        logfile.write_text("")
        return 0  # exit 0 but no JUnit and a broken promise: still a failure

    ran = runner.run(plan, 1, out, lambda _l: None, execute=broken_case)
    assert not ran.results[0].ok


def test_refused_cells_of_a_tier_are_recorded_not_skipped(tmp_path: Path) -> None:
    m = load()
    out = tmp_path / "out"
    with pytest.raises(InputError, match="2 of the cells asked for cannot run here"):
        runner.plan(m, "nightly", ["debian-12/*/m-master/haproxy-vip/qemu/install"], out, host=host())
    tier_plan = runner.plan(m, "nightly", (), out, host=host(images={"debian-11": None, "debian-12": None,
                                                                       "debian-13": None, "ubuntu-24.04": None}))
    assert tier_plan.refused and all(r.reasons for r in tier_plan.refused)
    ran = runner.run(tier_plan, 1, out, lambda _l: None, execute=FakePytest())
    assert not ran.ok  # every cell that ran passed, but some were refused
    summary = json.loads((out / results.SUMMARY).read_text())
    assert {r["cell"] for r in summary["refused"]} == {r.cell for r in tier_plan.refused}


def test_cells_may_be_given_more_than_once() -> None:
    args = cli.build_parser().parse_args(["matrix", "run", "--cells", "a/*", "--cells", "b/*", "c/*"])
    assert args.cells == ["a/*", "b/*", "c/*"]


def test_pytest_arguments_reach_every_cell(tmp_path: Path) -> None:
    plan = runner.plan(load(), "pr", ["*/m-master/slb/*"], tmp_path, host=host(), pytest_args=["-x", "-k", "kubectl"])
    assert plan.runnable[0].argv[-3:] == ["-x", "-k", "kubectl"]
    args = cli.build_parser().parse_args(["matrix", "run", "--tier", "pr", "--", "-x", "-k", "kubectl"])
    assert args.pytest_args == ["-x", "-k", "kubectl"]


def test_jobs_must_fit_in_memory(tmp_path: Path) -> None:
    m = load()
    plan = runner.plan(m, "pr", (), tmp_path, host=host(mem_available_mib=12000))
    runner.check_jobs(plan, 1)
    with pytest.raises(InputError, match="--jobs 2: the 2 largest cells give their nodes 16384 MiB"):
        runner.check_jobs(plan, 2)
    with pytest.raises(InputError, match="--jobs 0"):
        runner.check_jobs(plan, 0)


# -- the command line ------------------------------------------------------------------------------------


def test_cli_bad_input_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["matrix", "list", "--tier", "nope"]) == 2
    assert "--tier nope: no such tier" in capsys.readouterr().err
    assert cli.main(["matrix", "run", "--tier", "pr", "--cells", "*/nothing/*", "--out", str(tmp_path)]) == 2
    assert "no cell of tier pr matching --cells" in capsys.readouterr().err
    # A cell asked for by name that cannot run here: refused before anything starts.
    code = cli.main(["matrix", "run", "--cells", "debian-12/1.20.2/allinone/slb/lxc/install",
                     "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2 and "cannot run here" in err and "no VIP address to give the external load balancer" in err
    assert not (tmp_path / "o").exists()
    bad = write_matrix(tmp_path, SMALL.replace('lb = "haproxy-vip" }', 'lb = "vip" }'))
    assert cli.main(["matrix", "--matrix", str(bad), "list"]) == 2
    assert f"{bad}:24: lb: unknown value 'vip'" in capsys.readouterr().err


def test_cli_list_shows_needs_and_verdicts(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KHA_ACCEL", "tcg")  # no probe boot in a unit test (the harness honours it too)
    assert cli.main(["matrix", "list", "--tier", "nightly"]) == 0
    out = capsys.readouterr().out
    assert "✗ ubuntu-24.04/latest/m-master/haproxy-vip/qemu/install" in out
    assert "internet (dl.k8s.io, pkgs.k8s.io)" in out
    assert re.search(r"^14 cells, \d+ runnable here, \d+ not$", out, re.MULTILINE)
    assert "needs a KVM that boots guests; here: tcg (KHA_ACCEL)" in out
    assert MATRIX.is_file()


# -- variants: another image, another load balancer ----------------------------------------------------------


def test_an_inventory_rewritten_for_another_load_balancer(tmp_path: Path) -> None:
    local = topology.load(variant.inventory("m-master", "local-haproxy", tmp_path / "local.ini"))
    assert variant.lb_value(local) == "local-haproxy" and local.vip is None and local.lb == ()
    assert [h.name for h in local.masters] == ["10.56.56.11", "10.56.56.12", "10.56.56.13"]
    nginx = topology.load(variant.inventory("m-master", "nginx-vip", tmp_path / "nginx.ini"))
    assert variant.lb_value(nginx) == "nginx-vip" and [h.name for h in nginx.lb] == ["10.56.56.11", "10.56.56.12"]
    assert variant.problem("s-master", "haproxy-vip") == ("s-master's inventory has no [lb] nodes and no VIP for "
                                                          "haproxy-vip")
    slb = topology.load(variant.inventory("m-master", "slb", tmp_path / "slb.ini"))
    assert variant.lb_value(slb) == "slb" and slb.lb == () and str(slb.settings.lb_kube_apiserver_ip) == "10.56.56.10"
    assert "no VIP address" in (variant.problem("allinone", "slb") or "")
    with pytest.raises(ValueError, match="no \\[lb\\] nodes"):
        variant.inventory("allinone", "nginx-vip", tmp_path / "x.ini")


def test_a_varied_cell_passes_its_image_and_load_balancer_to_the_e2e_tier(tmp_path: Path) -> None:
    cell = Cell("debian-13", "1.20.2", "m-master", "nginx-vip", "lxc", "install")
    assert invocation.unsupported(cell) is None
    argv = invocation.argv(cell, "pr", tmp_path)
    assert argv[argv.index("--kha-os") + 1] == "debian-13" and argv[argv.index("--kha-lb") + 1] == "nginx-vip"
    native = invocation.argv(Cell("debian-12", "1.20.2", "m-master", "haproxy-vip", "lxc", "install"), "pr", tmp_path)
    assert "--kha-os" not in native and "--kha-lb" not in native
    spec = variant.spec("allinone", Path(catalog.get("allinone").inventory), "lxc", "debian-13")
    assert spec.image == "debian-13"
    failover = Cell("debian-13", "1.20.2", "m-master", "haproxy-vip", "lxc", "failover")
    assert "only the install and checks suites take another" in (invocation.unsupported(failover) or "")


def test_a_checks_cell_runs_the_install_and_only_the_check_tests(tmp_path: Path) -> None:
    cell = Cell("debian-13", "1.20.2", "m-master", "slb", "lxc", "checks")
    assert invocation.unsupported(cell) is None
    argv = invocation.argv(cell, "pr", tmp_path)
    assert argv[-1] == str(ROOT / "tests" / "e2e" / "test_checks.py")
    assert argv[argv.index("--kha-os") + 1] == "debian-13" and argv[argv.index("--kha-lb") + 1] == "slb"
    whole = invocation.argv(Cell("debian-13", "1.20.2", "m-master", "slb", "lxc", "install"), "pr", tmp_path)
    assert whole[-1] == str(ROOT / "tests" / "e2e")


def test_jobs_run_cells_two_at_a_time_and_the_failover_cell_alone(tmp_path: Path) -> None:
    out = tmp_path / "out"
    plan = runner.plan(load(), "pr", (), out, host=host())
    lock = threading.Lock()
    running: set[str] = set()
    beside: dict[str, set[str]] = {}
    fake = FakePytest()

    def execute(argv: Sequence[str], logfile: Path, env: Mapping[str, str]) -> int:
        cell = env["KHA_MATRIX_CELL"]
        with lock:
            beside[cell] = set(running)
            for other in running:
                beside[other].add(cell)
            running.add(cell)
        # The last e2e cell is slow: a free slot beside it must not go to the failover cell.
        time.sleep(0.3 if cell == PR_CELLS[-2] else 0.05)
        with lock:
            running.discard(cell)
        return fake(argv, logfile, env)

    ran = runner.run(plan, 2, out, lambda _l: None, execute=execute)
    assert ran.ok and ran.jobs == 2
    failover = [c for c in PR_CELLS if c.endswith("/failover")]
    assert failover and all(beside[c] == set() for c in failover)
    assert max(len(others) for others in beside.values()) >= 1  # the e2e cells did run beside each other
