"""``kha kubeconfig``: an admin kubeconfig for the operator's workstation, from the PKI store.

The store's ``cluster/admin.conf`` (``installer.pki.store``) is the one kubeadm puts on the masters: it
points at the control-plane endpoint, which for a node-local load balancer is ``127.0.0.1:port`` on
each node, useless from a workstation. This file keeps its CA and client credentials and points at
what a workstation can reach: the VIP (or the slb) at ``lb_kube_apiserver_port``, or, with a node-local
load balancer, the first master's own kube-apiserver at ``address:6443``.

The file holds a cluster-admin key: it is written 0600 (staged, fsynced, renamed, as the store
writes), an existing file that differs is only replaced with ``--force``, and without ``-o`` the text
goes to stdout.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from pathlib import Path

from core.errors import InputError
from installer import topology, varsfile
from installer.errors import ConfigError, Problem
from installer.pki import durable, kubeconfig
from installer.pki.store import CLUSTER_DIR
from installer.state import StateDir
from installer.topology import LBKind, Topology

__all__ = ["register", "server", "text", "write"]

#: the admin kubeconfig's place in the PKI store.
ADMIN_CONF = f"{CLUSTER_DIR}/admin.conf"
MODE = 0o600


def server(topo: Topology) -> str:
    """The apiserver URL a workstation reaches: the VIP or slb, else the first master's apiserver."""
    if topo.lb_kind is LBKind.LOCAL:
        if not topo.masters:
            raise ConfigError([Problem(topo.source, None, "[kube-master] is empty: no apiserver to point at")])
        return f"https://{topo.first_master.address}:{topo.apiserver_port}"
    return topo.apiserver_endpoint.url


def text(topo: Topology, store: Path) -> bytes:
    """The workstation kubeconfig: the store's admin credentials, the workstation's server."""
    path = store / ADMIN_CONF
    if not path.is_file():
        raise ConfigError([Problem(str(path), None, "no admin kubeconfig in the PKI store; build the store first "
                                   f"(`kha install -i {topo.source}` or `kha pki init -i {topo.source} --dir {store}`)"
                                   ", or name the cluster's state folder with --state")])
    kc = kubeconfig.parse(path.read_bytes(), str(path))
    return kubeconfig.render(dataclasses.replace(kc, server=server(topo)))


def write(data: bytes, out: Path, *, force: bool = False) -> bool:
    """Write ``data`` to ``out`` (0600). Returns False when the file already held exactly it.

    An existing file with other content is refused (InputError) unless ``force``.
    """
    if out.is_dir():
        raise InputError(f"-o {out}: is a folder; name the kubeconfig file to write")
    if out.exists():
        if out.read_bytes() == data:
            os.chmod(out, MODE)
            return False
        if not force:
            raise InputError(f"-o {out}: exists and holds another kubeconfig; pass --force to replace it")
    parent = out.parent if str(out.parent) else Path(".")
    if not parent.is_dir():
        raise InputError(f"-o {out}: folder {parent} does not exist")
    durable.recover(parent, _mkdir)
    durable.commit(parent, {out.name: (data, MODE)}, _mkdir)
    return True


def _mkdir(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)


def _cmd(args: argparse.Namespace) -> int:
    topo = topology.load(args.inventory, varsfile.files_from_args(args))
    data = text(topo, StateDir.for_inventory(args.inventory, args.state).pki)
    if args.output is None:
        sys.stdout.write(data.decode("ascii"))
        return 0
    out = Path(args.output)
    changed = write(data, out, force=args.force)
    print(f"✓ {out}: admin kubeconfig for {server(topo)}" + ("" if changed else " (unchanged)"), file=sys.stderr)
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("kubeconfig", help="an admin kubeconfig for this workstation (VIP, or the first master)")
    p.add_argument("-i", "--inventory", required=True, help="inventory file")
    p.add_argument("--state", help="cluster state folder (default: beside the inventory, <name>.kha/)")
    p.add_argument("-o", "--output", help="write it here (0600) instead of printing it")
    p.add_argument("--force", action="store_true", help="replace an existing -o file that differs")
    varsfile.add_arguments(p)
    p.set_defaults(handler=_cmd)
