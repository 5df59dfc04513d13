"""The failover tier's topology: m-master booted by the harness (``--kha-driver``, LXC by default), Kubernetes
installed from the offline bundle by the real installer (three control planes behind the VIP, external
etcd, a worker), snapshotted once as ``kubernetes``; every case reverts to that snapshot first.

Each case writes ``history.json``, ``result.json`` and ``timeline.png``/``.svg`` into
``--kha-results DIR/<case>/`` (default: ``failover-results`` under pytest's base temp; the path is printed).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.pytest_plugin import Topologies
from images import bundle as bundles
from installer import topology
from scenarios import catalog
from scenarios.failover import run
from scenarios.installed import Installed
from scenarios.report.pytest_plugin import install_or_fail, reports


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--kha-results", default=None, help="where each failover case writes its results and timeline")
    parser.addoption("--kha-tier", default="full", choices=("pr", "full"),
                     help="pr: the cases CI runs; full: the whole catalogue (default)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """``--kha-tier pr`` (CI's failover cell) leaves out the tests marked ``full_tier``: they run in the full
    tier (``tox -e failover``, the nightly matrix), where the 60-minute CI budget does not bind."""
    if config.getoption("kha_tier") != "pr":
        return
    left_out = [item for item in items if item.get_closest_marker("full_tier")]
    if left_out:
        config.hook.pytest_deselected(items=left_out)
        items[:] = [item for item in items if not item.get_closest_marker("full_tier")]


@pytest.fixture(scope="session")
def results(pytestconfig: pytest.Config, tmp_path_factory: pytest.TempPathFactory) -> Path:
    given = pytestconfig.getoption("kha_results")
    folder = Path(given) if given else tmp_path_factory.getbasetemp() / "failover-results"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="session")
def kubernetes_m_master(kha_topologies: Topologies, tmp_path_factory: pytest.TempPathFactory,
                        pytestconfig: pytest.Config) -> Iterator[Installed]:
    driver = str(pytestconfig.getoption("kha_driver") or "lxc")
    cluster = kha_topologies.fresh(kha_topologies.get("m-master", driver))
    kha_topologies.dirty.add(cluster.name)
    built = bundles.build()
    inventory = Path(catalog.get("m-master").inventory)
    inst = Installed(cluster, topology.load(inventory), inventory, tmp_path_factory.mktemp("failover-state"),
                     built.path)
    install_or_fail(inst, "on m-master", reports=reports(pytestconfig))
    inst.snapshot(run.SNAPSHOT)
    try:
        yield inst
    finally:
        inst.close()
