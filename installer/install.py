"""``kha install``: the phase tree that turns reachable machines into the inventory's cluster.

Phases are data (``installer.phases.Phase``); each component owns its subtree (``installer.etcd``,
``installer.loadbalancer``, …) and this module only orders them and gives them one context: the
topology, the state folder (PKI store, secrets), a transport per node and the facts read from it.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from installer import topology
from installer.connect import Connector
from installer.errors import ConfigError, PKIError
from installer.facts import NodeFacts
from installer.kubernetes import source
from installer.kubernetes.bundle import Bundle
from installer.nodeops import gather_facts
from installer.phases import Context, Phase, Runner, RunResult
from installer.pki.store import Store
from installer.remote import Transport
from installer.secrets import ClusterSecrets
from installer.state import StateDir
from installer.topology import Host, Role, Topology

log = logging.getLogger(__name__)


@dataclass(kw_only=True)
class InstallContext(Context):
    topo: Topology
    inventory: Path
    state: StateDir
    connector: Connector
    secrets: ClusterSecrets
    #: the offline Kubernetes bundle (binaries, images) when installing from one.
    bundle: Bundle | None = None
    facts: dict[str, NodeFacts] = field(default_factory=dict)
    #: a dry run's scratch copy of the PKI store, brought up to date there (the real one stays as it is).
    scratch_pki: Path | None = None

    @property
    def pki(self) -> Path:
        """The PKI store the phases read: the state folder's, or a dry run's scratch copy."""
        return self.scratch_pki or self.state.pki

    def transport(self, host: Host) -> Transport:
        return self.connector(host)

    def node_facts(self, host: Host) -> NodeFacts:
        if host.name not in self.facts:
            with self.node(host.name):
                self.facts[host.name] = gather_facts(self.transport(host), str(host.address))
        return self.facts[host.name]

    def pki_tree(self, host: Host) -> Path:
        """What the PKI store prepared for this node (mirrors its /etc/kubernetes)."""
        tree = self.pki / "nodes" / host.name
        if not tree.is_dir():
            raise PKIError(f"{tree} does not exist: run `kha pki init` for this inventory first "
                           "(kha install runs it as its pki phase)")
        return tree


def _pki(ctx: InstallContext) -> None:
    if ctx.dry_run:
        # The phases after this one read certificates from the store: a dry run brings a scratch copy
        # up to date, says what that changed, and lets them read it (so their "would" lines are exact).
        ctx.scratch_pki = Path(tempfile.mkdtemp(prefix="kha-dry-run-")) / "pki"
        if ctx.state.pki.is_dir():
            shutil.copytree(ctx.state.pki, ctx.scratch_pki)
        changes = Store(ctx.scratch_pki, ctx.topo).init(ctx.inventory.read_bytes())
        if len(changes) <= 10:
            for change in changes:
                ctx.would(f"PKI store {ctx.state.pki}: {change}")
        elif changes:  # a new store: one line, not ninety
            counts = Counter(c.action for c in changes)
            ctx.would(f"PKI store {ctx.state.pki}: " + ", ".join(f"{a} {n} files" for a, n in sorted(counts.items())))
        return
    for change in Store(ctx.state.pki, ctx.topo).init(ctx.inventory.read_bytes()):
        log.info("pki: %s", change)


def _connect(ctx: InstallContext) -> None:
    for host in ctx.topo.hosts:
        if not ctx.topo.roles(host.name):
            continue
        # Dry-run reads facts too: that changes nothing and makes the "would" lines exact.
        ctx.node_facts(host)


def phases() -> list[Phase[InstallContext]]:
    # Imported here: the component modules import this one for InstallContext.
    from installer.etcd.phases import PHASE as ETCD  # noqa: PLC0415
    from installer.kubernetes.phases import PHASE as KUBERNETES  # noqa: PLC0415
    from installer.loadbalancer.phases import PHASE as LB  # noqa: PLC0415

    return [
        Phase("pki", _pki, description="build or update the PKI store (local, no node touched)"),
        Phase("connect", _connect, description="log in to every node and read its facts"),
        ETCD,
        LB,
        KUBERNETES,
    ]


def run(
    inventory: str | Path,
    *,
    state: str | Path | None = None,
    known_hosts: str | Path | None = None,
    ssh_config: str | Path | None = None,
    trust_unknown: bool = False,
    only: list[str] | None = None,
    skip: list[str] | None = None,
    bundle: str | Path | None = None,
    dry_run: bool = False,
    out: TextIO | None = None,
) -> RunResult:
    """Install (or bring up to date) the inventory's cluster; the result lists each phase and its seconds.

    Everything checkable without a node is checked first (inventory, --only/--skip, the bundle's files,
    what the chosen Kubernetes source allows): bad input fails before any side effect.
    """
    topo = topology.load(inventory)
    sd = StateDir.for_inventory(inventory, state)
    kh = Path(known_hosts) if known_hosts else sd.root / "known_hosts"
    connector = Connector(kh, Path(ssh_config) if ssh_config else None, trust_unknown=trust_unknown)
    # The runner checks --only/--skip first: a typo must not leave anything behind.
    runner = Runner(phases(), only=only or (), skip=skip or (), dry_run=dry_run, out=out or sys.stdout)
    loaded = Bundle.load(bundle) if bundle else None
    if topo.groups[Role.MASTER] and any(p.startswith("kubernetes/") for p in runner.plan()):
        refused = [p for p in source.problems(topo, loaded) if not p.warning]
        if refused:
            raise ConfigError(refused)
    ctx = InstallContext(topo=topo, inventory=Path(inventory), state=sd, connector=connector,
                         secrets=sd.secrets(topo, write=not dry_run), dry_run=dry_run, bundle=loaded)
    try:
        return runner.run(ctx)
    finally:
        connector.close()
        if ctx.scratch_pki is not None:
            shutil.rmtree(ctx.scratch_pki.parent, ignore_errors=True)


def _cmd_install(args: argparse.Namespace) -> int:
    run(args.inventory, state=args.state, known_hosts=args.known_hosts, ssh_config=args.ssh_config,
        trust_unknown=args.trust_unknown_hosts, only=args.only, skip=args.skip, bundle=args.bundle,
        dry_run=args.dry_run)
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("install", help="install the inventory's cluster over SSH (phases: --only/--skip/--dry-run)")
    p.add_argument("-i", "--inventory", required=True)
    p.add_argument("--state", help="cluster state folder: PKI store, secrets (default: beside the inventory)")
    p.add_argument("--known-hosts", help="known_hosts pinning the nodes' host keys (default: STATE/known_hosts)")
    p.add_argument("--ssh-config", help="an OpenSSH config with Host blocks for the nodes (keys, proxies)")
    p.add_argument("--trust-unknown-hosts", action="store_true",
                   help="accept and record host keys not yet in known_hosts (never a changed key)")
    p.add_argument("--only", action="append", help="run only these phase paths (comma-separated, repeatable)")
    p.add_argument("--skip", action="append", help="skip these phase paths (comma-separated, repeatable)")
    p.add_argument("--bundle", help="offline Kubernetes bundle folder (kha bundle build); its manifest is checked")
    p.add_argument("--dry-run", action="store_true", help="say what each phase would change; change nothing")
    p.set_defaults(handler=_cmd_install)
