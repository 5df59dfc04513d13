"""The build's commands and steps, on kha's ground floor: ``core.run`` runs them, ``core.progress`` prints them.

What is the builder's own: a failed command becomes a ``BuildCommandFailed`` (core's ``CommandFailed``, and
an ``ImageError`` for callers that catch the image tree), a step's line goes to the log and to the caller's
``progress``, the build log is a file in the build directory, and which Debian package a missing tool
comes from.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO

from core import run as core_run
from core.errors import CommandFailed
from core.progress import Emit, Steps
from images.errors import BuildCommandFailed

log = logging.getLogger(__name__)

Progress = Emit

#: tool → the Debian package that provides it (for "missing build tools"; scripts/setup.sh installs them).
TOOL_PACKAGES = {
    "mmdebstrap": "mmdebstrap",
    "mkfs.ext4": "e2fsprogs",
    "qemu-img": "qemu-utils",
    "zstd": "zstd",
    "dpkg-query": "dpkg",
    "dpkg-deb": "dpkg",
    "apt-config": "apt",
    "apt-get": "apt",
    "go": "golang-go",
    "gcc": "gcc",
    "dpkg-source": "dpkg-dev",
    "xz": "xz-utils",
    "chroot": "coreutils",
    "env": "coreutils",
    "dd": "coreutils",
    "objcopy": "binutils",
    "objdump": "binutils",
    "sfdisk": "fdisk",
    "mkfs.vfat": "dosfstools",
    "mmd": "mtools",
    "mcopy": "mtools",
}


def run(argv: Sequence[str], *, logfile: TextIO, what: str, env: Mapping[str, str] | None = None) -> None:
    """Run ``argv`` with its merged output streamed into the build log (``core.run.stream``)."""
    with _as_build_failure():
        core_run.stream(argv, logfile=logfile, env=env, what=what)


def capture(argv: Sequence[str], *, what: str | None = None, input_text: str | None = None) -> str:
    """Run ``argv`` to its end (no time limit, as a build step has none) and return its stdout."""
    with _as_build_failure():
        return core_run.run(argv, timeout=None, what=what, input_text=input_text).stdout


@contextmanager
def _as_build_failure() -> Iterator[None]:
    try:
        yield
    except BuildCommandFailed:
        raise
    except CommandFailed as exc:
        raise BuildCommandFailed.of(exc) from None


@contextmanager
def step(progress: Progress | None, name: str) -> Iterator[None]:
    """One line per build step (``✓ name  12.3s`` or ✗, core.progress), to the log and ``progress``."""
    log.info("%s …", name)

    def emit(text: str) -> None:
        log.info("%s", text)
        if progress is not None:
            progress(text)

    with Steps(emit=emit).step(name):
        yield


def missing_tools(tools: Iterable[str], packages: Mapping[str, str] = TOOL_PACKAGES) -> list[str]:
    """Each of ``tools`` not on PATH, as ``tool (apt-get install package)``."""
    return [f"{t} (apt-get install {packages.get(t, t)})" for t in tools if shutil.which(t) is None]


def file_log(path: Path) -> TextIO:
    """The build log (kept in the build directory, next to the manifest)."""
    return path.open("a", encoding="utf-8")
