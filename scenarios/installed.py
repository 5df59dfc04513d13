"""A topology with the installer's work on it: the one ``Installed`` that the failure suites, the e2e
tier and the benchmarks share.

``install_onto`` runs the real installer (``kha install``, all phases or ``only`` some) over SSH onto
a cluster the harness booted and returns an ``Installed``: the cluster, its topology, inventory and
state folder, and ways to reach it as its admin would (commands on any node, kubectl on the first
master, who holds the VIP, whether etcd is healthy, a wait until both are right).
"""

from __future__ import annotations

import io
import json
import re
import shutil
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core import waiting
from harness import paths
from harness.errors import HarnessError
from harness.provider import Cluster
from installer import install, topology
from installer.connect import Connector
from installer.etcd import ctl
from installer.etcd.context import EtcdContext
from installer.kubernetes.bundle import Bundle
from installer.kubernetes.phases import ADMIN_CONF
from installer.loadbalancer import vip
from installer.phases import RunResult
from installer.remote import Result, Transport
from installer.state import StateDir
from installer.topology import Host, Role, Topology
from scenarios.errors import ClusterNotUp, ScenarioError


@dataclass
class Installed:
    """An installed topology, and ways to reach it. ``close()`` logs out of the nodes."""

    cluster: Cluster
    topo: Topology
    inventory: Path
    state: Path
    #: the offline bundle it was installed from (None: no Kubernetes phase ran, or from packages).
    bundle: Path | None = None
    install_log: str = ""
    #: the install phases run onto it (``--only``; empty: every phase), as a report records them
    only: tuple[str, ...] = ()
    _installs: int = field(default=0, repr=False)
    _ssh: Connector | None = field(default=None, repr=False)

    @classmethod
    def attach(cls, name: str, inventory: str | Path, state: str | Path | None = None,
               bundle: str | Path | None = None) -> Installed:
        """A cluster someone kept (``kha status`` lists it), with the inventory it was installed from and
        its state folder (default: beside the inventory); ``ClusterNotUp`` (exit 2) when it is not up."""
        try:
            cluster = Cluster.load(paths.cluster_dir(name))
        except HarnessError as exc:
            raise ClusterNotUp(f"cluster {name} is not up: {exc}") from exc
        inventory = Path(inventory)
        return cls(cluster, topology.load(inventory), inventory, StateDir.for_inventory(inventory, state).root,
                   Path(bundle) if bundle else None)

    def connector(self) -> Connector:
        """New SSH transports to the nodes, as the installer reaches them (close it when done)."""
        return Connector(self.cluster.known_hosts, self.cluster.ssh_config)

    @property
    def ssh(self) -> Connector:
        """The shared transports behind ``node``/``run``/``kubectl`` (closed by ``close``)."""
        if self._ssh is None:
            self._ssh = self.connector()
        return self._ssh

    def close(self) -> None:
        # Before the harness removes the namespace the SSH proxies run in.
        if self._ssh is not None:
            self._ssh.close()
            self._ssh = None

    @property
    def netns(self) -> str:
        ns = self.cluster.state.netns
        if ns is None:
            raise ScenarioError(f"{self.cluster.name} is not isolated: the suites run in a namespace of their own")
        return ns

    @property
    def kubernetes_nodes(self) -> list[Host]:
        wanted = {*self.topo.groups[Role.MASTER], *self.topo.groups[Role.WORKER]}
        return [h for h in self.topo.hosts if h.name in wanted]

    @property
    def bin_dir(self) -> str:
        if self.bundle is None:
            raise ScenarioError("no bundle: Kubernetes was not installed from one")
        return Bundle.load(self.bundle, verify=False).release.bin_dir

    def node(self, host: Host | str) -> Transport:
        return self.ssh(self.topo.host(host) if isinstance(host, str) else host)

    def run(self, host: Host | str, argv: Sequence[str], *, check: bool = True, timeout: float = 60,
            stdin: str | None = None) -> Result:
        return self.node(host).run(argv, sudo=True, check=check, timeout=timeout, stdin=stdin)

    def kubectl(self, *args: str, stdin: str | None = None, check: bool = True, timeout: float = 60) -> Result:
        """kubectl on the first master with the admin kubeconfig (over SSH, as ``kha`` itself does)."""
        argv = [f"{self.bin_dir}/kubectl", f"--kubeconfig={ADMIN_CONF}", *args]
        return self.run(self.topo.first_master, argv, check=check, timeout=timeout, stdin=stdin)

    def kubectl_json(self, *args: str) -> Any:
        """``kubectl … -o json``, parsed."""
        return json.loads(self.kubectl(*args, "-o", "json").stdout)

    def vip_holders(self, among: Collection[str] | None = None) -> list[str]:
        """The ``[lb]`` nodes (or those ``among`` them) that hold the VIP now, as each says (each asked must
        answer over SSH: leave out a node that is powered off)."""
        with self.connector() as c:
            return vip.holders(self.topo, c, among)

    def etcd_healthy(self) -> bool:
        with self.connector() as c:
            argv = ctl.argv("endpoint", "health", endpoints=ctl.client_urls(self.topo.etcd))
            return c(self.topo.etcd[0]).run(argv, sudo=True, check=False, timeout=30).ok

    def inventory_with(self, dest: Path, **groups: Sequence[str]) -> Path:
        """A copy of the inventory at ``dest`` with hosts listed under the given groups, as an operator edits
        it for a day-2 command (``new_etcd=["node4"]`` → ``[new-etcd]`` lists node4; the group must exist)."""
        text = self.inventory.read_text()
        for group, hosts in groups.items():
            header = f"[{group.replace('_', '-')}]"
            text, found = re.subn(rf"^{re.escape(header)}$", "\n".join([header, *hosts]), text, count=1, flags=re.M)
            if not found:
                raise ScenarioError(f"{self.inventory}: no {header} group to list {', '.join(hosts)} under")
        dest.write_text(text)
        return dest

    def cli_args(self, inventory: Path | None = None, state: Path | None = None) -> list[str]:
        """The options a ``kha`` command on this topology takes: inventory, state folder, SSH config, host keys."""
        return ["-i", str(inventory or self.inventory), "--state", str(state or self.state),
                "--ssh-config", str(self.cluster.ssh_config), "--known-hosts", str(self.cluster.known_hosts)]

    def etcd(self) -> EtcdContext:
        """The day-2 etcd context (``kha etcd …``) on this topology; close its ``connector`` when done."""
        return EtcdContext.open(self.inventory, state=self.state, ssh_config=self.cluster.ssh_config,
                                known_hosts=self.cluster.known_hosts)

    def unsettled(self) -> str | None:
        """None when the VIP (if any) is on exactly one [lb] node and every etcd member is healthy; else which."""
        if self.topo.vip is not None and len(holders := self.vip_holders()) != 1:
            return f"VIP on {holders or 'no node'}"
        return None if self.etcd_healthy() else "etcd not healthy"

    def snapshot(self, name: str) -> None:
        """Save the whole topology (``Cluster.snapshot``) and, with it, a copy of the state folder: what the
        nodes hold and what the installer's state says about them (etcd's cluster ID, the PKI) go back together."""
        self.cluster.snapshot(name)
        copy = self._state_copy(name)
        if copy.exists():
            shutil.rmtree(copy)
        shutil.copytree(self.state, copy, symlinks=True)

    def revert(self, name: str) -> None:
        """Back to snapshot ``name``: the nodes and the state folder as they were when it was taken (a state
        folder a snapshot taken outside ``Installed``, e.g. ``kha snapshot``, has no copy of is left as it is)."""
        self.cluster.revert(name)
        self.close()
        copy = self._state_copy(name)
        if copy.is_dir():
            shutil.rmtree(self.state)
            shutil.copytree(copy, self.state, symlinks=True)

    def _state_copy(self, name: str) -> Path:
        # Inside the cluster's own folder: gone with ``kha down`` (it holds keys), found again by a later
        # ``kha fault run``.
        return self.cluster.scratch / "installed-state" / name

    def wait_ready(self, timeout: float = 60.0) -> float:
        """Until ``unsettled`` says nothing; the seconds it took."""
        return waiting.until(self.unsettled, timeout=timeout, interval=0.5, error=lambda said: ScenarioError(
            f"{self.cluster.name} not ready {timeout:.0f}s on: {said}"))

    def install(self, out: io.StringIO, *, only: Sequence[str] = ()) -> RunResult:
        """Run ``kha install`` against the topology again, with the same state folder (and bundle)."""
        result = install.run(self.inventory, state=self.state, ssh_config=self.cluster.ssh_config,
                             known_hosts=self.cluster.known_hosts, bundle=self.bundle, only=list(only) or None,
                             out=out)
        self.install_log += out.getvalue()
        # The phases that ran here, as a replay must run them: every phase (empty) once any call ran them all.
        first, self._installs = self._installs == 0, self._installs + 1
        if first or self.only:
            self.only = tuple(dict.fromkeys([*self.only, *only])) if only else ()
        return result


def install_onto(cluster: Cluster, inventory: str | Path, state: Path, *, bundle: Path | None = None,
                 only: Sequence[str] = (), out: io.StringIO | None = None) -> tuple[Installed, RunResult]:
    """Run the real installer onto ``cluster``; the installed topology and what each phase took."""
    installed = Installed(cluster, topology.load(inventory), Path(inventory), state, bundle)
    result = installed.install(out or io.StringIO(), only=only)
    return installed, result
