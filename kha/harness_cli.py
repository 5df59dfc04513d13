"""The harness subcommands of ``kha``: up, status, ssh, snapshot, revert, down.

``register(subparsers)`` adds them to the ``kha`` parser. Handlers print (this is the CLI boundary):
one ✓/✗ line per step, then where to reach the nodes. Errors go up to ``kha.cli``, the one boundary:
a harness error is exit 1, a bad topology spec (``SpecError``) or inventory (``ConfigError``) exit 2.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path

from harness import paths
from harness.errors import HarnessError, SpecError
from harness.provider import Cluster, Provider, clusters
from harness.spec import DRIVERS, TopologySpec
from harness.state import ClusterState

EXIT_OK, EXIT_FAILED = 0, 1



def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    up = sub.add_parser("up", help="boot a topology (scenario or inventory) on libvirt and wait for SSH")
    up.add_argument("scenario", nargs="?", help="scenario name (allinone, s-master, m-master)")
    up.add_argument("-i", "--inventory", help="inventory file instead of a scenario")
    up.add_argument("--driver", choices=DRIVERS, help="node driver (default: the scenario's, else lxc)")
    where = up.add_mutually_exclusive_group()
    where.add_argument("--isolated", action="store_true",
                       help="run a private libvirtd in a new network namespace (nothing reachable from outside "
                            "it; what tests use). Default: the system libvirt (qemu:///system, lxc:///system)")
    where.add_argument("--connect", metavar="URI",
                       help="a libvirtd kha did not start, by libvirt URI (qemu+ssh://[user@]host/system, "
                            "qemu+unix:///system?socket=PATH); the other driver's URI is derived from it. It must "
                            "see the image cache and the state dir at the same paths; LXC only on this machine")
    up.add_argument("--name", help="cluster name (default: the scenario name or the inventory file's stem)")
    up.add_argument("--keep-on-failure", action="store_true", help="keep a cluster that failed to come up")
    up.set_defaults(handler=_up)

    status = sub.add_parser("status", help="list clusters and the state of their nodes")
    status.add_argument("--name", help="only this cluster")
    status.set_defaults(handler=_status)

    ssh = sub.add_parser("ssh", help="ssh to a node of a cluster (ssh -F <its ssh_config> NODE [CMD])")
    ssh.add_argument("node", help="node name or address")
    ssh.add_argument("command", nargs=argparse.REMAINDER, help="command to run (after --)")
    ssh.add_argument("--name", help="cluster (default: the only one up)")
    ssh.set_defaults(handler=_ssh)

    snap = sub.add_parser("snapshot", help="save the whole topology under NAME")
    snap.add_argument("snapshot", metavar="NAME")
    snap.add_argument("--name", help="cluster (default: the only one up)")
    snap.set_defaults(handler=_snapshot)

    revert = sub.add_parser("revert", help="bring the whole topology back to snapshot NAME")
    revert.add_argument("snapshot", metavar="NAME")
    revert.add_argument("--name", help="cluster (default: the only one up)")
    revert.set_defaults(handler=_revert)

    down = sub.add_parser("down", help="destroy a cluster: domains, network, mounts, daemon, namespace, state")
    down.add_argument("--name", help="cluster (default: the only one up)")
    down.set_defaults(handler=_down)


def _emit(line: str) -> None:
    print(line, flush=True)


def spec_for(args: argparse.Namespace) -> TopologySpec:
    """The topology to boot from ``SCENARIO`` or ``-i INVENTORY`` (+ ``--driver``, ``--name``)."""
    from scenarios import topologies  # noqa: PLC0415 - only `up` reads inventories

    if bool(args.scenario) == bool(args.inventory):
        raise SpecError("give either a scenario name or -i INVENTORY (not both)")
    if args.inventory:
        return topologies.spec_for_inventory(args.inventory, args.driver, args.name)
    return topologies.spec_for_scenario(args.scenario, args.driver, args.name)


def _up(args: argparse.Namespace) -> int:
    spec = spec_for(args)
    mode = f"libvirt at {args.connect}" if args.connect else "isolated" if args.isolated else "system libvirt"
    print(f"kha up {spec.cluster}: {len(spec.nodes)} node(s), {spec.driver}, {mode}, image {spec.image}")
    provider = Provider(isolated=args.isolated, connect=args.connect, emit=_emit)
    cluster = provider.up(spec, keep_on_failure=args.keep_on_failure)
    first = cluster.nodes[0]
    print(f"cluster {cluster.name} is up; state in {cluster.state.state_dir}")
    print(f"  kha ssh {first}            (or: ssh -F {cluster.ssh_config} {first})")
    return EXIT_OK


def _pick(name: str | None) -> Path:
    if name:
        return paths.cluster_dir(name)
    found = [p for p in clusters() if (p / "state.json").exists()]
    if len(found) == 1:
        return found[0]
    if not found:
        raise HarnessError(f"no cluster is up (state dirs in {paths.clusters_root()})")
    raise HarnessError(f"several clusters are up ({', '.join(p.name for p in found)}): choose one with --name")


def _status(args: argparse.Namespace) -> int:
    dirs = [paths.cluster_dir(args.name)] if args.name else clusters()
    if not dirs:
        print(f"no clusters (state dirs in {paths.clusters_root()})")
        return EXIT_OK
    failed = False
    for d in dirs:
        try:
            state = ClusterState.load(d)
        except HarnessError as exc:
            print(f"{d.name}: {exc}")
            failed = True
            continue
        mode = (f"libvirt at {state.libvirt['connect']}" if state.libvirt.get("connect")
                else f"isolated in netns {state.netns}" if state.netns else "system libvirt")
        print(f"{state.spec.cluster}: {state.spec.driver}, {mode}, {state.spec.source}")
        try:
            cluster = Cluster.load(d)
            states = cluster.status()
        except HarnessError as exc:
            print(f"  ✗ {exc}")
            failed = True
            continue
        for node in state.spec.nodes:
            roles = ", ".join(node.roles) or "-"
            print(f"  {node.name:<16} {node.address!s:<15} {states.get(node.name, '?'):<9} {roles}")
        if state.snapshots:
            print(f"  snapshots: {', '.join(state.snapshots)}")
        cluster.close()
    # Non-zero when a cluster asked for (or found) cannot be read: scripts test `kha status --name X`.
    return EXIT_FAILED if failed else EXIT_OK


def ssh_request(args: argparse.Namespace) -> tuple[str | None, list[str]]:
    """The cluster and the command of ``kha ssh NODE [--name N] [-- CMD]``: the command is everything after
    NODE (argparse's REMAINDER), so a ``--name N`` written after NODE arrives at its head and is taken here."""
    name, command = args.name, list(args.command)
    if command[:1] == ["--name"] and len(command) > 1 and name is None:
        name, command = command[1], command[2:]
    if command[:1] == ["--"]:
        command = command[1:]
    return name, command


def _ssh(args: argparse.Namespace) -> int:
    name, command = ssh_request(args)
    d = _pick(name)
    state = ClusterState.load(d)
    known = {n.name for n in state.spec.nodes} | {str(n.address) for n in state.spec.nodes}
    if args.node not in known:
        raise HarnessError(f"cluster {state.spec.cluster} has no node {args.node!r}")
    argv = ["ssh", "-F", str(d / "ssh_config"), args.node]
    if command:
        argv.append(shlex.join(command))
    sys.stdout.flush()
    os.execvp("ssh", argv)


def _snapshot(args: argparse.Namespace) -> int:
    cluster = Cluster.load(_pick(args.name))
    with Provider(emit=_emit).steps.step(f"snapshot {args.snapshot} of {cluster.name}"):
        cluster.snapshot(args.snapshot)
    return EXIT_OK


def _revert(args: argparse.Namespace) -> int:
    cluster = Cluster.load(_pick(args.name))
    with Provider(emit=_emit).steps.step(f"revert {cluster.name} to {args.snapshot}"):
        cluster.revert(args.snapshot)
    return EXIT_OK


def _down(args: argparse.Namespace) -> int:
    d = _pick(args.name)
    removed = Provider(emit=_emit).down(args.name or d.name, d)
    for item in removed:
        print(f"  removed {item}")
    return EXIT_OK
