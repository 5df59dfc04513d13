"""pytest hookup: running topologies as fixtures, reset between destructive tests, testinfra hosts.

Registered from the project's conftest.py (``pytest_plugins = ["harness.pytest_plugin"]``).

- ``kha_topologies`` (session): boots topologies on demand, ``.get(scenario, driver)``, each once per
  session, in isolated mode (a private libvirtd in a network namespace of its own) — or, with
  ``--kha-connect URI``, on the libvirtd that URI names (another hypervisor: ``kha matrix run --hosts``
  hands each cell its host this way) — under the session's temporary directory; all are torn down at the
  end of the session, whatever happened.
  Right after boot each topology is saved as snapshot ``kha-pristine``.
- ``kha_topology`` (module; the cluster itself is booted once per session): the topology named by
  the nearest ``@pytest.mark.kha_topology(scenario, driver=None)`` marker (e.g. a module's
  ``pytestmark``), else by ``--kha-scenario`` (default m-master) and ``--kha-driver`` (default: the
  scenario's).
- ``fresh_topology`` (function): the same cluster, reverted to ``kha-pristine`` first if an earlier
  test may have changed it (the Talos/testinfra "destructive tests get a fresh machine" rule).
- ``kha_hosts``: ``{node: testinfra Host}`` built from the cluster's ssh_config (paramiko backend),
  with each node's host key checked against the harness's known_hosts after connecting.

What a tier needs (libvirtd, the image, …) missing is a test *failure* with the reason, never a skip.
The plugin imports neither ``installer`` nor ``scenarios``: scenario names are turned into specs by the
function named in ``--kha-spec-factory`` (default ``scenarios.topologies:spec_for_scenario``).
"""

from __future__ import annotations

import dataclasses
import importlib
import logging
import os
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import paramiko
import pytest

from harness import paths
from harness.daemon import parse_uri
from harness.errors import ConnectUriError, HarnessError
from harness.provider import Cluster, Provider
from harness.spec import TopologySpec

log = logging.getLogger(__name__)

PRISTINE = "kha-pristine"
# Scenario names become specs in ``scenarios`` (which reads inventories with ``installer``). The harness
# must not import either, so the plugin finds that function by name, like a pytest hook implementation.
DEFAULT_FACTORY = "scenarios.topologies:spec_for_scenario"

SpecFactory = Callable[[str, str | None, str | None], TopologySpec]


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("kha", "kha harness topologies")
    group.addoption("--kha-scenario", default=os.environ.get("KHA_SCENARIO", "m-master"),
                    help="scenario the kha_topology fixture boots (default: m-master; env KHA_SCENARIO)")
    group.addoption("--kha-driver", default=os.environ.get("KHA_DRIVER") or None, choices=("lxc", "qemu"),
                    help="node driver for kha_topology (default: the scenario's; env KHA_DRIVER)")
    group.addoption("--kha-spec-factory", default=DEFAULT_FACTORY,
                    help="module:function turning (scenario, driver, name) into a harness TopologySpec "
                         f"(default: {DEFAULT_FACTORY})")
    group.addoption("--kha-connect", metavar="URI", default=os.environ.get("KHA_CONNECT") or None,
                    help="boot topologies on the libvirtd this libvirt URI names instead of a private one "
                         "(kha up --connect; env KHA_CONNECT)")
    group.addoption("--kha-keep", action="store_true",
                    help="keep topologies after the session (for debugging; kha down --name … removes them)")


def pytest_configure(config: pytest.Config) -> None:
    connect = config.getoption("kha_connect", None)
    if connect:
        try:
            parse_uri(str(connect), flag="--kha-connect")  # a usage error at once, not a failure per test
        except ConnectUriError as exc:
            raise pytest.UsageError(str(exc)) from exc
    config.addinivalue_line("markers", "kha_topology(scenario, driver=None): the topology kha_topology boots "
                                       "for this module (overrides --kha-scenario/--kha-driver)")


