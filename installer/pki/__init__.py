"""A PKI that kubeadm accepts as its own, built with ``cryptography`` alone.

- ``table``: the one declarative table of every certificate (CA, CN, O, usages, SANs, who gets it).
- ``crypto``: keys and certificates as bytes (issue, parse, judge).
- ``kubeconfig``: the kubeconfig files of the control plane.
- ``store``: the store on disk (``DIR/ca``, ``DIR/cluster``, ``DIR/nodes/<node>``), idempotent init, check, renew.
- ``cli``: ``kha pki init|check|renew``.
"""

from installer.pki.store import Change, CheckReport, CheckRow, Store

__all__ = ["Change", "CheckReport", "CheckRow", "Store"]
