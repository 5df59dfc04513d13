"""The ``kha`` command: the one boundary where errors are printed and exit codes chosen.

Subcommands live with the code they drive (``installer``, ``images``, ``harness``); this module only
wires them together. Exit codes: 0 success, 1 a step failed, 2 bad input (every problem printed as
``FILE:LINE: message``).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence

from images import cli as images_cli
from images.bundle import cli as bundle_cli
from installer import install, render, topology
from installer.errors import ConfigError, InstallerError
from installer.etcd import cli as etcd_cli
from installer.pki import cli as pki_cli
from kha import harness_cli

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 2

Handler = Callable[[argparse.Namespace], int]


def _inventory_check(args: argparse.Namespace) -> int:
    topo = topology.load(args.file)
    for w in topo.warnings:
        print(w, file=sys.stderr)
    for line in topology.describe(topo):
        print(line)
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
    check.set_defaults(handler=_inventory_check)

    for register in _plugins():
        register(sub)
    return parser


def _plugins() -> list[Callable[[argparse._SubParsersAction[argparse.ArgumentParser]], object]]:
    """Subcommands owned by other packages, added as they land."""
    found: list[Callable[[argparse._SubParsersAction[argparse.ArgumentParser]], object]] = [
        render.register,
        pki_cli.register,
        install.register,
        etcd_cli.register,
        images_cli.add_parser,
        bundle_cli.add_parser,
        harness_cli.register,
    ]
    return found


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.WARNING - 10 * min(args.verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    handler: Handler = args.handler
    try:
        return handler(args)
    except ConfigError as exc:
        for p in exc.problems:
            print(p, file=sys.stderr)
        return EXIT_BAD_INPUT
    except InstallerError as exc:
        print(f"kha: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print("kha: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
