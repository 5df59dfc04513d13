"""Running a command on this machine: argv lists only (never a shell string built from data).

``run`` captures stdout and stderr; ``stream`` writes merged output to a log file as it comes (long
builds) and keeps its tail. Both raise ``CommandFailed`` carrying the exact argv and output when the
command exits non-zero, cannot start (exit 127, as a shell says) or outlives its timeout.
"""

from __future__ import annotations

import collections
import logging
import shlex
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


def run(
    argv: Sequence[str],
    *,
    check: bool = True,
    timeout: float | None = 120.0,
    input_text: str | None = None,
    env: Mapping[str, str] | None = None,
    what: str | None = None,
) -> Completed:
    """Run ``argv`` to its end and return what it printed; ``CommandFailed`` on a non-zero exit when ``check``."""
    args = [str(a) for a in argv]
    log.debug("run: %s", shlex.join(args))
    try:
        proc = subprocess.run(
            args, capture_output=True, text=True, errors="replace", timeout=timeout, check=False,
            input=input_text, stdin=None if input_text is not None else subprocess.DEVNULL,
            env=dict(env) if env is not None else None,
        )
    except OSError as exc:
        raise CommandFailed(args, 127, f"cannot start: {exc}", what=what) from exc
    except subprocess.TimeoutExpired as exc:
        raise CommandFailed(args, None, _text(exc.stdout), stderr=_text(exc.stderr), what=what,
                            timeout=timeout) from exc
    done = Completed(tuple(args), proc.returncode, proc.stdout, proc.stderr)
    if check and proc.returncode != 0:
        raise CommandFailed(args, proc.returncode, proc.stdout, stderr=proc.stderr, what=what)
    return done


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


def _text(data: bytes | str | None) -> str:
    if data is None:
        return ""
    return data.decode(errors="replace") if isinstance(data, bytes) else data
