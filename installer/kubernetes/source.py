"""Where a node's Kubernetes comes from: an offline bundle (``--bundle``) or upstream's package
repositories and registries (nodes with internet), and what each source allows.

Offline means everything the cluster runs is in the bundle: the bridge CNI (plugins from the
distribution) and no CoreDNS. Online, kubeadm pulls its images, CoreDNS is installed, and the pod
network is flannel or calico (or bridge) per ``network_plugin``. Both are decided here, once, and
checked before any node is touched.
"""

from __future__ import annotations

import dataclasses

from installer.errors import Problem
from installer.kubernetes import cni, packages
from installer.kubernetes.bundle import Bundle
from installer.kubernetes.render import Release
from installer.settings import KubeVersion, NetworkPlugin
from installer.topology import Topology


def release(topo: Topology, bundle: Bundle | None) -> Release:
    """What the nodes run: the bundle's or upstream's names, under ``kube_image_repository`` when it is set."""
    base = bundle.release if bundle is not None else packages.release(topo)
    repo = topo.settings.kube_image_repository
    return base if repo is None else dataclasses.replace(base, image_repository=repo)


def offline(bundle: Bundle | None) -> bool:
    return bundle is not None


def problems(topo: Topology, bundle: Bundle | None) -> list[Problem]:
    """What stops this inventory from installing from this source (file, line and field named)."""
    s = topo.settings
    out: list[Problem] = []
    if bundle is None:
        out += packages.problems(topo)
    else:
        v = s.kube_version
        have = KubeVersion.parse(bundle.release.version)
        if (v.major, v.minor) != (have.major, have.minor) or v.patch not in (None, have.patch):
            out.append(Problem(topo.source, s.line("kube_version"),
                               f"kube_version={v} but the bundle {bundle.root} holds {bundle.release.version}",
                               "kube_version"))
        if s.network_plugin is not NetworkPlugin.BRIDGE:
            # Its images live on docker.io/quay.io: an offline node would wait for them for ever.
            out.append(Problem(topo.source, s.line("network_plugin"),
                               f"network_plugin={s.network_plugin} pulls its images from the internet; an offline "
                               "install (--bundle) needs network_plugin=bridge", "network_plugin"))
    out += cni.problems(topo)
    return out

