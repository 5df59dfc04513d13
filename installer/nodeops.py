"""Idempotent operations on one node that every install phase uses.

Each helper first looks at what the node has and changes only what differs, and answers dry-run
itself ("would write /etc/…"), so a second ``kha install`` on an installed cluster changes and
restarts nothing. Commands are argv lists; the transport quotes them once.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import PurePosixPath

from installer.facts import NodeFacts, OSFamily, os_major, parse_os_release
from installer.files import NodeFile
from installer.phases import Context
from installer.remote import Transport

log = logging.getLogger(__name__)

#: ``Y`` when the kernel has AppArmor on (kernel.org admin-guide/LSM/apparmor.rst)
APPARMOR_ENABLED = "/sys/module/apparmor/parameters/enabled"


def gather_facts(t: Transport, address: str) -> NodeFacts:
    """OS family from /etc/os-release; the interface that carries ``address``; what the kernel has on."""
    release = t.get("/etc/os-release").decode()
    family = parse_os_release(release)
    out = t.run(["ip", "-o", "-4", "addr", "show", "to", f"{address}/32"], check=False).stdout.split()
    # "2: eth0    inet 10.56.56.11/24 brd …" → the second field, minus an "@ifN" suffix (veth pairs).
    iface = out[1].split("@")[0] if len(out) > 1 else "eth0"
    fs = t.run(["stat", "-f", "-c", "%T", "/var/lib"], check=False).stdout.strip() or "unknown"
    container = t.run(["systemd-detect-virt", "--container", "--quiet"], check=False).ok
    cpus = int(t.run(["nproc"]).stdout.strip())
    # A kernel without AppArmor has no such file: cat fails, and that means off.
    apparmor = t.run(["cat", APPARMOR_ENABLED], check=False).stdout.startswith("Y")
    return NodeFacts(os_family=family, interface=iface, var_lib_fs=fs, container=container, cpus=cpus,
                     memory_mib=memory_mib(t.run(["cat", "/proc/meminfo"]).stdout), os_major=os_major(release),
                     apparmor=apparmor)


def memory_mib(meminfo: str) -> int:
    """MemTotal from /proc/meminfo, in MiB."""
    for line in meminfo.splitlines():
        key, _, value = line.partition(":")
        if key == "MemTotal":
            return int(value.split()[0]) // 1024
    raise ValueError("/proc/meminfo has no MemTotal line")


def fetch(t: Transport, url: str, dest: str, *, proxy: str | None, timeout: float) -> None:
    """``url`` into ``dest`` on the node, with curl: an HTTP error fails it (-f), three retries, through
    ``proxy`` when one is given (``nodeprep.render.proxy_for`` decides it from the settings)."""
    t.run(["curl", "-fsSL", "--retry", "3", *(["--proxy", proxy] if proxy else []), "-o", dest, url],
          sudo=True, timeout=timeout)


def remote_sha256(t: Transport, path: str) -> str | None:
    res = t.run(["sha256sum", "--", path], sudo=True, check=False)
    return res.stdout.split()[0] if res.ok and res.stdout else None


def exists(t: Transport, path: str) -> bool:
    """Whether ``path`` exists on the node (read as root)."""
    return t.run(["test", "-e", path], sudo=True, check=False).ok


def remote_stat(t: Transport, path: str) -> tuple[int, str, str] | None:
    """(mode, owner, group) of a remote path, or None when it does not exist."""
    res = t.run(["stat", "-c", "%a %U %G", "--", path], sudo=True, check=False)
    if not res.ok:
        return None
    mode, owner, group = res.stdout.split()
    return int(mode, 8), owner, group


def sync_file(ctx: Context, t: Transport, f: NodeFile) -> bool:
    """Make the node's file equal ``f`` (content, mode, owner). Returns True when something changed."""
    same_content = remote_sha256(t, f.path) == f.sha256
    if same_content and remote_stat(t, f.path) == (f.mode, f.owner, f.group):
        return False
    what = "update" if same_content else "write"
    if ctx.would(f"{what} {f.path} ({f.mode:04o} {f.owner}:{f.group})"):
        return True
    parent = str(PurePosixPath(f.path).parent)
    t.run(["mkdir", "-p", "--", parent], sudo=True)
    t.put(f.content, f.path, mode=f.mode, owner=f.owner, group=f.group, sudo=True)
    log.info("%s: wrote %s", t.node, f.path)
    return True


def sync_files(ctx: Context, t: Transport, files: Iterable[NodeFile], *,
               restarts: str | Callable[[str], Iterable[str]] | None = None) -> list[str]:
    """Sync several files; returns the paths that changed. ``restarts``: the unit these files configure (or,
    given a file's path, the units that read it), marked pending before that file is written (see
    ``mark_pending``)."""
    changed: list[str] = []
    marked: set[str] = set()
    for f in files:
        units = () if restarts is None else (restarts,) if isinstance(restarts, str) else tuple(restarts(f.path))
        if any(u not in marked for u in units) and not _same(t, f):
            for unit in units:
                if unit not in marked:
                    mark_pending(ctx, t, unit)
                    marked.add(unit)
        if sync_file(ctx, t, f):
            changed.append(f.path)
    return changed


