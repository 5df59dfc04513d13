"""The scenario catalogue: named topologies (allinone, s-master, m-master) with their inventories
and the per-scenario data the harness needs (base image, node sizes, default driver).

Everything is read from ``scenarios.toml`` beside this file, so adding a scenario is a data change.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from installer.errors import ConfigError, Problem

HERE = Path(__file__).resolve().parent
CATALOG = HERE / "scenarios.toml"


@dataclass(frozen=True)
class Size:
    vcpus: int
    memory: int  # MiB


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    inventory: Path
    inventory_hostname: Path
    image: str
    driver: str
    sizes: dict[str, Size]

    def size_for(self, roles: list[str]) -> Size:
        """A node's size: the largest of its roles' sizes (unknown roles count as a worker)."""
        picked = [self.sizes.get(r, self.sizes["kube-worker"]) for r in roles] or [self.sizes["kube-worker"]]
        return Size(max(s.vcpus for s in picked), max(s.memory for s in picked))


def names() -> list[str]:
    return [k for k in _load() if k != "defaults"]


def get(name: str) -> Scenario:
    data = _load()
    if name == "defaults" or name not in data:
        raise ConfigError([Problem(str(CATALOG), None, f"unknown scenario {name!r}; known: {', '.join(names())}")])
    defaults = data["defaults"]
    entry = data[name]
    sizes_raw: dict[str, Any] = {**defaults["sizes"], **entry.get("sizes", {})}
    sizes = {role: Size(int(v["vcpus"]), int(v["memory"])) for role, v in sizes_raw.items()}
    return Scenario(
        name=name,
        description=entry["description"],
        inventory=HERE / entry["inventory"],
        inventory_hostname=HERE / entry["inventory_hostname"],
        image=entry.get("image", defaults["image"]),
        driver=entry.get("driver", defaults["driver"]),
        sizes=sizes,
    )


def _load() -> dict[str, Any]:
    with CATALOG.open("rb") as fh:
        return tomllib.load(fh)
