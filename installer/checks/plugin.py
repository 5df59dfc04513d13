"""The pytest plugin ``kha check`` runs its check modules with: the ``target`` and ``note`` fixtures, which
checks run (``--only``), and one ✓/✗ line per check as it finishes (``core.progress``), its evidence below.

A check's name is its module and function without ``test_`` (``test_etcd.py::test_members`` →
``etcd/members``); its seconds are pytest's for the call. The results are kept for the caller
(``installer.checks.run``) and land in the JUnit XML as pytest writes it.
"""

from __future__ import annotations

import re
import time
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from typing import TextIO

import pytest

from core import progress
from core.errors import KhaError
from installer.checks.target import CheckFailed, Options, Target

_NOTE = pytest.StashKey[list[str]]()

#: Where the check modules live: ``installer.checks.test_<group>``.
MODULE_PREFIX = "installer.checks.test_"


@dataclass(frozen=True)
class Outcome:
    """One check's result: ``status`` is passed, failed or skipped; ``evidence`` says why it failed (or was
    skipped); ``detail`` what a passing check saw worth showing."""

    name: str
    status: str
    seconds: float
    evidence: str = ""
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.status != "failed"


def check_name(module: str, function: str) -> str:
    """``installer.checks.test_etcd``, ``test_hash_kv`` → ``etcd/hash-kv``."""
    group = module.removeprefix(MODULE_PREFIX)
    return f"{group}/{function.removeprefix('test_')}".replace("_", "-")


def selected(name: str, only: tuple[str, ...]) -> bool:
    """Whether ``--only`` picks ``name``: no --only picks every check; ``etcd`` picks ``etcd/…``."""
    return not only or any(name == o or name.startswith(o.rstrip("/") + "/") for o in only)


def evidence(exc: BaseException) -> str:
    """What a user reads under a ✗: a check's own words, or what kha said; a bug's type and message."""
    if isinstance(exc, CheckFailed | KhaError):
        return str(exc)
    if isinstance(exc, AssertionError):  # a plain assert in a check: pytest's rewritten message
        return re.sub(r"\nassert .*", "", str(exc), flags=re.DOTALL) or "assertion failed"
    return f"{type(exc).__name__}: {exc}"


class Plugin:
    """Registered with ``pytest.main(plugins=[...])``; ``outcomes`` fills as checks finish."""

    def __init__(self, options: Options, out: TextIO) -> None:
        self.options = options
        self.out = out  # the real stdout, taken before pytest captures it
        self.outcomes: list[Outcome] = []
        self.errors: list[str] = []
        self._target: Target | None = None
        self._started: dict[str, float] = {}

    # -- fixtures ----------------------------------------------------------------------------------
    @pytest.fixture(scope="session")
    def target(self) -> Iterator[Target]:
        self._target = Target.open(self.options)
        try:
            yield self._target
        finally:
            self._target.close()

    @pytest.fixture
    def note(self, request: pytest.FixtureRequest) -> list[str]:
        """Words a passing check shows after its seconds (also a ``detail`` property in the JUnit XML)."""
        said: list[str] = []
        request.node.stash[_NOTE] = said
        return said

    # -- which checks ------------------------------------------------------------------------------
    def pytest_collection_modifyitems(self, config: pytest.Config, items: list[pytest.Item]) -> None:
        keep: list[pytest.Item] = []
        drop: list[pytest.Item] = []
        for item in items:
            (keep if selected(_name(item), self.options.only) else drop).append(item)
        if drop:
            config.hook.pytest_deselected(items=drop)
            items[:] = keep

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        if report.failed:
            self.errors.append(f"{report.nodeid}: {report.longreprtext}")

    # -- reporting ---------------------------------------------------------------------------------
    def pytest_runtest_logstart(self, nodeid: str) -> None:
        self._started[nodeid] = time.monotonic()

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item,
                                  call: pytest.CallInfo[None]) -> Generator[None, pytest.TestReport, pytest.TestReport]:
        report = yield
        # On the item too: pytest's JUnit XML writes the item's properties (from the teardown report).
        prop = None
        said: list[str] = item.stash.get(_NOTE, [])
        if call.excinfo is not None and report.failed:
            prop = ("evidence", evidence(call.excinfo.value))
        elif call.when == "call" and report.passed and said:
            prop = ("detail", "; ".join(said))
        if prop is not None:
            report.user_properties.append(prop)
            item.user_properties.append(prop)
        return report

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        name = _nodeid_name(report.nodeid)
        props = dict(report.user_properties)
        seconds = time.monotonic() - self._started.get(report.nodeid, time.monotonic())
        if report.skipped:
            reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
            reason = reason.removeprefix("Skipped: ")
            self._done(Outcome(name, "skipped", seconds, reason))
        elif report.failed:
            self._done(Outcome(name, "failed", seconds, str(props.get("evidence", report.longreprtext))))
        elif report.when == "call":
            self._done(Outcome(name, "passed", seconds, detail=str(props.get("detail", ""))))

    def _done(self, o: Outcome) -> None:
        if any(x.name == o.name for x in self.outcomes):
            return  # a teardown error after the check's own verdict: the verdict stands
        self.outcomes.append(o)
        if o.status == "skipped":
            text = progress.skipped(o.name, o.evidence)
        else:
            text = progress.line(o.ok, o.name, o.seconds, o.detail)
            if not o.ok:
                text += "\n" + "\n".join(f"    {line}" for line in o.evidence.splitlines())
        self.out.write(text + "\n")
        self.out.flush()


def _name(item: pytest.Item) -> str:
    module = item.module.__name__ if isinstance(item, pytest.Function) else item.nodeid
    return check_name(module, item.name)


def _nodeid_name(nodeid: str) -> str:
    """``test_etcd.py::test_members`` → ``etcd/members`` (pytest's node id, relative to the package)."""
    path, _, function = nodeid.partition("::")
    module = path.rsplit("/", 1)[-1].removesuffix(".py")
    return check_name(MODULE_PREFIX + module.removeprefix("test_"), function)
