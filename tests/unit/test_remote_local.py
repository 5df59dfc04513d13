"""LocalTransport: the Transport interface on this machine, and how argv is composed for a node."""

from __future__ import annotations

import grp
import os
import pwd
import shlex
import stat
import subprocess
import time
from pathlib import Path

import pytest

from installer.errors import CommandError, CommandTimeout, ConfigError, RemoteError
from installer.remote import LocalTransport, NodeAddress, SSHTransport, compose

AWKWARD_ARG = """it's a "quoted" arg with spaces; $HOME `id` \\ *"""


@pytest.fixture
def local(tmp_path: Path) -> LocalTransport:
    (tmp_path / "etc" / "kha").mkdir(parents=True)
    return LocalTransport("node-1", root=tmp_path)


def test_run_returns_output_and_exit_code(local: LocalTransport) -> None:
    result = local.run(["echo", "hello world"])
    assert result.ok
    assert (result.node, result.exit_code, result.stdout, result.stderr) == ("node-1", 0, "hello world\n", "")
    assert result.argv == ("echo", "hello world")


def test_arguments_reach_the_command_unchanged(local: LocalTransport) -> None:
    result = local.run(["printf", "%s\n", AWKWARD_ARG, ""])
    assert result.stdout == AWKWARD_ARG + "\n\n"


def test_failing_command_raises_with_exit_code_output_and_a_pasteable_line(local: LocalTransport) -> None:
    argv = ["sh", "-c", 'echo to-out; echo "to-err: $1" >&2; exit 3', "sh", AWKWARD_ARG]
    with pytest.raises(CommandError) as caught:
        local.run(argv)
    err = caught.value
    assert (err.node, err.argv, err.exit_code) == ("node-1", tuple(argv), 3)
    assert err.stdout == "to-out\n"
    assert err.stderr == f"to-err: {AWKWARD_ARG}\n"
    text = str(err)
    assert text.startswith("node-1: command failed (exit 3): sh -c ")
    assert "--- stdout ---\nto-out" in text
    assert f"--- stderr ---\nto-err: {AWKWARD_ARG}" in text
    # Pasting the line into a shell runs the very same command.
    pasted = subprocess.run(["sh", "-c", err.shell_line], capture_output=True, text=True, check=False)
    assert (pasted.returncode, pasted.stdout, pasted.stderr) == (3, err.stdout, err.stderr)


def test_check_false_returns_the_failure(local: LocalTransport) -> None:
    result = local.run(["sh", "-c", "exit 7"], check=False)
    assert not result.ok
    assert result.exit_code == 7
    with pytest.raises(CommandError):
        result.check()


def test_missing_program_is_exit_127_like_a_shell(local: LocalTransport) -> None:
    with pytest.raises(CommandError) as caught:
        local.run(["kha-no-such-program", "x"])
    assert caught.value.exit_code == 127
    assert "kha-no-such-program: command not found" in str(caught.value)


def test_a_string_is_not_an_argv(local: LocalTransport) -> None:
    with pytest.raises(TypeError, match="not a string"):
        local.run("echo hi")  # a str is a Sequence[str] to the type checker, so this is checked at run time
    with pytest.raises(ValueError, match="empty"):
        local.run([])


def test_timeout_ends_the_command_and_what_it_started(local: LocalTransport) -> None:
    started = time.monotonic()
    with pytest.raises(CommandTimeout) as caught:
        # The background sleep holds stdout open: only killing the whole group ends the wait.
        local.run(["sh", "-c", "echo begun; sleep 30 & sleep 30"], timeout=0.3)
    assert time.monotonic() - started < 5
    err = caught.value
    assert err.exit_code is None
    assert err.stdout == "begun\n"
    assert str(err) == "node-1: command timed out after 0.3s: sh -c 'echo begun; sleep 30 & sleep 30'"


def test_transport_default_timeout_applies(tmp_path: Path) -> None:
    with pytest.raises(CommandTimeout), LocalTransport(root=tmp_path, command_timeout=0.2) as t:
        t.run(["sleep", "30"])


def test_stdin_as_text_and_bytes(local: LocalTransport) -> None:
    assert local.run(["cat"], stdin="line one\nline two\n").stdout == "line one\nline two\n"
    blob = bytes(range(256)) * 1000
    assert local.run(["wc", "-c"], stdin=blob).stdout.strip() == str(len(blob))


def test_without_stdin_a_reader_sees_eof(local: LocalTransport) -> None:
    assert local.run(["cat"], timeout=5).stdout == ""


def test_env_is_passed_on_the_command_line(local: LocalTransport) -> None:
    result = local.run(["sh", "-c", 'printf %s "$GREETING"'], env={"GREETING": AWKWARD_ARG})
    assert result.stdout == AWKWARD_ARG
    assert result.argv[:2] == ("env", f"GREETING={AWKWARD_ARG}")
    with pytest.raises(ValueError, match="environment variable name"):
        local.run(["true"], env={"NOT A NAME": "x"})


