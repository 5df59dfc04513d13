"""Which CAs a node already trusts, and the refusal to push certificates of another CA over them.

A PKI store that was lost or renamed (a fresh ``--state``, ``hosts.ini`` moved to another folder) makes a
brand new CA on the next ``kha install``; pushed onto a running cluster it would cut every kubelet,
apiserver and etcd member off from the others. So before kha writes a CA-signed file or starts etcd on a
node, it reads the CA certificates the node holds (``/etc/kubernetes/pki/ca.crt``, ``front-proxy-ca.crt``,
``etcd/ca.crt``) over the node's transport and compares their public keys with the store's. A node that
holds none is new; one that holds the same keys is ours; any other is refused, unless the operator asked
for ``--replace-ca``, the explicit and documented way to move a cluster onto a new CA.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from installer.errors import CommandError, PKIError, RemoteError
from installer.pki import crypto
from installer.pki.table import CAS
from installer.remote import Transport

__all__ = ["NODE_PKI", "Foreign", "check_node", "foreign_cas"]

log = logging.getLogger(__name__)

#: Where kubeadm (and kha's etcd phase) keep the CA certificates on a node.
NODE_PKI = "/etc/kubernetes/pki"


@dataclass(frozen=True)
class Foreign:
    """A CA certificate on a node that is not the store's."""

    ca: str  # "ca", "front-proxy-ca", "etcd/ca"
    path: str  # on the node
    node_key: str  # key fingerprint, or why it could not be read
    store_key: str

    def __str__(self) -> str:
        return f"{self.path} has key {self.node_key}, the store's {self.ca} CA has {self.store_key}"


def _absent(exc: RemoteError) -> bool:
    """Whether a failed read means "no such file" (SFTP and local reads carry the OSError; ``sudo cat`` says it)."""
    if isinstance(exc.__cause__, FileNotFoundError):
        return True
    return isinstance(exc, CommandError) and "No such file or directory" in exc.stderr


def _node_ca(t: Transport, path: str) -> str | None:
    """The key fingerprint of the CA certificate at ``path`` on the node; None when there is none."""
    try:
        data = t.get(path, sudo=True)
    except RemoteError as exc:
        if _absent(exc):
            return None
        raise
    try:
        return crypto.key_fingerprint(crypto.parse_cert(data, f"{t.node}:{path}"))
    except PKIError:
        return "(not a PEM certificate)"


def foreign_cas(t: Transport, store: Path) -> list[Foreign]:
    """The CA certificates on the node whose keys are not those of the store at ``store``."""
    out: list[Foreign] = []
    for spec in CAS:
        mine = store / "ca" / f"{spec.name}.crt"
        if not mine.is_file():
            continue  # the store has no such CA (yet): nothing to compare with
        want = crypto.key_fingerprint(crypto.parse_cert(mine.read_bytes(), str(mine)))
        path = f"{NODE_PKI}/{spec.name}.crt"
        have = _node_ca(t, path)
        if have is not None and have != want:
            out.append(Foreign(spec.name, path, have, want))
    return out


def check_node(t: Transport, store: Path, *, replace_ca: bool = False) -> None:
    """Refuse (``PKIError``) when the node trusts another CA than the store; ``replace_ca`` lets it through."""
    foreign = foreign_cas(t, store)
    if not foreign:
        return
    said = "; ".join(str(f) for f in foreign)
    if replace_ca:
        log.warning("%s: replacing the node's CA on request (--replace-ca): %s", t.node, said)
        return
    raise PKIError(f"{t.node} trusts another CA than the PKI store {store}: {said}. It belongs to a cluster "
                   "built from another store (a lost or renamed state folder?); writing this store's "
                   "certificates or starting etcd there would cut it off from its cluster, so nothing was "
                   "written. Run with the state folder that built it (--state DIR), or move the node onto this "
                   "store's CA on purpose with --replace-ca")
