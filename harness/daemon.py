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
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import libvirt

from core import waiting
from harness import hostcmd, netns
from harness.errors import DaemonError
from harness.spec import Driver

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
    """Where libvirt runs for one cluster: URIs to connect to, and how to mount where it sees it."""

    @property
    def netns(self) -> str | None: ...

    def uri(self, driver: Driver) -> str: ...

    def mount_prefix(self) -> list[str]:
        """argv prefix that runs mount/umount where libvirt (and libvirt_lxc) sees the result."""
        ...

    def to_json(self) -> dict[str, Any]: ...


@dataclass
class SystemLibvirt:
    """The workstation's own libvirt (``qemu:///system``, ``lxc:///system``): non-isolated mode."""

    netns: str | None = None

    def uri(self, driver: Driver) -> str:
        return f"{driver}:///system"

    def mount_prefix(self) -> list[str]:
        return []

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

    def mount_prefix(self) -> list[str]:
        pid = self.pids.get("libvirtd")
        if pid is None:
            raise DaemonError("private libvirtd has no recorded PID")
        return ["nsenter", "-t", str(pid), "-m", "--"]

    def to_json(self) -> dict[str, Any]:
        return {"isolated": True, "netns": self.netns, "root": str(self.root), "cache": str(self.cache),
                "pids": dict(self.pids)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> PrivateLibvirt:
        return cls(str(data["netns"]), Path(data["root"]), Path(data["cache"]),
                   {str(k): int(v) for k, v in data["pids"].items()})


def from_json(data: dict[str, Any]) -> SystemLibvirt | PrivateLibvirt:
    if data.get("isolated"):
        return PrivateLibvirt.from_json(data)
    return SystemLibvirt()


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

