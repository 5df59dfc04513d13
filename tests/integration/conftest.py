"""Topologies with parts of the cluster installed, shared by the failure suites.

``m_master_installed`` boots the LXC m-master (harness), then runs the real installer over SSH
(``kha install --only pki,connect,etcd,loadbalancer``, through ``scenarios.installed``) and saves the
result as snapshot ``etcd-lb``; ``etcd_lb`` hands a test that state, reverted first, so a test may break anything.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.pytest_plugin import Topologies
from installer import topology
from installer.etcd.context import EtcdContext
from scenarios import catalog
from scenarios.installed import Installed
from scenarios.report.pytest_plugin import install_or_fail, reports

SNAPSHOT = "etcd-lb"


@pytest.fixture(scope="session")
def m_master_installed(kha_topologies: Topologies, tmp_path_factory: pytest.TempPathFactory,
                       pytestconfig: pytest.Config) -> Installed:
    cluster = kha_topologies.fresh(kha_topologies.get("m-master", "lxc"))
    inventory = Path(catalog.get("m-master").inventory)
    installed = Installed(cluster, topology.load(inventory), inventory, tmp_path_factory.mktemp("m-master-state"))
    install_or_fail(installed, "of etcd and the load balancers on m-master", reports=reports(pytestconfig),
                    only=["pki", "connect", "etcd", "loadbalancer"])
    installed.snapshot(SNAPSHOT)
    # The harness's own tests may revert this cluster to its pristine state: mark it so they do.
    kha_topologies.dirty.add(cluster.name)
    return installed


@pytest.fixture
def etcd_lb(m_master_installed: Installed, kha_topologies: Topologies) -> Iterator[Installed]:
    """The installed m-master, just as the installer left it; the test may break it."""
    m_master_installed.revert(SNAPSHOT)
    m_master_installed.wait_ready()
    try:
        yield m_master_installed
    finally:
        kha_topologies.dirty.add(m_master_installed.cluster.name)


@pytest.fixture
def ctx(etcd_lb: Installed) -> Iterator[EtcdContext]:
    """The day-2 etcd context (``kha etcd …``) on the installed m-master, its connections closed after."""
    c = etcd_lb.etcd()
    try:
        yield c
    finally:
        c.close()
