"""Scenario inventories with some ``[all:vars]`` values replaced or added, for tests that need a
variant (another network plugin, Kubernetes version, subnet …) of a real inventory."""

from __future__ import annotations

from pathlib import Path

from installer import topology
from scenarios import catalog


def inventory(tmp_path: Path, scenario: str = "m-master", **vars: str) -> Path:
    """The scenario's inventory (hostname flavour) with each ``NAME=VALUE`` set; [all:vars] is its last section."""
    text = Path(catalog.get(scenario).inventory_hostname).read_text()
    for name, value in vars.items():
        lines = [ln for ln in text.splitlines() if not ln.startswith(f"{name}=")]
        text = "\n".join([*lines, f'{name}="{value}"']) + "\n"
    path = tmp_path / f"{scenario}-{len(list(tmp_path.glob('*.ini')))}.ini"
    path.write_text(text)
    return path


def topo(tmp_path: Path, scenario: str = "m-master", **vars: str) -> topology.Topology:
    return topology.load(inventory(tmp_path, scenario, **vars))
