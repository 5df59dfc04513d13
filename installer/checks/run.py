"""``kha check``: run the check modules through pytest against an installed cluster, one ✓/✗ line per check.

Everything checkable without a node is checked first and is bad input (exit 2, no traceback): the
inventory, the state folder's PKI store and known_hosts, ``--only`` names, ``--warn-days``,
``--timeout``, ``--junitxml``. Then pytest runs in this process with ``installer.checks.plugin``; any
failed check is exit 1.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import logging
import sys
from pathlib import Path
from typing import TextIO

import pytest

from core import paths
from core.errors import InputError, KhaError
from installer import topology, varsfile
from installer.checks import GROUPS
from installer.checks.plugin import MODULE_PREFIX, Outcome, Plugin, check_name, selected
from installer.checks.target import Options
from installer.pki.store import CA_DIR

PACKAGE = Path(__file__).resolve().parent

__all__ = ["catalogue", "register", "run", "validate"]


def catalogue() -> list[str]:
    """Every check's name, in the order they run: the groups in ``GROUPS`` order, each module's checks in
    the order they are written (pytest's order)."""
    names = []
    for group in GROUPS:
        module = importlib.import_module(MODULE_PREFIX + group)
        functions = [f for n, f in vars(module).items()
                     if n.startswith("test_") and inspect.isfunction(f) and f.__module__ == module.__name__]
        names += [check_name(module.__name__, f.__name__)
                  for f in sorted(functions, key=lambda f: f.__code__.co_firstlineno)]
    return names


def validate(options: Options) -> list[str]:
    """The checks ``options`` select, after every input was found good; ``InputError`` (exit 2) otherwise."""
    topo = topology.load(options.inventory, options.extra_vars)  # ConfigError: FILE:LINE, exit 2
    topology.check_credentials(topo)
    if options.warn_days < 0:
        raise InputError(f"--warn-days {options.warn_days}: must be 0 or more days")
    if options.timeout is not None and options.timeout < 0:
        raise InputError(f"--timeout {options.timeout:g}: must be 0 (look once) or more seconds")
    names = catalogue()
    unknown = [o for o in options.only if not any(selected(n, (o,)) for n in names)]
    if unknown:
        raise InputError(f"--only {', '.join(unknown)}: no such check; the checks are: {', '.join(names)}")
    state = options.state_dir
    flag = "--state" if options.state else "state folder (beside the inventory)"
    ca = state.pki / CA_DIR / "ca.crt"
    if not ca.is_file():
        raise InputError(f"{flag} {state.root}: no PKI store there ({ca} is missing); kha check compares what each "
                         "node serves with the store's CAs: name the folder kha install used with --state")
    if options.known_hosts is not None:
        paths.readable_file(options.known_hosts, "--known-hosts")
    elif options.ssh_config is None and not options.known_hosts_file.is_file():
        raise InputError(f"{flag} {state.root}: no known_hosts there ({options.known_hosts_file}); kha check "
                         "logs in only to nodes whose host keys are pinned: name the file with --known-hosts")
    return [n for n in names if selected(n, options.only)]


def run(options: Options, *, junitxml: Path | None = None, out: TextIO | None = None) -> list[Outcome]:
    """Run the selected checks; their outcomes in order (printed to ``out`` as each finishes)."""
    validate(options)
    plugin = Plugin(options, out or sys.stdout)
    args = [str(PACKAGE / f"test_{group}.py") for group in GROUPS]
    args += ["-c", str(PACKAGE / "pytest.ini"), "--rootdir", str(PACKAGE), "-p", "no:cacheprovider",
             "-p", "no:terminal", "-p", "no:testinfra", "--capture=sys", "-W", "ignore::DeprecationWarning"]
    if junitxml is not None:
        args += ["--junitxml", str(junitxml)]
    code = pytest.main(args, plugins=[plugin])
    if plugin.errors:
        raise KhaError("the check modules could not be loaded:\n" + "\n".join(plugin.errors))
    if code not in (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED):
        raise KhaError(f"pytest ended with {pytest.ExitCode(code).name} running the checks")
    return plugin.outcomes


def _cmd(args: argparse.Namespace) -> int:
    if args.list:
        for name in catalogue():
            print(name)
        return 0
    if not args.inventory:
        raise InputError("kha check needs -i INVENTORY: the inventory the cluster was installed from")
    options = Options(
        inventory=Path(args.inventory), state=Path(args.state) if args.state else None,
        ssh_config=Path(args.ssh_config) if args.ssh_config else None,
        known_hosts=Path(args.known_hosts) if args.known_hosts else None,
        extra_vars=tuple(varsfile.files_from_args(args)), warn_days=args.warn_days, timeout=args.timeout,
        only=tuple(o.strip() for item in args.only or () for o in item.split(",") if o.strip()))
    # paramiko logs a failed login with its traceback; the check's evidence already says what failed.
    logging.getLogger("paramiko").setLevel(logging.CRITICAL)
    junit = Path(args.junitxml) if args.junitxml else None
    if junit is not None:
        paths.file_or_creatable(junit, "--junitxml")
    outcomes = run(options, junitxml=junit)
    failed = [o.name for o in outcomes if not o.ok]
    if failed:
        print(f"kha check: {len(failed)} of {len(outcomes)} checks failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("check", help="check an installed cluster: ordered, named checks, each polled until its "
                                     "deadline (exit 1 when one fails)")
    p.add_argument("-i", "--inventory", help="the inventory the cluster was installed from (required but with --list)")
    p.add_argument("--list", action="store_true", help="print the checks' names in order and exit")
    p.add_argument("--state", help="cluster state folder: PKI store, known_hosts (default: beside the inventory)")
    p.add_argument("--ssh-config", help="an OpenSSH config with Host blocks for the nodes (keys, proxies)")
    p.add_argument("--known-hosts", help="known_hosts pinning the nodes' host keys (default: STATE/known_hosts)")
    p.add_argument("--only", action="append", help="run only these checks or groups (etcd, etcd/members; "
                                                    "comma-separated, repeatable)")
    p.add_argument("--warn-days", type=int, default=30,
                   help="a served certificate must be valid at least this many more days (default 30)")
    p.add_argument("--timeout", type=float, help="every check's deadline in seconds (0: look once; default: each "
                                                 "check's own)")
    p.add_argument("--junitxml", help="also write the results as JUnit XML here")
    varsfile.add_arguments(p)
    p.set_defaults(handler=_cmd)

