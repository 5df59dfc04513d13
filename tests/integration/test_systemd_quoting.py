"""systemd itself reads kha's quoting back as the words kha meant (``systemd-analyze verify`` parses a unit
the way PID 1 does and, at debug level, prints each command line it parsed)."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from installer import systemd

pytestmark = pytest.mark.integration

NASTY = ["/bin/echo", "plain", "two words", 'say "hi"', "it's", "back\\slash", "100%", "%n%h", "$HOME", "${X}",
         "line\nExecStart=/bin/evil", ";", "", "--flag=a b"]


def parsed_command_lines(unit: Path) -> list[str]:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.fail("systemd-analyze is not installed (Debian package systemd)")
    res = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True, timeout=60, check=False,
                         env={**os.environ, "SYSTEMD_LOG_LEVEL": "debug"})
    return re.findall(r"Command Line: (.*)", res.stdout + res.stderr)


def test_systemd_parses_each_value_back_as_one_word(tmp_path: Path) -> None:
    unit = tmp_path / "kha-quoting-test.service"
    unit.write_bytes(systemd.unit(["quoting test"], [("Service", [
        ("Type", "oneshot"), ("ExecStart", systemd.command(NASTY)), ("ExecStart", systemd.command(NASTY, wrap=True)),
    ])]))
    lines = parsed_command_lines(unit)
    assert len(lines) == 2, unit.read_text()
    # systemd prints what it will run before ``$`` expansion (``$$`` → ``$`` at exec), quoted for a shell,
    # with a line break as ``\n``.
    expected = [a.replace("$", "$$").replace("\n", "\\n") for a in NASTY]
    for line in lines:
        assert words(line) == expected, line


def words(line: str) -> list[str]:
    """A printed command line as words (systemd escapes ``$`` as ``\\$`` inside its double quotes)."""
    return [w.replace("\\$", "$") for w in shlex.split(line)]


def test_an_unquoted_value_would_have_split(tmp_path: Path) -> None:
    """The check above can fail: the same words pasted into a unit unquoted are refused or come back as others."""
    unit = tmp_path / "kha-unquoted-test.service"
    unit.write_text("[Service]\nType=oneshot\nExecStart=" + " ".join(a.replace("\n", " ") for a in NASTY) + "\n")
    assert [words(line) for line in parsed_command_lines(unit)] != [[a.replace("$", "$$") for a in NASTY]]
