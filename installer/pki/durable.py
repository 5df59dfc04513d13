"""Files that become visible together, or not at all, and survive a crash: the PKI store's one way to write.

A batch of files is written like a redo log (the scheme of SQLite's rollback journal turned around, and of
git's ``index.lock``; see also https://lwn.net/Articles/457667/ on rename and fsync)::

    DIR/.staging/            0700, made for one batch
        0 1 2 …              each file's bytes, created 0600 (then its final mode), fsynced
        COMMIT               the list of (path, mode) written last, via COMMIT.tmp + rename, then fsynced
    → each staged file renamed onto its path (its folder fsynced), COMMIT removed, .staging removed

A crash before ``COMMIT`` exists leaves nothing visible: the next ``recover`` deletes ``.staging``
(keys included). A crash after it leaves a decided batch: ``recover`` renames what is still staged.
Either way a key and its certificate appear together, and no key stays behind in a temporary file.

Test-only hook: ``KHA_TEST_CRASH_AFTER_WRITES=K`` makes the process SIGKILL itself right after the
K-th durable step (a staged file, the commit record, one rename, the clean-up), so a test can crash a
real ``kha pki init`` at every point (tests/unit/test_pki_crash.py). Never set it outside tests.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import shutil
import signal
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path

from installer.errors import StateBusy

__all__ = ["CRASH_AFTER_WRITES", "LOCK", "STAGING", "commit", "exclusive", "fsync_dir", "recover"]

log = logging.getLogger(__name__)

STAGING = ".staging"
LOCK = ".lock"
_COMMIT = "COMMIT"
#: The test-only crash hook (see the module docstring).
CRASH_AFTER_WRITES = "KHA_TEST_CRASH_AFTER_WRITES"
_STAGED_MODE = 0o600
_STAGING_MODE = 0o700

_steps: dict[int, int] = {}  # durable steps made, by process id (a forked child counts from 0)


def _durable_step() -> None:
    """One durable step done; the crash hook kills the process after the K-th (tests only)."""
    pid = os.getpid()
    _steps[pid] = _steps.get(pid, 0) + 1
    limit = os.environ.get(CRASH_AFTER_WRITES)
    if limit and _steps[pid] == int(limit):
        os.kill(pid, signal.SIGKILL)


@contextlib.contextmanager
def exclusive(root: Path) -> Iterator[None]:
    """One writer at a time: ``root/.lock`` is held with flock(2) while the block runs.

    The kernel drops the lock when the holder dies, so a crash never leaves a folder locked; without
    it a second run's ``recover`` would finish or drop a write the first one is still making.
    """
    fd = os.open(root / LOCK, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise StateBusy(f"{root} is being written by another kha process right now ({root / LOCK} is locked); "
                       "run again once it has finished") from None
        yield
    finally:
        os.close(fd)


def fsync_dir(path: Path) -> None:
    """Make a folder's entries (a rename, a new or removed file) durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_new(path: Path, data: bytes, mode: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, _STAGED_MODE)
    try:
        _write_all(fd, data)
        os.fchmod(fd, mode)
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def commit(root: Path, files: Mapping[str, tuple[bytes, int]], mkdir: Callable[[Path], None]) -> None:
    """Write ``files`` (path relative to ``root`` → bytes, mode) so they appear together, durably.

    ``mkdir`` makes a missing folder (with the store's modes); the caller ran ``recover`` first.
    """
    if not files:
        return
    staging = root / STAGING
    staging.mkdir(mode=_STAGING_MODE)
    os.chmod(staging, _STAGING_MODE)
    fsync_dir(root)
    order = list(files.items())
    for i, (_rel, (data, mode)) in enumerate(order):
        _write_new(staging / str(i), data, mode)
        _durable_step()
    record = json.dumps([[rel, mode] for rel, (_data, mode) in order]).encode()
    _write_new(staging / f"{_COMMIT}.tmp", record, _STAGED_MODE)
    os.replace(staging / f"{_COMMIT}.tmp", staging / _COMMIT)
    fsync_dir(staging)
    _durable_step()
    _roll_forward(root, staging, mkdir)


def _roll_forward(root: Path, staging: Path, mkdir: Callable[[Path], None]) -> int:
    """Move every staged file of a committed batch onto its path; returns how many were still staged."""
    entries = json.loads((staging / _COMMIT).read_bytes())
    moved = 0
    folders: dict[Path, None] = {}
    for i, (rel, _mode) in enumerate(entries):
        src, dest = staging / str(i), root / rel
        if not src.exists():
            continue  # moved before the crash
        mkdir(dest.parent)
        os.replace(src, dest)
        # The folder's new entry, and every folder up to the root (one may be new: its entry is in its parent).
        folder = dest.parent
        while folder not in folders:
            folders[folder] = None
            if folder == root:
                break
            folder = folder.parent
        moved += 1
        _durable_step()
    for folder in folders:
        fsync_dir(folder)
    _discard(root, staging)
    return moved


def _discard(root: Path, staging: Path) -> None:
    shutil.rmtree(staging)
    fsync_dir(root)
    _durable_step()


def recover(root: Path, mkdir: Callable[[Path], None]) -> str | None:
    """Finish or drop a batch a crash interrupted, and remove temporary files older kha versions left.

    Returns what was done, for the caller to report, or None when there was nothing to do.
    """
    said: list[str] = []
    staging = root / STAGING
    if staging.is_dir():
        if (staging / _COMMIT).is_file():
            n = _roll_forward(root, staging, mkdir)
            said.append(f"completed a write a crash interrupted ({n} files were still staged)")
        else:
            n = sum(1 for p in staging.iterdir() if p.name.isdigit())
            _discard(root, staging)
            said.append(f"dropped a write a crash interrupted before it was decided ({n} staged files, "
                        "none of them visible)")
    stray = list(_old_temp_files(root))
    for path in stray:  # ``.<name>.<random>.tmp`` beside the file, from kha before the staging folder
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
    if stray:
        said.append(f"removed {len(stray)} temporary files an interrupted write left")
    return "; ".join(said) or None


def _old_temp_files(root: Path) -> Iterable[Path]:
    for dirpath, _dirs, names in os.walk(root):
        for name in names:
            if name.startswith(".") and name.endswith(".tmp"):
                yield Path(dirpath) / name
