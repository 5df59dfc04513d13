"""Running the build's commands: argv lists only, output to a log file, failures as ``BuildError``."""

from __future__ import annotations

import collections
import logging
import shlex
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO

from images.errors import BuildError

log = logging.getLogger(__name__)

Progress = Callable[[str], None]
TAIL_LINES = 40


def run(
    argv: Sequence[str],
    *,
    logfile: TextIO | None = None,
    env: Mapping[str, str] | None = None,
    what: str | None = None,
) -> None:
    """Run ``argv``, streaming its merged output to ``logfile`` (and the debug log).

    ``BuildError`` carrying the argv and the last lines of output when it exits non-zero.
    """
    argv = list(argv)
    log.debug("running %s", shlex.join(argv))
    if logfile is not None:
        logfile.write(f"$ {shlex.join(argv)}\n")
        logfile.flush()
    tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
    try:
        proc = subprocess.Popen(
            argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            errors="replace",
            env=dict(env) if env is not None else None,
        )
    except OSError as exc:
        raise BuildError(f"{what or argv[0]}: cannot start: {exc}", argv=argv) from exc
    assert proc.stdout is not None
    with proc:
        for line in proc.stdout:
            tail.append(line)
            if logfile is not None:
                logfile.write(line)
            log.debug("%s: %s", argv[0], line.rstrip("\n"))
    if logfile is not None:
        logfile.flush()
    if proc.returncode != 0:
        raise BuildError(f"{what or argv[0]} failed", argv=argv, returncode=proc.returncode, output_tail="".join(tail))


def capture(argv: Sequence[str], *, what: str | None = None) -> str:
    """Run ``argv`` and return its stdout; ``BuildError`` (with stderr's tail) when it fails."""
    argv = list(argv)
    log.debug("running %s", shlex.join(argv))
    try:
        proc = subprocess.run(
            argv, capture_output=True, text=True, errors="replace", stdin=subprocess.DEVNULL, check=False
        )
    except OSError as exc:
        raise BuildError(f"{what or argv[0]}: cannot start: {exc}", argv=argv) from exc
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.splitlines()[-TAIL_LINES:])
        raise BuildError(f"{what or argv[0]} failed", argv=argv, returncode=proc.returncode, output_tail=tail)
    return proc.stdout


@contextmanager
def step(progress: Progress | None, name: str) -> Iterator[None]:
    """One line per build step: ``✓ name (12.3s)`` or ``✗ name (12.3s)``, to the log and ``progress``."""
    log.info("%s …", name)
    start = time.monotonic()
    try:
        yield
    except BaseException:
        line = f"✗ {name} ({time.monotonic() - start:.1f}s)"
        log.info("%s", line)
        if progress is not None:
            progress(line)
        raise
    line = f"✓ {name} ({time.monotonic() - start:.1f}s)"
    log.info("%s", line)
    if progress is not None:
        progress(line)


def file_log(path: Path) -> TextIO:
    """The build log (kept in the image directory, next to the manifest)."""
    return path.open("a", encoding="utf-8")
