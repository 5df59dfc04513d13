"""The root of every error kha raises on purpose, and the one command-failure type.

    KhaError                        exit 1 at the CLI: a step failed
    ├── InputError                  exit 2: bad input, found before any side effect
    │   ├── installer.errors.ConfigError / InventoryError
    │   ├── harness.errors.SpecError
    │   └── images.errors.UnknownRecipe / UnknownBundle
    ├── CommandFailed               a command exited non-zero (or did not finish): argv, exit code, output
    │   ├── installer.errors.CommandError / CommandTimeout   … on a node, over SSH
    │   ├── images.errors.BuildCommandFailed                  … a build step (also an ImageError)
    │   └── (the harness raises it as it is, for commands on this machine)
    ├── installer.errors.InstallerError   the installer's tree (drawn in installer/errors.py)
    ├── harness.errors.HarnessError       the harness's tree (drawn in harness/errors.py)
    ├── images.errors.ImageError          the image and bundle builders' tree (images/errors.py)
    └── scenarios.errors.ScenarioError    faults, clients and checkers (scenarios/errors.py)

``kha/cli.py`` catches ``KhaError`` once, prints it once and exits with its ``cli_exit_code``; an
``OSError`` that reaches it is one line too (path and reason), never a traceback.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence

EXIT_FAILED = 1
EXIT_BAD_INPUT = 2


class KhaError(Exception):
    """Base of every error kha raises on purpose. ``cli_exit_code`` is what the CLI exits with."""

    cli_exit_code: int = EXIT_FAILED


class InputError(KhaError):
    """Bad input (a file, a flag, a name), found before anything was changed."""

    cli_exit_code = EXIT_BAD_INPUT


class CommandFailed(KhaError):
    """A command exited non-zero, or did not finish in time (``returncode`` None).

    Like kind's errors it carries the exact argv and its output; ``shell_line`` is the command as one
    line you can paste into a shell (quoted once, exactly as it was run). ``node`` says where it ran
    when that was not this machine; ``what`` says what kha was doing, in a few words.
    """

    def __init__(
        self,
        argv: Sequence[str],
        returncode: int | None,
        output: str = "",
        *,
        stderr: str = "",
        node: str | None = None,
        what: str | None = None,
        sudo: bool = False,
        timeout: float | None = None,
    ) -> None:
        self.argv = tuple(argv)
        self.returncode = returncode
        self.stdout = output
        self.stderr = stderr
        self.node = node
        self.what = what
        self.sudo = sudo
        self.timeout = timeout
        # Not super(): a subclass may also be a RemoteError, whose __init__ takes (node, message).
        KhaError.__init__(self, self.describe())

    @property
    def output(self) -> str:
        """stdout and stderr together (stderr last)."""
        if self.stdout and self.stderr:
            return self.stdout.rstrip("\n") + "\n" + self.stderr
        return self.stdout or self.stderr

    @property
    def exit_code_text(self) -> str:
        return "timed out" if self.returncode is None else f"exit {self.returncode}"

    @property
    def shell_line(self) -> str:
        """The command as one pasteable shell line (quoted once, exactly as it was run)."""
        cmd = shlex.join(self.argv)
        return f"sudo -n -- {cmd}" if self.sudo else cmd

    def describe(self) -> str:
        where = f"{self.node}: " if self.node else ""
        what = f"{self.what}: " if self.what else ""
        if self.returncode is None and self.timeout is not None:
            head = f"{where}{what}command timed out after {self.timeout:g}s: {self.shell_line}"
        else:
            head = f"{where}{what}command failed ({self.exit_code_text}): {self.shell_line}"
        parts = [head]
        if self.stdout.strip():
            parts.append(("--- stdout ---\n" if self.stderr.strip() else "--- output ---\n") + tail(self.stdout))
        if self.stderr.strip():
            parts.append("--- stderr ---\n" + tail(self.stderr))
        return "\n".join(parts)


def tail(text: str, lines: int = 40) -> str:
    """The last ``lines`` lines of ``text``, saying how many were cut."""
    rows = text.rstrip("\n").splitlines()
    if len(rows) > lines:
        rows = [f"... ({len(rows) - lines} lines cut)", *rows[-lines:]]
    return "\n".join(rows)
