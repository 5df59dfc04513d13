"""Reaching nodes over SSH: the ssh_config and known_hosts the harness writes, and the readiness check.

A node is ready when a *real* login works: paramiko authenticates as root with the cluster key and
checks the node's host key against the harness's known_hosts (an open port is not enough: a
forwarded or half-started sshd accepts TCP first, ../shared/MACHINE.md "Services"). In isolated mode
the node addresses only exist inside the cluster's network namespace, so the ssh_config reaches them
through ``ProxyCommand ip netns exec NS nc %h %p``; the readiness check opens its socket inside the
namespace directly (``netns.connect``).
"""

from __future__ import annotations

import logging
import shlex
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import paramiko

from core import waiting
from harness import netns
from harness.errors import NodeNotReady

log = logging.getLogger(__name__)

_ATTEMPT_TIMEOUT = 5.0


@dataclass(frozen=True)
class Target:
    """One node as SSH sees it."""

    name: str
    address: str
    port: int = 22


def render_ssh_config(targets: Sequence[Target], identity: Path, known_hosts: Path, netns_name: str | None,
                      cluster: str) -> str:
    """An ssh_config with one ``Host`` block per node, matching its name and its address."""
    lines = [f"# Written by the kha harness for cluster {cluster}. Use: ssh -F <this file> NODE", ""]
    for t in targets:
        patterns = " ".join(dict.fromkeys([t.name, t.address]))
        lines += [
            f"Host {patterns}",
            f"    HostName {t.address}",
            f"    Port {t.port}",
            "    User root",
            f"    IdentityFile {identity}",
            "    IdentitiesOnly yes",
            f"    UserKnownHostsFile {known_hosts}",
            "    StrictHostKeyChecking yes",
            "    GlobalKnownHostsFile /dev/null",
        ]
        if netns_name is not None:
            lines.append(f"    ProxyCommand {shlex.join(proxy_argv(netns_name))}")
        lines.append("")
    return "\n".join(lines)


def proxy_argv(netns_name: str) -> list[str]:
    """ProxyCommand argv (``%h``/``%p`` are expanded by ssh and paramiko, not by a shell)."""
    return [*netns.exec_prefix(netns_name), "nc", "%h", "%p"]


def client(target: Target, identity: Path, known_hosts: Path, netns_name: str | None,
           timeout: float = _ATTEMPT_TIMEOUT) -> paramiko.SSHClient:
    """A logged-in paramiko client; the host key must be the pinned one (RejectPolicy otherwise)."""
    sock = netns.connect(netns_name, target.address, target.port, timeout)
    cli = paramiko.SSHClient()
    cli.load_host_keys(str(known_hosts))
    cli.set_missing_host_key_policy(paramiko.RejectPolicy())
    try:
        cli.connect(target.address, port=target.port, username="root", key_filename=str(identity), sock=sock,
                    timeout=timeout, banner_timeout=timeout, auth_timeout=timeout, allow_agent=False,
                    look_for_keys=False)
    except BaseException:
        cli.close()
        sock.close()
        raise
    return cli


def run(cli: paramiko.SSHClient, argv: Sequence[str], timeout: float = 60.0) -> tuple[int, str, str]:
    """Run ``argv`` (quoted once, here, at the SSH boundary); return exit status, stdout, stderr."""
    _stdin, stdout, stderr = cli.exec_command(shlex.join(argv), timeout=timeout)
    out = stdout.read().decode(errors="replace")
    err = stderr.read().decode(errors="replace")
    return stdout.channel.recv_exit_status(), out, err


def wait_ready(target: Target, identity: Path, known_hosts: Path, netns_name: str | None, *, timeout: float,
               hint: str = "") -> float:
    """Poll until a login runs ``true``; return the seconds it took. ``NodeNotReady`` after ``timeout``."""
    start = time.monotonic()

    def login() -> str | None:
        try:
            cli = client(target, identity, known_hosts, netns_name)
            try:
                status, _out, err = run(cli, ["true"], timeout=_ATTEMPT_TIMEOUT)
            finally:
                cli.close()
        except paramiko.BadHostKeyException as exc:
            # Not transient: someone else answers on this address, or the node did not get its key.
            raise NodeNotReady(target.name, time.monotonic() - start, f"host key mismatch: {exc}", hint) from exc
        except (OSError, paramiko.SSHException, EOFError, TimeoutError) as exc:
            return f"{type(exc).__name__}: {exc}"
        return None if status == 0 else f"`true` exited {status}: {err.strip()}"

    return waiting.until(login, timeout=timeout, interval=lambda waited: 0.2 if waited < 10 else 1.0,
                         error=lambda last: NodeNotReady(target.name, time.monotonic() - start, last, hint))
