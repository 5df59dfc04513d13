"""Per-cluster secrets, generated once and kept: bootstrap token, VRRP password, kubeadm certificate key.

kubeadm-ha ships a fixed token and a fixed encryption key in its examples; kha generates them per
cluster instead, stores them beside the PKI (``secrets.json``, mode 0600), and never regenerates
them, so a re-run renders identical configs. Values set in the inventory win.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import string
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from installer.errors import ConfigError, Problem
from installer.pki import durable
from installer.settings import Settings

_ALNUM = string.ascii_lowercase + string.digits


@dataclass(frozen=True)
class ClusterSecrets:
    kubeadm_token: str
    vrrp_password: str
    certificate_key: str

    @classmethod
    def generate(cls) -> ClusterSecrets:
        token = "".join(secrets.choice(_ALNUM) for _ in range(6)) + "." + "".join(
            secrets.choice(_ALNUM) for _ in range(16)
        )
        # keepalived's PASS authentication uses at most 8 characters.
        return cls(token, secrets.token_hex(4), secrets.token_hex(32))

    def with_settings(self, s: Settings) -> ClusterSecrets:
        out = self
        if s.kubeadm_token:
            out = replace(out, kubeadm_token=s.kubeadm_token)
        if s.lb_keepalived_password:
            out = replace(out, vrrp_password=s.lb_keepalived_password[:8])
        return out


def load_or_create(path: Path, *, write: bool = True) -> ClusterSecrets:
    """Load ``path`` or create it (0600). An existing file is never rewritten.

    ``write=False`` (dry-run) generates fresh secrets in memory when there is no file yet.
    """
    if write and path.parent.is_dir():
        # Written as the PKI store writes (staged 0600, fsynced, renamed): the next run finishes or drops a
        # write a crash interrupted, and no secret is left in a temporary file (``secrets.tmp``: kha before that).
        durable.recover(path.parent, _mkdir)
        with contextlib.suppress(FileNotFoundError):
            path.with_suffix(".tmp").unlink()
    if path.exists():
        try:
            data = json.loads(path.read_text())
            return ClusterSecrets(**{k: str(data[k]) for k in ("kubeadm_token", "vrrp_password", "certificate_key")})
        except (ValueError, KeyError, TypeError) as exc:
            raise ConfigError([Problem(str(path), None, f"unreadable secrets file ({exc}); restore it from a "
                                       "backup — regenerating would break the running cluster")]) from None
    fresh = ClusterSecrets.generate()
    if not write:
        return fresh
    path.parent.mkdir(parents=True, exist_ok=True)
    durable.commit(path.parent, {path.name: (json.dumps(asdict(fresh), indent=2).encode(), 0o600)}, _mkdir)
    return fresh


def _mkdir(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
