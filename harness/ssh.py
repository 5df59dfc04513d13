"""Reaching nodes over SSH: the route to their addresses, the ssh_config the harness writes, the readiness check.

A node is ready when a *real* login works: paramiko authenticates as root with the cluster key and
checks the node's host key against the harness's known_hosts (an open port is not enough: a
forwarded or half-started sshd accepts TCP first, ../shared/MACHINE.md "Services").

How a node's address is reached is a ``Reach``, which the libvirt the cluster runs on provides
(``harness.daemon``): one value used both for the ``ProxyCommand`` of the ssh_config (``ssh -F``, testinfra)
and for the socket paramiko logs in over, so the two never disagree:

- ``Direct``: the addresses are routed from here (the system libvirt's bridge on this machine);
- ``ViaNetns``: they exist only inside a network namespace on this machine (isolated mode, or a second
  libvirtd in a namespace reached with ``--connect``): ``ip netns exec NS nc %h %p``, and for paramiko a
  socket opened inside the namespace directly (``netns.connect``);
- ``ViaSsh``: they exist on another machine's bridge (``--connect qemu+ssh://[user@]host[:port]/system``):
  through that host's sshd with ``ssh -W %h:%p``, the same login libvirt's own ssh transport uses
  (the user's ~/.ssh/config, agent and known_hosts apply to the hop; never a password prompt: BatchMode).
"""

from __future__ import annotations

import logging
import shlex
import socket
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


@dataclass(frozen=True)
class Direct:
    """The node addresses are routed from here."""

    def proxy_argv(self) -> list[str] | None:
        return None

    def connect(self, address: str, port: int, timeout: float) -> socket.socket | paramiko.ProxyCommand:
        return socket.create_connection((address, port), timeout=timeout)

    def describe(self) -> str:
        return "directly"


@dataclass(frozen=True)
class ViaNetns:
    """The node addresses exist only inside network namespace ``name`` on this machine."""

    name: str

    def proxy_argv(self) -> list[str] | None:
        """ProxyCommand argv (``%h``/``%p`` are expanded by ssh and paramiko, not by a shell)."""
        return [*netns.exec_prefix(self.name), "nc", "%h", "%p"]

    def connect(self, address: str, port: int, timeout: float) -> socket.socket | paramiko.ProxyCommand:
        # A socket made inside the namespace from a helper thread: no nc process per login.
        return netns.connect(self.name, address, port, timeout)

    def describe(self) -> str:
        return f"inside network namespace {self.name}"


@dataclass(frozen=True)
class ViaSsh:
    """The node addresses are on ``host``'s bridge: hop through its sshd (``ssh -W``), as libvirt's ssh
    transport logs in (``user``, ``port`` and ``keyfile`` from the ``--connect`` URI; the rest from the
    user's ssh configuration)."""

    host: str
    user: str | None = None
    port: int | None = None
    keyfile: str | None = None

    def proxy_argv(self) -> list[str] | None:
        argv = ["ssh", "-o", "BatchMode=yes"]
        if self.port is not None:
            argv += ["-p", str(self.port)]
        if self.user is not None:
            argv += ["-l", self.user]
        if self.keyfile is not None:
            argv += ["-i", self.keyfile]
        # "--" so a host can never be read as an option.
        return [*argv, "-W", "%h:%p", "--", self.host]

    def connect(self, address: str, port: int, timeout: float) -> socket.socket | paramiko.ProxyCommand:
        argv = [_expand(word, address, port) for word in self.proxy_argv() or []]
        return paramiko.ProxyCommand(shlex.join(argv))  # paramiko splits it with shlex again, no shell

    def describe(self) -> str:
        return f"through {self.user + '@' if self.user else ''}{self.host} (ssh -W)"


Reach = Direct | ViaNetns | ViaSsh


def _expand(word: str, host: str, port: int) -> str:
    """ssh's ``%h``/``%p`` tokens (ssh_config(5) TOKENS) for paramiko, which does not expand them."""
    return word.replace("%h", host).replace("%p", str(port))


def render_ssh_config(targets: Sequence[Target], identity: Path, known_hosts: Path, reach: Reach,
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
        proxy = reach.proxy_argv()
        if proxy is not None:
            lines.append(f"    ProxyCommand {shlex.join(proxy)}")
        lines.append("")
    return "\n".join(lines)


def client(target: Target, identity: Path, known_hosts: Path, reach: Reach,
           timeout: float = _ATTEMPT_TIMEOUT) -> paramiko.SSHClient:
    """A logged-in paramiko client; the host key must be the pinned one (RejectPolicy otherwise)."""
    sock = reach.connect(target.address, target.port, timeout)
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


def wait_ready(target: Target, identity: Path, known_hosts: Path, reach: Reach, *, timeout: float,
               hint: str = "") -> float:
    """Poll until a login runs ``true``; return the seconds it took. ``NodeNotReady`` after ``timeout``."""
    start = time.monotonic()

    def login() -> str | None:
        try:
            cli = client(target, identity, known_hosts, reach)
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
