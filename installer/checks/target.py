"""What every check is handed: the cluster to check (``Target``) — its topology, its PKI store, a testinfra
``Host`` and a kha ``Transport`` per node — and the one way a check waits (``Target.until``).

A check is a function that looks (``look() -> None | problem``) until its deadline; what it last saw is
the evidence the failure shows: the command's output, the value seen against the one expected.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core import waiting
from core.errors import tail
from installer import topology
from installer.checks import backend
from installer.connect import Connector
from installer.errors import ConnectError
from installer.kubernetes.phases import ADMIN_CONF, locate
from installer.remote import Result, Transport
from installer.state import StateDir
from installer.topology import Host, Role, Topology

#: Poll period of every check: fast enough that a check which passes at once costs nothing, slow enough
#: that a failing one does not hammer a node that is in trouble.
INTERVAL_S = 2.0


class CheckFailed(AssertionError):
    """A check's look still saw a problem at its deadline; the message is the evidence."""


@dataclass(frozen=True)
class Options:
    """What ``kha check`` was asked (validated by ``installer.checks.run`` before anything connects)."""

    inventory: Path
    state: Path | None = None
    ssh_config: Path | None = None
    known_hosts: Path | None = None
    extra_vars: tuple[str, ...] = ()
    warn_days: int = 30
    #: every check's deadline, when given (0: look once); else each check's own.
    timeout: float | None = None
    only: tuple[str, ...] = ()

    @property
    def state_dir(self) -> StateDir:
        return StateDir.for_inventory(self.inventory, self.state)

    @property
    def known_hosts_file(self) -> Path:
        return self.known_hosts or self.state_dir.root / "known_hosts"


@dataclass
class Target:
    """The cluster under check and ways to look at it. ``close()`` logs out of every node."""

    options: Options
    topo: Topology
    connector: Connector
    _hosts: dict[str, Any] = field(default_factory=dict, repr=False)
    _kubectl: str | None = field(default=None, repr=False)  # its full path on the first master, once found

    @classmethod
    def open(cls, options: Options) -> Target:
        topo = topology.load(options.inventory, options.extra_vars)
        return cls(options, topo, Connector(options.known_hosts_file, options.ssh_config))

    def close(self) -> None:
        self.connector.close()

    @property
    def store(self) -> Path:
        """The PKI store the served certificates must chain to."""
        return self.options.state_dir.pki

    @property
    def warn_days(self) -> int:
        return self.options.warn_days

    @property
    def kubernetes_nodes(self) -> list[Host]:
        wanted = {*self.topo.groups[Role.MASTER], *self.topo.groups[Role.WORKER]}
        return [h for h in self.topo.hosts if h.name in wanted]

    def transport(self, host: Host) -> Transport:
        return self.connector(host)

    def host(self, host: Host) -> Any:
        """The node's testinfra ``Host`` (commands as root, over kha's SSH)."""
        if host.name not in self._hosts:
            self._hosts[host.name] = backend.host(self.transport(host))
        return self._hosts[host.name]

    def run(self, host: Host, argv: Sequence[str], *, timeout: float = 30, stdin: str | None = None) -> Result:
        """``argv`` on ``host`` as root; the result whatever it exited with."""
        return self.transport(host).run(argv, sudo=True, check=False, timeout=timeout, stdin=stdin)

    def processes(self, host: Host, command: str) -> list[tuple[int, str]]:
        """(pid, user) of each process named ``command`` on the node.

        Not testinfra's ``host.process``: it asks ``ps`` for %MEM too, and ps exits 1 ("Unable to get total
        memory") where /proc/meminfo is not the kernel's own, as in an LXC container without lxcfs.
        """
        res = self.run(host, ["ps", "-o", "pid=,user=", "-C", command])
        if res.exit_code not in (0, 1):  # 1: no such process
            raise CheckFailed(output(res))
        return [(int(pid), user) for pid, user in (line.split() for line in res.stdout.splitlines() if line.strip())]

    def run_on_any(self, hosts: Iterable[Host], argv: Sequence[str], *, timeout: float = 30) -> Result:
        """``argv`` on the first of ``hosts`` that can be reached over SSH (etcdctl: any member will do)."""
        unreachable: list[str] = []
        for h in hosts:
            try:
                return self.run(h, argv, timeout=timeout)
            except ConnectError as exc:
                unreachable.append(str(exc))
        raise CheckFailed("no node to run it on: " + "; ".join(unreachable))

    def kubectl(self, *args: str, timeout: float = 30) -> Result:
        """kubectl on the first master with the admin kubeconfig kubeadm wrote there, by its full path (sudo's
        ``secure_path`` on the RHEL family lacks /usr/local/bin, where a bundle puts it)."""
        master = self.topo.first_master
        if self._kubectl is None:
            self._kubectl = locate(self.transport(master), "kubectl")
        return self.run(master, [self._kubectl, f"--kubeconfig={ADMIN_CONF}", *args], timeout=timeout)

    def unit_properties(self, host: Host, unit: str, *names: str) -> tuple[dict[str, str], Result]:
        """``systemctl show --property=NAMES UNIT`` read into a dict (empty when it failed), and its result."""
        show = self.run(host, ["systemctl", "show", f"--property={','.join(names)}", unit])
        props = dict(line.split("=", 1) for line in show.stdout.splitlines() if "=" in line) if show.ok else {}
        return props, show

    def unit_state(self, host: Host, unit: str) -> str:
        """A systemd unit's state as evidence: ``unit: inactive (dead), result success`` and the journal's last
        lines — the state first, so that cutting a long status never cuts what the check went red on."""
        props, show = self.unit_properties(host, unit, "ActiveState", "SubState", "Result")
        state = (f"{unit}: {props.get('ActiveState', '?')} ({props.get('SubState', '?')}), "
                 f"result {props.get('Result', '?')}") if show.exit_code == 0 else output(show)
        journal = self.run(host, ["journalctl", "--no-pager", "--lines=3", "--output=short", "--unit", unit])
        return f"{state}\n{tail(journal.stdout, 3)}" if journal.exit_code == 0 and journal.stdout.strip() else state

    def until(self, look: Callable[[], str | None], deadline: float) -> float:
        """Call ``look`` every ``INTERVAL_S`` until it says nothing is wrong; the seconds that took.

        ``deadline`` is the check's own; ``--timeout`` replaces it. At the deadline: ``CheckFailed`` with
        the last problem seen.
        """
        limit = deadline if self.options.timeout is None else self.options.timeout
        return waiting.until(look, timeout=limit, interval=INTERVAL_S,
                             error=lambda problem: CheckFailed(f"{problem}\n(still so after {limit:.0f}s)"))

    def each(self, hosts: Sequence[Host], look: Callable[[Host], str | None]) -> str | None:
        """``look`` on every host at once; None when none had a problem, else each ``node: problem`` line."""
        for h in hosts:  # transports and Hosts made here, in order: the connector's cache is not thread-safe
            self.host(h)
        with ThreadPoolExecutor(max_workers=max(1, min(8, len(hosts)))) as pool:
            said = list(pool.map(look, hosts))
        problems = [f"{h.name}: {p}" for h, p in zip(hosts, said, strict=True) if p]
        return "\n".join(problems) or None


def output(res: Result, lines: int = 15) -> str:
    """A command's result as evidence: the command line, its exit code and the tail of what it printed."""
    text = (res.stdout.rstrip("\n") + "\n" + res.stderr).strip()
    shown = f"\n{tail(text, lines)}" if text else " (no output)"
    return f"`{shlex.join(res.argv)}` exit {res.exit_code}:{shown}"
