"""Network namespaces for isolated mode: create, delete, run a command inside, open a socket inside.

A topology's bridge, its taps/veths and every node address live in one named namespace
(``ip netns add``; the handle is ``/run/netns/NAME``). The harness reaches nodes from outside in two
ways: ``ip netns exec NS nc %h %p`` as an SSH ``ProxyCommand`` (for ``ssh -F`` and testinfra), and
``connect()`` below, which opens a TCP socket *inside* the namespace from a helper thread that joined
it with setns(2). Network namespaces are per thread in Linux, and a socket keeps the namespace it was
created in, so the socket is usable from any thread afterwards (see setns(2), network_namespaces(7)).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import hashlib
import logging
import os
import socket
import threading
from pathlib import Path

from harness import hostcmd
from harness.errors import HarnessError

log = logging.getLogger(__name__)

NETNS_DIR = Path("/run/netns")
_CLONE_NEWNET = 0x40000000  # <linux/sched.h>


def name_for(cluster: str, state_dir: Path) -> str:
    """``kha-<cluster>-<6 hex>``: unique per cluster *and* state directory, stable so ``down`` finds it."""
    digest = hashlib.sha256(str(state_dir.resolve()).encode()).hexdigest()[:6]
    return f"kha-{cluster}-{digest}"


def exists(name: str) -> bool:
    return (NETNS_DIR / name).exists()


def create(name: str) -> None:
    hostcmd.need("ip", "iproute2")
    hostcmd.run(["ip", "netns", "add", name])
    try:
        hostcmd.run(["ip", "-n", name, "link", "set", "lo", "up"])
    except HarnessError:
        delete(name)
        raise
    log.info("created network namespace %s", name)


def delete(name: str) -> None:
    if exists(name):
        hostcmd.run(["ip", "netns", "delete", name])
        log.info("deleted network namespace %s", name)


def exec_prefix(name: str) -> list[str]:
    """argv prefix that runs a command inside the namespace (also remounts /sys, see ip-netns(8))."""
    return ["ip", "netns", "exec", name]


def pids_inside(name: str) -> list[int]:
    """PIDs whose network namespace is ``name`` (what ``down`` must not leave behind)."""
    out = hostcmd.run(["ip", "netns", "pids", name], check=False)
    return [int(p) for p in out.split() if p.isdigit()]


def connect(name: str | None, address: str, port: int, timeout: float) -> socket.socket:
    """A TCP socket connected to ``address:port`` from inside namespace ``name`` (or from here if None)."""
    if name is None:
        return socket.create_connection((address, port), timeout=timeout)
    result: list[socket.socket] = []
    failure: list[BaseException] = []

    def inside() -> None:
        try:
            _setns(NETNS_DIR / name)
            result.append(socket.create_connection((address, port), timeout=timeout))
        except (OSError, HarnessError) as exc:  # handed to the caller's thread below
            failure.append(exc)

    worker = threading.Thread(target=inside, name=f"netns-{name}", daemon=True)
    worker.start()
    worker.join(timeout + 5)
    if failure:
        raise failure[0]
    if not result:
        raise TimeoutError(f"connect to {address}:{port} in {name} did not finish")
    return result[0]


def enter(name: str) -> None:
    """Move the *calling thread* into namespace ``name``.

    For worker threads that measure from inside the topology's network (probers, clients): sockets
    they open, and processes they start, live in the namespace; the rest of the process does not move.
    """
    _setns(NETNS_DIR / name)


_libc: ctypes.CDLL | None = None


def _setns(path: Path) -> None:
    global _libc  # noqa: PLW0603 - loaded once, on first use
    if _libc is None:
        _libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        if _libc.setns(fd, _CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns({path}): {os.strerror(err)}")
    finally:
        os.close(fd)
