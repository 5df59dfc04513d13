"""systemd quoting: a value with spaces, quotes, backslashes, specifiers or ``$`` stays one literal word."""

from __future__ import annotations

import pytest

from installer import systemd


@pytest.mark.parametrize(("value", "written"), [
    ("/usr/bin/kubelet", "/usr/bin/kubelet"),
    ("--name=node1", "--name=node1"),
    ("two words", '"two words"'),
    ('say "hi"', '"say \\"hi\\""'),
    ("it's", '"it\'s"'),
    ("C:\\dir", '"C:\\\\dir"'),
    ("100%", "100%%"),
    ("%n and %h", '"%%n and %%h"'),
    ("$HOME", "$$HOME"),
    ("${HOME}x", "$${HOME}x"),
    ("a\nExecStart=/bin/evil", '"a\\nExecStart=/bin/evil"'),
    ("tab\there", '"tab\\there"'),
    ("bell\x07", '"bell\\a"'),
    ("esc\x1b", '"esc\\x1b"'),
    (";", '";"'),
    ("", '""'),
])
def test_a_word_is_quoted_with_systemds_rules(value: str, written: str) -> None:
    assert systemd.word(value) == written


def test_a_command_is_words_after_an_absolute_executable() -> None:
    assert systemd.command(["/sbin/ip", "-4", "addr", "del", "10.0.0.1/24", "dev", "eth 0"], prefix="-") == (
        '-/sbin/ip -4 addr del 10.0.0.1/24 dev "eth 0"')
    assert systemd.command(["/bin/a", "b"], wrap=True) == "/bin/a \\\n  b"
    with pytest.raises(ValueError, match="absolute path"):
        systemd.command(["ip", "route"])
    with pytest.raises(ValueError, match="prefix"):
        systemd.command(["/bin/true"], prefix="x")


def test_environment_assignments() -> None:
    assert systemd.environment("A", "x y") == '"A=x y"'
    assert systemd.environment("A", 'q"%\\') == '"A=q\\"%%\\\\"'
    with pytest.raises(ValueError, match="variable name"):
        systemd.environment("A B", "x")


def test_environment_files() -> None:
    assert systemd.env_file([("A", 'x "$y" `z` \\')]) == 'A="x \\"\\$y\\" \\`z\\` \\\\"\n'
    with pytest.raises(ValueError, match="line break"):
        systemd.env_file([("A", "x\nB=y")])


def test_a_unit_cannot_gain_a_line_from_a_value() -> None:
    text = systemd.unit(["comment"], [("Service", [("ExecStart", systemd.command(["/bin/echo", "a\nUser=root"]))])])
    assert text.decode().splitlines() == ["# comment", "", "[Service]", 'ExecStart=/bin/echo "a\\nUser=root"']
    with pytest.raises(ValueError, match="spans lines"):
        systemd.unit([], [("Service", [("Description", "x\nUser=root")])])
    with pytest.raises(ValueError, match="comment"):
        systemd.unit(["x\n[Service]"], [])
    assert systemd.path("/var/lib/kubelet/kubeadm-flags.env", optional=True) == "-/var/lib/kubelet/kubeadm-flags.env"
    with pytest.raises(ValueError, match="absolute"):
        systemd.path("relative")
