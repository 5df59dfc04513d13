"""Project-wide pytest set-up: the harness fixtures, and the rule that a tier we run must fail, not skip,
when it lacks something."""

from __future__ import annotations

import os
from collections.abc import Callable, Generator

import pytest

# Fixtures that give a test a running topology (harness/pytest_plugin.py); a bug report for every failing
# test that had an installed topology (scenarios/report/pytest_plugin.py).
pytest_plugins = ["harness.pytest_plugin", "scenarios.report.pytest_plugin"]


# tox and scripts/test.sh set KHA_NO_SKIP=1 for the tiers they run: there a skip would hide a missing
# dependency, so every kind of skip fails instead. A test skips at run time (pytest.skip in the test or a
# fixture, a skip or skipif mark): its TestReport says so. A module or class skips at collection time
# (pytest.importorskip, pytest.skip(..., allow_module_level=True) at import): none of its tests ever
# runs, only its CollectReport says so. Tests: tests/unit/test_no_skip.py.


def _no_skip() -> bool:
    return os.environ.get("KHA_NO_SKIP") == "1"


def _fail_the_skip(report: pytest.TestReport | pytest.CollectReport) -> None:
    reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
    report.outcome = "failed"
    report.longrepr = f"skipped in a tier that must not skip: {reason}"


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if _no_skip() and report.skipped and not hasattr(report, "wasxfail"):  # an xfail stays an xfail
        _fail_the_skip(report)
    return report


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(
    collector: pytest.Collector,
) -> Generator[None, pytest.CollectReport, pytest.CollectReport]:
    report = yield
    if _no_skip() and report.skipped:
        _fail_the_skip(report)  # a collection error: the run fails, naming the module and why
    return report


#: ``measured(line, **properties)``: a figure a test measured (a failover time, a lost-write count).
Measured = Callable[..., None]


@pytest.fixture
def measured(record_property: Callable[[str, object], None], request: pytest.FixtureRequest) -> Measured:
    """Record a measured figure: printed, kept as junit properties, and listed at the end of the run.

    The line travels in the report's ``user_properties``, which pytest-xdist hands back from its
    workers, so the summary below shows it in CI's log whatever process ran the test.
    """

    def add(line: str, **properties: object) -> None:
        for key, value in properties.items():
            record_property(key, value)
        record_property("measured", f"{request.node.name}: {line}")
        print(line)

    return add


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    lines = [str(value) for report in terminalreporter.stats.get("passed", [])
             for key, value in getattr(report, "user_properties", []) if key == "measured"]
    if lines:
        terminalreporter.write_sep("-", "measured")
        for line in lines:
            terminalreporter.write_line(line)
