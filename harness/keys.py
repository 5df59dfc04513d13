"""SSH keys the harness makes at run time: the cluster's root login key and each node's host key.

Both are ed25519, generated with ``cryptography`` and written in OpenSSH format, never committed and
never copied between clusters (cloned images must not share host keys: ../shared/MACHINE.md,
"Images"). The public host keys are pinned into the ``known_hosts`` the harness writes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey


@dataclass(frozen=True)
class KeyPair:
    """An OpenSSH private key (PEM text) and its ``ssh-ed25519 AAAA… comment`` public line."""

    private: str
    public: str

    @classmethod
    def generate(cls, comment: str) -> KeyPair:
        key = Ed25519PrivateKey.generate()
        private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                    serialization.NoEncryption()).decode()
        public = key.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                               serialization.PublicFormat.OpenSSH).decode()
        return cls(private, f"{public} {comment}")

    @property
    def public_blob(self) -> str:
        """``ssh-ed25519 AAAA…`` without the comment (what known_hosts and paramiko compare)."""
        kind, data = self.public.split()[:2]
        return f"{kind} {data}"

    def write(self, path: Path) -> None:
        """``path`` (0600) and ``path.pub``, like ssh-keygen."""
        write_private(path, self.private)
        path.with_name(path.name + ".pub").write_text(self.public + "\n")

    @classmethod
    def read(cls, path: Path) -> KeyPair:
        return cls(path.read_text(), path.with_name(path.name + ".pub").read_text().strip())


def write_private(path: Path, text: str) -> None:
    """Write a secret with mode 0600 from the start (never world-readable, not even briefly)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.chmod(path, 0o600)


def known_hosts_line(names: list[str], host_key: KeyPair) -> str:
    """One known_hosts line pinning ``host_key`` for every name the node is reached by."""
    return f"{','.join(dict.fromkeys(names))} {host_key.public_blob}"
