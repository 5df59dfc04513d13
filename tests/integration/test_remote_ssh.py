"""SSHTransport against a real OpenSSH sshd started for each test on 127.0.0.1.

Each test gets its own sshd: its own free port, sshd_config, host key and authorized_keys, all
generated under tmp_path. The sshd runs in the foreground (``-D -e``); the fixture records its
PID and ends only that process and the per-connection children it forked.

Password login: root has no password on this machine and we do not give it one. Instead the
``password_user`` fixture creates a throwaway local user with ``useradd`` + ``chpasswd`` and
removes it (``userdel``) afterwards; the sshd runs with ``UsePAM no`` so it checks that
password against /etc/shadow directly. That fixture needs root.

sudo for a non-root login is not exercised here (sudo is not installed on the build machine and
we add nothing to the system); the argv it would run is checked in tests/unit/test_remote_local.py.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import pwd
import secrets
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from installer.errors import CommandError, CommandTimeout, ConnectError, HostKeyError, RemoteError
from installer.remote import NodeAddress, SSHTransport, connect

pytestmark = pytest.mark.integration

SSHD = "/usr/sbin/sshd"
HOST = "127.0.0.1"


def _need(program: str) -> str:
    path = program if os.path.isabs(program) else shutil.which(program)
    if not path or not os.access(path, os.X_OK):
        pytest.fail(f"{program} is required for the SSH integration tests (Debian: openssh-server, openssh-client)")
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        port: int = s.getsockname()[1]
        return port


def _keygen(path: Path) -> str:
    """A new ed25519 key pair at ``path``; returns the public line ("ssh-ed25519 AAAA...")."""
    subprocess.run(
        [_need("ssh-keygen"), "-q", "-t", "ed25519", "-N", "", "-C", "", "-f", str(path)],
        check=True,
        capture_output=True,
    )
    return " ".join(path.with_suffix(".pub").read_text().split()[:2])


def _descendants(pid: int) -> list[int]:
    """PIDs of every process below ``pid`` (read from /proc), children first."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            # comm may contain spaces and parentheses; ppid is the second field after the last ")".
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        parents.setdefault(ppid, []).append(int(entry.name))
    found: list[int] = []
    todo = [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


# Exec sshd as a "child subreaper" (prctl(2), PR_SET_CHILD_SUBREAPER; kept across execve, so the
# PID we record is sshd's). Session processes orphaned by a dropped connection then stay below
# our sshd, where teardown finds and ends them, and sshd's SIGCHLD handler reaps them
# (waitpid(-1, ...)) instead of leaving zombies to a PID 1 that may not reap.
_AS_SUBREAPER = "\n".join(
    [
        "import ctypes, os, sys",
        "if ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0) != 0:",
        "    sys.exit('prctl(PR_SET_CHILD_SUBREAPER) failed')",
        "os.execv(sys.argv[1], sys.argv[1:])",
    ]
)


@dataclass
class Sshd:
    port: int
    proc: subprocess.Popen[bytes]
    host_key: str  # the public line
    client_key: Path
    known_hosts: Path  # pins host_key for [127.0.0.1]:port
    log: Path

    def target(self, **kw: object) -> NodeAddress:
        args: dict[str, object] = {"name": "node-1", "host": HOST, "port": self.port, "key_file": str(self.client_key)}
        args.update(kw)
        return NodeAddress(**args)  # type: ignore[arg-type]

    def drop_connections(self) -> None:
        """Kill the per-connection sshd processes (and what they run): the link drops, sshd stays."""
        doomed = _descendants(self.proc.pid)
        for pid in doomed:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 5
        while any(Path(f"/proc/{pid}").exists() for pid in doomed) and time.monotonic() < deadline:
            time.sleep(0.01)  # until sshd has reaped them

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # by PID: the sshd this fixture started
            self.proc.wait(timeout=10)


@pytest.fixture
def sshd(tmp_path: Path) -> Iterator[Sshd]:
    sshd_bin = _need(SSHD)
    work = tmp_path / "sshd"
    work.mkdir()
    host_key = _keygen(work / "host_ed25519")
    client_pub = _keygen(work / "client_ed25519")
    (work / "authorized_keys").write_text(client_pub + "\n")
    port = _free_port()
    config = work / "sshd_config"
    config.write_text(
        "\n".join(
            [
                f"Port {port}",
                f"ListenAddress {HOST}",
                f"HostKey {work / 'host_ed25519'}",
                f"AuthorizedKeysFile {work / 'authorized_keys'}",
                "PidFile none",
                # tmp_path sits under world-writable /tmp, which StrictModes rejects.
                "StrictModes no",
                "PermitRootLogin prohibit-password",
                "PasswordAuthentication yes",
                "KbdInteractiveAuthentication no",
                "UsePAM no",
                "UseDNS no",
                "Subsystem sftp internal-sftp",
                "LogLevel VERBOSE",
                "",
            ]
        )
    )
    # Privilege separation needs this directory (Debian creates it from the systemd unit).
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    test = subprocess.run([sshd_bin, "-t", "-f", str(config)], capture_output=True, text=True, check=False)
    if test.returncode != 0:
        pytest.fail(f"sshd rejects the test config {config}:\n{test.stderr}")
    log = work / "sshd.log"
    with log.open("wb") as log_file:
        proc = subprocess.Popen(
            [sys.executable, "-c", _AS_SUBREAPER, sshd_bin, "-D", "-e", "-f", str(config)],
            stdout=log_file,
            stderr=log_file,
        )
    known_hosts = work / "known_hosts"
    known_hosts.write_text(f"[{HOST}]:{port} {host_key}\n")
    server = Sshd(port, proc, host_key, work / "client_ed25519", known_hosts, log)
    try:
        deadline = time.monotonic() + 10
        while f"Server listening on {HOST} port {port}" not in log.read_text(errors="replace"):
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"sshd did not start (exit {proc.poll()}):\n{log.read_text(errors='replace')}")
            time.sleep(0.02)
        yield server
    finally:
        server.drop_connections()
        server.stop()


