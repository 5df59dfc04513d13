"""``kha pki init|check|renew``: the command-line face of the PKI store.

Owns argument parsing and what a person sees: one line per change, the check table (shaped like
``kubeadm certs check-expiration``) and a ✓/✗ summary with the seconds taken. Errors are raised
(``ConfigError`` for bad input, ``PKIError`` for unusable files) and printed once by ``kha.cli``.
Exit codes: 0 all good, 1 something failed validation or expires within ``--warn-days``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from core import progress
from installer import topology
from installer.errors import ConfigError, Problem
from installer.pki.store import Change, CheckReport, CheckRow, Store

__all__ = ["format_check", "register"]

EXIT_OK, EXIT_FAILED = 0, 1


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``pki`` and its actions to the ``kha`` command."""
    pki = subparsers.add_parser("pki", help="build, check and renew a kubeadm-compatible PKI store")
    sub = pki.add_subparsers(dest="pki_command", metavar="ACTION", required=True)

    init = sub.add_parser("init", help="create or complete the store for an inventory (idempotent)")
    init.add_argument("-i", "--inventory", required=True, help="inventory file (kubeadm-ha INI format)")
    init.add_argument("--dir", required=True, type=Path, help="store directory")
    init.add_argument("--replace-ca", action="store_true",
                      help="make a new CA where one is missing (or keep a swapped one) although the store shows "
                           "another existed; every certificate it signed is re-issued and every node must get it")
    init.set_defaults(handler=_init)

    check = sub.add_parser("check", help="show every certificate; exit 1 on a problem or a near expiry")
    check.add_argument("--dir", required=True, type=Path, help="store directory")
    check.add_argument("-i", "--inventory", help="inventory (default: the copy init kept in the store)")
    check.add_argument("--warn-days", type=_days, default=30, metavar="N",
                       help="fail when a certificate expires within N days (default 30)")
    check.set_defaults(handler=_check)

    renew = sub.add_parser("renew", help="re-issue leaf certificates from the same CAs (all by default)")
    renew.add_argument("--dir", required=True, type=Path, help="store directory")
    renew.add_argument("-i", "--inventory", help="inventory (default: the copy init kept in the store)")
    renew.add_argument("names", nargs="*", metavar="NAME",
                       help="e.g. apiserver (on every node), nodes/node1/apiserver, etcd/server, admin.conf")
    renew.set_defaults(handler=_renew)


def _days(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of days") from None
    if n < 0:
        raise argparse.ArgumentTypeError("must be 0 or more")
    return n


def _print_changes(changes: list[Change]) -> None:
    for c in changes:
        print(f"  {c}")


def _init(args: argparse.Namespace) -> int:
    started = time.monotonic()
    inv = Path(args.inventory)
    if not inv.is_file():
        raise ConfigError([Problem(str(inv), None, "no such inventory file")])
    topo = topology.load(inv)
    for w in topo.warnings:
        print(w, file=sys.stderr)
    changes = Store(args.dir, topo, replace_ca=args.replace_ca).init(inv.read_bytes())
    _print_changes(changes)
    reissued = sum(1 for c in changes if c.action == "reissued")
    what = f"{len(changes)} changes, {reissued} re-issued" if changes else "no changes"
    print(progress.line(True, f"pki init {args.dir}", time.monotonic() - started, what))
    return EXIT_OK


def _renew(args: argparse.Namespace) -> int:
    started = time.monotonic()
    changes = Store.open(args.dir, args.inventory).renew(args.names)
    _print_changes(changes)
    renewed = [c for c in changes if c.action == "reissued" and not c.path.endswith(".key")]
    print(progress.line(True, f"pki renew {args.dir}", time.monotonic() - started,
                        f"{len(renewed)} certificates re-issued"))
    return EXIT_OK


def _check(args: argparse.Namespace) -> int:
    started = time.monotonic()
    report = Store.open(args.dir, args.inventory).check(args.warn_days)
    for line in format_check(report):
        print(line)
    bad = sum(1 for r in report.rows if not r.ok) + len(report.problems)
    secs = time.monotonic() - started
    if bad:
        print(progress.line(False, f"pki check {args.dir}", secs, f"{bad} problems"))
        return EXIT_FAILED
    print(progress.line(True, f"pki check {args.dir}", secs,
                        f"{len(report.rows)} certificates ok, none expires within {report.warn_days} days"))
    return EXIT_OK


def _yes(v: bool | None) -> str:
    return "-" if v is None else ("ok" if v else "FAIL")


def format_check(report: CheckReport) -> list[str]:
    """The table, then one line per problem."""
    header = ("CERTIFICATE", "NODE", "CN", "EXPIRES", "RESIDUAL", "CA", "SAN", "CHAIN", "STATUS")

    def cells(r: CheckRow) -> tuple[str, ...]:
        expires = r.not_after.strftime("%b %d, %Y %H:%M UTC") if r.not_after else "-"
        left = f"{r.days_left}d" if r.days_left is not None else "-"
        return (r.name, r.node, r.cn, expires, left, r.ca, _yes(r.san_ok), _yes(r.chain_ok), "ok" if r.ok else "FAIL")

    table = [header, *(cells(r) for r in report.rows)]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    out = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in table]
    for r in report.rows:
        out += [f"✗ {r.path}: {p}" for p in r.problems]
    out += [f"✗ {p}" for p in report.problems]
    return out
