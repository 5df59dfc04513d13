"""Running a command on this machine: argv lists only (never a shell string built from data).

``execute`` is the one place a child process is started and waited for (its own session, the whole
group killed on a timeout); ``run`` is its text form, raising ``CommandFailed`` (the exact argv and
output) when the command exits non-zero, cannot start (127, as a shell says) or outlives its timeout;
``stream`` writes merged output to a log file as it comes (long builds) and keeps its tail. The
installer's ``LocalTransport`` runs commands through ``execute`` too.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import os
import shlex
import signal
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TextIO

from core.errors import CommandFailed

log = logging.getLogger(__name__)

TAIL_LINES = 40


@dataclass(frozen=True)
class Completed:
    """A command that ran to its end."""

    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        """stdout then stderr, as a terminal would have shown them (roughly)."""
        return self.stdout + self.stderr

    @property
    def ok(self) -> bool:
        return self.returncode == 0


def execute(
    argv: Sequence[str],
    *,
    stdin: bytes | None = None,
    timeout: float | None = None,
    env: Mapping[str, str] | None = None,
) -> tuple[int | None, bytes, bytes]:
    """Run ``argv`` to its end: (exit status, stdout, stderr); the status is None when it timed out.

    The command gets a session of its own, so a timeout ends it *and* what it started (a grandchild
    holding stdout open would otherwise keep us waiting). A command that cannot start answers as a
    shell would: 127 (not found) or 126 (not executable).
    """
    args = [str(a) for a in argv]
    log.debug("run: %s", shlex.join(args))
    try:
        proc = subprocess.Popen(
            args, stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
            env=dict(env) if env is not None else None,
        )
    except FileNotFoundError:
        return 127, b"", f"{args[0]}: command not found\n".encode()
    except PermissionError as exc:
        return 126, b"", f"{args[0]}: {exc.strerror}\n".encode()
    try:
        out, err = proc.communicate(stdin, timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        try:
            out, err = proc.communicate(timeout=5)
        except subprocess.TimeoutExpired:  # something left the group and kept the pipes
            out, err = b"", b""
        return None, out, err
    except BaseException:
        _kill_group(proc)
        raise
    return proc.returncode, out, err


def run(
    argv: Sequence[str],
    *,
    check: bool = True,
    timeout: float | None = 120.0,
    input_text: str | None = None,
    env: Mapping[str, str] | None = None,
    what: str | None = None,
) -> Completed:
    """Run ``argv`` to its end and return what it printed (text); ``CommandFailed`` when it timed out,
    or exited non-zero and ``check``."""
    args = tuple(str(a) for a in argv)
    code, out, err = execute(args, stdin=input_text.encode() if input_text is not None else None,
                             timeout=timeout, env=env)
    stdout, stderr = out.decode(errors="replace"), err.decode(errors="replace")
    if code is None:
        raise CommandFailed(args, None, stdout, stderr=stderr, what=what, timeout=timeout)
    if check and code != 0:
        raise CommandFailed(args, code, stdout, stderr=stderr, what=what)
    return Completed(args, code, stdout, stderr)


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)  # the group we created for this command only
    proc.wait()


def stream(
    argv: Sequence[str],
    *,
    logfile: TextIO | None = None,
    env: Mapping[str, str] | None = None,
    what: str | None = None,
) -> None:
    """Run ``argv``, writing its merged output to ``logfile`` (and the debug log) line by line.

    ``CommandFailed`` with the argv and the last ``TAIL_LINES`` lines when it exits non-zero.
    """
    args = [str(a) for a in argv]
    log.debug("run: %s", shlex.join(args))
    if logfile is not None:
        logfile.write(f"$ {shlex.join(args)}\n")
        logfile.flush()
    last: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
    try:
        proc = subprocess.Popen(
            args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            text=True, errors="replace", env=dict(env) if env is not None else None,
        )
    except OSError as exc:
        raise CommandFailed(args, 127, f"cannot start: {exc}", what=what) from exc
    assert proc.stdout is not None
    with proc:
        for line in proc.stdout:
            last.append(line)
            if logfile is not None:
                logfile.write(line)
            log.debug("%s: %s", args[0], line.rstrip("\n"))
    if logfile is not None:
        logfile.flush()
    if proc.returncode != 0:
        raise CommandFailed(args, proc.returncode, "".join(last), what=what)
