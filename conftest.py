"""Project-wide pytest set-up: the harness fixtures, and the rule that a tier we run must fail, not skip,
when it lacks something."""

from __future__ import annotations

import os
from collections.abc import Generator

import pytest

# Fixtures that give a test a running topology (harness/pytest_plugin.py).
pytest_plugins = ["harness.pytest_plugin"]


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, None, None]:
    outcome = yield
    report: pytest.TestReport = outcome.get_result()
    # scripts/test.sh sets KHA_NO_SKIP=1: there a skipped test would hide a missing dependency.
    if os.environ.get("KHA_NO_SKIP") == "1" and report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"skipped in a tier that must not skip: {reason}"
