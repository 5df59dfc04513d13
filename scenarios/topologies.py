"""Inventory → harness request: turns an installer ``Topology`` (plus a catalogue ``Scenario``) into a
``harness.spec.TopologySpec``.

This is the one place that knows both sides: ``harness`` never imports ``installer``, so the mapping
from inventory hosts, role groups, the VIP and the node network to machines to boot lives here.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import cast

from harness.errors import SpecError
from harness.spec import DRIVERS, NodeSpec, TopologySpec, default_gateway
from installer import topology
from installer.topology import Topology
from scenarios import catalog
from scenarios.catalog import Scenario, Size

_UNSAFE = re.compile(r"[^a-z0-9-]+")


def cluster_name(source: str | Path) -> str:
    """A cluster name from a scenario name or an inventory path: ``hosts.m-master.ip.ini`` → ``m-master-ip``."""
    stem = Path(source).name
    for suffix in (".ini", ".cfg", ".yaml", ".yml"):
        stem = stem.removesuffix(suffix)
    stem = stem.removeprefix("hosts.")
    name = _UNSAFE.sub("-", stem.lower()).strip("-")[:32].strip("-")
    return name or "kha"


def spec_from(topology: Topology, scenario: Scenario | None = None, driver: str | None = None,
              name: str | None = None) -> TopologySpec:
    """The harness request for ``topology``: every host in ``[all]`` order, sized by its roles.

    ``scenario`` gives sizes, image and default driver; without one the catalogue defaults apply and the
    cluster is named after the inventory file. ``driver`` overrides the scenario's driver.
    """
    chosen = driver or (scenario.driver if scenario else _defaults_driver())
    if chosen not in DRIVERS:
        raise SpecError(f"driver {chosen!r} is not one of {', '.join(DRIVERS)}")
    nodes: list[NodeSpec] = []
    for host in topology.hosts:
        roles = tuple(r.value for r in topology.roles(host.name))
        size = scenario.size_for(list(roles)) if scenario else _default_size(list(roles))
        nodes.append(NodeSpec(host.name, host.address, size.vcpus, size.memory, roles, login_user=host.user))
    network = topology.node_network
    vip = topology.vip
    taken = {n.address for n in nodes} | ({vip} if vip is not None else set())
    return TopologySpec(
        cluster=name or (scenario.name if scenario else cluster_name(topology.source)),
        network=network,
        gateway=default_gateway(network, taken),
        nodes=tuple(nodes),
        vip=vip,
        image=scenario.image if scenario else _defaults_image(),
        driver=chosen,
        source=f"scenario {scenario.name}" if scenario else f"inventory {topology.source}",
    )


def spec_for_scenario(scenario: str, driver: str | None = None, name: str | None = None) -> TopologySpec:
    """The harness request for a catalogue scenario (what ``kha up SCENARIO`` and the pytest plugin boot)."""
    scen = catalog.get(scenario)
    return spec_from(topology.load(scen.inventory), scen, driver, name)


def spec_for_inventory(path: str | Path, driver: str | None = None, name: str | None = None) -> TopologySpec:
    """The harness request for any inventory file (``kha up -i FILE``)."""
    return spec_from(topology.load(path), None, driver, name)


def _defaults() -> dict[str, object]:
    with catalog.CATALOG.open("rb") as fh:
        data: dict[str, object] = tomllib.load(fh)["defaults"]
    return data


def _defaults_driver() -> str:
    return str(_defaults().get("driver", "lxc"))


def _defaults_image() -> str:
    return str(_defaults().get("image", "debian-12"))


def _default_size(roles: list[str]) -> Size:
    sizes_raw = cast(dict[str, dict[str, int]], _defaults()["sizes"])
    sizes = {role: Size(int(v["vcpus"]), int(v["memory"])) for role, v in sizes_raw.items()}
    picked = [sizes.get(r, sizes["kube-worker"]) for r in roles] or [sizes["kube-worker"]]
    return Size(max(s.vcpus for s in picked), max(s.memory for s in picked))
