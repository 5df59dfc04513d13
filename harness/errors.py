"""The harness's exception tree, drawn once here.

    KhaError (core/errors.py)
    ├── CommandFailed              a host command (ip, mount, qemu-img, …) failed: core's one type, raised
    │                              by core.run (argv, exit code, output)
    └── HarnessError
        ├── SpecError              a topology spec is invalid; found before any side effect (an InputError)
        ├── DriverUnavailable      a node driver cannot run on this machine (binary, image or kernel missing)
        ├── DaemonError            the private libvirtd/virtlogd did not start or stop, or a --connect URI's
        │                          libvirtd cannot be reached or lacks what the cluster needs
        ├── ConnectUriError        a --connect URI that is no libvirt URI kha can use (an InputError)
        ├── LibvirtError           a libvirt call failed: what the harness was doing and libvirt's message
        ├── NodeNotReady           a node accepted no SSH login in time: node, seconds waited, last error
        ├── ProbeError             (harness/probe.py) a prober or watcher could not run
        ├── StateError             no state file, a broken one, or one that does not match what is running
        └── Unsupported            the driver cannot do this operation (e.g. a snapshot name it never saved)

Everything the harness raises on purpose is a ``KhaError``; the CLI and the pytest plugin catch
that one type at the boundary and report it once.
"""

from __future__ import annotations

from collections.abc import Sequence

from core.errors import CommandFailed, InputError, KhaError

__all__ = ["CommandFailed"]


class HarnessError(KhaError):
    """Base of every error the harness raises on purpose."""


class SpecError(HarnessError, InputError):
    """A ``TopologySpec``/``NodeSpec`` breaks a rule. Carries every problem, not just the first."""

    def __init__(self, problems: Sequence[str] | str) -> None:
        self.problems: list[str] = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("; ".join(self.problems))


class DriverUnavailable(HarnessError):
    """A node driver cannot work here; the message says what is missing and how to get it."""


class DaemonError(HarnessError):
    """The private libvirt daemon (isolated mode) could not be started, reached or stopped; or the libvirtd
    a ``--connect`` URI names cannot be reached or lacks what the cluster needs (paths, a named namespace)."""


class ConnectUriError(HarnessError, InputError):
    """A ``--connect`` URI that is not a libvirt URI kha can use: found before any connection (exit 2)."""


class LibvirtError(HarnessError):
    """A libvirt call failed. ``doing`` says what the harness was trying, the rest is libvirt's message."""

    def __init__(self, doing: str, message: str) -> None:
        self.doing = doing
        self.message = message
        super().__init__(f"{doing}: {message}")


class NodeNotReady(HarnessError):
    """A node did not accept a real SSH login (pinned host key, cluster key) within the deadline."""

    def __init__(self, node: str, waited: float, last_error: str = "", hint: str = "") -> None:
        self.node = node
        self.waited = waited
        self.last_error = last_error
        msg = f"node {node} not reachable over SSH after {waited:.1f}s"
        if last_error:
            msg += f" (last error: {last_error})"
        if hint:
            msg += f"; {hint}"
        super().__init__(msg)


class StateError(HarnessError):
    """The cluster's state file is missing, unreadable, or disagrees with what is running."""


class Unsupported(HarnessError):
    """The node driver (or this libvirt) cannot do the requested operation."""
