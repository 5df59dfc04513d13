"""Running commands on the machine that hosts the topology (ip, mount, qemu-img, mkfs.ext4, …).

One function, ``run``: argv lists only (never a shell string built from data), output captured, and a
non-zero exit raised as ``CommandFailed`` with the exact argv and output, the way kind reports them.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
from collections.abc import Sequence

from harness.errors import CommandFailed, DriverUnavailable

log = logging.getLogger(__name__)


def run(argv: Sequence[str], *, check: bool = True, timeout: float = 120.0, input_text: str | None = None) -> str:
    """Run ``argv``, return stdout+stderr. Raises ``CommandFailed`` on a non-zero exit when ``check``."""
    log.debug("run: %s", " ".join(argv))
    try:
        proc = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, input=input_text,
                              check=False)
    except FileNotFoundError as exc:
        raise CommandFailed(argv, 127, str(exc)) from exc
    except subprocess.TimeoutExpired as exc:
        out = (exc.stdout or b"") if isinstance(exc.stdout, bytes) else (exc.stdout or "").encode()
        raise CommandFailed(argv, -1, f"timed out after {timeout:g}s\n{out.decode(errors='replace')}") from exc
    output = proc.stdout + proc.stderr
    if check and proc.returncode != 0:
        raise CommandFailed(argv, proc.returncode, output)
    return output


def need(binary: str, package: str) -> str:
    """The path of ``binary``, or ``DriverUnavailable`` naming the Debian package that provides it."""
    path = shutil.which(binary) or shutil.which(binary, path="/usr/sbin:/sbin:/usr/bin:/bin:/usr/lib/libvirt")
    if path is None:
        raise DriverUnavailable(f"{binary} not found: install the Debian package {package} (apt-get install {package})")
    return path