@dataclass
class User:
    name: str
    password: str
    home: Path


@pytest.fixture
def password_user() -> Iterator[User]:
    if os.geteuid() != 0:
        pytest.fail("the password-login test creates a throwaway local user and must run as root")
    name = f"khat-{secrets.token_hex(4)}"
    password = secrets.token_urlsafe(12)
    home = Path(tempfile.mkdtemp(prefix=f"{name}-"))
    subprocess.run(
        [_need("useradd"), "--no-create-home", "--home-dir", str(home), "--shell", "/bin/sh", "--user-group", name],
        check=True,
        capture_output=True,
    )
    try:
        subprocess.run([_need("chpasswd")], input=f"{name}:{password}\n", text=True, check=True, capture_output=True)
        shutil.chown(home, name, name)
        yield User(name, password, home)
    finally:
        # userdel refuses while a session of the user is still closing down; give it a moment.
        deadline = time.monotonic() + 10
        while (
            gone := subprocess.run([_need("userdel"), name], check=False, capture_output=True, text=True)
        ).returncode != 0:
            if time.monotonic() > deadline:
                pytest.fail(f"could not remove test user {name}: {gone.stderr}")
            time.sleep(0.1)
        shutil.rmtree(home, ignore_errors=True)


# ------------------------------------------------------------------------------------------------


def test_run_as_root_with_key(sshd: Sshd) -> None:
    with connect(sshd.target(), sshd.known_hosts) as t:
        assert t.run(["id", "-un"]).stdout == "root\n"
        # Root needs no sudo: the command runs as is (sudo is not even installed here).
        assert t.run(["id", "-u"], sudo=True).stdout == "0\n"
        assert (
            t.run(["printf", "%s|", "two words", "it's", '"q"', "$HOME", "*"]).stdout == 'two words|it\'s|"q"|$HOME|*|'
        )
        assert t.run(["cat"], stdin="from stdin\n").stdout == "from stdin\n"
        assert t.run(["cat"]).stdout == ""  # no stdin: EOF at once, no hang
        blob = os.urandom(1 << 20)
        assert t.run(["sha256sum"], stdin=blob).stdout.split()[0] == hashlib.sha256(blob).hexdigest()
        assert t.run(["sh", "-c", 'printf %s "$X"'], env={"X": "a b'c"}).stdout == "a b'c"
        assert t.reconnects == 0


