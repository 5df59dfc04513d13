"""Reproducible bug reports, end to end on the installed m-master (issue: `kha report`, `kha replay`).

1. A failing fault case — ``stop-haproxy-on-vrrp-master`` held to a tenth of its bound, an outage no
   failover can meet — run as a pytest test of its own (a child pytest with the report plugin, as CI runs
   the tiers): the plugin writes a report on its own and the failure's output names the file. The same
   case at its real bound, with ``--kha-report always``, gives a passing case's report.
2. Both reports: secrets redacted, artefacts from every node, the case's records; ``kha report check``
   decides them again offline with the same verdicts; ``kha report show`` names the failed check.
3. ``kha replay FAILING PASSING --repeat 3`` boots a new m-master, installs it from the recorded bundle,
   re-runs each case three times: reproduced 3/3 (the same check fails each time) and 3/3 passes. CI's
   tier (``--kha-tier pr``) replays each once: the boot and install are the same, and two more runs of each
   case (~55 s apiece) are what the nightly's whole tier adds.

The session's own topology is frozen while the replay's runs, so the two do not share 2 cores; every
later case reverts it to its snapshot anyway.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from kha import cli
from scenarios.installed import Installed
from scenarios.report.model import open_report

pytestmark = pytest.mark.failover

CASE = "stop-haproxy-on-vrrp-master"
FAILED_CHECK = "outage through the VIP within the bound"
ROOT = Path(__file__).resolve().parents[2]

INNER = '''
import os
import re
from pathlib import Path

import pytest

from scenarios.failover import catalogue, run
from scenarios.installed import Installed
from scenarios.report.make import Ran
from scenarios.report.model import CaseRef
from scenarios.report.pytest_plugin import note


@pytest.fixture
def kept() -> Installed:
    inst = Installed.attach(os.environ["KHA_TEST_CLUSTER"], os.environ["KHA_TEST_INVENTORY"],
                            os.environ["KHA_TEST_STATE"], os.environ["KHA_TEST_BUNDLE"])
    yield inst
    inst.close()


def test_case(kept: Installed, request: pytest.FixtureRequest) -> None:
    scale = float(os.environ["KHA_TEST_SCALE"])
    out = Path(os.environ["KHA_TEST_OUT"])
    note(request.node, Ran(CaseRef("{case}", bound_scale=scale), out / "{case}"))
    done = run.run_case(catalogue.get("{case}"), kept, out, bound_scale=scale)
    assert done.result.ok, [c.name for c in done.result.failures()]
'''


def _child_pytest(inst: Installed, tmp: Path, scale: float, mode: str) -> tuple[subprocess.CompletedProcess[str], Path]:
    """Run the case as a test of a child pytest with the report plugin; its output and its report folder."""
    tmp.mkdir()
    (tmp / "test_inner.py").write_text(INNER.replace("{case}", CASE))
    reports = tmp / "reports"
    assert inst.bundle is not None
    env = {**os.environ, "PYTHONPATH": str(ROOT), "KHA_STATE_DIR": str(inst.cluster.state.state_dir.parent),
           "KHA_TEST_CLUSTER": inst.cluster.name, "KHA_TEST_INVENTORY": str(inst.inventory),
           "KHA_TEST_STATE": str(inst.state), "KHA_TEST_BUNDLE": str(inst.bundle),
           "KHA_TEST_SCALE": str(scale), "KHA_TEST_OUT": str(tmp / "results")}
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "scenarios.report.pytest_plugin", "--rootdir", str(tmp),
         "-p", "no:cacheprovider", f"--kha-report={mode}", f"--kha-report-dir={reports}", str(tmp / "test_inner.py")],
        cwd=tmp, env=env, capture_output=True, text=True, timeout=900, check=False)
    return proc, reports


@pytest.fixture(scope="module")
def reports(kubernetes_m_master: Installed, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("reports")
    failing, folder = _child_pytest(kubernetes_m_master, tmp / "failing", 0.1, "on-failure")
    assert failing.returncode == 1, failing.stdout[-3000:] + failing.stderr[-2000:]
    made = sorted(folder.glob("*.tar.gz"))
    assert len(made) == 1, f"no report from the failing test: {failing.stdout[-3000:]}"
    assert str(made[0]) in failing.stdout, "the failure's output does not name the report"
    passing, folder2 = _child_pytest(kubernetes_m_master, tmp / "passing", 1.0, "always")
    assert passing.returncode == 0, passing.stdout[-3000:] + passing.stderr[-2000:]
    (made2,) = sorted(folder2.glob("*.tar.gz"))
    return {"failing": made[0], "passing": made2}


def test_a_failing_case_leaves_a_report_that_holds_its_records(reports: dict[str, Path], tmp_path: Path,
                                                               kubernetes_m_master: Installed) -> None:
    report = open_report(reports["failing"], tmp_path)
    assert report.origin.outcome == "failed" and FAILED_CHECK in report.origin.failed_checks
    assert [c.name for c in report.origin.cases] == [CASE] and report.origin.cases[0].bound_scale == 0.1
    for name in ("history.json", "inputs.json", "result.json", "timeline.png"):
        assert (report.results(CASE) / name).is_file(), name
    nodes = sorted(p.name for p in (report.folder / "nodes").iterdir())
    assert nodes == sorted(h.name for h in kubernetes_m_master.topo.hosts)
    assert all(len(list((report.folder / "nodes" / n).iterdir())) >= 10 for n in nodes)
    key = re.compile(rb"-----BEGIN [A-Z ]*PRIVATE KEY-----\s+[A-Za-z0-9+/=]{40}")
    leaked = [p for p in report.folder.rglob("*") if p.is_file() and key.search(p.read_bytes())]
    assert not leaked, f"private keys in the report: {leaked}"


def test_report_check_reaches_the_recorded_verdicts_offline(reports: dict[str, Path],
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["report", "check", str(reports["failing"])]) == 0
    assert cli.main(["report", "check", str(reports["passing"])]) == 0
    out = capsys.readouterr().out
    assert f"✓ {CASE}: recorded failed ({FAILED_CHECK})" in out and f"✓ {CASE}: recorded ok" in out, out


def test_report_show_names_the_failed_check(reports: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["report", "show", str(reports["failing"])]) == 0
    out = capsys.readouterr().out
    assert f"✗ {FAILED_CHECK}" in out and "timeline: " in out, out


def test_replay_reproduces_the_failure_and_the_pass_every_time(
        reports: dict[str, Path], kubernetes_m_master: Installed, tmp_path: Path,
        capsys: pytest.CaptureFixture[str], pytestconfig: pytest.Config) -> None:
    n = 1 if pytestconfig.getoption("kha_tier") == "pr" else 3
    cluster = kubernetes_m_master.cluster
    kubernetes_m_master.close()
    for node in cluster.nodes:  # the session's topology sleeps while the replayed one runs
        cluster.pause(node)
    try:
        code = cli.main(["replay", str(reports["failing"]), str(reports["passing"]), "--repeat", str(n),
                         "--out", str(tmp_path)])
    finally:
        for node in cluster.nodes:
            cluster.resume(node)
    out = capsys.readouterr().out
    assert code == 0, out
    assert f"✓ {reports['failing']}: reproduced {n}/{n} (the report: failed: {FAILED_CHECK})" in out, out
    assert f"✓ {reports['passing']}: reproduced {n}/{n} (the report: passed)" in out, out
