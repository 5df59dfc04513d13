"""Writing systemd unit files from data: values quoted with systemd's own rules.

A unit is not a shell script, and shell quoting (``shlex``) is wrong there: systemd expands ``%``
specifiers in almost every setting and ``$VAR`` / ``${VAR}`` in command lines, and it splits command
lines on whitespace with its own quotes and C-style escapes (systemd.syntax(7), systemd.unit(5)
"Specifiers", systemd.service(5) "Command lines"). Everything kha writes into a unit goes through
the helpers here, so an inventory value with a space, a quote, a ``%`` or a newline stays one
argument and can never add a setting or a command.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

#: Characters that force quoting of a command-line word: whitespace, quotes, backslash, and ``;``
#: (a lone ``;`` separated commands in older systemd versions).
_NEEDS_QUOTES = re.compile(r"""[\s"'\\;]""")
#: C-style escapes systemd understands inside quotes (systemd.syntax(7), "Quoting").
_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\t": "\\t", "\r": "\\r", "\a": "\\a", "\b": "\\b",
            "\f": "\\f", "\v": "\\v"}
#: Between the words of a wrapped command line: a backslash ends the line, the next one goes on.
_CONTINUATION = " \\\n  "
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def specifiers(value: str) -> str:
    """``%`` doubled: systemd would read ``%n``, ``%h`` … as specifiers (systemd.unit(5), "Specifiers")."""
    return value.replace("%", "%%")


def _escape(value: str) -> str:
    out = []
    for ch in value:
        if ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\x{ord(ch):02x}")
        else:
            out.append(ch)
    return "".join(out)


def _quoted(value: str) -> str:
    return f'"{_escape(value)}"'


def word(value: str) -> str:
    """One command-line word: ``%`` and ``$`` kept literal (``%%``, ``$$``), quoted when it has to be."""
    text = specifiers(value).replace("$", "$$")
    if text and not _NEEDS_QUOTES.search(text) and text.isprintable():
        return text
    return _quoted(text)


def command(argv: Sequence[str], *, prefix: str = "", wrap: bool = False) -> str:
    """An ``ExecStart=``-style value from an argv list. ``prefix``: systemd's executable prefixes
    (``-`` ignore failure, ``@``, ``:``, ``+``, ``!``); the executable must be an absolute path.
    ``wrap``: one argument per line, joined with systemd's line continuation (a trailing backslash)."""
    if not argv:
        raise ValueError("a unit command needs an executable")
    if not argv[0].startswith("/"):
        raise ValueError(f"a unit command's executable must be an absolute path, not {argv[0]!r}")
    if prefix.strip("-@:+!"):
        raise ValueError(f"{prefix!r} is not a systemd executable prefix")
    return prefix + (_CONTINUATION if wrap else " ").join(word(a) for a in argv)


def environment(name: str, value: str) -> str:
    """An ``Environment=`` value: ``"NAME=value"`` quoted, ``%`` doubled (no ``$`` expansion there)."""
    if not _ENV_NAME.fullmatch(name):
        raise ValueError(f"{name!r} is not an environment variable name")
    return _quoted(specifiers(f"{name}={value}"))


def path(value: str, *, optional: bool = False) -> str:
    """A path setting (``EnvironmentFile=``, ``WorkingDirectory=`` …): absolute, one line, ``%`` doubled.
    ``optional`` adds systemd's ``-`` (a missing file is not an error)."""
    if not value.startswith("/") or not value.isprintable():
        raise ValueError(f"{value!r} is not an absolute path a unit can name")
    return ("-" if optional else "") + specifiers(value)


def env_file(pairs: Sequence[tuple[str, str]]) -> str:
    """Lines for an ``EnvironmentFile=``: ``NAME="value"``, with what is special inside double quotes there
    (``\\ " $ ` ``) escaped; a line break in a value is refused (systemd.exec(5), "EnvironmentFile=")."""
    lines = []
    for name, value in pairs:
        if not _ENV_NAME.fullmatch(name):
            raise ValueError(f"{name!r} is not an environment variable name")
        if not value.isprintable():
            raise ValueError(f"{name}: {value!r} holds a line break or control character")
        escaped = "".join("\\" + c if c in '\\"$`' else c for c in value)
        lines.append(f'{name}="{escaped}"\n')
    return "".join(lines)


Section = tuple[str, Sequence[tuple[str, str]]]


def unit(comment: Sequence[str], sections: Sequence[Section]) -> bytes:
    """A unit file: fixed comment lines, then each ``[Section]`` with ``Key=value`` lines in order.

    Values must come from the helpers above (or be constants); a value with a line break is refused
    here too, so nothing can add a line to the unit.
    """
    if any(not c.isprintable() for c in comment):
        raise ValueError("unit comment lines are one printable line each")
    lines = [f"# {c}" if c else "#" for c in comment]
    for name, items in sections:
        lines += ["", f"[{name}]"]
        for key, value in items:
            one_line = value.replace(_CONTINUATION, " ")
            if not key.isprintable() or not one_line.isprintable():
                raise ValueError(f"{key}= value spans lines: {value!r}")
            lines.append(f"{key}={value}")
    return ("\n".join(lines) + "\n").encode()
