"""Which libvirt the harness talks to: the workstation's system daemon, or a private one (isolated mode).

Isolated mode starts ``virtlogd`` and ``libvirtd`` for one cluster, inside a network namespace the run
creates and inside a new mount namespace where private directories are bound over libvirt's system
paths (/etc/libvirt, /var/lib/libvirt, /run/libvirt, /var/log/libvirt, /var/cache/libvirt). So the
topology's bridge, taps, veths and addresses exist only in that namespace, several clusters and the
system libvirt never share state, and nothing is left once the daemons and the namespace are gone.
The client stays outside and connects through the private socket (``qemu+unix:///system?socket=…``).

Facts this relies on were measured on our machines (../shared/MACHINE.md, "libvirt"):
- no systemd as PID 1: we start ``virtlogd -d`` and ``libvirtd -d -p PIDFILE`` ourselves;
- qemu.conf must run qemu as root with ``dynamic_ownership = 0`` and ``security_driver = "none"``,
  otherwise every domain start costs ~52 s of capability re-probing;
- the LXC driver needs the cgroup v1 controllers mounted where it looks (/sys/fs/cgroup). A fresh
  sysfs for the namespace (libvirt reads /sys/class/net) hides the host's cgroup mounts, so we mount a
  tmpfs and each v1 hierarchy again *after* mounting sysfs. We never use ``ip netns exec`` for the
  daemons because it remounts /sys behind our back (ip-netns(8)).
``stop()`` kills exactly the PIDs recorded at start, after checking they are still those daemons.

A third kind, ``RemoteLibvirt``, is a libvirtd kha did not start, named by a URI (``kha up --connect URI``,
``--kha-connect URI`` for pytest): another hypervisor (``qemu+ssh://host/system``) or a second daemon on
this machine (``qemu+unix:///system?socket=…``). kha never starts or stops it. The URI names one driver;
the other's is derived from it by changing only the driver (``qemu+ssh://u@h:2222/system?keyfile=K`` ↔
``lxc+ssh://u@h:2222/system?keyfile=K``: transport, user, host, port, path and query kept). A malformed
URI is refused before any connection (``ConnectUriError``, exit 2); a daemon that does not answer is a
``DaemonError`` naming ``--connect`` and what libvirt said, before anything is written. What changes when
libvirtd is not this process's neighbour, and how each is handled:

- **disks and images**: a domain's XML names file paths (the image's rootfs, kernel, initrd, the VM base
  disk, and each node's overlay or disk in the cluster's state dir) that must exist *where libvirtd runs*.
  kha requires the same paths there: the image cache and the state dir on one filesystem both machines
  mount at the same place (trivially true for a second daemon here; NFS or similar for a real remote).
  It checks this before booting, through libvirt itself (a transient ``dir`` storage pool over each folder
  lists what the daemon sees): every image file must be listed, and a marker file written into the state
  dir from here must show up there, so a hypervisor with a *stale copy* of the state dir is refused too.
  Uploading volumes (``virStorageVol.upload``) is not done: node disks are qcow2 overlays on a base image
  whose backing path would have to be rewritten, and LXC roots are directories (see the README).
- **reaching the nodes**: each kind provides a ``harness.ssh.Reach``, used for the ssh_config and for
  paramiko alike. A local daemon (unix socket) is asked who it is (``SO_PEERCRED`` on its socket, see
  unix(7)); when it runs in another network namespace, the nodes are reached inside that namespace, which
  must have a name under /run/netns (recorded in the state as ``netns``, so every tool that enters the
  cluster's namespace keeps working). ``+ssh`` URIs hop through the hypervisor's sshd (``ssh -W``);
  ``+tcp``/``+tls`` URIs reach the addresses directly, so the topology's subnet must be routed to that host.
- **mounts**: LXC nodes boot from an overlay mounted where libvirt_lxc sees it. On this machine that is
  ``nsenter -t <daemon PID> -m`` (or nothing, when the daemon shares our mount namespace). On another
  machine kha cannot mount anything: LXC through a URI that is not a local socket is refused (qemu only).
- **accelerator**: the KVM probe boots a VM *here*; for a hypervisor elsewhere its result says nothing,
  so remote qemu nodes use TCG (a probe on the hypervisor is not done).
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import struct
import time
import urllib.parse
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import libvirt

from core import waiting
from harness import hostcmd, netns, ssh
from harness.errors import ConnectUriError, DaemonError, Unsupported
from harness.spec import DRIVERS, Driver

log = logging.getLogger(__name__)

# libvirt's system paths that get a private directory each (name of the subdirectory → path).
PRIVATE_DIRS: tuple[tuple[str, str], ...] = (
    ("etc", "/etc/libvirt"),
    ("lib", "/var/lib/libvirt"),
    ("run", "/run/libvirt"),
    ("log", "/var/log/libvirt"),
    ("cache", "/var/cache/libvirt"),
)

# Subdirectories libvirt's packages create and the daemon expects to exist (it does not create them).
SKELETON: tuple[str, ...] = (
    "lib/dnsmasq", "lib/network", "lib/lxc", "lib/qemu", "lib/images", "lib/boot",
    "log/lxc", "log/qemu",
)

QEMU_CONF = """\
# Written by kha (harness/daemon.py) for a private libvirtd. Why each line: ../shared/MACHINE.md.
user = "root"
group = "root"
dynamic_ownership = 0
security_driver = "none"
"""

# The mount-namespace setup, run by /bin/sh inside the new mount namespace. Data arrives as
# positional arguments only: $1 = private root, $2 = the qemu capabilities cache directory (shared by
# all clusters: a cold one costs ~8 s on the first qemu connection), $3 = "v1" or "v2", then one cgroup mount option
# string per hierarchy ("cpu,cpuacct", "none,name=systemd", …). Ends by exec'ing libvirtd, which
# daemonizes and exits its parent once it listens (libvirtd(8) --daemon).
_SETUP = r"""
set -eu
root=$1; cache=$2; mode=$3; shift 3
mount -t sysfs -o nosuid,nodev,noexec sysfs /sys
if [ "$mode" = v1 ]; then
    mount -t tmpfs -o mode=755,size=64k,nosuid,nodev,noexec kha-cgroup /sys/fs/cgroup
    for opts in "$@"; do
        dir=${opts#none,name=}
        mkdir -p "/sys/fs/cgroup/$dir"
        mount -t cgroup -o "$opts" cgroup "/sys/fs/cgroup/$dir"
        case $dir in *,*)  # co-mounted (cpu,cpuacct): libvirt looks for a link per controller
            for c in $(echo "$dir" | tr ',' ' '); do ln -s "$dir" "/sys/fs/cgroup/$c"; done ;;
        esac
    done
