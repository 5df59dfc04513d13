"""The node-driver interface: what differs between an LXC system container and a qemu VM.

The provider (``harness.provider``) owns everything the drivers share — network, keys, domain
lifecycle, SSH readiness, state — and asks a ``NodeDriver`` only for what is runtime specific: how a
node's root is prepared, its domain XML, how it is powered off, how its link is cut, and how a
snapshot is saved and restored. Teardown is the provider's alone: it finds what to remove by kha mark.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import libvirt

from harness.daemon import AnyLibvirt
from harness.keys import KeyPair
from harness.spec import Driver, NodeSpec
from harness.state import ClusterState


@dataclass
class Context:
    """What a driver may use: the cluster's state, the libvirt it runs on, an open connection."""

    state: ClusterState
    daemon: AnyLibvirt
    conn: libvirt.virConnect

    def node_dir(self, node: str) -> Path:
        return Path(self.state.nodes[node].dir)

    def domain(self, node: str) -> libvirt.virDomain:
        return self.conn.lookupByName(self.state.nodes[node].domain)


class NodeDriver(Protocol):
    kind: Driver

    def prepare(self, ctx: Context, node: NodeSpec, host_key: KeyPair, root_key: KeyPair) -> None:
        """Create the node's root (overlay or disk) with its first-boot files, before its domain starts."""
        ...

    def domain_xml(self, ctx: Context, node: NodeSpec) -> str: ...

    def power_off(self, ctx: Context, node: str) -> None:
        """Hard power-off: no shutdown inside, like pulling the plug."""
        ...

    def set_link(self, ctx: Context, node: str, up: bool) -> None: ...

    def snapshot(self, ctx: Context, name: str) -> None:
        """Save every node under ``name`` (nodes keep running afterwards)."""
        ...

    def revert(self, ctx: Context, name: str) -> None:
        """Bring every node back to ``name``; returns with the domains running (SSH not waited for)."""
        ...

    def delete_snapshot(self, ctx: Context, name: str) -> None: ...
