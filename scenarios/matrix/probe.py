"""What this machine offers, and so which cells run here: each refusal says why, none is a silent skip.

Facts are probed, never assumed, and only those the selected cells need:

- KVM: ``harness.accel.choose`` boots a tiny kernel (the debian-12 image's) under ``-accel kvm`` with a
  timeout and caches the answer; ``/dev/kvm`` existing proves nothing (on our machines it is kvm_pvm, where
  stock kernels hang). ``KHA_ACCEL=kvm|tcg`` overrides, as it does for the harness.
- Internet: decided from configuration alone, the way the image builders decide it (``images.sources``):
  a host is reachable when this machine's apt configuration or ``KHA_REACHABLE_HOSTS`` names it, nothing
  when ``KHA_OFFLINE=1``. No probe traffic is sent anywhere. So a cell that downloads from dl.k8s.io runs
  only after the user says ``KHA_REACHABLE_HOSTS=dl.k8s.io,pkgs.k8s.io``; the default is "no".
- Memory: ``MemAvailable`` from /proc/meminfo against what the cell's nodes are given (scenarios.toml sizes).
- Base images: cached, or a recipe whose source this machine is configured to reach
  (``images.builder_for`` refuses at once, before any traffic, when it is not).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import images
from harness import accel
from images.errors import ImageError
from images.sources import reachable_hosts
from scenarios import topologies
from scenarios.matrix import invocation
from scenarios.matrix.model import Cell, Matrix


@dataclass(frozen=True)
class Needs:
    """What one cell requires of the machine it runs on."""

    internet: tuple[str, ...]
    kvm: bool
    ram_mib: int
    image: str
    why: tuple[str, ...]

    def describe(self) -> str:
        parts = [f"{self.ram_mib} MiB", f"image {self.image}"]
        if self.kvm:
            parts.append("KVM")
        if self.internet:
            parts.append("internet (" + ", ".join(self.internet) + ")")
        return ", ".join(parts)


@dataclass(frozen=True)
class Host:
    """The probed facts about this machine. ``accel`` is None when no selected cell needed KVM."""

    accel: str | None
    accel_how: str
    reachable: frozenset[str]
    mem_available_mib: int
    #: base image name → None when it is cached or can be built here, else why not.
    images: Mapping[str, str | None]
    #: capabilities missing from this machine's bounding set (a container host may drop some)
    missing_caps: tuple[str, ...] = ()

    def describe(self) -> list[str]:
        hosts = ", ".join(sorted(self.reachable)) or "none"
        return [
            f"accelerator: {self.accel or 'not probed'} ({self.accel_how})",
            f"downloads configured (apt, KHA_REACHABLE_HOSTS; KHA_OFFLINE=1 for none): {hosts}",
            f"memory available: {self.mem_available_mib} MiB",
            *([f"capabilities missing from the bounding set: {', '.join(self.missing_caps)}"]
              if self.missing_caps else []),
        ]


def needs(matrix: Matrix, cell: Cell) -> Needs:
    found = matrix.needs_of(cell)
    hosts = tuple(dict.fromkeys(h for n in found for h in n.internet))
    return Needs(hosts, any(n.kvm for n in found), ram_mib(cell.topology, cell.driver), cell.os,
                 tuple(n.why for n in found))


@cache
def ram_mib(scenario: str, driver: str) -> int:
    """What a topology's nodes are given, in MiB (the sum of their scenarios.toml sizes)."""
    return sum(n.memory_mib for n in topologies.spec_for_scenario(scenario, driver).nodes)


