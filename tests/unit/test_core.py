"""The ground floor: one command-failure type, one way to run a command here, one ✓/✗ format, and the
CLI as the one boundary (every KhaError and OSError one line with its exit code, never a traceback)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from core import progress, run
from core.errors import EXIT_BAD_INPUT, EXIT_FAILED, CommandFailed, InputError, KhaError
from installer.errors import CommandError
from kha import cli


def test_a_failed_command_carries_argv_exit_code_and_a_pasteable_line() -> None:
    with pytest.raises(CommandFailed) as caught:
        run.run(["sh", "-c", "echo out; echo 'it broke' >&2; exit 3", "name with space"])
    err = caught.value
    assert (err.argv[0], err.returncode) == ("sh", 3)
    assert err.shell_line == "sh -c 'echo out; echo '\"'\"'it broke'\"'\"' >&2; exit 3' 'name with space'"
    assert "out" in err.stdout and "it broke" in err.stderr
    assert str(err).startswith(f"command failed (exit 3): {err.shell_line}")


def test_a_missing_binary_is_exit_127_as_a_shell_says() -> None:
    with pytest.raises(CommandFailed) as caught:
        run.run(["/nonexistent/kha-no-such-binary"])
    assert caught.value.returncode == 127
    assert "command not found" in caught.value.output
    assert run.run(["/nonexistent/kha-no-such-binary"], check=False).returncode == 127


def test_a_timeout_ends_the_command_and_what_it_started(tmp_path: Path) -> None:
    marker = tmp_path / "grandchild-lived"
    # The grandchild keeps stdout open and would write the marker after 3 s unless its group is killed.
    script = f"(sleep 3; touch {marker}) & sleep 30"
    start = time.monotonic()
    with pytest.raises(CommandFailed) as caught:
        run.run(["sh", "-c", script], timeout=0.5)
    assert caught.value.returncode is None and "timed out after 0.5s" in str(caught.value)
    assert time.monotonic() - start < 10, "a grandchild holding the pipe kept run() waiting"
    time.sleep(3.5)
    assert not marker.exists(), "the grandchild outlived the timeout"


def test_the_installer_command_error_is_the_same_type_with_its_node() -> None:
    err = CommandError("node2", ["etcdctl", "member", "list"], 1, stderr="refused")
    assert isinstance(err, CommandFailed) and isinstance(err, KhaError)
    assert (err.node, err.exit_code, err.returncode) == ("node2", 1, 1)
    assert str(err).startswith("node2: command failed (exit 1): etcdctl member list")


def test_one_step_line_format() -> None:
    assert progress.line(True, "boot 4 nodes", 1.94) == "✓ boot 4 nodes  1.9s"
    assert progress.line(False, "kubernetes/init", 31.25, "exit 1") == "✗ kubernetes/init  31.2s  exit 1"
    lines: list[str] = []
    steps = progress.Steps(emit=lines.append, clock=iter([0.0, 2.0, 2.0, 2.5]).__next__)
    with steps.step("one"):
        pass
    with pytest.raises(RuntimeError), steps.step("two"):
        raise RuntimeError("boom")
    assert lines == ["✓ one  2.0s", "✗ two  0.5s"]


@pytest.mark.parametrize(("error", "code"), [
    (KhaError("a step failed"), EXIT_FAILED),
    (InputError("bad flag"), EXIT_BAD_INPUT),
    (CommandFailed(["false"], 1), EXIT_FAILED),
])
def test_the_cli_prints_any_kha_error_once_with_its_exit_code(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], error: KhaError, code: int
) -> None:
    def boom(_args: object) -> int:
        raise error

    parser = cli.build_parser()
    monkeypatch.setattr(cli, "build_parser", lambda: parser)
    check = parser.parse_args(["inventory", "check", "x"])
    monkeypatch.setattr(check, "handler", boom)
    monkeypatch.setattr(parser, "parse_args", lambda _argv=None: check)
    assert cli.main(["inventory", "check", "x"]) == code
    err = capsys.readouterr().err
    assert err.strip().splitlines() == [f"kha: {error}".splitlines()[0], *str(error).splitlines()[1:]]
    assert "Traceback" not in err


def test_a_path_that_is_not_what_kha_needs_is_one_line_not_a_traceback(tmp_path: Path) -> None:
    a_file = tmp_path / "not-a-folder"
    a_file.write_text("")
    inventory = Path(__file__).resolve().parents[2] / "scenarios" / "inventories" / "hosts.allinone.ip.ini"
    proc = subprocess.run([sys.executable, "-m", "kha.cli", "pki", "init", "-i", str(inventory), "--dir",
                           str(a_file / "pki")], capture_output=True, text=True, check=False)
    # Found before anything is written: bad input, one line naming the flag and the file in the way.
    assert proc.returncode == EXIT_BAD_INPUT, proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stderr.startswith("kha: --dir ") and f"{a_file} is a file" in proc.stderr, proc.stderr


def test_a_closed_stdout_ends_quietly(tmp_path: Path) -> None:
    inventory = Path(__file__).resolve().parents[2] / "scenarios" / "inventories" / "hosts.m-master.ip.ini"
    store = tmp_path / "pki"
    subprocess.run([sys.executable, "-m", "kha.cli", "pki", "init", "-i", str(inventory), "--dir", str(store)],
                   check=True, capture_output=True)
    # `kha pki check | head -1` where the reader is gone before kha writes (`true` exits at once):
    # every write meets a closed pipe, and kha must not print a BrokenPipeError.
    shell = f"{sys.executable} -m kha.cli pki check --dir {store} | true"
    proc = subprocess.run(["sh", "-c", shell], capture_output=True, text=True, check=False)
    assert "Traceback" not in proc.stderr and "BrokenPipe" not in proc.stderr, proc.stderr
    assert proc.stderr == "", proc.stderr