else
    mount -t cgroup2 -o nosuid,nodev,noexec cgroup2 /sys/fs/cgroup
fi
mount --bind "$root/etc" /etc/libvirt
mount --bind "$root/lib" /var/lib/libvirt
mount --bind "$root/run" /run/libvirt
mount --bind "$root/log" /var/log/libvirt
mount --bind "$cache" /var/cache/libvirt
virtlogd -d -p "$root/virtlogd.pid"
exec libvirtd -d -p "$root/libvirtd.pid"
"""

_CONNECT_TIMEOUT = 30.0
_STOP_TIMEOUT = 15.0
_SOCKET_PATH_MAX = 100  # sun_path is 108 bytes, keep a margin


class Libvirt(Protocol):
    """Where libvirt runs for one cluster: URIs to connect to, how to reach the nodes, how to mount where it
    sees it."""

    @property
    def netns(self) -> str | None: ...

    def uri(self, driver: Driver) -> str: ...

    def reach(self) -> ssh.Reach:
        """How SSH (ssh_config, paramiko) gets to the node addresses on this libvirt's network."""
        ...

    def mount_prefix(self) -> list[str]:
        """argv prefix that runs mount/umount where libvirt (and libvirt_lxc) sees the result."""
        ...

    def mountinfo(self) -> Path | None:
        """The mount table libvirt sees, or None when libvirtd is not on this machine (no mounts of ours)."""
        ...

    def to_json(self) -> dict[str, Any]: ...


