"""Running commands on the machine that hosts the topology (ip, mount, qemu-img, mkfs.ext4, …).

``run`` is core.run's, returning the output as one string: argv lists only (never a shell string
built from data), output captured, and a non-zero exit raised as ``CommandFailed`` with the exact
argv and output, the way kind reports them.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence

import core.run
from harness.errors import DriverUnavailable


def run(argv: Sequence[str], *, check: bool = True, timeout: float = 120.0, input_text: str | None = None) -> str:
    """Run ``argv``, return stdout+stderr. Raises ``CommandFailed`` on a non-zero exit when ``check``."""
    return core.run.run(argv, check=check, timeout=timeout, input_text=input_text).output


def need(binary: str, package: str) -> str:
    """The path of ``binary``, or ``DriverUnavailable`` naming the Debian package that provides it."""
    path = shutil.which(binary) or shutil.which(binary, path="/usr/sbin:/sbin:/usr/bin:/bin:/usr/lib/libvirt")
    if path is None:
        raise DriverUnavailable(f"{binary} not found: install the Debian package {package} (apt-get install {package})")
    return path