def test_failing_command_error_is_pasteable(sshd: Sshd) -> None:
    argv = ["sh", "-c", 'echo out; echo "bad: $1" >&2; exit 4', "sh", 'it\'s "odd" $x']
    with connect(sshd.target(), sshd.known_hosts) as t:
        with pytest.raises(CommandError) as caught:
            t.run(argv)
        err = caught.value
        assert (err.node, err.argv, err.exit_code, err.stdout) == ("node-1", tuple(argv), 4, "out\n")
        assert err.stderr == 'bad: it\'s "odd" $x\n'
        assert str(err).startswith("node-1: command failed (exit 4): sh -c ")
        # The line, pasted into a shell on the node, fails the same way.
        again = t.run(["sh", "-c", err.shell_line], check=False)
        assert (again.exit_code, again.stdout, again.stderr) == (4, err.stdout, err.stderr)


def test_command_timeout_leaves_the_connection_usable(sshd: Sshd) -> None:
    with connect(sshd.target(), sshd.known_hosts) as t:
        started = time.monotonic()
        with pytest.raises(CommandTimeout) as caught:
            t.run(["sh", "-c", "echo started; sleep 30"], timeout=0.5)
        assert time.monotonic() - started < 5
        assert caught.value.exit_code is None
        assert "timed out after 0.5s: sh -c 'echo started; sleep 30'" in str(caught.value)
        # (The remote sleep may outlive the channel; the sshd fixture's teardown ends it.)
        assert t.run(["echo", "still here"]).stdout == "still here\n"
        assert t.reconnects == 0


def test_put_and_get_with_mode_and_owner(sshd: Sshd, tmp_path: Path) -> None:
    remote = tmp_path / "remote"
    remote.mkdir()
    with connect(sshd.target(), sshd.known_hosts) as t:
        t.put(b"top secret\n", f"{remote}/tls.key", mode=0o600)
        assert t.run(["stat", "-c", "%a %U %G", f"{remote}/tls.key"]).stdout == "600 root root\n"
        assert t.get(f"{remote}/tls.key") == b"top secret\n"

        t.put(b"v1", f"{remote}/app.conf", mode=0o640, owner="nobody", group="nogroup")
        assert t.run(["stat", "-c", "%a %U %G", f"{remote}/app.conf"]).stdout == "640 nobody nogroup\n"
        t.put(b"v2", f"{remote}/app.conf")  # replacing: content and default mode
        assert t.run(["stat", "-c", "%a %U", f"{remote}/app.conf"]).stdout == "644 root\n"

        blob = os.urandom(300_000)
        src = tmp_path / "blob"
        src.write_bytes(blob)
        t.put(src, f"{remote}/blob", mode=0o755, sudo=True)
        assert t.get(f"{remote}/blob", tmp_path / "back", sudo=True) == blob
        assert (tmp_path / "back").read_bytes() == blob
    assert sorted(p.name for p in remote.iterdir()) == ["app.conf", "blob", "tls.key"]  # no temp files left


def test_transfer_errors_name_node_and_path(sshd: Sshd, tmp_path: Path) -> None:
    with connect(sshd.target(), sshd.known_hosts) as t:
        with pytest.raises(RemoteError, match=rf"^node-1: get {tmp_path}/nope: .*No such file"):
            t.get(f"{tmp_path}/nope")
        with pytest.raises(CommandError, match="install -m 0644 -o no-such-user"):
            t.put(b"x", f"{tmp_path}/x", owner="no-such-user")
        assert t.run(["echo", "ok"]).stdout == "ok\n"


