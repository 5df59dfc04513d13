"""The installer's exception tree, drawn once here.

    KhaError (core/errors.py)
    └── InstallerError
        ├── ConfigError            bad input (inventory, settings): names FILE:LINE and field; also an InputError
        │   └── InventoryError     one or more problems found in an inventory file
        ├── RemoteError            anything that went wrong talking to a node
        │   ├── ConnectError       could not reach or log in to a node (after one reconnect)
        │   ├── HostKeyError       the node's host key is unknown or does not match known_hosts
        │   └── CommandError       a command ran and exited non-zero (also core's CommandFailed)
        │       └── CommandTimeout a command did not finish in time
        ├── PKIError               a certificate or key on disk is unusable (wrong CA, not a CA, key mismatch)
        ├── StateBusy              another kha process is writing the same state folder or PKI store
        ├── EtcdError              the etcd cluster did not become healthy, or a membership change failed
        │   └── QuorumError        a membership change refused: the cluster would lose its healthy majority
        ├── LoadBalancerError      the VIP is on no node or on several, or the local proxy does not answer
        ├── KubernetesError        a Kubernetes phase could not finish (nodes not Ready, no pod range, …)
        ├── PackageError           a repository lacks the asked-for version, or a node holds another one
        └── PhaseError             a phase failed; names the phase path and the node

Everything raised on purpose by ``installer`` is an ``InstallerError``, so a ``KhaError``; the CLI
catches ``KhaError`` at the boundary, prints it once and exits with its ``cli_exit_code``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from core.errors import CommandFailed, InputError, KhaError


class InstallerError(KhaError):
    """Base of every error the installer raises on purpose."""


@dataclass(frozen=True)
class Problem:
    """One thing wrong with an input file, pointing at where to fix it."""

    file: str
    line: int | None
    message: str
    field: str | None = None
    warning: bool = False

    def __post_init__(self) -> None:
        # A line read from another file than the one named (a value from ``-e @variables.yaml`` checked
        # against the inventory) carries that file (``installer.inventory.FileLine``): name it.
        other = getattr(self.line, "file", None)
        if isinstance(other, str):
            object.__setattr__(self, "file", other)

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line is not None else self.file
        level = "warning: " if self.warning else ""
        what = f"{self.field}: " if self.field else ""
        return f"{where}: {level}{what}{self.message}"


class ConfigError(InstallerError, InputError):
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


# RemoteError's node is a str and CommandFailed's may be None; here it is always given.
class CommandError(CommandFailed, RemoteError):  # type: ignore[misc]
    """A command exited non-zero on a node: ``core.errors.CommandFailed`` with the node it ran on.
    ``str()`` is a shell line you can paste, then the output."""

    def __init__(
        self,
        node: str,
        argv: Sequence[str],
        exit_code: int | None,
        stdout: str = "",
        stderr: str = "",
        *,
        sudo: bool = False,
        timeout: float | None = None,
    ) -> None:
        CommandFailed.__init__(self, argv, exit_code, stdout, stderr=stderr, node=node, sudo=sudo, timeout=timeout)

    @property
    def exit_code(self) -> int | None:
        """The command's exit status (None: it timed out)."""
        return self.returncode


class CommandTimeout(CommandError):
    """A command did not finish within its timeout (exit_code is None)."""

    def __init__(self, node: str, argv: Sequence[str], timeout: float, stdout: str = "", stderr: str = "",
                 *, sudo: bool = False) -> None:
        super().__init__(node, argv, None, stdout, stderr, sudo=sudo, timeout=timeout)

    def describe(self) -> str:
        return f"{self.node}: command timed out after {self.timeout:g}s: {self.shell_line}"


class PKIError(InstallerError):
    """A certificate or key on disk cannot be used as it is."""


class StateBusy(InstallerError):
    """Another kha process is writing the same state folder or PKI store (its lock is held)."""


class EtcdError(InstallerError):
    """The etcd cluster did not become healthy, or a membership change was refused."""


class QuorumError(EtcdError, InputError):
    """A membership change was refused because the cluster would lose its healthy majority (nothing was
    changed; exit 2, as bad input)."""


class LoadBalancerError(InstallerError):
    """The VIP is on no node or on several, or the local proxy does not answer."""


class KubernetesError(InstallerError):
    """A Kubernetes phase could not finish (nodes not Ready, no pod range allocated, …)."""


class PackageError(InstallerError):
    """The repository does not offer the asked-for version, or a node holds another one."""


class PhaseError(InstallerError):
    """A phase failed. Names the phase path and, when known, the node. The CLI exits with its cause's code: a
    phase that refuses bad input before changing anything (a guard) exits 2 like any other bad input."""

    def __init__(self, path: str, cause: BaseException, node: str | None = None) -> None:
        if isinstance(cause, KhaError):
            self.cli_exit_code = cause.cli_exit_code
        self.path = path
        self.node = node if node is not None else getattr(cause, "node", None)
        self.cause = cause
        on = f" on {self.node}" if self.node else ""
        super().__init__(f"phase {path} failed{on}: {cause}")

