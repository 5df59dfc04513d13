"""``kha etcd status|add|remove|replace|snapshot``: the command-line face of the day-2 etcd operations.

Owns argument parsing and what a person sees (the status table, one ✓/✗ line per phase, a summary
line with the seconds taken); the operations themselves are ``membership`` (add, remove, replace),
``snapshot`` (save, restore) and ``status``, on an ``EtcdContext``. Errors are raised and printed once by
``kha.cli``. Exit codes: 0 done (``status``: every member healthy), 1 not.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path

from core import progress
from installer.context import add_arguments
from installer.etcd import membership, snapshot, status
from installer.etcd.context import EtcdContext
from installer.topology import Role

__all__ = ["register"]

EXIT_OK, EXIT_FAILED = 0, 1


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``etcd`` and its actions to the ``kha`` command."""
    etcd = subparsers.add_parser("etcd", help="day-2 operations on the external etcd cluster")
    sub = etcd.add_subparsers(dest="etcd_command", metavar="ACTION", required=True)

    p = sub.add_parser("status", help="members, leader, raft term, revision, db size and health (exit 1 if unhealthy)")
    add_arguments(p, dry_run=False)
    p.set_defaults(handler=_status)

    p = sub.add_parser("add", help="add the [new-etcd] members (learner, then promoted)")
    add_arguments(p)
    p.set_defaults(handler=_add)

    p = sub.add_parser("remove", help="remove the [del-etcd] members (refused if quorum would break)")
    add_arguments(p)
    p.add_argument("--force", action="store_true", help="remove even when the remaining members lose quorum")
    p.set_defaults(handler=_remove)

    p = sub.add_parser("replace", help="replace a dead member: remove it by ID, wipe, re-add it empty")
    add_arguments(p)
    p.add_argument("node", metavar="NODE", help="the [etcd] node to replace (may be unreachable, may be the first)")
    p.set_defaults(handler=_replace)

    snap = sub.add_parser("snapshot", help="save a snapshot here, or restore every member from one")
    snap_sub = snap.add_subparsers(dest="snapshot_command", metavar="ACTION", required=True)
    p = snap_sub.add_parser("save", help="snapshot one healthy member into FILE on this machine (with FILE.sha256 "
                                          "and FILE.json, which restore checks)")
    add_arguments(p, dry_run=False)
    p.add_argument("file", metavar="FILE", type=Path)
    p.set_defaults(handler=_save)
    p = snap_sub.add_parser(
        "restore", help="stop every member and restore them all from FILE (fresh cluster token)",
        description="Check FILE (its FILE.sha256 and FILE.json when present, then a trial restore on one node: a "
                    "corrupt snapshot or one of another cluster is refused with nothing stopped), stop etcd on "
                    "every [etcd] member, restore FILE into each with a fresh cluster token (the old data is kept "
                    "beside the data dir as *.kha-before-restore), start them all, then restart every control "
                    "plane's static pods one node at a time and every kubelet. The revision is bumped "
                    "(--bump-revision/--mark-compacted) where the node's etcdutl supports it (3.5.10+); etcd 3.4 "
                    "cannot, so its revision goes back to the snapshot's.")
    add_arguments(p)
    p.add_argument("file", metavar="FILE", type=Path)
    p.set_defaults(handler=_restore)


def _context(args: argparse.Namespace) -> EtcdContext:
    return EtcdContext.open(args.inventory, state=args.state, known_hosts=args.known_hosts,
                            ssh_config=args.ssh_config, trust_unknown=args.trust_unknown_hosts,
                            dry_run=getattr(args, "dry_run", False))


def _status(args: argparse.Namespace) -> int:
    started = time.monotonic()
    ctx = _context(args)
    try:
        rows = status.read(ctx)
    finally:
        ctx.close()
    for line in status.format_status(rows):
        print(line)
    secs = time.monotonic() - started
    bad = [r for r in rows if not r.healthy]
    leaders = [r.name for r in rows if r.leader]
    lead = leaders[0] if len(leaders) == 1 else ("none" if not leaders else "several: " + ", ".join(leaders))
    if bad:
        print(progress.line(False, "etcd", secs, f"{len(bad)} of {len(rows)} members not healthy, leader {lead}"))
        return EXIT_FAILED
    print(progress.line(True, "etcd", secs, f"{len(rows)} members healthy, leader {lead}"))
    return EXIT_OK


def _done(what: str, started: float, dry_run: bool) -> int:
    print(progress.line(True, what, time.monotonic() - started, "(dry run)" if dry_run else ""))
    return EXIT_OK


def _change(args: argparse.Namespace, run: Callable[[EtcdContext], None], verb: str, group: Role,
            next_step: str) -> int:
    """``add``/``remove``: run on the nodes of ``group``, then say how to bring the inventory up to date."""
    started = time.monotonic()
    ctx = _context(args)
    ctx.force = getattr(args, "force", False)
    names = ", ".join(h.name for h in ctx.topo.group(group))
    run(ctx)
    _done(f"etcd {verb} {names}", started, ctx.dry_run)
    if not ctx.dry_run:
        print(f"  next: {next_step.format(names=names)} in {args.inventory}")
    return EXIT_OK


def _add(args: argparse.Namespace) -> int:
    return _change(args, membership.run_add, "add", Role.NEW_ETCD, "move {names} from [new-etcd] to [etcd]")


def _remove(args: argparse.Namespace) -> int:
    return _change(args, membership.run_remove, "remove", Role.DEL_ETCD, "drop {names} from [etcd] and [del-etcd]")


def _replace(args: argparse.Namespace) -> int:
    started = time.monotonic()
    ctx = _context(args)
    membership.run_replace(ctx, args.node)
    return _done(f"etcd replace {args.node}", started, ctx.dry_run)


def _save(args: argparse.Namespace) -> int:
    started = time.monotonic()
    ctx = _context(args)
    try:
        info = snapshot.save(ctx, args.file)
    finally:
        ctx.close()
    return _done(f"etcd snapshot of {info.member} at revision {info.revision} ({info.keys} keys, "
                 f"{info.size} bytes) saved to {info.path}", started, False)


def _restore(args: argparse.Namespace) -> int:
    started = time.monotonic()
    ctx = _context(args)
    token = snapshot.run_restore(ctx, args.file)
    _done(f"etcd restored from {args.file}, cluster token {token}", started, ctx.dry_run)
    return EXIT_OK
