"""The KHA_NO_SKIP rule (conftest.py at the root): with KHA_NO_SKIP=1 every kind of skip fails, at run time
and at collection time; without it the same tests skip as pytest makes them.

Each case runs in a pytest of its own (``pytester``) with the real root conftest.py loaded as a plugin.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

pytest_plugins = ["pytester"]

ROOT_CONFTEST = Path(__file__).resolve().parents[2] / "conftest.py"

#: A test module per kind of skip, and the reason it gives.
SKIPS = {
    "pytest.skip in the test": ("""
import pytest

def test_it():
    pytest.skip("no frobnicator here")
""", "no frobnicator here"),
    "skipif mark": ("""
import pytest

@pytest.mark.skipif(True, reason="no frobnicator here")
def test_it():
    pass
""", "no frobnicator here"),
    "importorskip of a missing module": ("""
import pytest

frobnicator = pytest.importorskip("kha_no_such_module_frobnicator")

def test_it():
    pass
""", "could not import 'kha_no_such_module_frobnicator'"),
    "skip with allow_module_level": ("""
import pytest

pytest.skip("no frobnicator here", allow_module_level=True)

def test_it():
    pass
""", "no frobnicator here"),
}


@pytest.fixture
def root_conftest() -> ModuleType:
    """A fresh copy of the root conftest.py, to hand to the inner pytest as a plugin."""
    spec = importlib.util.spec_from_file_location("kha_root_conftest", ROOT_CONFTEST)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("kind", SKIPS)
def test_with_kha_no_skip_every_skip_fails_and_says_why(kind: str, pytester: pytest.Pytester,
                                                        root_conftest: ModuleType,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    source, reason = SKIPS[kind]
    pytester.makepyfile(test_frob=source)
    monkeypatch.setenv("KHA_NO_SKIP", "1")
    result = pytester.runpytest(plugins=[root_conftest])
    outcomes = result.parseoutcomes()
    assert outcomes.get("skipped", 0) == 0, result.stdout.str()
    # A skip in the test body fails it; one in setup or at collection is an error: either way red.
    assert outcomes.get("failed", 0) + outcomes.get("errors", 0) == 1 and result.ret != pytest.ExitCode.OK, \
        result.stdout.str()
    result.stdout.fnmatch_lines([f"*skipped in a tier that must not skip*{reason}*"])


@pytest.mark.parametrize("kind", SKIPS)
def test_without_kha_no_skip_the_same_tests_skip(kind: str, pytester: pytest.Pytester, root_conftest: ModuleType,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    source, reason = SKIPS[kind]
    pytester.makepyfile(test_frob=source)
    monkeypatch.delenv("KHA_NO_SKIP", raising=False)
    result = pytester.runpytest("-rs", plugins=[root_conftest])
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines([f"SKIPPED*{reason}*"])


def test_with_kha_no_skip_an_expected_failure_stays_expected(pytester: pytest.Pytester, root_conftest: ModuleType,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    pytester.makepyfile(test_frob="""
import pytest

@pytest.mark.xfail(reason="known bug", strict=True)
def test_it():
    assert False
""")
    monkeypatch.setenv("KHA_NO_SKIP", "1")
    pytester.runpytest(plugins=[root_conftest]).assert_outcomes(xfailed=1)
