"""The install context: what every install and day-2 phase receives, and how one is set up.

``InstallContext`` carries the topology, the state folder (PKI store, secrets), a transport per node,
the facts read from each node, and the typed things one phase hands to a later one (which etcd
members and which LB nodes changed). ``open_context`` is the one set-up of all that from an inventory
and the SSH options (``kha install``, ``kha etcd …`` and the tests use it); close it with ``close()``.

The component phase trees (``installer.etcd.phases`` …) import this module; ``installer.install``
imports them. Nothing here imports a phase tree, so there is no import circle.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TextIO, TypeVar

from installer import topology
from installer.connect import Connector
from installer.errors import PKIError
from installer.facts import NodeFacts
from installer.kubernetes.bundle import Bundle
from installer.nodeops import gather_facts
from installer.phases import Context, Phase, Runner
from installer.pki import trust
from installer.remote import Transport
from installer.secrets import ClusterSecrets
from installer.state import StateDir
from installer.topology import Host


@dataclass(kw_only=True)
class InstallContext(Context):
    topo: topology.Topology
    inventory: Path
    state: StateDir
    connector: Connector
    secrets: ClusterSecrets
    #: the offline Kubernetes bundle (binaries, images) when installing from one.
    bundle: Bundle | None = None
    facts: dict[str, NodeFacts] = field(default_factory=dict)
    #: a dry run's scratch copy of the PKI store, brought up to date there (the real one stays as it is).
    scratch_pki: Path | None = None
    #: etcd members whose unit or config the etcd phases changed (node name → restart needed).
    etcd_changed: dict[str, bool] = field(default_factory=dict)
    #: LB nodes whose configs the loadbalancer phases changed (node name → daemons to restart).
    lb_changed: dict[str, list[str]] = field(default_factory=dict)
    #: control planes whose static pods read files the kubernetes phases changed (node name → pod names).
    static_pods_changed: dict[str, set[str]] = field(default_factory=dict)
    #: ``--replace-ca``: push the store's CAs over nodes that trust other ones (on purpose, never by default).
    replace_ca: bool = False
    #: nodes whose CAs were found to be the store's (or new) in this run: ``ensure_same_ca`` reads each once.
    same_ca: set[str] = field(default_factory=set)

    @property
    def pki(self) -> Path:
        """The PKI store the phases read: the state folder's, or a dry run's scratch copy."""
        return self.scratch_pki or self.state.pki

    def transport(self, host: Host) -> Transport:
        return self.connector(host)

    def node_facts(self, host: Host) -> NodeFacts:
        if host.name not in self.facts:
            with self.node(host.name):
                facts = gather_facts(self.transport(host), str(host.address))
            # lb_keepalived_interface, when set, is the interface: what ``kha render`` shows is what lands.
            iface = self.topo.settings.lb_keepalived_interface
            self.facts[host.name] = replace(facts, interface=iface) if iface else facts
        return self.facts[host.name]

    def pki_tree(self, host: Host) -> Path:
        """What the PKI store prepared for this node (mirrors its /etc/kubernetes)."""
        tree = self.pki / "nodes" / host.name
        if not tree.is_dir():
            raise PKIError(f"{tree} does not exist: run `kha pki init` for this inventory first "
                           "(kha install runs it as its pki phase)")
        return tree

    def ensure_same_ca(self, host: Host) -> None:
        """Refuse to go on with ``host`` when it trusts another CA than the store (``installer.pki.trust``).

        Every phase that writes a CA-signed file or starts etcd on a node calls this first.
        """
        if host.name in self.same_ca:
            return
        with self.node(host.name):
            trust.check_node(self.transport(host), self.pki, replace_ca=self.replace_ca)
        self.same_ca.add(host.name)

    def close(self) -> None:
        """Log out of every node and drop a dry run's scratch store."""
        self.connector.close()
        if self.scratch_pki is not None:
            shutil.rmtree(self.scratch_pki.parent, ignore_errors=True)
            self.scratch_pki = None


C = TypeVar("C", bound=InstallContext)


def open_context(
    kind: type[C],
    inventory: str | Path,
    *,
    state: str | Path | None = None,
    known_hosts: str | Path | None = None,
    ssh_config: str | Path | None = None,
    trust_unknown: bool = False,
    connect_timeout: float | None = None,
    dry_run: bool = False,
    write_secrets: bool | None = None,
    topo: topology.Topology | None = None,
    **fields: Any,
) -> C:
    """A ``kind`` context for ``inventory``: topology, state folder, secrets, a connector to the nodes.

    ``known_hosts`` defaults to the state folder's. Secrets are created when missing only where
    ``write_secrets`` says so (default: not in a dry run); day-2 commands that never need them pass
    False, so no secrets file appears as a side effect. ``fields`` fill ``kind``'s own fields.
    """
    topo = topo or topology.load(inventory)
    topology.check_credentials(topo)  # a missing key file is bad input, found before the state folder is touched
    sd = StateDir.for_inventory(inventory, state)
    kh = Path(known_hosts) if known_hosts else sd.root / "known_hosts"
    connector = Connector(kh, Path(ssh_config) if ssh_config else None, trust_unknown=trust_unknown)
    if connect_timeout is not None:
        connector.connect_timeout = connect_timeout
    write = not dry_run if write_secrets is None else write_secrets
    return kind(topo=topo, inventory=Path(inventory), state=sd, connector=connector,
                secrets=sd.secrets(topo, write=write), dry_run=dry_run, **fields)


def add_arguments(p: argparse.ArgumentParser, *, dry_run: bool = True) -> None:
    """The options of every command that works on a cluster's nodes: the inventory, the state folder, how to
    reach the nodes (``open_context``'s arguments), and ``--dry-run``."""
    p.add_argument("-i", "--inventory", required=True, help="inventory file (kubeadm-ha INI format)")
    p.add_argument("--state", help="cluster state folder: PKI store, secrets (default: beside the inventory)")
    p.add_argument("--known-hosts", help="known_hosts pinning the nodes' host keys (default: STATE/known_hosts)")
    p.add_argument("--ssh-config", help="an OpenSSH config with Host blocks for the nodes (keys, proxies)")
    p.add_argument("--trust-unknown-hosts", action="store_true",
                   help="accept and record host keys not yet in known_hosts (never a changed key)")
    if dry_run:
        p.add_argument("--dry-run", action="store_true", help="say what would change; change nothing")


def walk(phase: Phase[C], ctx: C, out: TextIO | None = None) -> None:
    """Walk one day-2 phase tree on ``ctx`` with the phase runner (dry-run as the context says: ``--dry-run``
    prints what would change), then log out of every node."""
    runner: Runner[C] = Runner([phase], dry_run=ctx.dry_run, out=out or sys.stdout)
    try:
        runner.run(ctx)
    finally:
        ctx.close()
