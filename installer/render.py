"""``kha render``: every file the installer would put on every node, computed without touching one.

Each component contributes ``NodeFile``s per node; this module only gathers them in install order
and mirrors them under ``OUT/nodes/<node>/<absolute path>`` for review and for tests to diff.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from pathlib import Path

from installer import topology, varsfile
from installer.etcd import render as etcd_render
from installer.facts import NodeFacts
from installer.files import NodeFile, mirror
from installer.kubernetes import cni, source
from installer.kubernetes import render as k8s_render
from installer.kubernetes.bundle import Bundle
from installer.loadbalancer import render as lb_render
from installer.nodeprep import render as prep_render
from installer.secrets import ClusterSecrets
from installer.state import StateDir
from installer.topology import Topology


def node_files(
    topo: Topology,
    secrets: ClusterSecrets,
    facts: Mapping[str, NodeFacts] | None = None,
    *,
    release: k8s_render.Release | None = None,
    ca_pem: bytes | None = None,
) -> dict[str, list[NodeFile]]:
    """Files per node name, in [all] order; nodes with nothing to receive map to an empty list.

    Join configurations need the cluster CA (its discovery hash); without ``ca_pem`` they are left out.
    """
    facts = facts or {}
    release = release or source.release(topo, None)
    etcd_names = {h.name for h in topo.etcd}
    out: dict[str, list[NodeFile]] = {}
    for host in topo.hosts:
        files: list[NodeFile] = prep_render.files(topo, host, facts.get(host.name))
        if host.name in etcd_names:
            files += etcd_render.files(topo, host)
        files += lb_render.files(topo, host, secrets, facts.get(host.name))
        files += k8s_render.files(topo, host, secrets, release, ca_pem)
        if host == topo.first_master and host in k8s_render.kubernetes_nodes(topo):
            # What the cni phase applies from the first master (flannel, calico; nothing for bridge).
            files += [NodeFile(f"{cni.MANIFEST_DIR}/{m.name}", m.content, mode=0o600)
                      for m in cni.manifests(topo, cni_bin_dir=release.cni_bin_dir) if m.content is not None]
        out[host.name] = files
    return out


def _cmd_render(args: argparse.Namespace) -> int:
    topo = topology.load(args.inventory, varsfile.files_from_args(args))
    state = StateDir.for_inventory(args.inventory, args.state)
    bundle = Bundle.load(args.bundle) if args.bundle else None
    files = node_files(topo, state.secrets(topo), release=source.release(topo, bundle),
                       ca_pem=k8s_render.store_ca(state.pki))
    written = mirror(files, Path(args.dir))
    for node, items in files.items():
        print(f"{node}: {len(items)} files")
        for f in items:
            print(f"  {f.path}  ({f.mode:04o} {f.owner}:{f.group})")
    print(f"✓ rendered {len(written)} files under {Path(args.dir) / 'nodes'}")
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("render", help="write every file the installer would put on each node, touching no node")
    p.add_argument("-i", "--inventory", required=True, help="inventory file")
    p.add_argument("--dir", required=True, help="output folder; files land in DIR/nodes/<node>/<path>")
    p.add_argument("--state", help="cluster state folder (default: beside the inventory, <name>.kha/)")
    p.add_argument("--bundle", help="render for an install from this offline bundle (default: upstream's packages)")
    varsfile.add_arguments(p)
    p.set_defaults(handler=_cmd_render)
