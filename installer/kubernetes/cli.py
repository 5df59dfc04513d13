"""``kha node remove``: the command-line face of node membership (``installer.kubernetes.membership``).

Errors are raised and printed once by ``kha.cli``: bad input (a control plane listed, nothing listed) exits
2 before anything connects; a refusal (a PodDisruptionBudget) or a failed phase exits 1.
"""

from __future__ import annotations

import argparse

from installer.context import add_arguments
from installer.kubernetes import membership

__all__ = ["register"]


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``node`` and its actions to the ``kha`` command."""
    node = subparsers.add_parser("node", help="day-2 operations on Kubernetes nodes (adding one: [new-worker] or "
                                              "[new-master] and kha install)")
    sub = node.add_subparsers(dest="node_command", metavar="ACTION", required=True)
    p = sub.add_parser("remove", help="drain, delete and reset the [del-worker] / [del-master] / [del-node] nodes, "
                                      "one at a time (control planes leave the load balancers first)")
    add_arguments(p)
    p.add_argument("--force", action="store_true",
                   help="drain even when a PodDisruptionBudget forbids it: its pods are deleted, not evicted")
    p.set_defaults(handler=_remove)


def _remove(args: argparse.Namespace) -> int:
    membership.remove(args.inventory, state=args.state, known_hosts=args.known_hosts, ssh_config=args.ssh_config,
                      trust_unknown=args.trust_unknown_hosts, force=args.force, dry_run=args.dry_run)
    return 0
