"""Kubeconfig files for the control plane: which server each points at, their YAML text, and reading them back.

This module owns the kubeconfig *file*: the identities inside (CN, O, signing CA) are rows of
``installer.pki.table``. The text is the shape ``kubeadm init phase kubeconfig`` writes (client-go's
clientcmd serialiser: keys sorted, certificates embedded as base64 ``*-data``), produced by hand so no
YAML library is needed, and byte-for-byte deterministic: the same CA, server and client certificate
always give the same file, which keeps a re-run of ``kha pki init`` from touching it.

Which server:
- ``admin.conf`` and ``super-admin.conf`` point at the control-plane endpoint (the load balancer), as kubeadm's.
- ``controller-manager.conf`` and ``scheduler.conf`` point at the node's own kube-apiserver
  (``https://<node address>:6443``): kubeadm does so since 1.19.1 (kubernetes/kubernetes#94398), so these
  components never talk to an apiserver of another version during an upgrade. kha installs ≥ 1.20 only.
- ``kubelet.conf`` is not written at all: kubelets get their certificate by TLS bootstrapping.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass

from installer.errors import PKIError
from installer.pki.table import CertSpec
from installer.topology import Host, Topology

__all__ = ["LOCAL_APISERVER", "Kubeconfig", "parse", "render", "server_for"]

#: Kubeconfigs that talk to the apiserver on their own node rather than through the load balancer.
LOCAL_APISERVER = frozenset({"controller-manager.conf", "scheduler.conf"})


def server_for(spec: CertSpec, topo: Topology, host: Host | None) -> str:
    """The ``server:`` URL of one kubeconfig (``host`` is the node for per-node kubeconfigs)."""
    if spec.name in LOCAL_APISERVER:
        assert host is not None, f"{spec.name} is per node"
        return f"https://{host.address}:{topo.apiserver_port}"
    return topo.apiserver_endpoint.url


@dataclass(frozen=True)
class Kubeconfig:
    """What a kha kubeconfig holds: one cluster, one user, one context."""

    cluster: str
    server: str
    user: str
    ca_pem: bytes
    cert_pem: bytes
    key_pem: bytes


# A YAML plain scalar that needs no quoting: no leading indicator, no ": " or " #" inside.
_PLAIN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/@+=-]*")


def _scalar(text: str) -> str:
    if _PLAIN.fullmatch(text) and not text.endswith(":") and text not in ("true", "false", "null", "yes", "no"):
        return text
    return json.dumps(text)  # a JSON string is a valid double-quoted YAML scalar


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def render(kc: Kubeconfig) -> bytes:
    """The kubeconfig as YAML text, laid out like clientcmd.Write."""
    context = f"{kc.user}@{kc.cluster}"
    lines = [
        "apiVersion: v1",
        "clusters:",
        "- cluster:",
        f"    certificate-authority-data: {_b64(kc.ca_pem)}",
        f"    server: {_scalar(kc.server)}",
        f"  name: {_scalar(kc.cluster)}",
        "contexts:",
        "- context:",
        f"    cluster: {_scalar(kc.cluster)}",
        f"    user: {_scalar(kc.user)}",
        f"  name: {_scalar(context)}",
        f"current-context: {_scalar(context)}",
        "kind: Config",
        "preferences: {}",
        "users:",
        f"- name: {_scalar(kc.user)}",
        "  user:",
        f"    client-certificate-data: {_b64(kc.cert_pem)}",
        f"    client-key-data: {_b64(kc.key_pem)}",
    ]
    return ("\n".join(lines) + "\n").encode("ascii")


_FIELD = re.compile(r"^\s*-?\s*(?P<key>[a-z-]+):\s*(?P<value>.*?)\s*$")


def _unquote(value: str) -> str:
    if value.startswith('"'):
        try:
            out = json.loads(value)
        except json.JSONDecodeError:
            return value
        return out if isinstance(out, str) else value
    return value.strip("'")


def parse(data: bytes, where: str) -> Kubeconfig:
    """Read back a single-cluster, single-user kubeconfig with embedded certificates (ours or kubeadm's).

    Raises PKIError naming ``where`` when it is not one (for instance, it points at certificate files).
    """
    fields: dict[str, list[str]] = {}
    section = ""
    for line in data.decode("utf-8", errors="replace").splitlines():
        m = _FIELD.match(line)
        if not m:
            continue
        key, value = m.group("key"), _unquote(m.group("value"))
        if not line.startswith((" ", "-")):
            section = key
        if key == "name":
            key = f"{section}.name"
        fields.setdefault(key, []).append(value)

    def one(key: str) -> str:
        values = fields.get(key, [])
        if len(values) != 1 or not values[0]:
            raise PKIError(f"{where}: expected exactly one {key.replace('.name', ' name')} in the kubeconfig "
                           f"(found {len(values)}); kha only reads kubeconfigs with embedded certificates")
        return values[0]

    def decoded(key: str) -> bytes:
        try:
            return base64.b64decode(one(key), validate=True)
        except binascii.Error:
            raise PKIError(f"{where}: {key} is not base64") from None

    return Kubeconfig(cluster=one("clusters.name"), server=one("server"), user=one("users.name"),
                      ca_pem=decoded("certificate-authority-data"), cert_pem=decoded("client-certificate-data"),
                      key_pem=decoded("client-key-data"))
