"""Where a cluster's local state lives: the PKI store and the per-cluster secrets.

Default: a folder beside the inventory, named after it (``hosts.m-master.ini`` →
``hosts.m-master.kha/``), so the CA moves with the inventory it belongs to and two inventories in
one folder never share a CA. ``--state DIR`` overrides it. Nothing here is ever regenerated.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from installer import secrets
from installer.secrets import ClusterSecrets
from installer.topology import Topology


@dataclass(frozen=True)
class StateDir:
    root: Path

    @classmethod
    def for_inventory(cls, inventory: str | Path, override: str | Path | None = None) -> StateDir:
        if override is not None:
            return cls(Path(override))
        inv = Path(inventory)
        return cls(inv.parent / f"{inv.stem}.kha")

    @property
    def pki(self) -> Path:
        return self.root / "pki"

    @property
    def secrets_file(self) -> Path:
        return self.root / "secrets.json"

    def secrets(self, topo: Topology, *, write: bool = True) -> ClusterSecrets:
        return secrets.load_or_create(self.secrets_file, write=write).with_settings(topo.settings)
