"""``kha matrix report``: pass/fail, figures, the 1.5× baseline rule, trend plots, bad files (exit 2)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kha import cli
from scenarios.matrix import report, results
from scenarios.matrix.model import slug
from scenarios.matrix.results import Baseline, CaseFigure, CellResult, Junit, Refused, Run

ALLINONE = "debian-12/1.20.2/allinone/local-nginx/lxc/install"
FAILOVER = "debian-12/1.20.2/m-master/haproxy-vip/lxc/failover"


def cell_result(cell: str, *, ok: bool = True, install: float | None = None,
                outage: float | None = None) -> CellResult:
    cases = {} if outage is None else {"kill-etcd-leader": CaseFigure(True, outage, 9.0)}
    return CellResult(cell, {}, "pr", {"asked": "1.20.2", "version": "1.20.2", "source": "the offline bundle"},
                      ["pytest"], ok, 0 if ok else 1, 0.0, 100.0, Junit(3, 0 if ok else 1, 0, 0),
                      results.figures(install, cases), cases)


def write_run(folder: Path, started: float, cells: list[CellResult], refused: list[Refused] | None = None) -> Run:
    run = Run(folder, "pr", started, 300.0, 1, cells, refused or [])
    for c in cells:
        results.write_json(folder / slug(c.cell) / results.RESULTS, c.to_json())
    results.write_json(folder / results.SUMMARY, run.to_json())
    return results.load_run(folder)


def test_a_figure_worse_than_one_and_a_half_times_its_baseline_is_a_regression_even_when_passing() -> None:
    run = Run(Path("r"), "pr", 0.0, 1.0, 1,
              [cell_result(ALLINONE, install=160.0), cell_result(FAILOVER, install=200.0, outage=4.6)], [])
    base = Baseline("green", {ALLINONE: {"install_s": 150.0},
                              FAILOVER: {"install_s": 180.0, "failover/kill-etcd-leader/outage_s": 3.0}})
    regs = report.regressions(run, base)
    assert [(g.cell, g.figure) for g in regs] == [(FAILOVER, "failover/kill-etcd-leader/outage_s")]
    assert regs[0].ratio == pytest.approx(4.6 / 3.0)
    assert run.ok  # every test passed: the regression is flagged all the same
    exactly = Run(Path("r"), "pr", 0.0, 1.0, 1, [cell_result(FAILOVER, outage=4.5)], [])
    assert report.regressions(exactly, base) == []  # 1.5× is not worse than 1.5×
    assert report.regressions(run, None) == []
    # 0.0 s, then 0.6 s: under a second more is the prober's resolution, not a slower failover; 1.2 s is one
    zero = Baseline("green", {FAILOVER: {"failover/kill-etcd-leader/outage_s": 0.0}})
    assert report.regressions(Run(Path("r"), "pr", 0.0, 1.0, 1, [cell_result(FAILOVER, outage=0.6)], []), zero) == []
    worse = report.regressions(Run(Path("r"), "pr", 0.0, 1.0, 1, [cell_result(FAILOVER, outage=1.2)], []), zero)
    assert [g.figure for g in worse] == ["failover/kill-etcd-leader/outage_s"]


def test_markdown_lists_cells_cases_refusals_and_regressions() -> None:
    run = Run(Path("r"), "pr", 0.0, 1.0, 1,
              [cell_result(ALLINONE, ok=False, install=160.0), cell_result(FAILOVER, outage=6.0)],
              [Refused("debian-11/x", ["no fixture"])])
    base = Baseline("green", {FAILOVER: {"failover/kill-etcd-leader/outage_s": 3.0}})
    text = report.markdown(run, report.regressions(run, base), base)
    assert "1/2 passed, 1 refused, 1 regressions" in text
    assert f"| `{ALLINONE}` | ✗ FAIL | 100 | 160.0s |" in text
    assert "| `debian-11/x` | refused | | | no fixture |" in text
    assert f"| `{FAILOVER}` | kill-etcd-leader | ✓ | 6.00s ⚠ 2.0× baseline 3.0s | 9.00s |" in text


def test_report_over_two_runs_writes_html_markdown_plots_and_baseline(tmp_path: Path,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    first = write_run(tmp_path / "run1", 100.0, [cell_result(ALLINONE, install=150.0),
                                                  cell_result(FAILOVER, install=200.0, outage=3.0)])
    assert first.ok
    base = tmp_path / "baseline.json"
    out = tmp_path / "report1"
    assert cli.main(["matrix", "report", str(first.folder), "--save-baseline", str(base), "--out", str(out)]) == 0
    assert results.load_baseline(base).figures[FAILOVER]["failover/kill-etcd-leader/outage_s"] == 3.0
    write_run(tmp_path / "run2", 200.0, [cell_result(ALLINONE, install=155.0),
                                          cell_result(FAILOVER, install=210.0, outage=7.0)])
    capsys.readouterr()
    out2 = tmp_path / "report2"
    code = cli.main(["matrix", "report", str(tmp_path / "run2"), str(first.folder), "--baseline", str(base),
                     "--out", str(out2)])
    printed = capsys.readouterr().out
    assert code == 1  # green, but a figure regressed
    assert "1 regressions" in printed and "kill-etcd-leader/outage_s: 7.00 vs 3.00 (2.3×)" in printed
    page = (out2 / "index.html").read_text()
    assert "<h2>Regressions</h2>" in page and "run2" in page
    plots = sorted(p.name for p in (out2 / "plots").iterdir())
    assert len(plots) == 3  # allinone install, failover install, the failover case's outage
    assert all((out2 / "plots" / p).read_bytes().startswith(b"\x89PNG") for p in plots)
    assert (out2 / "summary.md").read_text() in printed


def test_plots_are_reproducible(tmp_path: Path) -> None:
    a = report.plot([(0, 3.0), (1, 7.0)], ["run1", "run2"], "x", 3.0, tmp_path / "a.png")
    b = report.plot([(0, 3.0), (1, 7.0)], ["run1", "run2"], "x", 3.0, tmp_path / "b.png")
    assert a.read_bytes() == b.read_bytes()


@pytest.mark.parametrize(("content", "message"), [
    ("{not json", "not JSON (a kha matrix baseline)"),
    (json.dumps({"format": 1, "kind": "something-else"}), "not a kha matrix baseline"),
    (json.dumps({"format": 1, "kind": "kha-matrix-baseline", "figures": {"c": {"install_s": "slow"}}}),
     "figures must map each cell id"),
])
def test_a_corrupt_baseline_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str,
                                    message: str) -> None:
    run = write_run(tmp_path / "run", 1.0, [cell_result(ALLINONE, install=1.0)])
    bad = tmp_path / "baseline.json"
    bad.write_text(content)
    assert cli.main(["matrix", "report", str(run.folder), "--baseline", str(bad), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert str(bad) in err and message in err


def test_a_run_folder_that_is_not_one_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["matrix", "report", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    assert f"{tmp_path / 'summary.json'}: no such file" in capsys.readouterr().err
    run = write_run(tmp_path / "run", 1.0, [cell_result(ALLINONE, install=1.0)])
    (run.folder / slug(ALLINONE) / results.RESULTS).write_text(json.dumps({"format": 1, "cell": ALLINONE}))
    assert cli.main(["matrix", "report", str(run.folder), "--out", str(tmp_path / "o")]) == 2
    assert "a kha matrix cell result with a missing or bad field" in capsys.readouterr().err


def test_junit_and_install_lines_are_read() -> None:
    assert results.install_seconds("x\n   12.5s  kha install (every phase)\n") == 12.5
    assert results.install_seconds("no timings") is None