def refusals(cell: Cell, need: Needs, host: Host) -> list[str]:
    """Every reason ``cell`` cannot run on ``host``; empty when it can."""
    out: list[str] = []
    why = invocation.unsupported(cell)
    if why is not None:
        out.append(why)
    missing = [h for h in need.internet if h not in host.reachable]
    if missing:
        out.append(f"needs downloads from {', '.join(missing)}, which this machine is not configured to reach "
                   "(no traffic was sent to find out: set KHA_REACHABLE_HOSTS when it can)")
    if need.kvm and host.accel != "kvm":
        out.append(f"needs a KVM that boots guests; here: {host.accel or 'not probed'} ({host.accel_how})")
    if need.ram_mib > host.mem_available_mib:
        out.append(f"needs {need.ram_mib} MiB for its nodes; {host.mem_available_mib} MiB available")
    old_runc = OLD_RUNC.get(cell.os)
    if cell.driver == "lxc" and old_runc and host.missing_caps:
        out.append(f"{cell.os}'s {old_runc} cannot start a privileged container (kube-proxy: 'apply caps: operation "
                   f"not permitted') in an LXC node while this machine's capability bounding set lacks "
                   f"{', '.join(host.missing_caps)}; run it on qemu, or on a machine with the full set")
    image_problem = host.images.get(need.image, f"base image {need.image} was not probed")
    if image_problem is not None:
        out.append(f"base image {need.image}: {image_problem}")
    return out


def probe(matrix: Matrix, cells: Iterable[Cell], env: Mapping[str, str] | None = None,
          kvm: Callable[[], tuple[str, str]] | None = None, meminfo: Path = Path("/proc/meminfo")) -> Host:
    """Probe what ``cells`` need here: KVM only if one of them needs it, the images they boot."""
    env = os.environ if env is None else env
    chosen = list(cells)
    if any(needs(matrix, c).kvm for c in chosen):
        accel_name, how = (kvm or probe_kvm)()
    else:
        accel_name, how = None, "no selected cell needs KVM"
    oses = sorted({c.os for c in chosen})
    return Host(accel_name, how, reachable_hosts(env), mem_available_mib(meminfo),
                {name: image_problem(name, env) for name in oses}, missing_capabilities())


#: Images whose runc applies every capability a privileged container asks for and fails on one the host's
#: bounding set lacks (runc 1.1 skips those). Seen on this machine: kube-proxy never starts.
OLD_RUNC = {"debian-11": "runc 1.0.0~rc93"}
#: capability(7) names by number, 0 to 40
CAPABILITIES = (
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL", "CAP_SETGID",
    "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE", "CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_IPC_LOCK", "CAP_IPC_OWNER", "CAP_SYS_MODULE", "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT", "CAP_SYS_PTRACE", "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE", "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE", "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN", "CAP_SYSLOG", "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE")


def missing_capabilities(status: Path = Path("/proc/self/status"),
                         last: Path = Path("/proc/sys/kernel/cap_last_cap")) -> tuple[str, ...]:
    """The capabilities the kernel has (up to ``cap_last_cap``) that this process's bounding set lacks."""
    try:
        top = int(last.read_text())
        bounding = next(int(line.split()[1], 16) for line in status.read_text().splitlines()
                        if line.startswith("CapBnd:"))
    except (OSError, ValueError, StopIteration):
        return ()
    return tuple(CAPABILITIES[n] if n < len(CAPABILITIES) else f"capability {n}"
                 for n in range(top + 1) if not bounding >> n & 1)


def probe_kvm() -> tuple[str, str]:
    """("kvm" | "tcg", how that was decided): the harness's own probe boot (cached per kernel and qemu)."""
    forced = os.environ.get("KHA_ACCEL")
    if forced in ("kvm", "tcg"):
        return forced, "KHA_ACCEL"
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return "tcg", "/dev/kvm is not usable"
    image = images.get(images.DEFAULT_RECIPE)
    if image is None:
        return "unknown", f"no cached {images.DEFAULT_RECIPE} image to boot a probe kernel from (kha image build)"
    return accel.choose(image.kernel), f"probe boot of {image.kernel.name} under -accel kvm (harness.accel)"


def image_problem(name: str, env: Mapping[str, str]) -> str | None:
    """None when base image ``name`` is cached or its recipe's source is reachable from here."""
    try:
        if images.get(name) is not None:
            return None
        images.builder_for(images.recipe(name), env)
    except ImageError as exc:
        return str(exc)
    return None


def mem_available_mib(meminfo: Path) -> int:
    for raw in meminfo.read_text().splitlines():
        key, _, value = raw.partition(":")
        if key == "MemAvailable":
            return int(value.split()[0]) // 1024
    raise ValueError(f"{meminfo}: no MemAvailable line")
