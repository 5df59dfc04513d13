"""Topologies with parts of the cluster installed, shared by the failure suites.

``m_master_installed`` boots the LXC m-master (harness), then runs the real installer over SSH
(``kha install --only pki,connect,etcd,loadbalancer``) and saves the result as snapshot
``etcd-lb``; ``etcd_lb`` hands a test that state, reverted first, so a test may break anything.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from core import waiting
from harness.provider import Cluster
from harness.pytest_plugin import Topologies
from installer import install, topology
from installer.connect import Connector
from installer.etcd import day2
from installer.etcd import phases as etcd_phases
from installer.topology import Topology
from scenarios import catalog

SNAPSHOT = "etcd-lb"


@dataclass
class Installed:
    cluster: Cluster
    topo: Topology
    inventory: Path
    state: Path
    install_log: str

    def connector(self) -> Connector:
        """SSH transports to the nodes, as the installer reaches them (close it when done)."""
        return Connector(self.cluster.known_hosts, self.cluster.ssh_config)

    def vip_holders(self) -> list[str]:
        vip = str(self.topo.vip)
        with self.connector() as c:
            return [h.name for h in self.topo.lb
                    if vip in c(h).run(["ip", "-o", "-4", "addr", "show", "to", f"{vip}/32"], check=False).stdout]

    def etcd_healthy(self) -> bool:
        with self.connector() as c:
            first = self.topo.etcd[0]
            argv = etcd_phases.etcdctl("endpoint", "health", endpoints_csv=etcd_phases.endpoints(self.topo.etcd))
            return c(first).run(argv, env=etcd_phases.ETCDCTL_ENV, check=False, timeout=30).ok

    def wait_ready(self, timeout: float = 60.0) -> float:
        """Until the VIP is on exactly one [lb] node and every etcd member is healthy; returns seconds waited."""
        def ready() -> str | None:
            holders = self.vip_holders()
            if len(holders) != 1:
                return f"VIP on {holders}"
            return None if self.etcd_healthy() else f"VIP on {holders}, etcd not healthy"

        return waiting.until(ready, timeout=timeout, interval=0.5, error=lambda said: AssertionError(
            f"m-master not ready {timeout:.0f}s after revert: {said}"))

    @property
    def netns(self) -> str:
        ns = self.cluster.state.netns
        assert ns is not None, "failure suites run in isolated mode"
        return ns


@pytest.fixture(scope="session")
def m_master_installed(kha_topologies: Topologies, tmp_path_factory: pytest.TempPathFactory) -> Installed:
    cluster = kha_topologies.fresh(kha_topologies.get("m-master", "lxc"))
    inventory = catalog.get("m-master").inventory
    state = tmp_path_factory.mktemp("m-master-state")
    out = io.StringIO()
    install.run(inventory, state=state, ssh_config=cluster.ssh_config, known_hosts=cluster.known_hosts,
                only=["pki", "connect", "etcd", "loadbalancer"], out=out)
    cluster.snapshot(SNAPSHOT)
    # The harness's own tests may revert this cluster to its pristine state: mark it so they do.
    kha_topologies.dirty.add(cluster.name)
    return Installed(cluster, topology.load(inventory), Path(inventory), state, out.getvalue())


@pytest.fixture
def etcd_lb(m_master_installed: Installed, kha_topologies: Topologies) -> Iterator[Installed]:
    """The installed m-master, just as the installer left it; the test may break it."""
    m_master_installed.cluster.revert(SNAPSHOT)
    m_master_installed.wait_ready()
    try:
        yield m_master_installed
    finally:
        kha_topologies.dirty.add(m_master_installed.cluster.name)


@pytest.fixture
def ctx(etcd_lb: Installed) -> Iterator[day2.EtcdContext]:
    """The day-2 etcd context (``kha etcd …``) on the installed m-master, its connections closed after."""
    c = day2.open_context(etcd_lb.inventory, state=etcd_lb.state, ssh_config=etcd_lb.cluster.ssh_config,
                          known_hosts=etcd_lb.cluster.known_hosts)
    try:
        yield c
    finally:
        c.connector.close()
