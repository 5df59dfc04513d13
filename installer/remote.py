"""How the installer runs commands on a node and moves files to and from it.

Owns:

* ``NodeAddress`` — where a node is and how to log in (the inventory maps onto it);
* ``Transport`` — the one interface phases talk to: ``run`` an argv, ``put`` / ``get`` a file,
  ``close``; and ``Result``, what a finished command gives back;
* ``SSHTransport`` (paramiko) and its factory ``connect`` — host keys pinned in a known_hosts
  file the caller names, one reconnect when the connection was dropped;
* ``LocalTransport`` (``core.run.execute``) — the same interface on this machine, for unit tests and for
  installing onto localhost.

Commands are argv lists from end to end. They are quoted exactly once, with ``shlex.join``,
where they cross the SSH boundary (an SSH "exec" request carries one string that the remote
login shell parses). Nothing here builds a shell line out of data with string formatting.

Errors are the ``RemoteError`` family from ``installer.errors``: ``ConnectError``,
``HostKeyError``, ``CommandError``, ``CommandTimeout``, and ``RemoteError`` itself for a file
transfer that failed on the node (no such directory, permission denied).
"""

from __future__ import annotations

import contextlib
import grp
import logging
import os
import pwd
import re
import secrets
import select
import shlex
import tempfile
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from types import TracebackType
from typing import Self, TypeVar

import paramiko

import core.run
from installer.errors import (
    CommandError,
    CommandTimeout,
    ConfigError,
    ConnectError,
    HostKeyError,
    Problem,
    RemoteError,
)

log = logging.getLogger(__name__)

T = TypeVar("T")

#: What a command is prefixed with when it must run as root and we are not root.
#: ``-n``: never prompt — a password prompt on a node would hang the installer, so sudo must
#: be passwordless for the login user (see sudo(8), "-n, --non-interactive").
SUDO: tuple[str, ...] = ("sudo", "-n", "--")

#: Mode of a file written by ``put`` when the caller gives none (what umask 022 would give).
DEFAULT_MODE = 0o644

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_CHUNK = 65536
#: How long output may trail the exit status before we stop waiting for EOF (see ``_collect``).
_EOF_GRACE = 2.0

#: What ``put`` accepts: the content itself (``bytes``) or the path of a local file.
Source = bytes | str | os.PathLike[str]


@dataclass(frozen=True)
class NodeAddress:
    """Where a node is and how to log in to it. ``password`` never shows in ``repr``."""

    name: str
    host: str
    port: int = 22
    user: str = "root"
    password: str | None = field(default=None, repr=False)
    key_file: str | None = None
    #: an OpenSSH-style ProxyCommand (``%h``/``%p`` expanded), e.g. to reach nodes that live in a
    #: network namespace: ``ip netns exec kha-x nc %h %p``.
    proxy_command: str | None = None

    def __post_init__(self) -> None:
        problems = []
        where = f"<node {self.name!r}>"
        if not self.name:
            problems.append(Problem(where, None, "must not be empty", "name"))
        if not self.host:
            problems.append(Problem(where, None, "must not be empty", "host"))
        if not 0 < self.port < 65536:
            problems.append(Problem(where, None, f"{self.port} is not a TCP port", "port"))
        if not self.user:
            problems.append(Problem(where, None, "must not be empty", "user"))
        if problems:
            raise ConfigError(problems)

    @property
    def known_hosts_name(self) -> str:
        """The name this node has in a known_hosts file: ``host``, or ``[host]:port`` off port 22."""
        return self.host if self.port == 22 else f"[{self.host}]:{self.port}"


#: The name the issue uses; one type.
SSHTarget = NodeAddress


@dataclass(frozen=True)
class Result:
    """A command that ran to the end. ``argv`` is the command as run, without any sudo prefix."""

    node: str
    argv: tuple[str, ...]
    exit_code: int
    stdout: str
    stderr: str
    sudo: bool = False

    @property
    def ok(self) -> bool:
        return self.exit_code == 0

    def check(self) -> Self:
        """Return self, or raise ``CommandError`` if the command exited non-zero."""
        if not self.ok:
            raise CommandError(self.node, self.argv, self.exit_code, self.stdout, self.stderr, sudo=self.sudo)
        return self


