"""``kha pki init|check|renew``: the command-line face of the PKI store.

Owns argument parsing and what a person sees: one line per change, the check table (shaped like
``kubeadm certs check-expiration``) and a ✓/✗ summary with the seconds taken. Errors are raised
(``ConfigError`` for bad input, ``PKIError`` for unusable files) and printed once by ``kha.cli``.
Exit codes: 0 all good, 1 something failed validation or expires within ``--warn-days``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import time
from pathlib import Path

from core import progress
from core.errors import InputError
from installer import install, topology, varsfile
from installer.checks import run as checks
from installer.checks.target import Options
from installer.context import add_arguments
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
    check.add_argument("--dir", type=Path, help="store directory (with --nodes: default STATE/pki)")
    check.add_argument("-i", "--inventory", help="inventory (default: the copy init kept in the store)")
    check.add_argument("--warn-days", type=_days, default=30, metavar="N",
                       help="fail when a certificate expires within N days (default 30)")
    check.add_argument("--nodes", action="store_true",
                       help="also compare what each node serves (6443, 2379, 2380) and holds with the store "
                            "(the pki checks of `kha check`; needs -i)")
    check.add_argument("--state", help="with --nodes: cluster state folder (default: beside the inventory)")
    check.add_argument("--known-hosts", help="with --nodes: known_hosts (default: STATE/known_hosts)")
    check.add_argument("--ssh-config", help="with --nodes: an OpenSSH config with Host blocks for the nodes")
    check.set_defaults(handler=_check)

    renew = sub.add_parser("renew", help="re-issue leaf certificates from the same CAs (all by default)")
    renew.add_argument("--dir", required=True, type=Path, help="store directory")
    renew.add_argument("-i", "--inventory", help="inventory (default: the copy init kept in the store)")
    renew.add_argument("names", nargs="*", metavar="NAME",
                       help="e.g. apiserver (on every node), nodes/node1/apiserver, etcd/server, admin.conf")
    renew.add_argument("--valid-for", type=_duration, metavar="DURATION",
                       help="issue the renewed certificates valid this long (30s, 10m, 2h, 7d) instead of the "
                            "configured lifetime: to test a renewal end to end without moving a clock")
    renew.set_defaults(handler=_renew)

    rollout = sub.add_parser("rollout", help="carry the store's certificates onto the running nodes: etcd members "
                                             "restarted one at a time, then each control plane's static pods")
    add_arguments(rollout)
    varsfile.add_arguments(rollout)
    rollout.set_defaults(handler=_rollout)


def _days(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of days") from None
    if n < 0:
        raise argparse.ArgumentTypeError("must be 0 or more")
    return n


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def _duration(text: str) -> dt.timedelta:
    """``30s``, ``10m``, ``2h``, ``7d``: a positive whole number and one unit."""
    number, unit = text[:-1], text[-1:]
    if unit not in _UNITS or not number.isdigit() or int(number) == 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration such as 30s, 10m, 2h or 7d")
    return dt.timedelta(seconds=int(number) * _UNITS[unit])


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
    changes = Store.open(args.dir, args.inventory).renew(args.names, valid_for=args.valid_for)
    _print_changes(changes)
    renewed = [c for c in changes if c.action == "reissued" and not c.path.endswith(".key")]
    print(progress.line(True, f"pki renew {args.dir}", time.monotonic() - started,
                        f"{len(renewed)} certificates re-issued"))
    return EXIT_OK


def _rollout(args: argparse.Namespace) -> int:
    install.run(args.inventory, state=args.state, known_hosts=args.known_hosts, ssh_config=args.ssh_config,
                trust_unknown=args.trust_unknown_hosts, only=list(install.ROLLOUT), dry_run=args.dry_run,
                extra_vars=varsfile.files_from_args(args))
    return EXIT_OK


def _node_options(args: argparse.Namespace) -> Options | None:
    """What ``--nodes`` checks, validated before anything connects (None without ``--nodes``)."""
    if not args.nodes:
        for flag in ("state", "known_hosts", "ssh_config"):
            if getattr(args, flag):
                raise InputError(f"--{flag.replace('_', '-')} is for --nodes")
        if args.dir is None:
            raise InputError("kha pki check needs --dir DIR (the store), or --nodes -i INVENTORY (the store in the "
                             "cluster's state folder, and what the nodes serve)")
        return None
    if not args.inventory:
        raise InputError("--nodes needs -i INVENTORY: the inventory the cluster was installed from")
    options = Options(inventory=Path(args.inventory), state=Path(args.state) if args.state else None,
                             known_hosts=Path(args.known_hosts) if args.known_hosts else None,
                             ssh_config=Path(args.ssh_config) if args.ssh_config else None,
                             warn_days=args.warn_days, only=("pki",))
    if args.dir is not None and args.dir.resolve() != options.state_dir.pki.resolve():
        raise InputError(f"--dir {args.dir}: --nodes compares the nodes with the store in the state folder "
                         f"({options.state_dir.pki}); name that folder with --state instead")
    checks.validate(options)
    return options


def _check(args: argparse.Namespace) -> int:
    started = time.monotonic()
    nodes = _node_options(args)
    where = args.dir if nodes is None else nodes.state_dir.pki
    report = Store.open(where, args.inventory).check(args.warn_days)
    for line in format_check(report):
        print(line)
    bad = sum(1 for r in report.rows if not r.ok) + len(report.problems)
    secs = time.monotonic() - started
    if bad:
        print(progress.line(False, f"pki check {where}", secs, f"{bad} problems"))
    else:
        print(progress.line(True, f"pki check {where}", secs,
                            f"{len(report.rows)} certificates ok, none expires within {report.warn_days} days"))
    if nodes is not None:
        bad += sum(1 for o in checks.run(nodes) if not o.ok)
    return EXIT_FAILED if bad else EXIT_OK


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