@dataclass
class SystemLibvirt:
    """The workstation's own libvirt (``qemu:///system``, ``lxc:///system``): non-isolated mode."""

    netns: str | None = None

    def uri(self, driver: Driver) -> str:
        return f"{driver}:///system"

    def reach(self) -> ssh.Reach:
        return ssh.Direct()

    def mount_prefix(self) -> list[str]:
        return []

    def mountinfo(self) -> Path | None:
        return Path("/proc/self/mountinfo")

    def to_json(self) -> dict[str, Any]:
        return {"isolated": False}


@dataclass
class PrivateLibvirt:
    """A libvirtd + virtlogd of our own, in our own network and mount namespaces (isolated mode)."""

    netns: str
    root: Path
    cache: Path
    pids: dict[str, int] = field(default_factory=dict)

    # -- lifecycle -----------------------------------------------------------------------------
    @classmethod
    def start(cls, netns_name: str, root: Path, cache: Path) -> PrivateLibvirt:
        """Create the namespace, private directories and both daemons; wait until libvirtd answers."""
        for binary, package in (("libvirtd", "libvirt-daemon-system"), ("virtlogd", "libvirt-daemon-system"),
                                ("nsenter", "util-linux"), ("unshare", "util-linux"), ("ip", "iproute2")):
            hostcmd.need(binary, package)
        if netns.exists(netns_name):
            raise DaemonError(f"network namespace {netns_name} already exists: a cluster with this name is up "
                              "(kha status), or a previous run was interrupted (kha down cleans it up)")
        daemon = cls(netns_name, root, cache)
        daemon._prepare_dirs()
        netns.create(netns_name)
        try:
            daemon._spawn()
            daemon.wait_ready()
        except BaseException:
            daemon.stop()
            raise
        log.info("private libvirtd %d (virtlogd %d) in netns %s", daemon.pids.get("libvirtd", 0),
                 daemon.pids.get("virtlogd", 0), netns_name)
        return daemon

    def _prepare_dirs(self) -> None:
        if not Path("/etc/libvirt/libvirtd.conf").is_file():
            raise DaemonError("/etc/libvirt/libvirtd.conf does not exist: install libvirt-daemon-system")
        for sub, system_path in PRIVATE_DIRS:
            if not Path(system_path).is_dir():
                # The bind mount needs a mount point. These are libvirt's own directories; without
                # systemd nobody creates /run/libvirt until a system libvirtd starts, so make it (empty).
                log.info("creating the mount point %s", system_path)
                Path(system_path).mkdir(mode=0o755, parents=True, exist_ok=True)
            (self.cache if sub == "cache" else self.root / sub).mkdir(parents=True, exist_ok=True)
        for sub in SKELETON:
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        etc = self.root / "etc"
        # Only the daemon configuration files: the system's defined networks (the autostarted
        # "default" with its dnsmasq), nwfilters and domains stay out of a private daemon.
        for conf in Path("/etc/libvirt").glob("*.conf"):
            shutil.copy2(conf, etc / conf.name)
        (etc / "qemu.conf").write_text(QEMU_CONF)
        for stale in ("virtlogd.pid", "libvirtd.pid"):
            (self.root / stale).unlink(missing_ok=True)

    def _spawn(self) -> None:
        mode, hierarchies = cgroup_layout()
        argv = ["nsenter", f"--net={netns.NETNS_DIR / self.netns}", "--",
                "unshare", "--mount", "--propagation", "slave", "--",
                "/bin/sh", "-c", _SETUP, "kha-libvirt", str(self.root), str(self.cache), mode, *hierarchies]
        hostcmd.run(argv, timeout=60)
        for name in ("virtlogd", "libvirtd"):
            pidfile = self.root / f"{name}.pid"
            try:
                self.pids[name] = int(pidfile.read_text().strip())
            except (OSError, ValueError) as exc:
                raise DaemonError(f"{name} wrote no PID file {pidfile}; see {self.root / 'log'}") from exc

    def wait_ready(self, timeout: float = _CONNECT_TIMEOUT) -> None:
        def answers() -> str | None:
            try:
                libvirt.open(self.uri("qemu")).close()
            except libvirt.libvirtError as exc:
                if not self.alive():
                    raise DaemonError(f"private libvirtd died before it answered on {self.socket} ({exc}); "
                                      f"log: {self.root / 'log' / 'libvirtd.log'}") from exc
                return str(exc)
            return None

        waiting.until(answers, timeout=timeout, interval=0.05, error=lambda last: DaemonError(
            f"private libvirtd did not answer on {self.socket} ({last}); log: {self.root / 'log' / 'libvirtd.log'}"))

    def alive(self) -> bool:
        return all(is_running(pid, name) for name, pid in self.pids.items())

    def stop(self) -> None:
        """Kill the recorded daemons (only if they still are those daemons) and delete the namespace."""
        pid = self.pids.get("libvirtd")
        if pid is not None and is_running(pid, "libvirtd"):
            # libvirt's "machine" partition cgroups, if empty (rmdir refuses otherwise). Done while the
            # mount namespace still exists: a v1 hierarchy mounted only here (hugetlb, perf_event,
            # net_cls) is destroyed when its last mount goes *and* it has no child cgroups left.
            hostcmd.run([*self.mount_prefix(), "/bin/sh", "-c", "rmdir /sys/fs/cgroup/*/machine 2>/dev/null; true"],
                        check=False)
        for name in ("libvirtd", "virtlogd"):
            pid = self.pids.get(name)
            if pid is not None and is_running(pid, name):
                log.info("stopping %s %d", name, pid)
                os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + _STOP_TIMEOUT
        for name in ("libvirtd", "virtlogd"):
            pid = self.pids.get(name)
            while pid is not None and is_running(pid, name):
                if time.monotonic() > deadline:
                    log.warning("%s %d ignored SIGTERM, sending SIGKILL", name, pid)
                    os.kill(pid, signal.SIGKILL)
                    time.sleep(0.2)
                    break
                time.sleep(0.05)
        # Children of the daemons (libvirt_lxc controllers, qemu) may take a moment to exit after them.
        left = netns.pids_inside(self.netns) if netns.exists(self.netns) else []
        deadline = time.monotonic() + _STOP_TIMEOUT
        while left and time.monotonic() < deadline:
            time.sleep(0.1)
            left = netns.pids_inside(self.netns)
        if left:
            what = "; ".join(f"{pid} {_cmdline(pid)}" for pid in left)
            raise DaemonError(f"processes still run in network namespace {self.netns} ({what}); not killing "
                              f"what this cluster's daemons did not start; `ip netns delete {self.netns}` once "
                              "they are gone")
        netns.delete(self.netns)

    # -- how to reach it -----------------------------------------------------------------------
    @property
    def socket(self) -> Path:
        path = self.root / "run" / "libvirt-sock"
        pid = self.pids.get("libvirtd")
        if len(str(path)) > _SOCKET_PATH_MAX and pid is not None:
            # Too long for sun_path: the same socket seen through the daemon's mount namespace.
            return Path(f"/proc/{pid}/root/run/libvirt/libvirt-sock")
        return path

    def uri(self, driver: Driver) -> str:
        return f"{driver}+unix:///system?socket={self.socket}"

    def reach(self) -> ssh.Reach:
        return ssh.ViaNetns(self.netns)

    def mount_prefix(self) -> list[str]:
        pid = self.pids.get("libvirtd")
        if pid is None:
            raise DaemonError("private libvirtd has no recorded PID")
        return ["nsenter", "-t", str(pid), "-m", "--"]

    def mountinfo(self) -> Path | None:
        pid = self.pids.get("libvirtd")
        return Path(f"/proc/{pid}/mountinfo") if pid is not None else None

    def to_json(self) -> dict[str, Any]:
        return {"isolated": True, "netns": self.netns, "root": str(self.root), "cache": str(self.cache),
                "pids": dict(self.pids)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> PrivateLibvirt:
        return cls(str(data["netns"]), Path(data["root"]), Path(data["cache"]),
                   {str(k): int(v) for k, v in data["pids"].items()})


# -- a libvirtd named by URI (--connect) ----------------------------------------------------------

#: libvirt's remote transports kha can use (https://libvirt.org/uri.html#transport-configuration); ``ext``
#: (any external program) is left out: kha could not tell how to reach the nodes behind it.
TRANSPORTS = ("unix", "ssh", "libssh", "libssh2", "tcp", "tls")
SSH_TRANSPORTS = ("ssh", "libssh", "libssh2")
#: Names a libvirt daemon's process has (monolithic, or the modular per-driver daemons).
DAEMON_NAMES = ("libvirtd", "virtqemud", "virtlxcd", "virtproxyd")
#: The system daemon's socket when a unix URI names none (libvirtd(8)).
DEFAULT_SOCKET = "/run/libvirt/libvirt-sock"


@dataclass(frozen=True)
class ConnectUri:
    """A ``--connect`` URI, checked: ``driver[+transport]://[user@][host][:port]/path[?query]``.

    ``transport`` is what the URI wrote (None: libvirt's default, unix without a host, tls with one); the
    other driver's URI is this one with only the driver changed.
    """

    text: str
    driver: Driver
    transport: str | None
    netloc: str
    user: str | None
    host: str | None
    port: int | None
    path: str
    query: str

    @property
    def effective_transport(self) -> str:
        return self.transport or ("tls" if self.host else "unix")

    @property
    def local(self) -> bool:
        """libvirtd is on this machine (a unix socket): its mounts, PIDs and namespaces are ours to see."""
        return self.effective_transport == "unix"

    def param(self, name: str) -> str | None:
        values = urllib.parse.parse_qs(self.query).get(name)
        return values[-1] if values else None

    def for_driver(self, driver: Driver) -> str:
        scheme = driver if self.transport is None else f"{driver}+{self.transport}"
        # Not urlunsplit: it drops the "//" of an empty authority, and libvirt wants qemu:///system.
        return f"{scheme}://{self.netloc}{self.path}" + (f"?{self.query}" if self.query else "")

    @property
    def socket(self) -> Path:
        """The unix socket a local URI connects to."""
        return Path(self.param("socket") or DEFAULT_SOCKET)

    @property
    def where(self) -> str:
        """The hypervisor, in words: its host, or "this machine"."""
        return self.host or "this machine"


def parse_uri(text: str, flag: str = "--connect") -> ConnectUri:
    """``text`` as a ``ConnectUri``, or ``ConnectUriError`` saying what is wrong (nothing is connected to)."""
    def bad(why: str) -> ConnectUriError:
        return ConnectUriError(f"{flag} {text!r}: {why} (a libvirt URI such as qemu+ssh://user@host/system or "
                               "qemu+unix:///system?socket=/path; see https://libvirt.org/uri.html)")

    if "://" not in text or any(c.isspace() for c in text):
        raise bad("not a URI")
    parts = urllib.parse.urlsplit(text)
    name, _, transport = parts.scheme.partition("+")
    driver = next((d for d in DRIVERS if d == name), None)
    if driver is None:
        raise bad(f"driver {name or '(none)'!r}: kha boots {' or '.join(DRIVERS)} nodes")
    if transport and transport not in TRANSPORTS:
        raise bad(f"transport {transport!r} is not one of {', '.join(TRANSPORTS)}")
    if parts.fragment:
        raise bad("a URI fragment (#…) means nothing to libvirt")
    try:
        port = parts.port
    except ValueError as exc:
        raise bad(f"port: {exc}") from None
    if parts.password is not None:
        raise bad("a password in the URI (use an SSH key or the agent)")
    host = parts.hostname
    if transport == "unix" and host:
        raise bad("a unix socket URI names no host")
    if transport in (*SSH_TRANSPORTS, "tcp", "tls") and not host:
        raise bad(f"the {transport} transport needs a host")
    if not parts.path.startswith("/") or (parts.path == "/" and driver == "qemu"):
        raise bad("no path: qemu wants /system (or /session)")
    # Parameters are libvirt's to judge (no_verify, keyfile, socket, …); only name= defeats the derivation.
    if "name" in urllib.parse.parse_qs(parts.query, keep_blank_values=True):
        raise bad("name= fixes the driver on the far side; kha derives the qemu and lxc URIs from one, drop it")
    user = urllib.parse.unquote(parts.username) if parts.username else None
    return ConnectUri(text, driver, transport or None, parts.netloc, user, host, port, parts.path, parts.query)


@dataclass
class RemoteLibvirt:
    """A libvirtd kha did not start, named by a URI (``--connect``): never started or stopped by kha.

    ``netns`` is the named network namespace a daemon on this machine runs in (None: ours, or elsewhere).
    """

    connect: ConnectUri
    netns: str | None = None
    _pid: int | None = field(default=None, compare=False, repr=False)

    @classmethod
    def attach(cls, text: str, driver: Driver) -> RemoteLibvirt:
        """Check ``text`` and the daemon behind it for a ``driver`` cluster, before anything is written."""
        uri = parse_uri(text)
        if driver == "lxc" and not uri.local:
            raise ConnectUriError(
                f"--connect {text}: LXC nodes boot from overlay mounts made where libvirt_lxc sees them, which kha "
                f"can only do on this machine; on {uri.where} use qemu nodes (--driver qemu)")
        lv = cls(uri)
        target = lv.uri(driver)
        try:
            conn = libvirt.open(target)
        except libvirt.libvirtError as exc:
            derived = "" if target == text else f" (the {driver} driver's URI derived from it)"
            raise DaemonError(f"--connect {text}: cannot connect to {target}{derived}: {exc}") from exc
        conn.close()
        if uri.local:
            lv.netns = namespace_of(lv.pid(), flag=f"--connect {text}")
        return lv

    def uri(self, driver: Driver) -> str:
        return self.connect.for_driver(driver)

    def pid(self) -> int:
        """The daemon behind a local URI's socket, asked each time it is first needed (it may restart)."""
        if self._pid is None or not _is_daemon(self._pid):
            self._pid = peer_pid(self.connect.socket, flag=f"--connect {self.connect.text}")
        return self._pid

    def reach(self) -> ssh.Reach:
        c = self.connect
        if c.local:
            return ssh.ViaNetns(self.netns) if self.netns else ssh.Direct()
        if c.effective_transport in SSH_TRANSPORTS and c.host:
            return ssh.ViaSsh(c.host, c.user, c.port, c.param("keyfile"))
        return ssh.Direct()  # tcp/tls: the topology's subnet must be routed to the hypervisor (README)

    def mount_prefix(self) -> list[str]:
        if not self.connect.local:
            raise Unsupported(f"libvirtd at {self.connect.text} is not on this machine: kha cannot mount there")
        pid = self.pid()
        if _same_namespace(pid, "mnt"):
            return []
        return ["nsenter", "-t", str(pid), "-m", "--"]

    def mountinfo(self) -> Path | None:
        if not self.connect.local:
            return None
        try:
            return Path(f"/proc/{self.pid()}/mountinfo")
        except DaemonError:
            return None  # the daemon is gone: it sees no mounts any more

    def check_paths(self, paths: Sequence[Path]) -> None:
        """Every path exists where libvirtd runs, or one ``DaemonError`` listing those that do not."""
        conn = _open_checked(self.uri(self.connect.driver), self.connect.text)
        try:
            missing = missing_where_libvirtd_runs(conn, paths)
        finally:
            conn.close()
        if missing:
            raise DaemonError(
                f"--connect {self.connect.text}: libvirtd on {self.connect.where} does not see "
                f"{', '.join(str(p) for p in missing)}. kha names these paths in the domain XML: the image cache "
                "and the cluster state dir must be the same paths there (a shared filesystem mounted at the same "
                "place: KHA_CACHE_DIR, KHA_STATE_DIR)")

    def check_shared(self, folder: Path) -> None:
        """``folder`` (written from here) is the same folder where libvirtd runs: a marker file written here
        must be listed there, so a copy that merely has the same path is refused too."""
        folder.mkdir(parents=True, exist_ok=True)
        marker = folder / f"kha-shared-{uuid.uuid4().hex[:12]}"
        marker.write_text("written by kha up --connect to see that libvirtd shares this folder\n")
        try:
            self.check_paths([marker])
        finally:
            marker.unlink(missing_ok=True)

    def to_json(self) -> dict[str, Any]:
        return {"isolated": False, "connect": self.connect.text, "netns": self.netns}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RemoteLibvirt:
        return cls(parse_uri(str(data["connect"])), str(data["netns"]) if data.get("netns") else None)


AnyLibvirt = SystemLibvirt | PrivateLibvirt | RemoteLibvirt


def from_json(data: dict[str, Any]) -> AnyLibvirt:
    if data.get("isolated"):
        return PrivateLibvirt.from_json(data)
    if data.get("connect"):
        return RemoteLibvirt.from_json(data)
    return SystemLibvirt()


def _open_checked(uri: str, flag_value: str) -> libvirt.virConnect:
    try:
        return libvirt.open(uri)
    except libvirt.libvirtError as exc:
        raise DaemonError(f"--connect {flag_value}: cannot connect to {uri}: {exc}") from exc


def peer_pid(path: Path, flag: str) -> int:
    """The PID of the daemon listening on unix socket ``path``: the kernel's answer (SO_PEERCRED, unix(7))."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(5.0)
        sock.connect(str(path))
        creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    except OSError as exc:
        raise DaemonError(f"{flag}: cannot ask the daemon on {path} who it is: {exc}") from exc
    finally:
        sock.close()
    pid = int(struct.unpack("3i", creds)[0])  # struct ucred: pid, uid, gid
    if not _is_daemon(pid):
        raise DaemonError(f"{flag}: the process on {path} (PID {pid}: {_cmdline(pid)}) is not a libvirt daemon "
                          f"({', '.join(DAEMON_NAMES)})")
    return pid


def _is_daemon(pid: int) -> bool:
    return any(is_running(pid, name) for name in DAEMON_NAMES)


def _ns_id(path: Path) -> tuple[int, int]:
    st = os.stat(path)
    return st.st_dev, st.st_ino


def _same_namespace(pid: int, kind: str) -> bool:
    return _ns_id(Path(f"/proc/{pid}/ns/{kind}")) == _ns_id(Path(f"/proc/self/ns/{kind}"))


def namespace_of(pid: int, flag: str) -> str | None:
    """The name (under /run/netns) of the network namespace ``pid`` runs in; None when it is ours.

    The nodes live on that daemon's bridge, so SSH must enter the same namespace; tools enter it by
    name (``ip netns exec``), so a namespace with no name is refused with how to give it one.
    """
    if _same_namespace(pid, "net"):
        return None
    target = _ns_id(Path(f"/proc/{pid}/ns/net"))
    if netns.NETNS_DIR.is_dir():
        for entry in sorted(netns.NETNS_DIR.iterdir()):
            try:
                if _ns_id(entry) == target:
                    return entry.name
            except OSError:
                continue
    raise DaemonError(f"{flag}: libvirtd (PID {pid}) runs in a network namespace with no name under "
                      f"{netns.NETNS_DIR}, so kha cannot reach its nodes: name it with `ip netns attach NAME {pid}`")


def missing_where_libvirtd_runs(conn: libvirt.virConnect, paths: Sequence[Path]) -> list[Path]:
    """Those of ``paths`` libvirtd does not see, asked through libvirt itself (works over any transport).

    Each folder is listed as a storage pool: an active pool already on that folder, else a transient
    ``dir`` pool made for the question and destroyed after (it leaves nothing defined). A folder the
    daemon cannot open counts as missing with everything in it.
    """
    by_folder: dict[Path, list[Path]] = {}
    for p in paths:
        by_folder.setdefault(p.parent, []).append(p)
    missing: list[Path] = []
    for folder, wanted in by_folder.items():
        listed = _pool_listing(conn, folder)
        missing += [p for p in wanted if p.name not in listed]
    return missing


def _pool_listing(conn: libvirt.virConnect, folder: Path) -> set[str]:
    try:
        pool = conn.storagePoolLookupByTargetPath(str(folder))
    except libvirt.libvirtError:
        pool = None
    if pool is not None and pool.isActive():
        pool.refresh(0)
        return set(pool.listVolumes())
    root = ET.Element("pool", {"type": "dir"})
    ET.SubElement(root, "name").text = f"kha-check-{uuid.uuid4().hex[:12]}"
    ET.SubElement(ET.SubElement(root, "target"), "path").text = str(folder)
    try:
        pool = conn.storagePoolCreateXML(ET.tostring(root, encoding="unicode"), 0)
    except libvirt.libvirtError as exc:
        log.info("libvirtd cannot list %s: %s", folder, exc)
        return set()
    try:
        return set(pool.listVolumes())
    finally:
        pool.destroy()  # transient: destroying it undefines it


def cgroup_layout() -> tuple[str, list[str]]:
    """("v1", mount option strings per hierarchy) as this host groups its controllers, or ("v2", []).

    Hierarchies must be mounted with exactly the controller set the kernel already bound together
    (``cpu,cpuacct`` on systemd hosts, separate here), so read the grouping from /proc/cgroups. Controllers
    in no v1 hierarchy yet (hierarchy 0: perf_event, hugetlb, net_cls, net_prio here) get one of their own,
    so that libvirt and the nodes' PID-1 wrapper give each node its own subtree there too (MACHINE.md,
    "Kubernetes inside libvirt-LXC nodes", point 1).
    """
    groups: dict[int, list[str]] = {}
    unbound: list[str] = []
    for line in Path("/proc/cgroups").read_text().splitlines()[1:]:
        name, hierarchy, _count, enabled = line.split()
        if enabled != "1":
            continue
        if int(hierarchy) == 0:
            unbound.append(name)
        else:
            groups.setdefault(int(hierarchy), []).append(name)
    has_named_systemd = any(":name=systemd:" in ln for ln in Path("/proc/self/cgroup").read_text().splitlines())
    if not groups and not has_named_systemd:
        return "v2", []
    v2_in_use = _v2_controllers_in_use()
    options = [",".join(sorted(c)) for c in groups.values()]
    if "net_cls" in unbound and "net_prio" in unbound:
        options.append("net_cls,net_prio")
        unbound = [c for c in unbound if c not in ("net_cls", "net_prio")]
    options += [c for c in unbound if c not in v2_in_use]
    if has_named_systemd:
        options.append("none,name=systemd")
    return "v1", options


def _v2_controllers_in_use() -> set[str]:
    """Controllers some cgroup2 subtree enables: those cannot move to a v1 hierarchy, leave them alone."""
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        parts = line.split(" - ")
        if len(parts) == 2 and parts[1].startswith("cgroup2 "):
            mount_point = line.split()[4]
            try:
                return set(Path(mount_point, "cgroup.subtree_control").read_text().split())
            except OSError:
                return set()
    return set()


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return "?"


def is_running(pid: int, name: str) -> bool:
    """True if ``pid`` is alive (not a zombie) and its command is ``name`` — never trust a bare PID."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        comm = Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return False
    state = stat.rsplit(")", 1)[1].split()[0]
    return state != "Z" and comm == name


def check_uri(uri: str) -> None:
    """Connect once to the system libvirt, or say clearly why not (no daemon on a systemd-less box)."""
    try:
        conn = libvirt.open(uri)
    except libvirt.libvirtError as exc:
        raise DaemonError(f"cannot connect to {uri}: {exc}. Is libvirtd running? Without a system libvirtd "
                          "use --isolated (a private daemon in its own network namespace).") from exc
    conn.close()