def compose(argv: Sequence[str], *, env: Mapping[str, str] | None = None) -> tuple[str, ...]:
    """The argv that carries ``env``: ``env NAME=VALUE ... argv`` (still a list, never a string).

    The variables ride on the command line rather than on the SSH channel because sshd drops
    variables that its ``AcceptEnv`` does not list (sshd_config(5)), and sudo resets the
    environment (sudoers(5), env_reset); ``sudo -- env A=B cmd`` survives both.
    """
    if isinstance(argv, str | bytes):
        raise TypeError(f"argv must be a sequence of arguments, not a string: {argv!r}")
    if not argv:
        raise ValueError("argv must not be empty")
    cmd = tuple(argv)
    if not env:
        return cmd
    for name in env:
        if not _ENV_NAME.match(name):
            raise ValueError(f"not an environment variable name: {name!r}")
    if "=" in cmd[0]:
        # env(1) would read it as one more NAME=VALUE and run the next word instead.
        raise ValueError(f"a command named {cmd[0]!r} cannot be combined with env")
    return ("env", *(f"{k}={v}" for k, v in env.items()), *cmd)


class Transport(ABC):
    """Runs commands on one node and moves files to and from it.

    ``run`` is shared; an implementation supplies ``_exec`` (run a final argv, return exit code
    and raw output, ``None`` as exit code on timeout), ``put``, ``get`` and ``close``.
    """

    #: The node's name, used in every error and log line.
    node: str
    #: Limit for ``run`` when the call gives none; ``None`` waits for ever.
    command_timeout: float | None = None

    @property
    @abstractmethod
    def as_root(self) -> bool:
        """True when commands already run as root, so ``sudo=True`` adds nothing."""

    def command(
        self, argv: Sequence[str], *, sudo: bool = False, env: Mapping[str, str] | None = None
    ) -> tuple[str, ...]:
        """The exact argv ``run`` would execute for these arguments."""
        cmd = compose(argv, env=env)
        return (*SUDO, *cmd) if sudo and not self.as_root else cmd

    def run(
        self,
        argv: Sequence[str],
        *,
        sudo: bool = False,
        timeout: float | None = None,
        check: bool = True,
        stdin: bytes | str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> Result:
        """Run ``argv`` on the node and wait for it.

        Raises ``CommandError`` if it exits non-zero and ``check`` is true, ``CommandTimeout`` if
        it is still running after ``timeout`` seconds (whatever ``check`` says).
        """
        code, out, err, cmd, use_sudo = self._run_raw(argv, sudo=sudo, timeout=timeout, stdin=stdin, env=env)
        result = Result(self.node, cmd, code, _text(out), _text(err), sudo=use_sudo)
        return result.check() if check else result

    def _run_raw(
        self,
        argv: Sequence[str],
        *,
        sudo: bool,
        timeout: float | None = None,
        stdin: bytes | str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> tuple[int, bytes, bytes, tuple[str, ...], bool]:
        cmd = compose(argv, env=env)
        use_sudo = sudo and not self.as_root
        final = (*SUDO, *cmd) if use_sudo else cmd
        data = stdin.encode() if isinstance(stdin, str) else stdin
        limit = timeout if timeout is not None else self.command_timeout
        log.debug("%s: $ %s", self.node, shlex.join(final))
        started = time.monotonic()
        code, out, err = self._exec(final, data, limit)
        if code is None:
            assert limit is not None  # only a limit can time a command out
            raise CommandTimeout(self.node, cmd, limit, _text(out), _text(err), sudo=use_sudo)
        log.debug("%s: exit %d after %.2fs", self.node, code, time.monotonic() - started)
        return code, out, err, cmd, use_sudo

    def _read_as_root(self, path: str) -> bytes:
        """A file's bytes read through ``sudo cat`` (for files only root may read)."""
        code, out, err, cmd, use_sudo = self._run_raw(["cat", "--", path], sudo=True)
        if code != 0:
            raise CommandError(self.node, cmd, code, "", _text(err), sudo=use_sudo)
        return out

    @abstractmethod
    def _exec(
        self, argv: tuple[str, ...], stdin: bytes | None, timeout: float | None
    ) -> tuple[int | None, bytes, bytes]: ...

    @abstractmethod
    def put(
        self,
        src: Source,
        remote_path: str,
        *,
        mode: int | None = None,
        owner: str | None = None,
        group: str | None = None,
        sudo: bool = False,
    ) -> None:
        """Write ``src`` (bytes, or the path of a local file) to ``remote_path`` on the node.

        ``mode`` defaults to ``DEFAULT_MODE`` (0644), also when replacing a file that had another
        mode; pass 0o600 for secrets. The parent directory must exist. ``sudo`` (or a different
        ``owner``/``group``) writes where the login user may not.
        """

    @abstractmethod
    def get(self, remote_path: str, local_path: str | os.PathLike[str] | None = None, *, sudo: bool = False) -> bytes:
        """Read ``remote_path`` from the node; also write it to ``local_path`` if given."""

    @abstractmethod
    def close(self) -> None:
        """Release the connection. Safe to call twice."""

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


# --------------------------------------------------------------------------------------------
# Local


class LocalTransport(Transport):
    """Runs argv on this machine with ``core.run.execute``; same interface as ``SSHTransport``.

    ``root``, if given, is prefixed to the paths of ``put`` and ``get`` (``put(..., "/etc/x")``
    writes ``root/etc/x``), so tests can install into a temporary directory. It does not change
    where commands run.
    """

    def __init__(
        self,
        name: str = "localhost",
        *,
        root: str | os.PathLike[str] | None = None,
        command_timeout: float | None = None,
    ) -> None:
        self.node = name
        self.root = Path(root) if root is not None else None
        self.command_timeout = command_timeout

    def __repr__(self) -> str:
        return f"LocalTransport({self.node!r}, root={self.root!r})"

    @property
    def as_root(self) -> bool:
        return os.geteuid() == 0

    def path(self, remote_path: str) -> Path:
        """Where ``remote_path`` is on this machine (under ``root`` if one was given)."""
        p = PurePosixPath(remote_path)
        if self.root is None:
            return Path(p)
        return self.root.joinpath(*(p.parts[1:] if p.is_absolute() else p.parts))

    def _exec(
        self, argv: tuple[str, ...], stdin: bytes | None, timeout: float | None
    ) -> tuple[int | None, bytes, bytes]:
        return core.run.execute(argv, stdin=stdin, timeout=timeout)

    def put(
        self,
        src: Source,
        remote_path: str,
        *,
        mode: int | None = None,
        owner: str | None = None,
        group: str | None = None,
        sudo: bool = False,
    ) -> None:
        data = _read_source(self.node, src)
        mode = DEFAULT_MODE if mode is None else mode
        dest = self.path(remote_path)
        if sudo and not self.as_root:
            with tempfile.NamedTemporaryFile(prefix="kha-put-") as tmp:
                tmp.write(data)
                tmp.flush()
                self.run(_install_argv(tmp.name, str(dest), mode, owner, group), sudo=True)
            return
        tmp_path: str | None = None
        try:
            # Write beside the destination and rename over it: readers never see half a file.
            fd, tmp_path = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.kha-")
            with os.fdopen(fd, "wb") as f:
                os.fchmod(f.fileno(), mode)
                f.write(data)
            if owner is not None or group is not None:
                uid = pwd.getpwnam(owner).pw_uid if owner is not None else -1
                gid = grp.getgrnam(group).gr_gid if group is not None else -1
                os.chown(tmp_path, uid, gid)
            os.replace(tmp_path, dest)
            tmp_path = None
        except (OSError, KeyError) as exc:  # KeyError: no such user or group
            raise RemoteError(self.node, f"put {remote_path}: {exc}") from exc
        finally:
            if tmp_path is not None:
                with contextlib.suppress(OSError):
                    os.unlink(tmp_path)

    def get(self, remote_path: str, local_path: str | os.PathLike[str] | None = None, *, sudo: bool = False) -> bytes:
        src = self.path(remote_path)
        if sudo and not self.as_root:
            data = self._read_as_root(str(src))
        else:
            try:
                data = src.read_bytes()
            except OSError as exc:
                raise RemoteError(self.node, f"get {remote_path}: {exc}") from exc
        if local_path is not None:
            Path(local_path).write_bytes(data)
        return data

    def close(self) -> None:
        pass


# --------------------------------------------------------------------------------------------
# SSH


class SSHTransport(Transport):
    """A node reached over SSH (paramiko), with host keys pinned in ``known_hosts``.

    * Host keys: ``known_hosts`` is read with paramiko's ``HostKeys`` (plain and hashed names,
      ``[host]:port`` off port 22). A key that differs from the pinned one is always refused.
      A host with no entry is refused unless ``trust_unknown`` is true; then its key is accepted
      and appended to ``known_hosts``.
    * Reconnect: if the connection turns out to be gone when a command or transfer starts (the
      node rebooted, sshd restarted), it reconnects once and goes on; if that fails, or the
      connection is lost again, ``ConnectError``. A connection lost *while a command runs*
      raises ``ConnectError`` at once — whether the command finished is unknown, so it is not
      run a second time; the next call reconnects.
    * sudo: a login user other than root gets ``sudo -n --`` (passwordless sudo required).
    * Timeouts: on ``CommandTimeout`` the channel is closed; sshd then closes the command's
      pipes, but a command that neither reads nor writes may keep running on the node.

    * ``close()`` is final and the one call another thread may make: it ends the connection and the
      proxy process behind it, a command hanging on it fails with ``ConnectError``, and nothing
      reconnects afterwards (a connection being made when it came is discarded). ``open()`` opens a
      closed transport again.

    Otherwise not safe to share between threads; use one transport per node and thread.
    """

    def __init__(
        self,
        target: NodeAddress,
        known_hosts: str | os.PathLike[str],
        *,
        trust_unknown: bool = False,
        connect_timeout: float = 10.0,
        command_timeout: float | None = None,
    ) -> None:
        self.target = target
        self.node = target.name
        self.known_hosts = Path(known_hosts)
        self.trust_unknown = trust_unknown
        self.connect_timeout = connect_timeout
        self.command_timeout = command_timeout
        #: How many times a dropped connection was re-established (for logs and tests).
        self.reconnects = 0
        self._client: paramiko.SSHClient | None = None
        self._sftp: paramiko.SFTPClient | None = None
        self._sock: paramiko.ProxyCommand | None = None
        self._was_connected = False
        self._closed = False
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        t = self.target
        return f"SSHTransport({self.node!r}, {t.user}@{t.host}:{t.port})"

    @property
    def as_root(self) -> bool:
        return self.target.user == "root"

    # -- connection ---------------------------------------------------------------------------

    def open(self) -> Self:
        """Connect now (otherwise the first call connects), also after ``close()``. Returns self."""
        with self._lock:
            self._closed = False
        if not self._alive():
            self._connect()
        return self

    def close(self) -> None:
        with self._lock:
            self._closed = True
        self._drop()
        self._was_connected = False

    def _alive(self) -> bool:
        if self._client is None:
            return False
        transport = self._client.get_transport()
        return transport is not None and transport.is_active()

    def _drop(self) -> None:
        with self._lock:
            sftp, client, sock = self._sftp, self._client, self._sock
            self._sftp = self._client = None
            self._sock = None
        # Closing a connection that already died may raise about anything; it is gone either way.
        with contextlib.suppress(Exception):
            if sftp is not None:
                sftp.close()
        _end(client, sock)

    def _connect(self) -> None:
        self._drop()
        t = self.target
        where = f"{t.user}@{t.host}:{t.port}"
        pkey = None
        if t.key_file is not None:
            try:
                pkey = paramiko.PKey.from_path(t.key_file)
            except (OSError, paramiko.SSHException, ValueError) as exc:
                raise ConnectError(self.node, f"cannot use key file {t.key_file}: {exc}") from exc
        client = paramiko.SSHClient()
        if self.known_hosts.exists():
            try:
                client.load_host_keys(str(self.known_hosts))
            except (OSError, paramiko.SSHException, ValueError) as exc:
                raise HostKeyError(self.node, f"cannot read known_hosts {self.known_hosts}: {exc}") from exc
        client.set_missing_host_key_policy(_UnknownHostKey(self.node, self.known_hosts, self.trust_unknown))
        log.debug("%s: connecting to %s", self.node, where)
        sock = None
        if t.proxy_command:
            cmd = t.proxy_command.replace("%h", t.host).replace("%p", str(t.port)).replace("%%", "%")
            sock = paramiko.ProxyCommand(cmd)
        with self._lock:
            closed = self._closed
            if not closed:
                self._sock = sock  # close() from another thread ends it, and so the connect below
        if closed:
            _end(client, sock)
            raise ConnectError(self.node, f"{where}: transport closed")
        try:
            client.connect(
                sock=sock,
                hostname=t.host,
                port=t.port,
                username=t.user,
                password=t.password,
                pkey=pkey,
                timeout=self.connect_timeout,
                banner_timeout=self.connect_timeout,
                auth_timeout=self.connect_timeout,
                channel_timeout=self.connect_timeout,
                # Only the credentials the inventory names: never an agent or ~/.ssh keys.
                allow_agent=False,
                look_for_keys=False,
            )
        except HostKeyError:
            self._drop_failed(client, sock)
            raise
        except paramiko.BadHostKeyException as exc:
            self._drop_failed(client, sock)
            raise HostKeyError(self.node, self._mismatch(exc)) from exc
        except paramiko.AuthenticationException as exc:
            self._drop_failed(client, sock)
            raise ConnectError(self.node, f"{where}: authentication failed: {exc}") from exc
        except (paramiko.SSHException, OSError, EOFError) as exc:
            self._drop_failed(client, sock)
            raise ConnectError(self.node, f"cannot connect to {where}: {exc}") from exc
        with self._lock:
            closed = self._closed
            if not closed:
                self._client = client
                self._was_connected = True
        if closed:  # close() came while connecting: this connection is nobody's
            self._drop_failed(client, sock)
            raise ConnectError(self.node, f"{where}: transport closed while connecting")

    def _drop_failed(self, client: paramiko.SSHClient, sock: paramiko.ProxyCommand | None) -> None:
        """A connection that did not come about: its client, and the proxy process paramiko leaves running."""
        with self._lock:
            if self._sock is sock:
                self._sock = None
        _end(client, sock)

    def _mismatch(self, exc: paramiko.BadHostKeyException) -> str:
        name = self.target.known_hosts_name
        got, pinned = exc.key, exc.expected_key
        return (
            f"host key for {name} does not match {self.known_hosts}: the node offers "
            f"{got.get_name()} {got.fingerprint}, the file pins {pinned.get_name()} {pinned.fingerprint}. "
            "If the node was reinstalled on purpose, remove the old entry with: "
            + shlex.join(["ssh-keygen", "-R", name, "-f", str(self.known_hosts)])
        )

    def _with_connection(self, what: str, op: Callable[[paramiko.SSHClient], T]) -> T:
        """Run ``op`` on a live connection, reconnecting at most once if it was dropped."""
        reconnected = False
        while True:
            if self._closed:
                raise ConnectError(self.node, f"transport closed while {what}")
            if not self._alive():
                if self._was_connected:
                    if reconnected:
                        raise ConnectError(self.node, f"connection lost again while {what}")
                    reconnected = True
                    self.reconnects += 1
                    log.info("%s: connection was dropped; reconnecting once", self.node)
                self._connect()  # ConnectError / HostKeyError: no further attempt
            assert self._client is not None
            try:
                return op(self._client)
            except (OSError, paramiko.SSHException, EOFError) as exc:
                if not _is_drop(exc, self._alive()):
                    raise
                self._drop()
                if reconnected:
                    raise ConnectError(self.node, f"connection lost again while {what}: {exc}") from exc
                # next turn of the loop finds the connection gone and makes the one reconnect

    def _sftp_op(self, what: str, op: Callable[[paramiko.SFTPClient], T]) -> T:
        def with_sftp(client: paramiko.SSHClient) -> T:
            if self._sftp is None:
                self._sftp = client.open_sftp()
            return op(self._sftp)

        try:
            return self._with_connection(what, with_sftp)
        except OSError as exc:  # SFTP status errors: no such file, permission denied, ...
            raise RemoteError(self.node, f"{what}: {exc}") from exc

    # -- commands -----------------------------------------------------------------------------

    def _exec(
        self, argv: tuple[str, ...], stdin: bytes | None, timeout: float | None
    ) -> tuple[int | None, bytes, bytes]:
        line = shlex.join(argv)  # the one place an argv becomes a shell line
        try:
            chan = self._with_connection(
                "opening a session", lambda c: _live(c).open_session(timeout=self.connect_timeout)
            )
        except OSError as exc:
            raise ConnectError(self.node, f"could not open a session: {exc}") from exc
        try:
            chan.exec_command(line)
        except (paramiko.SSHException, EOFError, OSError) as exc:
            chan.close()
            self._drop()
            raise ConnectError(self.node, f"could not start {line}: {exc}") from exc
        try:
            return self._collect(chan, line, stdin, timeout)
        finally:
            chan.close()

    def _collect(
        self, chan: paramiko.Channel, line: str, stdin: bytes | None, timeout: float | None
    ) -> tuple[int | None, bytes, bytes]:
        if stdin:
            # Fed from a thread: a command that writes a lot before reading all its input would
            # otherwise deadlock against us writing all the input before reading any output.
            feeder = threading.Thread(target=_feed, args=(chan, stdin), daemon=True)
            feeder.start()
        else:
            chan.shutdown_write()  # EOF at once, so `cat` and friends do not wait for input
        deadline = None if timeout is None else time.monotonic() + timeout
        out, err = bytearray(), bytearray()
        transport = chan.get_transport()
        status_seen: float | None = None
        while True:
            while chan.recv_ready():
                out += chan.recv(_CHUNK)
            while chan.recv_stderr_ready():
                err += chan.recv_stderr(_CHUNK)
            # Done at EOF. The exit status may arrive *before* the last output (paramiko's
            # Channel.exit_status_ready docs): stopping there loses it, as a flaky empty stdout of
            # a command that succeeded. A command whose background child keeps stdout open never
            # sends EOF, so after the status only a short grace is given.
            if chan.exit_status_ready() and not chan.recv_ready() and not chan.recv_stderr_ready():
                if chan.eof_received:
                    break
                status_seen = status_seen if status_seen is not None else time.monotonic()
                if time.monotonic() - status_seen > _EOF_GRACE:
                    break
            if not transport.is_active():
                self._drop()
                raise ConnectError(self.node, f"connection lost while running {line}; whether it finished is unknown")
            wait = 0.5
            if deadline is not None:
                wait = deadline - time.monotonic()
                if wait <= 0:
                    return None, bytes(out), bytes(err)
                wait = min(wait, 0.5)
            if chan.eof_received:
                chan.status_event.wait(wait)  # output is done; only the exit status is missing
            else:
                select.select([chan], [], [], wait if status_seen is None else min(wait, 0.05))
        code = chan.recv_exit_status()
        if code == -1 and not transport.is_active():
            self._drop()
            raise ConnectError(
                self.node,
                f"connection lost while running {line}; whether it finished is unknown",
            )
        return code, bytes(out), bytes(err)

    # -- files --------------------------------------------------------------------------------

    def put(
        self,
        src: Source,
        remote_path: str,
        *,
        mode: int | None = None,
        owner: str | None = None,
        group: str | None = None,
        sudo: bool = False,
    ) -> None:
        data = _read_source(self.node, src)
        mode = DEFAULT_MODE if mode is None else mode
        if owner is None and group is None and not (sudo and not self.as_root):
            self._sftp_op(f"put {remote_path}", lambda s: _sftp_replace(s, remote_path, data, mode))
            return
        # A new owner, or a place the login user cannot write: stage the bytes in a private
        # temp file, then let install(1) copy them into place with mode and owner in one step.
        tmp = self.run(["mktemp"]).stdout.strip()
        try:
            self._sftp_op(f"put {remote_path} (staging {tmp})", lambda s: _sftp_write(s, tmp, data, 0o600))
            self.run(_install_argv(tmp, remote_path, mode, owner, group), sudo=True)
        finally:
            try:
                self.run(["rm", "-f", "--", tmp], check=False)
            except RemoteError as exc:
                log.debug("%s: could not remove %s: %s", self.node, tmp, exc)

    def get(self, remote_path: str, local_path: str | os.PathLike[str] | None = None, *, sudo: bool = False) -> bytes:
        if sudo and not self.as_root:
            data = self._read_as_root(remote_path)
        else:
            data = self._sftp_op(f"get {remote_path}", lambda s: _sftp_read(s, remote_path))
        if local_path is not None:
            Path(local_path).write_bytes(data)
        return data


def connect(
    target: NodeAddress,
    known_hosts: str | os.PathLike[str],
    trust_unknown: bool = False,
    *,
    connect_timeout: float = 10.0,
    command_timeout: float | None = None,
) -> SSHTransport:
    """An ``SSHTransport`` to ``target``, already connected (so host key and login problems show
    here). Raises ``HostKeyError`` or ``ConnectError``."""
    return SSHTransport(
        target,
        known_hosts,
        trust_unknown=trust_unknown,
        connect_timeout=connect_timeout,
        command_timeout=command_timeout,
    ).open()


class _UnknownHostKey(paramiko.MissingHostKeyPolicy):
    """What to do with a host that has no entry in known_hosts: refuse, or trust and record."""

    def __init__(self, node: str, known_hosts: Path, trust: bool) -> None:
        self.node = node
        self.known_hosts = known_hosts
        self.trust = trust

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> None:
        offered = f"{key.get_name()} {key.fingerprint}"
        if not self.trust:
            raise HostKeyError(
                self.node,
                f"host key for {hostname} is unknown: {offered} is not in {self.known_hosts}; "
                "add it there, or connect with trust_unknown=True to accept and record it",
            )
        client.get_host_keys().add(hostname, key.get_name(), key)
        _append_known_host(self.known_hosts, hostname, key)
        log.warning(
            "%s: trusted new host key %s for %s, recorded in %s", self.node, offered, hostname, self.known_hosts
        )


def _append_known_host(path: Path, hostname: str, key: paramiko.PKey) -> None:
    line = f"{hostname} {key.get_name()} {key.get_base64()}\n"
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
    with os.fdopen(fd, "r+b") as f:
        size = f.seek(0, os.SEEK_END)
        if size:
            f.seek(size - 1)
            if f.read(1) != b"\n":
                line = "\n" + line
        f.write(line.encode())


def _end(client: paramiko.SSHClient | None, sock: paramiko.ProxyCommand | None) -> None:
    """Close a connection, dead or alive, and its ProxyCommand process: paramiko's Transport.close() does
    nothing once the transport has died (its peer rebooted or was powered off) or never came up, so the
    proxy behind it would be left running."""
    with contextlib.suppress(Exception):  # closing what already died may raise about anything
        if client is not None:
            client.close()
    with contextlib.suppress(Exception):
        if sock is not None:
            sock.close()


def _is_drop(exc: BaseException, alive: bool) -> bool:
    """Whether ``exc`` means the connection went away (rather than an error on the node)."""
    if isinstance(exc, paramiko.SSHException | EOFError | ConnectionError | TimeoutError):
        return True
    # paramiko's SFTP status errors are OSErrors too, raised on a connection that is still up.
    return isinstance(exc, OSError) and not alive


def _live(client: paramiko.SSHClient) -> paramiko.Transport:
    transport = client.get_transport()
    if transport is None:
        raise paramiko.SSHException("not connected")
    return transport


def _feed(chan: paramiko.Channel, data: bytes) -> None:
    # The command may exit without reading all of its input; that is its business.
    with contextlib.suppress(OSError, EOFError, paramiko.SSHException):
        chan.sendall(data)
        chan.shutdown_write()


def _sftp_write(sftp: paramiko.SFTPClient, path: str, data: bytes, mode: int) -> None:
    with sftp.open(path, "wb") as f:
        f.chmod(mode)  # before the content goes in, so a secret is never readable by others
        f.set_pipelined(True)
        f.write(data)


def _sftp_replace(sftp: paramiko.SFTPClient, path: str, data: bytes, mode: int) -> None:
    """Write beside ``path`` and rename over it, so readers never see half a file."""
    p = PurePosixPath(path)
    tmp = str(p.with_name(f".{p.name}.kha-{secrets.token_hex(4)}"))
    try:
        _sftp_write(sftp, tmp, data, mode)
        sftp.posix_rename(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError, EOFError, paramiko.SSHException):
            sftp.remove(tmp)
        raise


def _sftp_read(sftp: paramiko.SFTPClient, path: str) -> bytes:
    with sftp.open(path, "rb") as f:
        f.prefetch()
        return f.read()


def _install_argv(src: str, dest: str, mode: int, owner: str | None, group: str | None) -> list[str]:
    argv = ["install", "-m", f"{mode:04o}"]
    if owner is not None:
        argv += ["-o", owner]
    if group is not None:
        argv += ["-g", group]
    return [*argv, "-T", "--", src, dest]


def _read_source(node: str, src: Source) -> bytes:
    if isinstance(src, bytes):
        return src
    try:
        return Path(src).read_bytes()
    except OSError as exc:
        raise RemoteError(node, f"cannot read local file {src}: {exc}") from exc


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", errors="replace")


__all__ = [
    "DEFAULT_MODE",
    "SUDO",
    "LocalTransport",
    "NodeAddress",
    "Result",
    "SSHTarget",
    "SSHTransport",
    "Source",
    "Transport",
    "compose",
    "connect",
]