def test_password_login_as_a_plain_user(sshd: Sshd, password_user: User) -> None:
    target = sshd.target(user=password_user.name, password=password_user.password, key_file=None)
    with connect(target, sshd.known_hosts) as t:
        assert t.run(["id", "-un"]).stdout == f"{password_user.name}\n"
        path = f"{password_user.home}/kubeconfig"
        t.put(b"apiVersion: v1\n", path, mode=0o600)
        assert t.get(path) == b"apiVersion: v1\n"
        st = (password_user.home / "kubeconfig").stat()
        assert stat.S_IMODE(st.st_mode) == 0o600
        assert st.st_uid == pwd.getpwnam(password_user.name).pw_uid
        # Not root, so sudo=True puts `sudo -n --` in front (which then has to exist on the node).
        assert t.command(["id"], sudo=True)[:3] == ("sudo", "-n", "--")
    wrong = sshd.target(user=password_user.name, password="not-it", key_file=None)
    with pytest.raises(ConnectError, match="authentication failed"):
        connect(wrong, sshd.known_hosts, connect_timeout=5)


def test_mismatching_host_key_is_always_refused(sshd: Sshd, tmp_path: Path) -> None:
    other = _keygen(tmp_path / "other_host_key")
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text(f"[{HOST}]:{sshd.port} {other}\n")
    before = known_hosts.read_bytes()
    for trust in (False, True):
        with pytest.raises(HostKeyError) as caught:
            connect(sshd.target(), known_hosts, trust_unknown=trust)
        assert f"[{HOST}]:{sshd.port}" in str(caught.value)
        assert str(known_hosts) in str(caught.value)
        assert "does not match" in str(caught.value)
    assert known_hosts.read_bytes() == before


