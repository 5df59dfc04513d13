"""etcd from its upstream release tarball, pinned by sha256: how an RHEL-family node gets etcd.

RHEL 9 and its rebuilds package no etcd (neither BaseOS/AppStream nor EPEL 9 carries it), so kha does what
kubespray does (roles/etcd, its checksums table): download ``etcd-vVERSION-linux-ARCH.tar.gz`` from etcd's
GitHub releases, or from ``etcd_download_url`` (a mirror: the norm where nodes have no internet), check
it against the sha256 pinned here before anything is unpacked, and install etcd, etcdctl and etcdutl.
They go to /usr/bin, not /usr/local/bin: the unit kha writes runs ``render.ETCD_BIN`` on every family, and
kha runs etcdctl by name under sudo, whose ``secure_path`` on the RHEL family lacks /usr/local/bin. The
``etcd`` system user the unit runs as is created as Debian's package does.

A node holding another etcd version is refused, not replaced under a running member: moving a member's
version is an upgrade, one member at a time (``kha upgrade --with-etcd``: ``upgrade``, then a restart and a
healthy cluster before the next member). A member newer than ``VERSION`` is refused there too: etcd does not
go back a version under its data.
"""

from __future__ import annotations

import logging
import re

from installer import nodeops
from installer.errors import PackageError
from installer.etcd import render
from installer.nodeprep.render import proxy_for
from installer.phases import Context
from installer.remote import Transport
from installer.settings import Settings

log = logging.getLogger(__name__)

VERSION = "3.5.12"
#: sha256 of etcd-v3.5.12-linux-ARCH.tar.gz, as kubespray's
#: roles/kubespray-defaults/defaults/main/checksums.yml (etcd_binary_checksums) records them.
SHA256 = {
    "amd64": "f2ff0cb43ce119f55a85012255609b61c64263baea83aa7c8e6846c0938adca5",
    "arm64": "31f30c01918771ece28d6e553e0f33be9483ced989896ecf6bbe1edb07786141",
}
#: ``uname -m`` → the name etcd's release files use
ARCH = {"x86_64": "amd64", "aarch64": "arm64"}
BINARIES = ("etcd", "etcdctl", "etcdutl")
BIN_DIR = "/usr/bin"
WORK_DIR = "/var/tmp/kha-etcd"
USER = "etcd"


def tarball(arch: str) -> str:
    return f"etcd-v{VERSION}-linux-{arch}.tar.gz"


def url(s: Settings, arch: str) -> str:
    return f"{s.etcd_download_url}/v{VERSION}/{tarball(arch)}"


def installed_version(t: Transport) -> str | None:
    """What ``etcd --version`` says ("etcd Version: 3.5.12"), or None when there is no etcd."""
    res = t.run([render.ETCD_BIN, "--version"], sudo=True, check=False)
    m = re.search(r"^etcd Version: (\S+)$", res.stdout, re.M) if res.ok else None
    return m.group(1) if m else None


def ensure(ctx: Context, t: Transport, s: Settings) -> None:
    """etcd, etcdctl and etcdutl at ``VERSION`` in /usr/bin, and the etcd user. Idempotent."""
    have = installed_version(t)
    if have is not None and have != VERSION:
        raise PackageError(f"{t.node} has etcd {have} in {render.ETCD_BIN}; kha installs etcd {VERSION} on the RHEL "
                           "family and does not replace a member's etcd under it: move it to "
                           f"{VERSION} one member at a time (kha upgrade --with-etcd), or remove it")
    if have is None or not all(nodeops.exists(t, f"{BIN_DIR}/{b}") for b in BINARIES):
        _install(ctx, t, s)
    if not t.run(["getent", "passwd", USER], check=False).ok and not ctx.would(f"create the system user {USER}"):
        t.run(["useradd", "--system", "--user-group", "--home-dir", "/var/lib/etcd", "--no-create-home",
               "--shell", "/sbin/nologin", "--comment", "etcd (kha)", USER], sudo=True)


def upgrade(ctx: Context, t: Transport, s: Settings) -> bool:
    """A member's etcd moved to ``VERSION`` from the release tarball (``kha upgrade --with-etcd``); False when
    it runs that already. The caller restarts the member and waits for a healthy cluster."""
    have = installed_version(t)
    if have == VERSION:
        return False
    if have is not None and _release(have) > _release(VERSION):
        raise PackageError(f"{t.node} has etcd {have} in {render.ETCD_BIN}, newer than the {VERSION} kha installs: "
                           "etcd does not go back a version under its data; nothing was changed")
    _install(ctx, t, s)
    return True


def _release(version: str) -> tuple[int, ...]:
    """"3.5.9" → (3, 5, 9): etcd's versions compare by their numbers."""
    return tuple(int(n) for n in re.findall(r"\d+", version)[:3])


def _install(ctx: Context, t: Transport, s: Settings) -> None:
    machine = t.run(["uname", "-m"]).stdout.strip()
    arch = ARCH.get(machine)
    if arch is None:
        raise PackageError(f"{t.node} is {machine}: kha pins etcd's release for {', '.join(ARCH)} only")
    source = url(s, arch)
    if ctx.would(f"download {source}, check its sha256 ({SHA256[arch][:12]}…) and install "
                 f"{', '.join(BINARIES)} {VERSION} into {BIN_DIR}"):
        return
    archive = f"{WORK_DIR}/{tarball(arch)}"
    t.run(["install", "-d", "-m", "0700", WORK_DIR], sudo=True)
    try:
        nodeops.fetch(t, source, archive, proxy=proxy_for(s, source), timeout=600)
        got = nodeops.remote_sha256(t, archive)
        if got != SHA256[arch]:
            raise PackageError(f"{source} has sha256 {got}, kha pins {SHA256[arch]} (etcd {VERSION}, {arch}): a "
                               "mirror serving another file, or a broken download; nothing was installed")
        top = f"etcd-v{VERSION}-linux-{arch}"
        t.run(["tar", "-xzf", archive, "-C", WORK_DIR, "--no-same-owner", "--strip-components=1",
               *(f"{top}/{b}" for b in BINARIES)], sudo=True)
        for b in BINARIES:
            t.run(["install", "-m", "0755", "-o", "root", "-g", "root", f"{WORK_DIR}/{b}", f"{BIN_DIR}/{b}"],
                  sudo=True)
    finally:
        t.run(["rm", "-rf", WORK_DIR], sudo=True)
    log.info("%s: etcd %s installed from %s", t.node, VERSION, source)
