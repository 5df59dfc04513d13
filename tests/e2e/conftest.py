"""The e2e tier's topology: booted by the harness, installed with every phase, ready for kubectl.

``installed`` (session) is the scenario named by ``--kha-scenario`` (allinone when the option is not
given; tox passes it: ``tox -e allinone|m-master``) on ``--kha-driver`` (default lxc), isolated:

1. the harness boots it (``kha_topologies``: a private libvirtd in a network namespace of its own,
   torn down at the end of the session whatever happened);
2. the offline Kubernetes bundle is built or reused (``images.bundle.build()``: cached; ~5 min cold),
   and so is the busybox test image (``images.testimage``);
3. the real installer runs every phase over SSH, as ``kha install`` does, into a throwaway state folder;
4. the test image is imported into every node's containerd (pods use it with ``imagePullPolicy: Never``).

How long each of those took (and each install phase, from the runner's ✓ lines) is printed in a
"kha e2e" section at the end of the run, so CI logs carry the timings. Anything missing (libvirtd,
the base image, the bundle's sources) is a failure with the reason, never a skip.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from e2e_support import Installed, Timings, import_image, ran

from harness.pytest_plugin import Topologies
from images import bundle as bundles
from images import testimage
from images.errors import ImageError
from installer import topology
from installer.phases import Status
from installer.topology import LBKind
from scenarios import catalog, external_lb
from scenarios.matrix import invocation, variant
from scenarios.report.pytest_plugin import install_or_fail, reports

log = logging.getLogger(__name__)

#: The scenario when --kha-scenario is not given. The harness plugin's own default (m-master) suits the
#: failure suites; the e2e tier's main job is the one-node cluster (the README's CI command).
DEFAULT_SCENARIO = "allinone"
DEFAULT_DRIVER = "lxc"

TIMINGS = pytest.StashKey[Timings]()


def chosen_scenario(config: pytest.Config) -> str:
    """``--kha-scenario`` (or ``$KHA_SCENARIO``) when given, else ``DEFAULT_SCENARIO``.

    The option belongs to the harness plugin, whose default is m-master; here only an explicit choice
    counts, so a bare ``pytest -m e2e tests/e2e`` boots the one-node cluster.
    """
    args = config.invocation_params.args
    explicit = any(a == "--kha-scenario" or a.startswith("--kha-scenario=") for a in args)
    if explicit or os.environ.get("KHA_SCENARIO"):
        return str(config.getoption("kha_scenario"))
    return DEFAULT_SCENARIO


def chosen_driver(config: pytest.Config) -> str:
    return str(config.getoption("kha_driver") or DEFAULT_DRIVER)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("kha", "kha harness topologies")
    group.addoption("--kha-os", default=None, metavar="IMAGE",
                    help="boot the scenario's nodes from this base image (kha image list) instead of its own "
                         "(a test matrix cell's os)")
    group.addoption("--kha-lb", default=None, metavar="LB", choices=tuple(variant.LB_MODES),
                    help="install this load balancer (haproxy-vip, nginx-vip, local-haproxy, local-nginx), or slb "
                         "with an external one standing in (scenarios/external_lb.py): the scenario's inventory "
                         "rewritten for it (a test matrix cell's lb)")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "e2e_session(scenario, driver): a module that boots a cluster of its own "
                                       "runs in that one e2e session (tox -e allinone: allinone, lxc) and is "
                                       "deselected, not skipped, in the others")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    session = (chosen_scenario(config), chosen_driver(config))
    elsewhere = [item for item in items
                 if (m := item.get_closest_marker("e2e_session")) is not None and tuple(m.args) != session]
    if elsewhere:
        config.hook.pytest_deselected(items=elsewhere)
        items[:] = [item for item in items if item not in elsewhere]


@contextmanager
def _timed(timings: Timings, what: str) -> Iterator[None]:
    start = time.monotonic()
    yield
    timings.add(what, time.monotonic() - start)


@pytest.fixture(scope="session")
def installed(kha_topologies: Topologies, tmp_path_factory: pytest.TempPathFactory,
              request: pytest.FixtureRequest) -> Iterator[Installed]:
    config = request.config
    scenario = chosen_scenario(config)
    driver = chosen_driver(config)
    timings = Timings(scenario, driver)
    config.stash[TIMINGS] = timings

    scen = catalog.get(scenario)
    inventory = Path(scen.inventory)
    image_name, lb = config.getoption("kha_os"), config.getoption("kha_lb")
    if lb is not None and lb != invocation.lb_of(scenario):
        why = variant.problem(scenario, lb)
        if why is not None:
            pytest.fail(f"--kha-lb {lb}: {why}", pytrace=False)
        inventory = variant.inventory(scenario, lb, tmp_path_factory.mktemp(f"{scenario}-{lb}") / inventory.name)
    varied = image_name is not None or inventory != Path(scen.inventory)
    spec = variant.spec(scenario, inventory, driver, image_name) if varied else None
    shown = ", ".join(x for x in (image_name, lb) if x)
    with _timed(timings, f"boot {scenario} ({driver}, isolated{', ' + shown if shown else ''})"):
        cluster = kha_topologies.get(scenario, driver, spec=spec)
    try:
        start = time.monotonic()
        cached = bundles.get() is not None
        built = bundles.build(progress=lambda line: log.info("bundle: %s", line))
        timings.add(f"bundle {built.path.name} ({'cached' if cached else 'built now'})", time.monotonic() - start)
        start = time.monotonic()
        cached = testimage.get() is not None
        image = testimage.build(progress=lambda line: log.info("test image: %s", line))
        timings.add(f"test image {image.ref} ({'cached' if cached else 'built now'})", time.monotonic() - start)
    except ImageError as exc:
        pytest.fail(f"e2e needs the offline bundle and the test image: {exc}", pytrace=False)

    state = tmp_path_factory.mktemp(f"{scenario}-state")
    if driver == "qemu":
        # A VM keeps a clock of its own, and the image's chronyd (Debian's pool) has no source it can reach
        # here: kha's check finds it unsynchronised. As an operator would, let kha run time (chrony_enabled:
        # the first master serves every node).
        timed = tmp_path_factory.mktemp(f"{scenario}-inventory") / inventory.name
        timed.write_text(inventory.read_text() + "\nchrony_enabled=true\n")
        inventory = timed
    inst = Installed(cluster, topology.load(inventory), inventory, state, built.path,
                     scenario=scenario, image=image, timings=timings)
    with contextlib.ExitStack() as stack:
        if inst.topo.lb_kind is LBKind.SLB:
            stack.enter_context(_external_lb(inst))
        start = time.monotonic()
        result = install_or_fail(inst, f"on {scenario}", reports=reports(config))
        timings.phases = ran(result)
        timings.add("kha install (every phase)", time.monotonic() - start)
        try:
            with _timed(timings, f"import {image.ref} into containerd on {len(inst.kubernetes_nodes)} node(s)"):
                for host in inst.kubernetes_nodes:
                    import_image(inst.node(host), image)
            yield inst
        finally:
            inst.close()


def _external_lb(inst: Installed) -> contextlib.AbstractContextManager[int]:
    """lb_mode=slb: the stand-in external LB at lb_kube_apiserver_ip, in the topology's namespace."""
    s, topo = inst.topo.settings, inst.topo
    assert s.lb_kube_apiserver_ip is not None  # the inventory check requires it for slb
    address = ipaddress.IPv4Interface(f"{s.lb_kube_apiserver_ip}/{topo.node_network.prefixlen}")
    backends = [(h.name, str(h.address), topo.apiserver_port) for h in topo.masters]
    return external_lb.started(inst.netns, inst.cluster.state.bridge, address, s.lb_kube_apiserver_port, backends)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, exitstatus: int,
                            config: pytest.Config) -> None:
    timings = config.stash.get(TIMINGS, None)
    if timings is None:
        return
    tr = terminalreporter
    tr.write_sep("=", f"kha e2e: {timings.scenario} on {timings.driver}, seconds per step")
    for what, seconds in timings.rows:
        tr.write_line(f"{seconds:8.1f}s  {what}")
    if timings.phases:
        tr.write_line("install phases:")
        for p in timings.phases:
            tr.write_line(f"{p.seconds:8.1f}s  {'✓' if p.status is Status.OK else '✗'} {p.path}")
    if timings.checks:
        tr.write_line("kha check:")
        for line in timings.checks:
            tr.write_line(f"    {line}")
    if timings.rerun:
        total = sum(p.seconds for p in timings.rerun)
        tr.write_line(f"second kha install (changes nothing): {total:.1f}s over {len(timings.rerun)} phases")