def sync_block(ctx: Context, t: Transport, path: str, marker: str, block: bytes) -> bool:
    """Make the lines between ``# BEGIN <marker>`` and ``# END <marker>`` in a file kha does not own (such as
    /etc/hosts) equal ``block``, keeping every other line; the block is appended when missing. Returns
    True when the file changed."""
    return edit_file(ctx, t, path, lambda text: merge_block(text, marker, block.decode()),
                     f"update the {marker!r} block of {path}")


def edit_file(ctx: Context, t: Transport, path: str, change: Callable[[str], str], what: str) -> bool:
    """Rewrite a file kha does not own as ``change`` makes its text, keeping its mode and owner; nothing is
    written when the text stays the same (dry run: "would <what>"). Returns True when the file changed."""
    text = t.get(path, sudo=True).decode()
    want = change(text)
    if want == text or ctx.would(what):
        return want != text
    mode, owner, group = remote_stat(t, path) or (0o644, "root", "root")
    t.put(want.encode(), path, mode=mode, owner=owner, group=group, sudo=True)
    log.info("%s: updated %s", t.node, path)
    return True


def merge_block(text: str, marker: str, block: str) -> str:
    """``text`` with its marked block replaced by ``block`` (or ``block`` appended, marked)."""
    begin, end = f"# BEGIN {marker}", f"# END {marker}"
    lines = text.splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n"
    marked = [begin + "\n", *block.splitlines(keepends=True), end + "\n"]
    starts = [i for i, line in enumerate(lines) if line.rstrip("\n") == begin]
    ends = [i for i, line in enumerate(lines) if line.rstrip("\n") == end]
    if starts and ends and starts[0] < ends[-1]:
        lines[starts[0]:ends[-1] + 1] = marked
    else:
        lines += marked
    return "".join(lines)


def _same(t: Transport, f: NodeFile) -> bool:
    return remote_sha256(t, f.path) == f.sha256 and remote_stat(t, f.path) == (f.mode, f.owner, f.group)


def missing_packages(t: Transport, facts: NodeFacts, names: Sequence[str]) -> list[str]:
    if facts.os_family is OSFamily.DEBIAN:
        res = t.run(["dpkg-query", "-W", "-f", "${Package} ${db:Status-Status}\n", *names], check=False)
        installed = {ln.split()[0] for ln in res.stdout.splitlines() if ln.endswith(" installed")}
    else:
        res = t.run(["rpm", "-q", "--qf", "%{NAME}\n", *names], check=False)
        installed = {ln.strip() for ln in res.stdout.splitlines() if ln.strip() and " " not in ln.strip()}
    return [n for n in names if n not in installed]


def ensure_packages(ctx: Context, t: Transport, facts: NodeFacts, names: Sequence[str]) -> list[str]:
    """Install what is missing with the family's package manager; services stay stopped until configured."""
    missing = missing_packages(t, facts, names)
    if not missing or ctx.would(f"install packages {' '.join(missing)}"):
        return missing
    if facts.os_family is OSFamily.DEBIAN:
        argv = ["apt-get", "install", "-y", "-q", "--no-install-recommends", *missing]
        with _daemons_held(t):
            if not t.run(argv, sudo=True, env=_APT_ENV, check=False, timeout=900).ok:
                # A stale package list is the usual cause: refresh once and try again.
                t.run(["apt-get", "update", "-q"], sudo=True, env=_APT_ENV, timeout=600)
                t.run(argv, sudo=True, env=_APT_ENV, timeout=900)
    else:
        t.run(["dnf", "install", "-y", "-q", *missing], sudo=True, timeout=900)
    return missing


def behind(policy: str) -> list[str]:
    """The packages ``apt-cache policy NAME...`` shows installed at another version than its candidate."""
    out, name, installed = [], "", ""
    for line in policy.splitlines():
        if line and not line[0].isspace() and line.rstrip().endswith(":"):
            name = line.rstrip()[:-1]
        elif line.strip().startswith("Installed:"):
            installed = line.split(":", 1)[1].strip()
        elif line.strip().startswith("Candidate:"):
            candidate = line.split(":", 1)[1].strip()
            if name and "(none)" not in (installed, candidate) and installed != candidate:
                out.append(name)
    return out


