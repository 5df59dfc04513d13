"""The crictl shim: ``crictl.sh`` next to this module (a POSIX sh script onto containerd's ``ctr``).

Why a shim: Debian 12 has no cri-tools, and kubeadm 1.20 runs ``crictl`` for every CRI socket. The script's
header lists the exact calls kubeadm makes and how each maps onto ``ctr``.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path


def shim_text() -> str:
    return resources.files("images.bundle").joinpath("crictl.sh").read_text()


def install_shim(dest: Path) -> None:
    """Write the shim to ``dest`` (mode 0755)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(shim_text())
    dest.chmod(0o755)