def test_unknown_host_key_is_refused_unless_trusted_then_recorded(sshd: Sshd, tmp_path: Path) -> None:
    known_hosts = tmp_path / "known_hosts"
    with pytest.raises(HostKeyError, match=r"host key for \[127\.0\.0\.1\]:\d+ is unknown.*trust_unknown"):
        connect(sshd.target(), known_hosts)
    assert not known_hosts.exists()

    known_hosts.write_text(f"[{HOST}]:1 {sshd.host_key}")  # another port's entry, no final newline
    with connect(sshd.target(), known_hosts, trust_unknown=True) as t:
        assert t.run(["true"]).ok
    lines = known_hosts.read_text().splitlines()
    assert lines == [f"[{HOST}]:1 {sshd.host_key}", f"[{HOST}]:{sshd.port} {sshd.host_key}"]
    # OpenSSH itself finds the recorded entry ...
    found = subprocess.run(
        [_need("ssh-keygen"), "-F", f"[{HOST}]:{sshd.port}", "-f", str(known_hosts)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert found.returncode == 0, found.stderr
    # ... and the next connection needs no trust.
    with connect(sshd.target(), known_hosts) as t:
        assert t.run(["true"]).ok


def test_hashed_known_hosts_entries_are_understood(sshd: Sshd) -> None:
    subprocess.run([_need("ssh-keygen"), "-H", "-f", str(sshd.known_hosts)], check=True, capture_output=True)
    assert f"[{HOST}]" not in sshd.known_hosts.read_text()
    with connect(sshd.target(), sshd.known_hosts) as t:
        assert t.run(["true"]).ok


def test_one_reconnect_after_the_connection_is_dropped(sshd: Sshd, tmp_path: Path) -> None:
    with connect(sshd.target(), sshd.known_hosts) as t:
        t.put(b"before", f"{tmp_path}/f")
        sshd.drop_connections()
        assert t.run(["echo", "back"]).stdout == "back\n"
        assert t.reconnects == 1
        sshd.drop_connections()
        assert t.get(f"{tmp_path}/f") == b"before"  # SFTP reconnects too
        assert t.reconnects == 2


def test_connection_lost_mid_command_is_not_retried(sshd: Sshd, tmp_path: Path) -> None:
    marker = tmp_path / "runs"
    with connect(sshd.target(), sshd.known_hosts) as t:
        threading.Timer(0.5, sshd.drop_connections).start()
        with pytest.raises(ConnectError, match=r"connection lost while running .*whether it finished is unknown"):
            t.run(["sh", "-c", 'echo run >> "$1"; sleep 30', "sh", str(marker)], timeout=10)
        assert marker.read_text() == "run\n"  # ran once, not again
        assert t.run(["true"]).ok  # and the next call reconnects
        assert t.reconnects == 1


def test_connect_error_when_the_node_stays_away(sshd: Sshd) -> None:
    t = connect(sshd.target(), sshd.known_hosts, connect_timeout=3)
    sshd.drop_connections()  # first: once the listener is gone its children are no longer below its PID
    sshd.stop()
    started = time.monotonic()
    with pytest.raises(ConnectError, match=rf"cannot connect to root@127\.0\.0\.1:{sshd.port}"):
        t.run(["true"])
    assert t.reconnects == 1  # exactly one attempt
    assert time.monotonic() - started < 5
    t.close()


def test_connect_error_for_a_closed_port(tmp_path: Path) -> None:
    target = NodeAddress("node-x", HOST, port=_free_port())
    with pytest.raises(ConnectError, match=r"^node-x: cannot connect to root@127\.0\.0\.1:"):
        connect(target, tmp_path / "known_hosts", connect_timeout=2)


def test_lazy_transport_connects_on_first_use(sshd: Sshd) -> None:
    t = SSHTransport(sshd.target(), sshd.known_hosts)
    try:
        assert t.run(["echo", "hi"]).stdout == "hi\n"
        assert t.reconnects == 0
    finally:
        t.close()


def test_proxy_command_reaches_the_node(sshd: Sshd) -> None:
    # How the harness reaches nodes inside a network namespace: ProxyCommand ip netns exec NS nc %h %p.
    nc = _need("nc")
    target = sshd.target(proxy_command=f"{nc} %h %p")
    with connect(target, sshd.known_hosts) as t:
        assert t.run(["echo", "through the proxy"]).stdout == "through the proxy\n"


def _running(marker: str) -> list[int]:
    """PIDs of our processes whose command line contains ``marker``."""
    pids = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            with contextlib.suppress(OSError):
                if marker in (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"):
                    pids.append(int(d.name))
    return pids


def test_close_from_another_thread_ends_a_hanging_command_and_nothing_reconnects(sshd: Sshd) -> None:
    # The failover observers close a transport whose command hangs on a node that was powered off; the
    # thread running it must not reconnect behind the close (a ProxyCommand left running in the
    # suite's network namespace made its teardown refuse to delete it).
    nc = _need("nc")
    tag = f"kha-close-{secrets.token_hex(4)}"
    target = sshd.target(proxy_command=f"bash -c 'exec -a {tag} {nc} %h %p'")
    t = connect(target, sshd.known_hosts)
    failed: list[BaseException] = []

    def hang() -> None:
        try:
            t.run(["sleep", "30"], timeout=60)
        except BaseException as exc:  # noqa: BLE001 - handed to the test's thread
            failed.append(exc)

    worker = threading.Thread(target=hang)
    worker.start()
    time.sleep(1.0)
    assert _running(tag), "the proxy process is not running: the test would prove nothing"
    t.close()
    worker.join(15)
    assert not worker.is_alive(), "the command did not end when its transport was closed"
    assert len(failed) == 1 and isinstance(failed[0], ConnectError), failed
    assert t.reconnects == 0
    waited = time.monotonic() + 5
    while _running(tag) and time.monotonic() < waited:
        time.sleep(0.1)
    assert not _running(tag), "a proxy process outlived the closed transport"
    with pytest.raises(ConnectError, match="transport closed"):
        t.run(["true"])
    assert not _running(tag)


def test_output_that_trails_the_exit_status_is_not_lost(sshd: Sshd) -> None:
    # sshd sends exit-status when the command exits; output still in the pipe (here: written by a
    # child after the parent exited) arrives after it. Stopping at the status loses it (seen as a flaky
    # empty stdout of a command that succeeded).
    with connect(sshd.target(), sshd.known_hosts) as t:
        res = t.run(["sh", "-c", "(sleep 0.3; echo late) & exit 0"])
        assert res.ok and res.stdout == "late\n"