def upgrade_packages(ctx: Context, t: Transport, facts: NodeFacts, names: Sequence[str]) -> list[str]:
    """The installed ``names`` moved to what the node's repositories offer now; returns those that moved. Their
    services are not restarted by the packages (the caller restarts them, one node at a time)."""
    if facts.os_family is OSFamily.DEBIAN:
        if not ctx.dry_run:
            t.run(["apt-get", "update", "-q"], sudo=True, env=_APT_ENV, timeout=600)
        moving = behind(t.run(["apt-cache", "policy", *names], sudo=True).stdout)
    else:
        moving = [n for n in names
                  if t.run(["dnf", "-q", "check-update", n], sudo=True, check=False, timeout=600).exit_code == 100]
    if not moving or ctx.would(f"upgrade packages {' '.join(moving)}"):
        return moving
    if facts.os_family is OSFamily.DEBIAN:
        with _daemons_held(t):
            t.run(["apt-get", "install", "-y", "-q", "--only-upgrade", *moving], sudo=True, env=_APT_ENV,
                  timeout=900)
    else:
        t.run(["dnf", "upgrade", "-y", "-q", *moving], sudo=True, timeout=900)
    return moving


_APT_ENV = {"DEBIAN_FRONTEND": "noninteractive"}


@contextlib.contextmanager
def _daemons_held(t: Transport) -> Iterator[None]:
    """Debian starts (or restarts) a daemon as soon as its package is installed, with its packaged config (etcd
    on localhost, haproxy's demo config …). policy-rc.d(8) keeps it as it is until kha configured it."""
    made = t.run(["sh", "-c", _POLICY_RC_D], sudo=True).stdout.strip() == "made"
    try:
        yield
    finally:
        if made:
            t.run(["rm", "-f", "/usr/sbin/policy-rc.d"], sudo=True)


# A fixed script (no data in it): create policy-rc.d only when the node has none of its own.
_POLICY_RC_D = (
    "[ -e /usr/sbin/policy-rc.d ] && exit 0; "
    "printf '#!/bin/sh\\nexit 101\\n' > /usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d && echo made"
)


#: How to see that a module's feature is there, loaded or built in, where /sys/module does not show it (a
#: built-in module without parameters has no /sys/module entry; a loadable one always has).
_MODULE_PROBES = {
    "overlay": ["grep", "-qw", "overlay", "/proc/filesystems"],
    "br_netfilter": ["test", "-e", "/proc/sys/net/bridge/bridge-nf-call-iptables"],
    "ip_vs": ["test", "-e", "/proc/net/ip_vs"],
    "nf_conntrack": ["test", "-e", "/proc/sys/net/netfilter/nf_conntrack_max"],
}


def module_present(t: Transport, module: str) -> bool:
    """Whether the kernel has ``module``'s feature now (loaded, or built in)."""
    probe = _MODULE_PROBES.get(module, ["test", "-d", f"/sys/module/{module}"])
    return t.run(probe, sudo=True, check=False).ok


def systemctl(t: Transport, *args: str, check: bool = True) -> bool:
    return t.run(["systemctl", *args], sudo=True, check=check).ok


def is_active(t: Transport, unit: str) -> bool:
    return systemctl(t, "is-active", "--quiet", unit, check=False)


PENDING_DIR = "/var/lib/kha/pending"


def mark_pending(ctx: Context, t: Transport, unit: str) -> None:
    """Record that ``unit`` must be restarted, *before* its new config is written.

    This is what makes an interrupted run resumable: if the run stops between writing a config and
    restarting its daemon, the next run finds the mark (its files are already up to date by then)
    and still restarts it. The mark is cleared once the daemon was restarted or reloaded.
    """
    if not ctx.dry_run:
        t.run(["sh", "-c", 'mkdir -p "$1" && touch "$1/$2"', "mark", PENDING_DIR, unit], sudo=True)


def is_pending(t: Transport, unit: str) -> bool:
    return exists(t, f"{PENDING_DIR}/{unit}")


def clear_pending(ctx: Context, t: Transport, unit: str) -> None:
    if not ctx.dry_run:
        t.run(["rm", "-f", f"{PENDING_DIR}/{unit}"], sudo=True)


def ensure_service(ctx: Context, t: Transport, unit: str, *, changed: bool, no_block: bool = False) -> bool:
    """Enabled and running; restarted when its files ``changed`` (now, or in a run that stopped before
    restarting it: see ``mark_pending``). Returns True when it was (re)started."""
    changed = changed or is_pending(t, unit)
    if ctx.dry_run:
        if changed:
            ctx.would(f"restart {unit}")
        elif not is_active(t, unit):
            ctx.would(f"start {unit}")
        return changed
    if changed:
        systemctl(t, "daemon-reload")
    if not systemctl(t, "is-enabled", "--quiet", unit, check=False):
        systemctl(t, "enable", unit)
    block = ["--no-block"] if no_block else []
    if changed:
        systemctl(t, "restart", *block, unit)
        clear_pending(ctx, t, unit)
        return True
    if not is_active(t, unit):
        systemctl(t, "start", *block, unit)
        return True
    return False
