"""What the installer needs to know about a node that the inventory does not say.

``kha render`` works without touching nodes, so it uses defaults (Debian family, the interface
named by ``lb_keepalived_interface`` or ``eth0``); the install phases read the real facts from each
node first and render with those, so what lands fits the machine.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class OSFamily(StrEnum):
    DEBIAN = "debian"  # Debian, Ubuntu
    REDHAT = "redhat"  # RHEL, Rocky, CentOS Stream, Alma


@dataclass(frozen=True)
class NodeFacts:
    os_family: OSFamily = OSFamily.DEBIAN
    #: the interface that carries the node's inventory address (keepalived binds the VIP there).
    interface: str = "eth0"
    #: filesystem type under /var/lib (``stat -f``): containerd's overlayfs snapshotter cannot work on
    #: overlayfs itself (nodes that are containers on an overlay root, live systems).
    var_lib_fs: str = "ext2/ext3"
    #: ``systemd-detect-virt --container`` found one (LXC, docker …): the clock and kernel are the host's.
    container: bool = False
    #: CPUs this node may use (``nproc``) and its memory (MemTotal): the resource check reads them.
    cpus: int = 2
    memory_mib: int = 4096
    #: the major of os-release's VERSION_ID (``9`` on Rocky 9.4, RHEL 9, CentOS Stream 9); None when it has none
    os_major: int | None = None
    #: the kernel has AppArmor on (/sys/module/apparmor/parameters/enabled reads ``Y``); off when it has no such module
    apparmor: bool = False

    @property
    def snapshotter(self) -> str:
        return "native" if self.var_lib_fs == "overlayfs" else "overlayfs"

    @property
    def nginx_user(self) -> str:
        return "www-data" if self.os_family is OSFamily.DEBIAN else "nginx"

    @property
    def nginx_modules(self) -> str:
        """How this family's nginx loads dynamic modules (the stream module lives there)."""
        if self.os_family is OSFamily.DEBIAN:
            return "include /etc/nginx/modules-enabled/*.conf;"
        return "include /usr/share/nginx/modules/*.conf;"


def parse_os_release(text: str) -> OSFamily:
    """Map /etc/os-release to a family; unknown distributions are refused by the caller."""
    ids: set[str] = set()
    for line in text.splitlines():
        key, _, value = line.partition("=")
        if key in ("ID", "ID_LIKE"):
            ids.update(value.strip().strip('"').split())
    if ids & {"debian", "ubuntu"}:
        return OSFamily.DEBIAN
    if ids & {"rhel", "centos", "fedora", "rocky", "almalinux"}:
        return OSFamily.REDHAT
    raise ValueError(f"unsupported distribution (os-release IDs: {', '.join(sorted(ids)) or 'none'})")


def os_major(text: str) -> int | None:
    """The major version in /etc/os-release's VERSION_ID (``"9.4"`` → 9), or None (Debian sid has none)."""
    for line in text.splitlines():
        key, _, value = line.partition("=")
        if key == "VERSION_ID":
            major = value.strip().strip('"').split(".")[0]
            return int(major) if major.isdigit() else None
    return None
