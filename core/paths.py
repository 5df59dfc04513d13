"""Paths named on the command line, checked before anything is written, and an OS error told as one line.

A folder flag (``--dir``, ``--state``, ``--out``) must be a folder or a path kha can create one at; a
file flag (``--ssh-config``) must be a readable file. Either is bad input (``InputError``, exit 2) found
before any side effect. An ``OSError`` that still happens half-way (a node folder replaced by a file
while kha ran) is worded by ``describe_os_error``: the path, what kha expected there, no traceback.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

from core.errors import InputError

#: What kha expected, by errno, for the one line an OS error becomes.
_EXPECTED = {
    errno.EISDIR: "is a folder; expected a file",
    errno.ENOTDIR: "a part of this path is a file where a folder is expected",
    errno.EEXIST: "exists and is not a folder; expected a folder (or nothing, for kha to create one)",
    errno.ENOENT: "does not exist",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.EROFS: "is on a read-only file system",
    errno.ENOSPC: "no space left on the device",
    errno.ENAMETOOLONG: "the name is too long",
}


def folder(path: str | Path, flag: str) -> Path:
    """``path`` is a folder, or nothing yet under a folder kha may create it in. Raises InputError otherwise."""
    p = Path(path)
    if p.exists() or p.is_symlink():
        # Only its kind: whether kha may write in it is the command's to find (`pki check` only reads).
        if not p.is_dir():
            raise InputError(f"{flag} {p}: is a file; expected a folder (or a path where kha can create one)")
        return p
    parent = p.absolute().parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise InputError(f"{flag} {p}: cannot be created, {parent} is a file; expected a folder there")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise InputError(f"{flag} {p}: cannot be created, kha may not write in {parent} (permission denied)")
    return p


def readable_file(path: str | Path, flag: str) -> Path:
    """``path`` is an existing, readable file. Raises InputError otherwise."""
    p = Path(path)
    if not p.exists():
        raise InputError(f"{flag} {p}: does not exist; expected a file")
    if not p.is_file():
        raise InputError(f"{flag} {p}: is a folder; expected a file")
    if not os.access(p, os.R_OK):
        raise InputError(f"{flag} {p}: cannot be read (permission denied)")
    return p


def file_or_creatable(path: str | Path, flag: str) -> Path:
    """``path`` is a file, or nothing yet in a folder kha may create it in (a known_hosts to fill)."""
    p = Path(path)
    if p.is_dir():
        raise InputError(f"{flag} {p}: is a folder; expected a file")
    if not p.exists():
        folder(p.parent, f"{flag} {p}: its folder")
    return p


def describe_os_error(exc: OSError) -> str:
    """One line for an OS error: the path(s), and what kha expected there."""
    paths = " -> ".join(str(f) for f in (exc.filename, exc.filename2) if f is not None)
    what = _EXPECTED.get(exc.errno or 0, exc.strerror or str(exc))
    return f"{paths}: {what}" if paths else what
