"""What a matrix cell varies that a scenario's own files fix: the load balancer its inventory installs
(``lb_mode``, the VIP and its ``[lb]`` nodes) and the base image its nodes boot (scenarios.toml).

``inventory`` rewrites a scenario's inventory for another ``lb`` value the way an operator edits it:
``lb_mode`` set in ``[all:vars]``; for a node-local LB the VIP and the ``[lb]`` members removed; for ``slb``
the ``[lb]`` members removed and the VIP's address kept as the external balancer's (the e2e tier runs a
stand-in there: ``scenarios.external_lb``). ``spec`` is the harness request for that inventory on another
image. What cannot be made from a scenario's inventory (a VIP or an external LB where it has no address
for one) is said by ``problem``.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

from harness.spec import TopologySpec
from installer import topology
from installer.settings import LBMode
from installer.topology import Topology
from scenarios import catalog
from scenarios.topologies import spec_from

#: the matrix's lb values: (lb_mode, where the apiserver endpoint is: "vip" on [lb] nodes, "local" on every
#: node, "external" outside the nodes)
LB_MODES = {"haproxy-vip": (LBMode.HAPROXY, "vip"), "nginx-vip": (LBMode.NGINX, "vip"),
            "local-haproxy": (LBMode.HAPROXY, "local"), "local-nginx": (LBMode.NGINX, "local"),
            "slb": (LBMode.SLB, "external")}


def lb_value(topo: Topology) -> str:
    """The matrix's ``lb`` value for what an inventory installs."""
    mode = topo.settings.lb_mode
    if mode is LBMode.SLB:
        return "slb"
    return f"{mode.value}-vip" if topo.vip is not None else f"local-{mode.value}"


def problem(scenario: str, lb: str) -> str | None:
    """Why ``scenario``'s inventory cannot be made to install ``lb`` (None: ``inventory`` can)."""
    if lb not in LB_MODES:
        return f"{lb!r} is not a load balancer kha installs or stands in for ({', '.join(LB_MODES)})"
    _mode, where = LB_MODES[lb]
    topo = topology.load(catalog.get(scenario).inventory)
    if where != "local" and topo.vip is None:
        return (f"{scenario}'s inventory has no [lb] nodes and no VIP for {lb}" if where == "vip" else
                f"{scenario}'s inventory has no VIP address to give the external load balancer")
    return None


def inventory(scenario: str, lb: str, dest: Path) -> Path:
    """``scenario``'s inventory rewritten to install ``lb`` (``problem`` must be None), written to ``dest``."""
    why = problem(scenario, lb)
    if why is not None:
        raise ValueError(f"{scenario} with {lb}: {why}")
    mode, where = LB_MODES[lb]
    lines = Path(catalog.get(scenario).inventory).read_text().splitlines()
    out: list[str] = []
    group = ""
    for line in lines:
        header = re.fullmatch(r"\[([^\]]+)\]\s*", line)
        if header:
            group = header.group(1)
        elif where == "local" and line.startswith("lb_kube_apiserver_ip="):
            continue  # a node-local LB: no VIP
        elif where != "vip" and group == "lb" and line.strip() and not line.lstrip().startswith((";", "#")):
            continue  # nothing kha installs on [lb] nodes
        if line.startswith("lb_mode="):
            continue
        out.append(line)
    # [all:vars] is the last section of every scenario inventory.
    out.append(f'lb_mode="{mode.value}"')
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text("\n".join(out) + "\n")
    return dest


def spec(scenario: str, inventory_path: Path, driver: str | None, image: str | None) -> TopologySpec:
    """The harness request for ``inventory_path`` (a scenario's, or its variant) with the scenario's sizes, on
    ``image`` (None: the scenario's)."""
    made = spec_from(topology.load(inventory_path), catalog.get(scenario), driver)
    return made if image is None else dataclasses.replace(made, image=image)
