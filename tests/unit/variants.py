"""Scenario inventories with some ``[all:vars]`` values replaced or added, for tests that need a
variant (another network plugin, Kubernetes version, subnet …) of a real inventory."""

from __future__ import annotations

from pathlib import Path

from installer import topology
from scenarios import catalog

INVENTORIES = Path(__file__).resolve().parents[2] / "scenarios" / "inventories"


def write(dest: Path, base: str, **vars: str) -> Path:
    """``scenarios/inventories/hosts.BASE.ini`` (e.g. ``m-master.hostname``) written to ``dest`` with each
    ``NAME=VALUE`` set; [all:vars] is the last section of every scenario inventory."""
    return _write(dest, (INVENTORIES / f"hosts.{base}.ini").read_text(), vars)


def inventory(tmp_path: Path, scenario: str = "m-master", **vars: str) -> Path:
    """The scenario's inventory (hostname flavour) with each ``NAME=VALUE`` set, in a new file under ``tmp_path``."""
    path = tmp_path / f"{scenario}-{len(list(tmp_path.glob('*.ini')))}.ini"
    return _write(path, Path(catalog.get(scenario).inventory_hostname).read_text(), vars)


def _write(dest: Path, text: str, vars: dict[str, str]) -> Path:
    for name, value in vars.items():
        lines = [ln for ln in text.splitlines() if not ln.startswith(f"{name}=")]
        text = "\n".join([*lines, f'{name}="{value}"']) + "\n"
    dest.write_text(text)
    return dest


def topo(tmp_path: Path, scenario: str = "m-master", **vars: str) -> topology.Topology:
    return topology.load(inventory(tmp_path, scenario, **vars))