@dataclass
class Topologies:
    """Clusters booted during this session, by (scenario, driver, variant spec)."""

    root: Path
    factory: SpecFactory
    keep: bool = False
    connect: str | None = None  # a libvirt URI (--kha-connect), else a private libvirtd per topology
    clusters: dict[tuple[str, str | None, TopologySpec | None], Cluster] = field(default_factory=dict)
    owned: list[Cluster] = field(default_factory=list)
    dirty: set[str] = field(default_factory=set)
    boot_seconds: dict[str, float] = field(default_factory=dict)

    def get(self, scenario: str, driver: str | None = None, *, spec: TopologySpec | None = None) -> Cluster:
        """The session's topology for ``scenario`` on ``driver``, booted on first use. ``spec``: boot this
        instead of the scenario's own (a variant: another image, an inventory rewritten)."""
        key = (scenario, driver, spec)
        if key not in self.clusters:
            self.clusters[key] = self._boot(scenario, driver, spec=spec)
        return self.clusters[key]

    def own(self, scenario: str, driver: str | None = None, *, spec: TopologySpec | None = None) -> Cluster:
        """A topology booted for one test alone (a test of ``down`` destroys it): never handed to another
        fixture, so no session fixture built on the shared one loses its cluster; destroyed at the end if
        the test did not. ``spec``: boot this instead of the scenario's (an inventory variant's)."""
        cluster = self._boot(scenario, driver, tag=f"-own{len(self.owned) + 1}", spec=spec)
        self.owned.append(cluster)
        return cluster

    def _boot(self, scenario: str, driver: str | None, tag: str = "", spec: TopologySpec | None = None) -> Cluster:
        spec = spec or self.factory(scenario, driver, None)
        # Unique per test process: xdist workers and concurrent sessions on one machine each boot their
        # own topology, and nothing (domain names, namespaces, state) may be shared or mistaken.
        spec = dataclasses.replace(spec, cluster=f"{scenario}-{spec.driver}-{os.getpid()}{tag}")
        lines: list[str] = []
        provider = Provider(isolated=True, connect=self.connect, emit=lines.append)
        try:
            cluster = provider.up(spec, state_dir=self.root / spec.cluster)
            cluster.snapshot(PRISTINE)
        except HarnessError as exc:
            pytest.fail(f"kha harness could not boot {spec.cluster}: {exc}\n" + "\n".join(lines), pytrace=False)
        for line in lines:
            log.info("%s", line)
        self.boot_seconds[spec.cluster] = sum(s for _n, _ok, s in provider.steps.done)
        return cluster

    def fresh(self, cluster: Cluster) -> Cluster:
        if cluster.name in self.dirty:
            cluster.revert(PRISTINE)
            self.dirty.discard(cluster.name)
        return cluster

    def discard(self, cluster: Cluster) -> list[str]:
        """Destroy ``cluster`` (one of :meth:`own`'s) now: a test of ``down`` itself."""
        if not any(c is cluster for c in self.owned):
            raise ValueError(f"{cluster.name} is shared with other tests: destroy a topology of your own (own())")
        self.owned = [c for c in self.owned if c is not cluster]
        self.dirty.discard(cluster.name)
        close_hosts(cluster)
        return cluster.destroy()

    def close(self) -> None:
        errors = []
        for cluster in [*self.clusters.values(), *self.owned]:
            if self.keep:
                log.warning("keeping %s (state in %s; `kha down --name %s` removes it)", cluster.name,
                            cluster.state.state_dir, cluster.name)
                continue
            try:
                close_hosts(cluster)
                cluster.destroy()
            except HarnessError as exc:
                errors.append(f"{cluster.name}: {exc}")
        self.clusters.clear()
        self.owned.clear()
        if errors:
            pytest.fail("kha harness teardown failed: " + "; ".join(errors), pytrace=False)


def load_factory(ref: str) -> SpecFactory:
    """``module:function`` → the function that turns (scenario, driver, name) into a ``TopologySpec``."""
    module, _, attr = ref.partition(":")
    try:
        fn = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as exc:
        raise pytest.UsageError(f"--kha-spec-factory {ref!r}: {exc}") from exc
    return cast(SpecFactory, fn)


