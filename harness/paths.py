"""Where the harness keeps things on the host: cluster state directories and its own caches.

- cluster state: ``$KHA_STATE_DIR/<cluster>/`` if set, else ``~/.cache/kha/clusters/<cluster>/``
  (keys, ssh_config, known_hosts, state.json, node overlays/disks, the private libvirtd's directories);
- harness caches (derived VM disks, the KVM probe, libvirt's qemu capabilities): ``<kha cache>/harness/``,
  where the kha cache is ``$KHA_CACHE_DIR``, else ``$XDG_CACHE_HOME/kha``, else ``~/.cache/kha`` (the
  same root the image cache uses).
"""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    if os.environ.get("KHA_CACHE_DIR"):
        return Path(os.environ["KHA_CACHE_DIR"]).expanduser()
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]).expanduser() / "kha"
    return Path.home() / ".cache" / "kha"


def clusters_root() -> Path:
    """The directory holding one state directory per cluster."""
    if os.environ.get("KHA_STATE_DIR"):
        return Path(os.environ["KHA_STATE_DIR"]).expanduser().resolve()
    return cache_root() / "clusters"


def cluster_dir(cluster: str) -> Path:
    return clusters_root() / cluster


def harness_cache() -> Path:
    return cache_root() / "harness"
