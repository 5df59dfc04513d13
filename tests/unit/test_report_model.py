"""A report as a file: packed and opened again, refused clearly when it is not one (not a tarball, cut short,
escaping paths, from a newer kha), decided again offline by ``kha report check``, and how a replay's runs
count as reproduced."""

from __future__ import annotations

import gzip
import io
import json
import re
import tarfile
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from installer import topology
from kha import cli
from scenarios import catalog
from scenarios.failover import catalogue, checker
from scenarios.failover.model import CaseHistory, write_json
from scenarios.report import check, replay
from scenarios.report.model import (
    FORMAT,
    INVENTORY,
    CaseRef,
    Origin,
    Provenance,
    ReportError,
    open_report,
    pack,
    write_origin,
)
from scenarios.report.pytest_plugin import junit
from tests.unit.test_failover_checker import GOOD_RECOVERY, GOOD_WRITES, history, probes, vip

CASE = "stop-haproxy-on-vrrp-master"


def _origin(**changes: object) -> Origin:
    base = Origin(cluster="m-master-lxc-1", scenario="m-master", driver="lxc",
                  provenance=Provenance("debian-12", "sha256:aa", "kubernetes-1.20.2", "sha256:bb", "abc123"),
                  cases=(CaseRef(CASE, seed=3, bound_scale=0.1),), outcome="failed",
                  failed_checks=("outage through the VIP within the bound",), made_by="pytest x")
    return Origin(**{**base.__dict__, **changes})  # type: ignore[arg-type]


def _folder(tmp_path: Path, origin: Origin, *, bad_window: tuple[float, float] = (100.0, 102.0),
            scale: float = 0.1) -> Path:
    """A report folder with one case recorded: a history, the checker's inputs and the verdict they give."""
    folder = tmp_path / "made"
    (folder / INVENTORY).parent.mkdir(parents=True)
    (folder / INVENTORY).write_text(Path(catalog.get("m-master").inventory).read_text())
    write_origin(folder, origin)
    case = catalogue.get(CASE)
    bound = checker.scaled(case.bound(topology.load(catalog.get("m-master").inventory)), scale)
    h = history(probes([bad_window]), vip({102.0: "node2"}))
    inputs = checker.Inputs(bound, GOOD_WRITES, GOOD_RECOVERY, scale)
    result = checker.check(case, inputs.bound, h, inputs.writes, inputs.recovery)
    results = folder / "results" / CASE
    write_json(results / "history.json", h.to_json())
    write_json(results / "inputs.json", inputs.to_json())
    write_json(results / "result.json", result.to_json())
    return folder


def test_a_report_survives_packing(tmp_path: Path) -> None:
    # One Origin, compared with itself: made_at is the clock's second, and a second _origin() made across a
    # second boundary differed (one unit run in ~20 failed on that).
    origin = _origin()
    path = pack(_folder(tmp_path, origin), tmp_path / "r.tar.gz")
    report = open_report(path, tmp_path / "open")
    assert report.origin == origin
    assert report.inventory.read_text().startswith("; kha scenario: m-master")
    assert CaseHistory.from_json(json.loads((report.results(CASE) / "history.json").read_text())).case == CASE


def test_the_scaled_bound_fails_and_check_reaches_the_same_verdict_offline(tmp_path: Path) -> None:
    report = open_report(pack(_folder(tmp_path, _origin()), tmp_path / "r.tar.gz"), tmp_path / "open")
    (again,) = check.recheck(report)
    assert not again.now.ok and not again.recorded_ok
    assert [c.name for c in again.now.failures()] == ["outage through the VIP within the bound"]
    assert again.same