@pytest.fixture(scope="session")
def kha_topologies(tmp_path_factory: pytest.TempPathFactory, pytestconfig: pytest.Config) -> Iterator[Topologies]:
    keep = bool(pytestconfig.getoption("kha_keep"))
    # Kept topologies live where the kha command looks (kha status / ssh / down --name …); others in
    # the session's temporary folder.
    root = paths.clusters_root() if keep else tmp_path_factory.mktemp("kha")
    tops = Topologies(root, load_factory(str(pytestconfig.getoption("kha_spec_factory"))), keep=keep,
                      connect=pytestconfig.getoption("kha_connect"))
    try:
        yield tops
    finally:
        tops.close()


def _chosen(kha_topologies: Topologies, request: pytest.FixtureRequest) -> Cluster:
    """The topology named by the nearest ``kha_topology`` marker, else by the command-line options."""
    marker = request.node.get_closest_marker("kha_topology")
    if marker is not None:
        return kha_topologies.get(*marker.args, **marker.kwargs)
    cfg = request.config
    return kha_topologies.get(str(cfg.getoption("kha_scenario")), cfg.getoption("kha_driver"))


@pytest.fixture(scope="module")
def kha_topology(kha_topologies: Topologies, request: pytest.FixtureRequest) -> Cluster:
    """The module's topology, booted once per session (see the module docstring for how it is chosen).

    Reverted to its just-booted state first when an earlier test (of any module, in any order xdist
    picks) changed it, so a module always starts from what the harness booted.
    """
    return kha_topologies.fresh(_chosen(kha_topologies, request))


@pytest.fixture
def fresh_topology(kha_topologies: Topologies, request: pytest.FixtureRequest) -> Iterator[Cluster]:
    """A topology in its just-booted state; the test may break it (the next user gets a revert)."""
    cluster = kha_topologies.fresh(_chosen(kha_topologies, request))
    try:
        yield cluster
    finally:
        kha_topologies.dirty.add(cluster.name)


def hosts_for(cluster: Cluster) -> dict[str, Any]:
    """testinfra Hosts for every node, through the cluster's ssh_config, host keys verified."""
    import testinfra  # noqa: PLC0415 - a test dependency, not a library one

    pinned = paramiko.HostKeys(str(cluster.known_hosts))
    hosts: dict[str, Any] = {}
    for node in cluster.nodes:
        host = testinfra.get_host(f"paramiko://{node}", ssh_config=str(cluster.ssh_config))
        # testinfra's paramiko backend accepts unknown host keys with a warning: connect now, quietly,
        # and refuse the host unless its key is the one the harness pinned.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            transport = host.backend.client.get_transport()
        key = transport.get_remote_server_key() if transport is not None else None
        address = str(cluster.spec.node(node).address)
        expected: dict[str, paramiko.PKey] = dict(pinned.lookup(address) or {})
        if key is None or expected.get(key.get_name()) != key:
            pytest.fail(f"{node}: host key {key.get_base64() if key else None} is not the pinned one in "
                        f"{cluster.known_hosts}", pytrace=False)
        hosts[node] = host
    _open_hosts.setdefault(str(cluster.state.state_dir), []).extend(hosts.values())
    return hosts


# testinfra keeps one SSH connection per Host, and in isolated mode each is an `ip netns exec … nc`
# process inside the cluster's namespace: they must be closed before the namespace can go.
_open_hosts: dict[str, list[Any]] = {}


def close_hosts(cluster: Cluster) -> None:
    for host in _open_hosts.pop(str(cluster.state.state_dir), []):
        client = host.backend.__dict__.get("client")  # functools.cached_property: only if it connected
        if client is not None:
            client.close()


@pytest.fixture(scope="module")
def kha_hosts(kha_topology: Cluster) -> dict[str, Any]:
    """testinfra Hosts of the module's topology, by node name."""
    return hosts_for(kha_topology)
