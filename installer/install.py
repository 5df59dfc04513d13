"""``kha install``: the phase tree that turns reachable machines into the inventory's cluster.

Phases are data (``installer.phases.Phase``); each component owns its subtree (``installer.etcd``,
``installer.loadbalancer``, …) and this module only orders them and gives them one context
(``installer.context``: the topology, the state folder, a transport per node, the facts read from it).
"""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
import tempfile
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from installer import topology, varsfile
from installer.context import InstallContext, add_arguments, open_context
from installer.errors import ConfigError
from installer.etcd.phases import PHASE as ETCD
from installer.kubernetes import source
from installer.kubernetes.bundle import Bundle
from installer.kubernetes.phases import PHASE as KUBERNETES
from installer.loadbalancer.phases import PHASE as LB
from installer.nodeprep.phases import PHASE as PREPARE
from installer.phases import Phase, Runner, RunResult
from installer.pki.store import Store
from installer.topology import Role

log = logging.getLogger(__name__)


def _pki(ctx: InstallContext) -> None:
    if ctx.dry_run:
        # The phases after this one read certificates from the store: a dry run brings a scratch copy
        # up to date, says what that changed, and lets them read it (so their "would" lines are exact).
        ctx.scratch_pki = Path(tempfile.mkdtemp(prefix="kha-dry-run-")) / "pki"
        if ctx.state.pki.is_dir():
            shutil.copytree(ctx.state.pki, ctx.scratch_pki)
        changes = Store(ctx.scratch_pki, ctx.topo, replace_ca=ctx.replace_ca).init(ctx.inventory.read_bytes())
        if len(changes) <= 10:
            for change in changes:
                ctx.would(f"PKI store {ctx.state.pki}: {change}")
        elif changes:  # a new store: one line, not ninety
            counts = Counter(c.action for c in changes)
            ctx.would(f"PKI store {ctx.state.pki}: " + ", ".join(f"{a} {n} files" for a, n in sorted(counts.items())))
        return
    for change in Store(ctx.state.pki, ctx.topo, replace_ca=ctx.replace_ca).init(ctx.inventory.read_bytes()):
        log.info("pki: %s", change)


def _connect(ctx: InstallContext) -> None:
    for host in ctx.topo.hosts:
        if not ctx.topo.roles(host.name):
            continue
        # Dry-run reads facts too: that changes nothing and makes the "would" lines exact.
        ctx.node_facts(host)
        ctx.ensure_same_ca(host)  # a node of another store's cluster stops the run before anything is written


#: ``kha pki rollout``: the phases that carry the PKI store onto running nodes. The store is brought up to
#: date (an expired leaf is re-issued; ``kha pki renew`` re-issues the rest), etcd's certificates are copied
#: and its members restarted one at a time (each back in a healthy cluster before the next), then
#: /etc/kubernetes on every node, and the control planes whose files changed restart their static pods,
#: one node at a time. ``kha install`` runs the same phases among the others.
ROLLOUT = ("pki", "connect", "etcd/certs", "etcd/start", "etcd/wait", "kubernetes/pki",
           "kubernetes/control-plane-files", "kubernetes/restart")


def phases() -> list[Phase[InstallContext]]:
    return [
        Phase("pki", _pki, description="build or update the PKI store (local, no node touched)"),
        Phase("connect", _connect, description="log in to every node and read its facts"),
        PREPARE,
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
    replace_ca: bool = False,
    out: TextIO | None = None,
    extra_vars: Sequence[str | Path] = (),
) -> RunResult:
    """Install (or bring up to date) the inventory's cluster; the result lists each phase and its seconds.

    Everything checkable without a node is checked first (inventory, --only/--skip, the bundle's files,
    what the chosen Kubernetes source allows): bad input fails before any side effect.
    """
    topo = topology.load(inventory, extra_vars)
    # The runner checks --only/--skip first: a typo must not leave anything behind.
    runner = Runner(phases(), only=only or (), skip=skip or (), dry_run=dry_run, out=out or sys.stdout)
    loaded = Bundle.load(bundle) if bundle else None
    # The rollout's kubernetes phases copy files and restart static pods: they need no Kubernetes source.
    if topo.groups[Role.MASTER] and any(p.startswith("kubernetes/") and p not in ROLLOUT for p in runner.plan()):
        refused = [p for p in source.problems(topo, loaded) if not p.warning]
        if refused:
            raise ConfigError(refused)
    ctx = open_context(InstallContext, inventory, topo=topo, state=state, known_hosts=known_hosts,
                       ssh_config=ssh_config, trust_unknown=trust_unknown, dry_run=dry_run, bundle=loaded,
                       replace_ca=replace_ca)
    try:
        return runner.run(ctx)
    finally:
        ctx.close()


def _cmd_install(args: argparse.Namespace) -> int:
    run(args.inventory, state=args.state, known_hosts=args.known_hosts, ssh_config=args.ssh_config,
        trust_unknown=args.trust_unknown_hosts, only=args.only, skip=args.skip, bundle=args.bundle,
        dry_run=args.dry_run, replace_ca=args.replace_ca, extra_vars=varsfile.files_from_args(args))
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("install", help="install the inventory's cluster over SSH (phases: --only/--skip/--dry-run)")
    add_arguments(p)
    p.add_argument("--only", action="append", help="run only these phase paths (comma-separated, repeatable)")
    p.add_argument("--skip", action="append", help="skip these phase paths (comma-separated, repeatable)")
    p.add_argument("--bundle", help="offline Kubernetes bundle folder (kha bundle build); its manifest is checked")
    p.add_argument("--replace-ca", action="store_true",
                   help="make a new CA where the state folder shows one existed, and push it over nodes that trust "
                        "another (moves the cluster onto a new CA; without it kha refuses both)")
    varsfile.add_arguments(p)
    p.set_defaults(handler=_cmd_install)
