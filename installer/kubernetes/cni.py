"""The pod network an online install applies, per ``network_plugin``: what to ``kubectl apply`` on the
first master (pinned image versions), and the inventory rules only a given plugin imposes.

- flannel: our own manifest (``templates/kube-flannel.yaml``, loaded as data), with the inventory's pod
  subnet, the pinned images and containerd's CNI folder set in it, then dumped.
- calico: the Tigera operator's manifest, fetched by URL at a pinned release, then our ``Installation``
  and ``APIServer`` (built here as data) that tell the operator what to build.
- bridge: nothing to apply; the offline bridge CNI config is a file per node, written by the phases.

Nothing here talks to a node: ``manifests`` returns data, ``problems`` is pure, and ``check`` raises
``ConfigError`` (file, line, field) before any side effect.

Where CNI binaries land matters to containerd, which looks in one ``bin_dir`` (``render.Release.cni_bin_dir``):
flannel's init container copies its plugin into the directory we name (next to the host's bridge,
host-local and portmap that flannel delegates to); the Tigera operator always installs calico's plugins
into ``/opt/cni/bin`` (``CALICO_CNI_BIN_DIR``), so containerd must look there when calico is chosen.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from typing import Any, NamedTuple

import yaml

from installer.errors import ConfigError, Problem
from installer.files import dump_yaml
from installer.kubernetes.render import Release
from installer.settings import NetworkPlugin
from installer.topology import Topology

# Releases and their notes: https://github.com/flannel-io/flannel/releases
FLANNEL_VERSION = "v0.25.6"
# The CNI plugin binary ships separately: https://github.com/flannel-io/cni-plugin/releases
FLANNEL_CNI_PLUGIN_VERSION = "v1.5.1-flannel2"
# Releases: https://github.com/projectcalico/calico/releases
CALICO_VERSION = "v3.28.2"
CALICO_OPERATOR_URL = "https://raw.githubusercontent.com/projectcalico/calico/{version}/manifests/tigera-operator.yaml"

#: Where the host's CNI plugins live on our nodes by default (Debian's containernetworking-plugins).
CNI_BIN_DIR = Release.cni_bin_dir
#: Where calico-node's install-cni puts calico's plugins; the operator does not let us choose.
CALICO_CNI_BIN_DIR = "/opt/cni/bin"
#: Where the first master keeps the rendered manifests it applies (``kha render`` shows them there).
MANIFEST_DIR = "/etc/kha/cni"
#: The conflist flannel writes; containerd picks the first file in /etc/cni/net.d by name.
FLANNEL_CNI_CONF = "/etc/cni/net.d/10-flannel.conflist"

#: Calico's IPAM block size limits for IPv4 (IPPool.spec.blockSize):
#: https://docs.tigera.io/calico/latest/reference/resources/ippool
CALICO_BLOCK_SIZE_MIN = 20
CALICO_BLOCK_SIZE_MAX = 32

FLANNEL_IMAGE = f"docker.io/flannel/flannel:{FLANNEL_VERSION}"
FLANNEL_CNI_PLUGIN_IMAGE = f"docker.io/flannel/flannel-cni-plugin:{FLANNEL_CNI_PLUGIN_VERSION}"

#: flannel's objects as upstream ships them, kha's comments included (loaded as data, never as a template).
_FLANNEL_BASE = "templates/kube-flannel.yaml"


class Marker(NamedTuple):
    """A resource whose existence means "already applied": what ``kubectl get KIND NAME [-n NAMESPACE]`` finds."""

    kind: str  # a kubectl resource type, e.g. "daemonset" or "installations.operator.tigera.io"
    name: str
    namespace: str | None  # None for cluster-scoped resources


@dataclass(frozen=True)
class Manifest:
    """One thing to apply on the first master: rendered here (``content``) or fetched by kubectl (``url``)."""

    name: str  # e.g. "kube-flannel.yaml"; also the file name on the master
    #: a resource whose existence means the manifest was applied, so a second install does not re-create things.
    marker: Marker
    content: bytes | None = None
    url: str | None = None  # fetched by kubectl on the first master (online installs only)
    #: apply server-side: the operator's CRDs are larger than client-side apply's last-applied annotation
    #: allows, which is why Calico's docs use ``kubectl create`` for it
    #: (https://docs.tigera.io/calico/latest/getting-started/kubernetes/self-managed-onprem/onpremises).
    server_side: bool = False
    #: CRDs that must be Established before this applies (``kubectl wait --for condition=established crd/NAME``):
    #: the resources it holds are only known once the previous manifest's CRDs are served.
    crds: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if (self.content is None) == (self.url is None):
            raise ValueError(f"manifest {self.name}: give exactly one of content or url")


def problems(topo: Topology) -> list[Problem]:
    """Inventory problems that only the chosen plugin has (file, line, field). Pure: touches nothing."""
    s = topo.settings
    out: list[Problem] = []
    if s.network_plugin is NetworkPlugin.CALICO:
        prefix = s.kube_network_node_prefix
        if not CALICO_BLOCK_SIZE_MIN <= prefix <= CALICO_BLOCK_SIZE_MAX:
            # Raise rather than clamp: a silently different per-node range than the inventory says
            # would surprise whoever sized kube_pod_subnet and kube_max_pods around it.
            out.append(Problem(
                topo.source, s.line("kube_network_node_prefix"),
                f"calico's IP block size is kube_network_node_prefix and must be between {CALICO_BLOCK_SIZE_MIN} "
                f"and {CALICO_BLOCK_SIZE_MAX} for IPv4, got {prefix}; set e.g. kube_network_node_prefix=\"24\" "
                "or choose network_plugin=\"flannel\"",
                "kube_network_node_prefix"))
    return out


def check(topo: Topology) -> None:
    """Raise ``ConfigError`` with every plugin problem; call before any side effect."""
    found = [p for p in problems(topo) if not p.warning]
    if found:
        raise ConfigError(found)


def manifests(topo: Topology, *, cni_bin_dir: str = CNI_BIN_DIR) -> list[Manifest]:
    """What to apply, in order, for the inventory's ``network_plugin``; empty for bridge.

    ``cni_bin_dir`` is containerd's CNI ``bin_dir`` on the nodes: flannel installs its plugin there.
    Raises ``ConfigError`` when the inventory does not suit the plugin (see ``problems``).
    """
    check(topo)
    plugin = topo.settings.network_plugin
    if plugin is NetworkPlugin.FLANNEL:
        return [_flannel(topo, cni_bin_dir)]
    if plugin is NetworkPlugin.CALICO:
        return _calico(topo)
    return []


def operator_url(version: str = CALICO_VERSION) -> str:
    return CALICO_OPERATOR_URL.format(version=version)


def _flannel(topo: Topology, cni_bin_dir: str) -> Manifest:
    # flanneld runs with --kube-subnet-mgr: it takes each node's range from node.spec.podCIDR, which
    # kube-controller-manager allocates only with --allocate-node-cidrs and --cluster-cidr; kubeadm
    # sets both from networking.podSubnet (https://github.com/flannel-io/flannel/blob/master/Documentation/kubernetes.md).
    cni_conf = {
        "name": "cbr0",
        "cniVersion": "0.3.1",
        "plugins": [
            # flannel hands the pod to the bridge plugin; hairpin lets a pod reach itself via a Service.
            {"type": "flannel", "delegate": {"hairpinMode": True, "isDefaultGateway": True}},
            # hostPort support (https://www.cni.dev/plugins/current/meta/portmap/).
            {"type": "portmap", "capabilities": {"portMappings": True}},
        ],
    }
    net_conf = {"Network": str(topo.settings.kube_pod_subnet), "Backend": {"Type": "vxlan"}}
    objects = [d for d in yaml.safe_load_all(resources.files(__package__).joinpath(_FLANNEL_BASE).read_text()) if d]
    config = _one(objects, "ConfigMap")
    config["data"] = {"cni-conf.json": json.dumps(cni_conf, indent=2) + "\n",
                      "net-conf.json": json.dumps(net_conf, indent=2) + "\n"}
    pod = _one(objects, "DaemonSet")["spec"]["template"]["spec"]
    init = {c["name"]: c for c in pod["initContainers"]}
    init["install-cni-plugin"]["image"] = FLANNEL_CNI_PLUGIN_IMAGE
    init["install-cni"]["image"] = FLANNEL_IMAGE
    init["install-cni"]["args"][-1] = FLANNEL_CNI_CONF
    pod["containers"][0]["image"] = FLANNEL_IMAGE
    {v["name"]: v for v in pod["volumes"]}["cni-plugin"]["hostPath"]["path"] = cni_bin_dir
    header = f"# Written by kha: flannel {FLANNEL_VERSION} (vxlan) for an online install, applied on the first master\n"
    return Manifest("kube-flannel.yaml", Marker("daemonset", "kube-flannel-ds", "kube-flannel"),
                    content=dump_yaml(objects, header))


def _one(objects: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    (found,) = [o for o in objects if o["kind"] == kind]
    return found


def _calico(topo: Topology) -> list[Manifest]:
    s = topo.settings
    # The node address calico uses is the one inside the nodes' network, not whichever NIC comes first.
    detect: dict[str, Any] = {"firstFound": True} if s.node_subnet is None else {"cidrs": [str(s.node_subnet)]}
    installation = {
        "apiVersion": "operator.tigera.io/v1",
        "kind": "Installation",
        "metadata": {"name": "default"},
        "spec": {"calicoNetwork": {
            # One pool over the inventory's kube_pod_subnet; each node takes blocks of kube_network_node_prefix.
            # VXLAN only between nodes on different subnets; plain routing inside one.
            "ipPools": [{"name": "default-ipv4-ippool", "cidr": str(s.kube_pod_subnet),
                         "blockSize": s.kube_network_node_prefix, "encapsulation": "VXLANCrossSubnet",
                         "natOutgoing": "Enabled", "nodeSelector": "all()"}],
            "nodeAddressAutodetectionV4": detect,
        }},
    }
    # The projectcalico.org/v3 API served by the cluster, so kubectl can manage Calico resources.
    api_server = {"apiVersion": "operator.tigera.io/v1", "kind": "APIServer", "metadata": {"name": "default"},
                  "spec": {}}
    header = (f"# Written by kha: what the Tigera operator builds for Calico {CALICO_VERSION}\n"
              "# (https://docs.tigera.io/calico/latest/reference/installation/api).\n")
    return [
        Manifest("tigera-operator.yaml", Marker("deployment", "tigera-operator", "tigera-operator"),
                 url=operator_url(), server_side=True),
        Manifest("calico-installation.yaml", Marker("installations.operator.tigera.io", "default", None),
                 content=dump_yaml([installation, api_server], header),
                 crds=("installations.operator.tigera.io", "apiservers.operator.tigera.io")),
    ]