def test_sudo_is_a_no_op_for_root_and_a_prefix_otherwise(tmp_path: Path) -> None:
    kh = tmp_path / "known_hosts"
    as_root = SSHTransport(NodeAddress("n1", "192.0.2.10"), kh)
    as_user = SSHTransport(NodeAddress("n1", "192.0.2.10", user="deploy"), kh)
    assert as_root.command(["cat", "/etc/shadow"], sudo=True) == ("cat", "/etc/shadow")
    assert as_user.command(["cat", "/etc/shadow"], sudo=True) == ("sudo", "-n", "--", "cat", "/etc/shadow")
    assert as_user.command(["cat", "/etc/shadow"]) == ("cat", "/etc/shadow")
    assert as_user.command(["kubeadm", "init"], sudo=True, env={"KUBECONFIG": "/etc/kubernetes/admin.conf"}) == (
        "sudo", "-n", "--", "env", "KUBECONFIG=/etc/kubernetes/admin.conf", "kubeadm", "init",
    )  # fmt: skip
    # Quoted once, at the boundary, the line parses back to the same words.
    argv = as_user.command(["sh", "-c", AWKWARD_ARG], sudo=True)
    assert shlex.split(shlex.join(argv)) == list(argv)
    if os.geteuid() == 0:
        assert LocalTransport().command(["id"], sudo=True) == ("id",)
        assert LocalTransport().run(["id", "-u"], sudo=True).stdout == "0\n"


def test_compose_refuses_a_command_env_would_misread() -> None:
    assert compose(["a=b"]) == ("a=b",)
    with pytest.raises(ValueError, match="cannot be combined with env"):
        compose(["a=b"], env={"X": "1"})


def test_put_and_get_with_mode(local: LocalTransport, tmp_path: Path) -> None:
    local.put(b"secret\n", "/etc/kha/token", mode=0o600)
    on_disk = tmp_path / "etc" / "kha" / "token"
    assert on_disk.read_bytes() == b"secret\n"
    assert stat.S_IMODE(on_disk.stat().st_mode) == 0o600
    assert local.get("/etc/kha/token") == b"secret\n"

    local.put(b"public\n", "/etc/kha/plain")
    assert stat.S_IMODE((tmp_path / "etc/kha/plain").stat().st_mode) == 0o644


def test_put_replaces_content_and_mode_and_leaves_no_temp_files(local: LocalTransport, tmp_path: Path) -> None:
    local.put(b"old", "/etc/kha/x.conf", mode=0o600)
    local.put(b"new", "/etc/kha/x.conf", mode=0o640)
    target = tmp_path / "etc/kha/x.conf"
    assert target.read_bytes() == b"new"
    assert stat.S_IMODE(target.stat().st_mode) == 0o640
    assert sorted(p.name for p in target.parent.iterdir()) == ["x.conf"]


def test_put_from_a_local_file_and_get_to_one(local: LocalTransport, tmp_path: Path) -> None:
    blob = bytes(range(256)) * 64
    src = tmp_path / "src.bin"
    src.write_bytes(blob)
    local.put(src, "/etc/kha/blob.bin", mode=0o755)
    assert os.access(tmp_path / "etc/kha/blob.bin", os.X_OK)
    dest = tmp_path / "copy.bin"
    assert local.get("/etc/kha/blob.bin", dest) == blob
    assert dest.read_bytes() == blob


def test_put_with_owner_and_group(local: LocalTransport, tmp_path: Path) -> None:
    # As root, hand the file to nobody; otherwise the one owner an unprivileged user may set.
    user = pwd.getpwuid(65534 if os.geteuid() == 0 else os.geteuid())
    group = grp.getgrgid(user.pw_gid)
    local.put(b"x", "/etc/kha/owned", mode=0o640, owner=user.pw_name, group=group.gr_name)
    st = (tmp_path / "etc/kha/owned").stat()
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (user.pw_uid, group.gr_gid, 0o640)


def test_transfer_errors_name_the_node_and_path(local: LocalTransport, tmp_path: Path) -> None:
    with pytest.raises(RemoteError, match=r"^node-1: get /etc/kha/missing: .*No such file"):
        local.get("/etc/kha/missing")
    with pytest.raises(RemoteError, match=r"^node-1: put /no/such/dir/x: "):
        local.put(b"x", "/no/such/dir/x")
    with pytest.raises(RemoteError, match="no-such-user"):
        local.put(b"x", "/etc/kha/y", owner="no-such-user")
    assert not (tmp_path / "etc/kha/y").exists()
    with pytest.raises(RemoteError, match="cannot read local file"):
        local.put(tmp_path / "nope", "/etc/kha/z")


def test_without_root_paths_are_real_paths(tmp_path: Path) -> None:
    with LocalTransport() as t:
        t.put(b"abc", str(tmp_path / "f"), mode=0o600)
        assert (tmp_path / "f").read_bytes() == b"abc"
        assert t.get(str(tmp_path / "f")) == b"abc"


def test_node_address_is_validated_and_hides_the_password() -> None:
    node = NodeAddress("cp1", "10.0.0.5", port=2222, password="hunter2")
    assert "hunter2" not in repr(node)
    assert node.known_hosts_name == "[10.0.0.5]:2222"
    assert NodeAddress("cp1", "10.0.0.5").known_hosts_name == "10.0.0.5"
    with pytest.raises(ConfigError, match="port: 70000 is not a TCP port"):
        NodeAddress("cp1", "10.0.0.5", port=70000)
