"""``kha matrix run --hosts FILE``: the hypervisors cells are spread over, and the scheduler that hands them out.

The file lists one libvirt URI per line, optionally followed by how many cells that host takes at once
(default 1); ``#`` starts a comment, blank lines are ignored::

    # two KVM hypervisors, reached the way libvirt's ssh transport logs in
    qemu+ssh://ci@hv1.example/system   2
    qemu+ssh://ci@hv2.example/system
    qemu+unix:///system?socket=/run/kha-second/libvirt-sock   # a second daemon on this machine

Plain lines rather than TOML: an entry is one URI and one number, and every problem is reported as
``FILE:LINE: …`` (an unreadable file, a malformed line, an unknown scheme, a duplicate host — the same
daemon named twice, for either driver —, no host at all): exit 2 before any cell runs.

Each cell's pytest gets ``--kha-connect URI`` (``harness.pytest_plugin``), so its topology boots on that
host. A cell goes only to a host that can boot it: LXC needs a daemon on this machine (a unix socket URI,
``harness.daemon``); a cell no host can take is refused with that reason, like a cell this machine cannot run.
``scenarios.matrix.schedule`` hands cells to hosts as slots free up, in plan order, each to the first host
(file order) with a free slot that accepts it, a failover cell alone on its host.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from core.errors import InputError
from harness.daemon import ConnectUri, parse_uri
from harness.errors import ConnectUriError


@dataclass(frozen=True)
class Hypervisor:
    """One line of a hosts file: a libvirt URI and how many cells it runs at once."""

    uri: ConnectUri
    slots: int
    line: int

    @property
    def text(self) -> str:
        return self.uri.text

    def takes(self, driver: str) -> str | None:
        """Why this host cannot boot ``driver`` nodes, or None when it can."""
        if driver == "lxc" and not self.uri.local:
            return (f"{self.text}: LXC nodes need overlay mounts made where libvirtd runs, which kha only does on "
                    "this machine (a unix socket URI)")
        return None


def load(path: Path) -> list[Hypervisor]:
    """The hosts in ``path``, checked; ``InputError`` naming the file and line otherwise."""
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise InputError(f"--hosts {path}: cannot read it: {reason}") from exc
    return parse(text, str(path))


def parse(text: str, where: str) -> list[Hypervisor]:
    hosts: list[Hypervisor] = []
    seen: dict[str, int] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        # libvirt URIs have no fragments (parse_uri refuses them), so any '#' starts a comment.
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        words = line.split()
        if len(words) > 2:
            raise InputError(f"{where}:{number}: expected 'URI [CELLS_AT_ONCE]', got {len(words)} words: {line!r}")
        try:
            uri = parse_uri(words[0], flag="host")
        except ConnectUriError as exc:
            raise InputError(f"{where}:{number}: {exc}") from exc
        slots = 1
        if len(words) == 2:
            if not words[1].isdigit() or int(words[1]) < 1:
                raise InputError(f"{where}:{number}: cells at once {words[1]!r}: a whole number, at least 1")
            slots = int(words[1])
        # The same daemon whichever driver the URI names: qemu+ssh://h/system and lxc+ssh://h/system are one.
        key = uri.for_driver("qemu")
        if key in seen:
            raise InputError(f"{where}:{number}: host {uri.text} is already listed on line {seen[key]}")
        seen[key] = number
        hosts.append(Hypervisor(uri, slots, number))
    if not hosts:
        raise InputError(f"{where}: no hosts (one libvirt URI per line, optionally followed by how many cells it "
                         "takes at once; # comments)")
    return hosts