def test_check_says_when_this_checker_decides_otherwise(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = _folder(tmp_path, _origin())
    result = folder / "results" / CASE / "result.json"
    doc = json.loads(result.read_text())
    doc["ok"] = True
    for c in doc["checks"]:
        c["ok"] = True  # as if an older checker had let this outage pass
    result.write_text(json.dumps(doc))
    path = pack(folder, tmp_path / "r.tar.gz")
    assert cli.main(["report", "check", str(path)]) == 1
    out = capsys.readouterr().out
    assert f"✗ {CASE}: recorded ok; this checker: failed (outage through the VIP within the bound)" in out


def test_check_exits_0_when_the_verdict_is_the_same(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = pack(_folder(tmp_path, _origin()), tmp_path / "r.tar.gz")
    assert cli.main(["report", "check", str(path)]) == 0
    assert f"✓ {CASE}: recorded failed (outage through the VIP within the bound)" in capsys.readouterr().out


def test_show_names_the_failed_check_and_the_versions(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = _folder(tmp_path, _origin())
    (folder / "manifest.json").write_text(json.dumps({"versions": {"etcd": "3.4.13"}}))
    assert cli.main(["report", "show", str(pack(folder, tmp_path / "r.tar.gz"))]) == 0
    out = capsys.readouterr().out
    assert "failed (outage through the VIP within the bound)" in out
    assert "case stop-haproxy-on-vrrp-master (seed 3, bound ×0.1): FAILED" in out
    assert "etcd 3.4.13" in out


def _tar_with(tmp_path: Path, members: dict[str, bytes]) -> Path:
    path = tmp_path / "odd.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def _bad_reports(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    good = pack(_folder(tmp_path, _origin()), tmp_path / "good.tar.gz")
    truncated = tmp_path / "cut.tar.gz"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    plain = tmp_path / "notes.txt"
    plain.write_text("not a report\n")
    gz = tmp_path / "just.gz"
    gz.write_bytes(gzip.compress(b"hello"))
    newer = _tar_with(tmp_path, {"r/origin.json": json.dumps({**_origin().to_json(), "format": FORMAT + 1}).encode()})
    newer = newer.rename(tmp_path / "newer.tar.gz")
    escape = _tar_with(tmp_path, {"r/origin.json": b"{}", "../evil": b"x"}).rename(tmp_path / "escape.tar.gz")
    no_origin = _tar_with(tmp_path, {"r/manifest.json": b"{}"}).rename(tmp_path / "no-origin.tar.gz")
    return {
        "truncated": (truncated, "not a whole kha report"),
        "plain text": (plain, "not a whole kha report"),
        "a gzip that is no tarball": (gz, "not a whole kha report"),
        "newer format": (newer, rf"report format {FORMAT + 1} was written by a newer kha"),
        "escaping member": (escape, "unsafe member '../evil'"),
        "no origin": (no_origin, "no origin.json: not a kha report"),
        "missing": (tmp_path / "nowhere.tar.gz", "no such report"),
    }


@pytest.mark.parametrize("kind", ["truncated", "plain text", "a gzip that is no tarball", "newer format",
                                  "escaping member", "no origin", "missing"])
@pytest.mark.parametrize("command", [["report", "show"], ["report", "check"], ["replay"]])
def test_what_is_not_a_report_is_refused_with_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str], kind: str,
                                                    command: list[str]) -> None:
    path, message = _bad_reports(tmp_path)[kind]
    argv = [*command, str(path)] + (["--out", str(tmp_path / "replayed")] if command == ["replay"] else [])
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert str(path) in err and re.search(message, err), err
    assert "Traceback" not in err
    assert not (tmp_path / "evil").exists()


def test_replay_refuses_a_report_without_a_case_before_booting(tmp_path: Path) -> None:
    report = open_report(pack(_folder(tmp_path, _origin(cases=())), tmp_path / "r.tar.gz"), tmp_path / "open")
    with pytest.raises(ReportError, match="no fault case ran in this report"):
        replay.preflight([report])


def test_replay_refuses_an_image_that_differs_from_the_recorded_one(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    report = open_report(pack(_folder(tmp_path, _origin()), tmp_path / "r.tar.gz"), tmp_path / "open")

    class Here:
        digest = "sha256:cc"

    monkeypatch.setattr(replay.images, "get", lambda name: Here())
    with pytest.raises(ReportError, match=r"debian-12 here is sha256:cc, the report's is sha256:aa: rebuild the "
                                          r"recorded recipe with `git checkout abc123 && kha image build debian-12`"):
        replay.preflight([report])
    monkeypatch.setattr(replay.images, "get", lambda name: None)
    with pytest.raises(ReportError, match=r"base image debian-12 is not built here: run `kha image build debian-12`"):
        replay.preflight([report])


OUTAGE = "outage through the VIP within the bound"


@pytest.mark.parametrize(("recorded", "ran", "reproduced"), [
    (("failed", (OUTAGE,)), (False, (OUTAGE,)), True),
    (("failed", (OUTAGE,)), (False, ("no acknowledged write lost",)), False),
    (("failed", (OUTAGE,)), (True, ()), False),
    (("passed", ()), (True, ()), True),
    (("passed", ()), (False, ("no acknowledged write lost",)), False),
])
def test_a_run_reproduces_a_report_when_its_outcome_matches(
        tmp_path: Path, recorded: tuple[str, tuple[str, ...]], ran: tuple[bool, tuple[str, ...]],
        reproduced: bool) -> None:
    outcome, failed_then = recorded
    report = open_report(pack(_folder(tmp_path, _origin(outcome=outcome, failed_checks=failed_then)),
                              tmp_path / "r.tar.gz"), tmp_path / "open")
    assert replay.reproduces(report, *ran) is reproduced


def test_reproduced_counts_runs_not_cases(tmp_path: Path) -> None:
    report = open_report(pack(_folder(tmp_path, _origin()), tmp_path / "r.tar.gz"), tmp_path / "open")
    done = replay.Replayed(report, runs=3)
    for run, hit in ((1, True), (2, False), (3, True)):
        done.verdicts.append(replay.Verdict(report.path, CASE, run, False, (), hit, tmp_path))
    assert done.reproduced == 2 and not done.matches


def test_the_report_keeps_the_failing_tests_junit_record() -> None:
    rep = pytest.TestReport("tests/failover/test_x.py::test_case[kill-apiserver]", ("tests/failover/test_x.py", 1, ""),
                            {}, "failed", "AssertionError: kill-apiserver broke 1 promise(s)", "call",
                            sections=[("Captured stdout call", "hello")], duration=12.5)
    case = ET.fromstring(junit(rep)).find("testcase")
    assert case is not None and case.get("name") == "test_case[kill-apiserver]"
    assert case.get("classname") == "tests.failover.test_x" and case.get("time") == "12.500"
    failure = case.find("failure")
    assert failure is not None and "broke 1 promise" in (failure.get("message") or "")
    assert case.findtext("system-out") == "hello"
