"""The installer's exception tree, drawn once here.

    InstallerError
    ├── ConfigError            bad input (inventory, settings): names FILE:LINE and field
    │   └── InventoryError     one or more problems found in an inventory file
    ├── RemoteError            anything that went wrong talking to a node
    │   ├── ConnectError       could not reach or log in to a node (after one reconnect)
    │   ├── HostKeyError       the node's host key is unknown or does not match known_hosts
    │   ├── CommandError       a command ran and exited non-zero
    │   └── CommandTimeout     a command did not finish in time
    ├── PKIError               a certificate or key on disk is unusable (wrong CA, not a CA, key mismatch)
    └── PhaseError             a phase failed; names the phase path and the node

Everything raised on purpose by ``installer`` is an ``InstallerError``; the CLI catches that
one type at the boundary, prints it once and picks the exit code.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from dataclasses import dataclass


class InstallerError(Exception):
    """Base of every error the installer raises on purpose."""


@dataclass(frozen=True)
class Problem:
    """One thing wrong with an input file, pointing at where to fix it."""

    file: str
    line: int | None
    message: str
    field: str | None = None
    warning: bool = False

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line is not None else self.file
        level = "warning: " if self.warning else ""
        what = f"{self.field}: " if self.field else ""
        return f"{where}: {level}{what}{self.message}"


class ConfigError(InstallerError):
    """Bad input, found before any side effect. Carries every problem, not just the first."""

    def __init__(self, problems: Sequence[Problem] | str) -> None:
        if isinstance(problems, str):
            problems = [Problem(file="<config>", line=None, message=problems)]
        self.problems: list[Problem] = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


class InventoryError(ConfigError):
    """An inventory file has one or more problems."""


class RemoteError(InstallerError):
    """Talking to a node failed."""

    def __init__(self, node: str, message: str) -> None:
        self.node = node
        super().__init__(f"{node}: {message}")


class ConnectError(RemoteError):
    """The node could not be reached or refused our credentials."""


class HostKeyError(RemoteError):
    """The node's host key is not the one known_hosts pins (or is unknown and trusting was not asked for)."""


class CommandError(RemoteError):
    """A command exited non-zero. ``str()`` is a shell line you can paste, then the output."""

    def __init__(
        self,
        node: str,
        argv: Sequence[str],
        exit_code: int | None,
        stdout: str = "",
        stderr: str = "",
        *,
        sudo: bool = False,
    ) -> None:
        self.argv = tuple(argv)
        self.exit_code = exit_code
        self.stdout = stdout
        self.stderr = stderr
        self.sudo = sudo
        super().__init__(node, self._describe())

    @property
    def shell_line(self) -> str:
        """The command as one pasteable shell line (quoted once, exactly as it was run)."""
        cmd = shlex.join(self.argv)
        return f"sudo -n -- {cmd}" if self.sudo else cmd

    def _describe(self) -> str:
        head = f"command failed (exit {self.exit_code}): {self.shell_line}"
        parts = [head]
        if self.stdout.strip():
            parts.append("--- stdout ---\n" + _tail(self.stdout))
        if self.stderr.strip():
            parts.append("--- stderr ---\n" + _tail(self.stderr))
        return "\n".join(parts)


class CommandTimeout(CommandError):
    """A command did not finish within its timeout (exit_code is None)."""

    def __init__(self, node: str, argv: Sequence[str], timeout: float, stdout: str = "", stderr: str = "",
                 *, sudo: bool = False) -> None:
        self.timeout = timeout
        super().__init__(node, argv, None, stdout, stderr, sudo=sudo)

    def _describe(self) -> str:
        return f"command timed out after {self.timeout:g}s: {self.shell_line}"


class PKIError(InstallerError):
    """A certificate or key on disk cannot be used as it is."""


class PhaseError(InstallerError):
    """A phase failed. Names the phase path and, when known, the node."""

    def __init__(self, path: str, cause: BaseException, node: str | None = None) -> None:
        self.path = path
        self.node = node if node is not None else getattr(cause, "node", None)
        self.cause = cause
        on = f" on {self.node}" if self.node else ""
        super().__init__(f"phase {path} failed{on}: {cause}")


def _tail(text: str, lines: int = 40) -> str:
    rows = text.rstrip("\n").splitlines()
    if len(rows) > lines:
        rows = [f"... ({len(rows) - lines} lines cut)", *rows[-lines:]]
    return "\n".join(rows)
