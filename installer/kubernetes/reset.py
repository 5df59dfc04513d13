"""A node taken back to before kha's Kubernetes (kubeadm-ha's 99-reset, for one node).

``kubeadm reset`` removes what kubeadm made (the static pod manifests, /etc/kubernetes's certificates and
kubeconfigs, /var/lib/kubelet) and says what it leaves: the CNI configuration, iptables rules, IPVS
tables. kha removes those and what it added itself:

- the kubelet stopped and disabled (its unit stays: the binaries and the runtime are the node's, a later
  ``kha install`` joins it again quickly);
- the kubeadm configuration kha wrote (``/etc/kha/kubeadm.yaml``: it names the bootstrap token);
- the bridge CNI's conflist, the routes unit, the ``cni0`` bridge and host-local's address leases;
- the iptables rules of kube-proxy and the CNI portmap plugin (every rule naming a ``KUBE-`` or ``CNI-``
  chain, and those chains): rules anyone else wrote are kept.

A node with none of these has nothing to reset: nothing runs, nothing is written.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from installer import nodeops
from installer.context import InstallContext
from installer.kubernetes import staticpods
from installer.kubernetes.phases import CNI_CONFLIST, KUBELET_CONF, ROUTES_UNIT, binary
from installer.kubernetes.render import KUBEADM_CONFIG
from installer.remote import Transport

log = logging.getLogger(__name__)

BRIDGE = "cni0"
#: where a reset sets aside the folders it must keep while kubeadm reset runs
KEEP_DIR = "/var/lib/kha/kept-by-reset"
IPAM_STATE = "/var/lib/cni/networks/kha"
#: what a joined node has that a reset node does not
_LEFT = (KUBELET_CONF, *(pod.manifest for pod in staticpods.CONTROL_PLANE), KUBEADM_CONFIG, CNI_CONFLIST,
         ROUTES_UNIT, IPAM_STATE)
#: kube-proxy's and portmap's rules and chains out, everything else back in, in one iptables-restore
_IPTABLES = ("for t in iptables ip6tables; do command -v $t-save >/dev/null || continue; "
             "$t-save | grep -v -e KUBE- -e CNI- | $t-restore; done")


def leftovers(t: Transport) -> list[str]:
    """What of Kubernetes the node still has (empty: nothing to reset)."""
    found = [p for p in _LEFT if nodeops.exists(t, p)]
    if nodeops.is_active(t, "kubelet"):
        found.append("kubelet running")
    if t.run(["ip", "link", "show", BRIDGE], check=False).ok:
        found.append(f"the {BRIDGE} bridge")
    running = t.run(["sh", "-c", "command -v crictl >/dev/null || exit 0; crictl ps -q"], sudo=True,
                    check=False).stdout.split()
    if running:
        found.append(f"{len(running)} containers running")
    return found


def _kept(path: str) -> str:
    return f"{KEEP_DIR}/{path.strip('/').replace('/', '_')}"


def _copy(t: Transport, why: str, src: str, dest: str) -> None:
    """The folder ``src``'s contents into ``dest`` (made when missing), modes and owners kept; nothing when
    ``src`` is not there."""
    t.run(["sh", "-c", 'if [ -d "$1" ]; then mkdir -p "$2" && cp -a "$1/." "$2/"; fi', why, src, dest], sudo=True)


def _put_back(t: Transport, keep: Sequence[str]) -> None:
    """What ``kubernetes`` set aside, back in place (also after a reset that stopped half-way)."""
    if not keep:
        return
    for path in keep:
        _copy(t, "put-back", _kept(path), path)
    t.run(["rm", "-rf", "--", KEEP_DIR], sudo=True)


def kubernetes(ctx: InstallContext, t: Transport, keep: Sequence[str] = ()) -> bool:
    """Reset the node; False when it had nothing left to reset. ``keep``: folders kubeadm reset would empty
    that something else still uses (an etcd member's certificates under /etc/kubernetes/pki/etcd: kubeadm
    reset empties /etc/kubernetes/pki, and the member could not start again)."""
    if not ctx.dry_run:
        _put_back(t, keep)
    found = leftovers(t)
    if not found:
        return False
    if ctx.would(f"reset Kubernetes on {t.node} ({', '.join(found)}): kubeadm reset, kubelet stopped and disabled, "
                 "kha's CNI files, bridge and iptables rules removed" + (f"; {', '.join(keep)} kept" if keep else "")):
        return True
    for path in keep:
        _copy(t, "set-aside", path, _kept(path))
    kubeadm = binary(ctx, t, "kubeadm")
    if nodeops.exists(t, kubeadm):
        t.run([kubeadm, "reset", "--force"], sudo=True, timeout=300)
    _put_back(t, keep)
    nodeops.systemctl(t, "disable", "--now", "kubelet", check=False)
    nodeops.systemctl(t, "disable", "--now", "kha-pod-routes", check=False)
    t.run(["rm", "-rf", "--", KUBEADM_CONFIG, CNI_CONFLIST, ROUTES_UNIT, IPAM_STATE], sudo=True)
    nodeops.systemctl(t, "daemon-reload")
    if t.run(["ip", "link", "show", BRIDGE], check=False).ok:
        t.run(["ip", "link", "delete", BRIDGE], sudo=True)
    t.run(["sh", "-c", _IPTABLES], sudo=True, timeout=60)
    log.info("%s: Kubernetes reset (%s)", t.node, ", ".join(found))
    return True
