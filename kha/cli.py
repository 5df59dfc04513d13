"""The ``kha`` command: the one boundary where errors are printed and exit codes chosen.

Subcommands live with the code they drive (``installer``, ``images``, ``harness``); this module only
wires them together. Exit codes: 0 success, 1 a step failed, 2 bad input (every problem printed as
``FILE:LINE: message``). Every error kha raises on purpose is a ``core.errors.KhaError`` and carries
its exit code; it is caught here, once, and printed as one line per problem, never as a traceback.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Sequence

from core import paths
from core.errors import EXIT_BAD_INPUT, EXIT_FAILED, InputError, KhaError
from harness.errors import SpecError
from images import cli as images_cli
from images.bundle import cli as bundle_cli
from installer import install, operator_kubeconfig, render, reset, settings, topology, varsfile
from installer.checks import run as checks_run
from installer.errors import ConfigError
from installer.etcd import cli as etcd_cli
from installer.kubernetes import cli as node_cli
from installer.kubernetes import upgrade
from installer.pki import cli as pki_cli
from installer.state import StateDir
from kha import harness_cli
from scenarios.failover import cli as fault_cli
from scenarios.matrix import cli as matrix_cli
from scenarios.report import cli as report_cli

EXIT_OK = 0
__all__ = ["EXIT_BAD_INPUT", "EXIT_FAILED", "EXIT_OK", "build_parser", "main"]

Handler = Callable[[argparse.Namespace], int]


def _inventory_check(args: argparse.Namespace) -> int:
    topo = topology.load(args.file, varsfile.files_from_args(args))
    topology.check_credentials(topo)
    for w in topo.warnings:
        print(w, file=sys.stderr)
    for line in topology.describe(topo):
        print(line)
    return EXIT_OK


def _inventory_vars(args: argparse.Namespace) -> int:
    print(settings.markdown_table(), end="")
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kha",
        description="Install an HA Kubernetes control plane over SSH, and boot libvirt topologies to prove it.",
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv for debug)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    inv = sub.add_parser("inventory", help="read and check kubeadm-ha inventories")
    inv_sub = inv.add_subparsers(dest="inventory_command", metavar="ACTION", required=True)
    check = inv_sub.add_parser("check", help="validate an inventory and print the resolved topology")
    check.add_argument("file", help="inventory file (kubeadm-ha INI format)")
    varsfile.add_arguments(check)
    check.set_defaults(handler=_inventory_check)
    knobs = inv_sub.add_parser("vars", help="every kubeadm-ha variable and its fate in kha, as Markdown")
    knobs.set_defaults(handler=_inventory_vars)

    for register in _plugins():
        register(sub)
    return parser


def _plugins() -> list[Callable[[argparse._SubParsersAction[argparse.ArgumentParser]], object]]:
    """Subcommands owned by other packages, added as they land."""
    found: list[Callable[[argparse._SubParsersAction[argparse.ArgumentParser]], object]] = [
        render.register,
        pki_cli.register,
        install.register,
        operator_kubeconfig.register,
        etcd_cli.register,
        node_cli.register,
        reset.register,
        upgrade.register,
        images_cli.add_parser,
        bundle_cli.add_parser,
        harness_cli.register,
        fault_cli.register,
        report_cli.register,
        matrix_cli.register,
        checks_run.register,
    ]
    return found


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.WARNING - 10 * min(args.verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    handler: Handler = args.handler
    try:
        _check_paths(args)
        code = handler(args)
        # Flushed here, not at exit, so a reader that went away is met inside this try.
        sys.stdout.flush()
        return code
    except KhaError as exc:
        for line in _problems(exc):
            print(line, file=sys.stderr)
        return exc.cli_exit_code
    except BrokenPipeError:
        # `kha pki check | head`: the reader has gone; end quietly (and keep Python from complaining
        # again when it flushes stdout at exit).
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_FAILED
    except OSError as exc:
        # A path that is not what kha needs (a file where a folder belongs, no permission …): one line.
        print(f"kha: {paths.describe_os_error(exc)}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print("kha: interrupted", file=sys.stderr)
        return 130


#: Flags (by argparse dest) every subcommand spells the same way, checked before its handler runs.
_FOLDER_FLAGS = {"dir": "--dir", "state": "--state", "out": "--out"}
_FILE_FLAGS = {"ssh_config": "--ssh-config"}
_CREATABLE_FILE_FLAGS = {"known_hosts": "--known-hosts"}


def _check_paths(args: argparse.Namespace) -> None:
    """Every folder or file a flag names is the right kind of thing before anything is written:
    ``render --dir FILE`` fails before a secret or a node file is made, ``--state`` holding a folder
    named secrets.json fails before a connection. Bad input: InputError, exit 2."""
    for dest, flag in _FOLDER_FLAGS.items():
        value = getattr(args, dest, None)
        if value is not None:
            nodes = paths.folder(value, flag) / "nodes"
            # render and the PKI store both keep DIR/nodes/<node>/: a node entry that is a file would
            # stop the writing half-way.
            if nodes.is_dir():
                for entry in nodes.iterdir():
                    if not entry.is_dir():
                        raise InputError(f"{flag} {value}: {entry} is a file; expected a node's folder there")
    for dest, flag in _FILE_FLAGS.items():
        if getattr(args, dest, None) is not None:
            paths.readable_file(getattr(args, dest), flag)
    for dest, flag in _CREATABLE_FILE_FLAGS.items():
        if getattr(args, dest, None) is not None:
            paths.file_or_creatable(getattr(args, dest), flag)
    inventory = getattr(args, "inventory", None)
    if inventory is not None and hasattr(args, "state"):
        state = StateDir.for_inventory(inventory, args.state)
        flag = "--state" if args.state else "state folder (beside the inventory)"
        paths.folder(state.root, flag)
        if state.secrets_file.is_dir():
            raise InputError(f"{flag} {state.root}: {state.secrets_file} is a folder; expected the cluster's "
                             "secrets file (JSON), or nothing for kha to create it")
        if state.pki.exists() and not state.pki.is_dir():
            raise InputError(f"{flag} {state.root}: {state.pki} is a file; expected the PKI store folder")


def _problems(exc: KhaError) -> list[str]:
    """What the user reads: every problem of bad input on its own line, else ``kha: message``."""
    if isinstance(exc, ConfigError):
        return [str(p) for p in exc.problems]
    if isinstance(exc, SpecError):
        return [f"kha: {p}" for p in exc.problems]
    return [f"kha: {exc}"]


if __name__ == "__main__":
    sys.exit(main())
