"""pytest hookup: a bug report for every failing test that had an installed topology in hand, and for every
failed install in a fixture.

Any test whose fixtures include a ``scenarios.installed.Installed`` (the e2e, failover and day-2 tiers)
gets, when it fails, ``<report dir>/<test>.tar.gz`` made right after its call — while the topology is
still as the failure left it. The failure's output names the file (a "kha report" section, and a JUnit
property ``kha_report``). A test that ran fault cases says so with ``note(request.node, Ran(...))`` so
the report holds their records and a replay re-runs them. A fixture installs with ``install_or_fail``: a
failed install leaves ``install-<cluster>.tar.gz`` (the topology as it was left, the runner's output), and
the fixture's failure names it.

    --kha-report on-failure|always|never   (env KHA_REPORT; default on-failure)
    --kha-report-dir DIR                    (env KHA_REPORT_DIR; default: kha-reports under pytest's base temp)
"""

from __future__ import annotations

import io
import os
import re
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path

import pytest

from installer.errors import InstallerError
from installer.phases import RunResult
from scenarios.installed import Installed
from scenarios.report.make import Ran, make

RAN = pytest.StashKey[list[Ran]]()
MADE = pytest.StashKey[list[Path]]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("kha-report", "kha bug reports")
    group.addoption("--kha-report", choices=("on-failure", "always", "never"),
                    default=os.environ.get("KHA_REPORT", "on-failure"),
                    help="when a test with an installed topology leaves a report (default on-failure; env KHA_REPORT)")
    group.addoption("--kha-report-dir", default=os.environ.get("KHA_REPORT_DIR") or None,
                    help="where the reports go (default: kha-reports under pytest's base temp; env KHA_REPORT_DIR)")


def note(node: pytest.Item, ran: Ran) -> None:
    """Record that ``node`` ran a fault case (its records' folder once it has one)."""
    node.stash.setdefault(RAN, []).append(ran)


def report_dir(config: pytest.Config) -> Path:
    given = config.getoption("kha_report_dir")
    folder = Path(given) if given else config._tmp_path_factory.getbasetemp() / "kha-reports"  # type: ignore[attr-defined]
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def junit(rep: pytest.TestReport) -> str:
    """The test's JUnit record, as ``--junitxml`` writes one test case."""
    suite = ET.Element("testsuite", name="kha", tests="1", failures=str(int(rep.failed)))
    path, _, name = rep.nodeid.rpartition("::")
    case = ET.SubElement(suite, "testcase", classname=path.replace("/", ".").removesuffix(".py"), name=name,
                         time=f"{rep.duration:.3f}")
    if rep.failed:
        ET.SubElement(case, "failure", message=rep.longreprtext.strip().splitlines()[-1][:500]
                      if rep.longreprtext.strip() else "failed").text = rep.longreprtext
    for title, text in rep.sections:
        ET.SubElement(case, "system-out" if "stdout" in title or "log" in title else "system-err").text = text
    return ET.tostring(suite, encoding="unicode") + "\n"


def reports(config: pytest.Config) -> Path | None:
    """Where a fixture's failed install is reported (None with ``--kha-report never``)."""
    return None if config.getoption("kha_report") == "never" else report_dir(config)


def install_or_fail(inst: Installed, what: str, *, reports: Path | None, only: Sequence[str] = ()) -> RunResult:
    """``inst.install`` for a fixture. When the installer fails, a bug report of the topology as the failed
    install left it in ``reports`` (see ``reports()``), then ``pytest.fail`` saying "kha install WHAT failed",
    naming the report and carrying the runner's output: a failed setup has no test of its own to report."""
    out = io.StringIO()
    try:
        return inst.install(out, only=only)
    except InstallerError as exc:
        said = install_report(inst, exc, out.getvalue(), reports, only=only)
        pytest.fail(f"kha install {what} failed: {exc}\n{said}--- runner output ---\n{out.getvalue()}", pytrace=False)


def install_report(inst: Installed, error: InstallerError, output: str, folder: Path | None, *,
                   only: Sequence[str] = ()) -> str:
    """The report of a failed install in ``folder`` (None: no report); the lines that name it, or why there is
    none (a report that cannot be made never hides the install's own error)."""
    if folder is None:
        return ""
    out = folder / f"install-{_slug(inst.cluster.name)}.tar.gz"
    try:
        made = make(inst, out, outcome="failed", made_by="kha install in a test fixture", install_only=only,
                    extra={"install/error.txt": f"{error}\n", "install/output.txt": output})
    except Exception as exc:  # noqa: BLE001 - said in the failure's message, next to the install's own error
        return f"kha report: none made: {type(exc).__name__}: {exc}\n"
    return f"kha report: {made.path}\n  kha report show {made.path}\n"


def _slug(name: str) -> str:
    """``name`` as a file name: runs of anything but letters, digits, ``_.-`` become one ``_``."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


def _file_name(nodeid: str) -> str:
    return _slug(nodeid.split("::", 1)[-1]).strip("_")[:120] + ".tar.gz"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> object:
    outcome = yield
    rep: pytest.TestReport = outcome.get_result()  # type: ignore[attr-defined]
    if rep.when != "call":
        return None
    mode = item.config.getoption("kha_report")
    if mode == "never" or (mode == "on-failure" and not rep.failed):
        return None
    funcargs = getattr(item, "funcargs", {})
    inst = next((v for v in funcargs.values() if isinstance(v, Installed)), None)
    if inst is None:
        return None
    out = report_dir(item.config) / _file_name(item.nodeid)
    ran: list[Ran] = item.stash.get(RAN, [])
    try:
        made = make(inst, out, ran=ran, outcome="failed" if rep.failed else "passed",
                    made_by=f"pytest {item.nodeid}", install_only=inst.only, extra={"test/junit.xml": junit(rep)})
    except Exception as exc:  # noqa: BLE001 - said in the test's output; never hides the test's own failure
        rep.sections.append(("kha report", f"no report: {type(exc).__name__}: {exc}"))
        return None
    item.config.stash.setdefault(MADE, []).append(made.path)
    item.user_properties.append(("kha_report", str(made.path)))
    rep.sections.append(("kha report", f"{made.path}\n  kha report show {made.path}\n  kha replay {made.path} "
                                       "--repeat 3"))
    return None


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    made = config.stash.get(MADE, [])
    if made:
        terminalreporter.write_sep("-", f"kha reports: {len(made)} in {made[0].parent}")
        for path in made:
            terminalreporter.write_line(str(path))
