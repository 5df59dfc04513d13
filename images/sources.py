"""Where a recipe's bytes come from on this machine, decided from configuration, never by probing.

Mirrors are read from the machine's own apt configuration at build time (``/etc/apt/sources.list``
and ``/etc/apt/sources.list.d/*.list|*.sources``), so no host name is written in code. Overrides:

- ``KHA_DEBIAN_MIRROR``, ``KHA_DEBIAN_SECURITY_MIRROR``: Debian archive / security mirror URLs;
- ``KHA_UBUNTU_MIRROR``, ``KHA_UBUNTU_SECURITY_MIRROR``: the same for Ubuntu;
- ``KHA_REACHABLE_HOSTS``: comma-separated extra host names this machine can download from;
- ``KHA_OFFLINE=1``: nothing is reachable (a cold build fails fast; cached images still work), except
  this machine itself: a cloud image served from 127.0.0.0/8 or ``localhost``.

"Reachable" means: a host named by the apt configuration or by one of the overrides. A recipe whose
source is anywhere else raises ``NeedsDownload`` before any traffic is sent: on our machines only the
package registries are reachable, and a connection attempt elsewhere would only hang until a timeout.
"""

from __future__ import annotations

import ipaddress
import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from core.errors import CommandFailed
from core.run import run
from images.errors import NeedsDownload, SourceConfigError
from images.recipes import CloudImageRecipe, DebootstrapRecipe, Recipe

log = logging.getLogger(__name__)

APT_ETC = Path("/etc/apt")

DEBIAN_CODENAMES = frozenset(
    {
        "buster",
        "bullseye",
        "bookworm",
        "trixie",
        "forky",
        "duke",
        "sid",
        "oldoldstable",
        "oldstable",
        "stable",
        "testing",
        "unstable",
    }
)
UBUNTU_CODENAMES = frozenset({"focal", "jammy", "mantic", "noble", "oracular", "plucky", "questing"})

# Host apt options worth carrying into the build's own apt (mmdebstrap does not read the host's
# apt.conf.d). A proxy, and the snapshot-mirror switches some of our machines need.
FORWARDED_APT_OPTIONS = (
    "Acquire::http::Proxy",
    "Acquire::https::Proxy",
    "Acquire::Check-Valid-Until",
    "Acquire::Check-Date",
    "Acquire::Retries",
)


@dataclass(frozen=True)
class AptSource:
    """One enabled ``deb`` entry of the machine's apt configuration."""

    uri: str
    suites: tuple[str, ...]
    components: tuple[str, ...]
    file: str


@dataclass(frozen=True)
class Mirrors:
    """The mirrors one build uses. ``security`` may be absent (then no security suite is added)."""

    archive: str
    security: str | None
    origin: str  # where the choice came from, for the log and the manifest

    def apt_lines(self, r: DebootstrapRecipe) -> tuple[str, ...]:
        """One-line apt sources (one suite per line, as that format requires) for mmdebstrap."""
        opts = f"[signed-by={r.keyring}]"
        comps = " ".join(r.components)
        lines = [f"deb {opts} {self.archive} {r.suite} {comps}", f"deb {opts} {self.archive} {r.suite}-updates {comps}"]
        if self.security:
            lines.append(f"deb {opts} {self.security} {r.suite}-security {comps}")
        return tuple(lines)


def read_apt_sources(apt_etc: Path = APT_ETC) -> list[AptSource]:
    """Every enabled ``deb`` entry, in apt's order (sources.list, then sources.list.d sorted)."""
    out: list[AptSource] = []
    main = apt_etc / "sources.list"
    if main.is_file():
        out += _parse_one_line(main)
    parts = apt_etc / "sources.list.d"
    if parts.is_dir():
        for f in sorted(parts.iterdir()):
            # apt itself only reads these two suffixes (so "*.disabled-by-…" files stay off).
            if f.suffix == ".list":
                out += _parse_one_line(f)
            elif f.suffix == ".sources":
                out += _parse_deb822(f)
    return out


def _parse_one_line(path: Path) -> list[AptSource]:
    out = []
    for raw in path.read_text(errors="replace").splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        line = re.sub(r"\[[^\]]*\]", " ", line)  # drop [arch=… signed-by=…]
        words = line.split()
        if len(words) >= 3 and words[0] == "deb":
            out.append(AptSource(words[1], (words[2],), tuple(words[3:]), str(path)))
    return out


def _parse_deb822(path: Path) -> list[AptSource]:
    out = []
    text = path.read_text(errors="replace")
    for stanza in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        key = None
        for raw in stanza.splitlines():
            if raw.startswith("#"):
                continue
            if raw[:1].isspace() and key is not None:  # continuation line
                fields[key] += " " + raw.strip()
                continue
            if ":" in raw:
                key, _, value = raw.partition(":")
                key = key.strip().lower()
                fields[key] = value.strip()
        if "deb" not in fields.get("types", "").split():
            continue
        if fields.get("enabled", "yes").lower() in {"no", "false", "0"}:
            continue
        suites = tuple(fields.get("suites", "").split())
        comps = tuple(fields.get("components", "").split())
        for uri in fields.get("uris", "").split():
            out.append(AptSource(uri, suites, comps, str(path)))
    return out


def _suite_base(suite: str) -> str:
    return suite.split("/", 1)[0].split("-", 1)[0]


def _is_security(suite: str) -> bool:
    return suite.endswith("-security") or suite.endswith("/updates")


def _configured(sources: Iterable[AptSource], codenames: frozenset[str], *, security: bool) -> str | None:
    for s in sources:
        for suite in s.suites:
            if _suite_base(suite) in codenames and _is_security(suite) == security:
                return s.uri.rstrip("/")
    return None


def _host(url: str) -> str:
    return (urlsplit(url).hostname or "").lower()


def _offline(env: Mapping[str, str]) -> bool:
    return env.get("KHA_OFFLINE", "").strip().lower() in {"1", "yes", "true"}


def reachable_hosts(env: Mapping[str, str], apt_etc: Path = APT_ETC) -> frozenset[str]:
    """Hosts this machine is configured to download from (empty when ``KHA_OFFLINE=1``)."""
    if _offline(env):
        return frozenset()
    hosts = {_host(s.uri) for s in read_apt_sources(apt_etc)}
    for var in ("KHA_DEBIAN_MIRROR", "KHA_DEBIAN_SECURITY_MIRROR", "KHA_UBUNTU_MIRROR", "KHA_UBUNTU_SECURITY_MIRROR"):
        if env.get(var):
            hosts.add(_host(env[var]))
    hosts.update(h.strip().lower() for h in env.get("KHA_REACHABLE_HOSTS", "").split(",") if h.strip())
    hosts.discard("")
    return frozenset(hosts)


def resolve_mirrors(r: DebootstrapRecipe, env: Mapping[str, str], apt_etc: Path = APT_ETC) -> Mirrors:
    """The mirrors to build ``r`` from, or ``NeedsDownload`` / ``SourceConfigError`` at once."""
    prefix = "KHA_DEBIAN" if r.distro == "debian" else "KHA_UBUNTU"
    codenames = DEBIAN_CODENAMES if r.distro == "debian" else UBUNTU_CODENAMES
    sources = read_apt_sources(apt_etc)

    archive, origin = env.get(f"{prefix}_MIRROR"), f"${prefix}_MIRROR"
    if not archive:
        archive, origin = _configured(sources, codenames, security=False), f"apt configuration in {apt_etc}"
    security = env.get(f"{prefix}_SECURITY_MIRROR") or _configured(sources, codenames, security=True)

    if not archive:
        if r.default_mirror:
            raise NeedsDownload(
                r.name,
                r.default_mirror,
                f"no {r.distro} mirror in the apt configuration under {apt_etc}; "
                f"set {prefix}_MIRROR to one this machine can reach",
            )
        raise SourceConfigError(
            f"no {r.distro} mirror in the apt configuration under {apt_etc} "
            f"(looked for a deb source serving one of {', '.join(sorted(codenames))}); "
            f"set {prefix}_MIRROR"
        )
    if _offline(env):
        raise NeedsDownload(r.name, archive, "KHA_OFFLINE=1")
    if not security:
        log.warning("%s: no %s security mirror configured; building without %s-security", r.name, r.distro, r.suite)
    return Mirrors(archive=archive.rstrip("/"), security=security.rstrip("/") if security else None, origin=origin)


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 or ``localhost``: this machine itself, reachable even with ``KHA_OFFLINE=1``."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_cloud_image(r: CloudImageRecipe, env: Mapping[str, str], apt_etc: Path = APT_ETC) -> None:
    """``NeedsDownload`` unless the image's host is configured as reachable (a loopback URL always is:
    that is a file this machine serves itself, as the offline proof of the cloud-image path does)."""
    host = _host(r.url)
    if not is_loopback(host) and host not in reachable_hosts(env, apt_etc):
        why = (
            "KHA_OFFLINE=1"
            if _offline(env)
            else (f"{host} is not an apt mirror of this machine nor listed in KHA_REACHABLE_HOSTS")
        )
        raise NeedsDownload(r.name, r.url, why)


def check_source(r: Recipe, env: Mapping[str, str], apt_etc: Path = APT_ETC) -> Mirrors | None:
    """Fail fast when ``r`` cannot be fetched from here; the mirrors for a debootstrap recipe."""
    if isinstance(r, CloudImageRecipe):
        check_cloud_image(r, env, apt_etc)
        return None
    return resolve_mirrors(r, env, apt_etc)


def host_apt_options() -> tuple[str, ...]:
    """``Key "value";`` lines from the host's apt configuration worth forwarding (see above)."""
    try:
        out = run(["apt-config", "dump"], timeout=30).stdout
    except CommandFailed as exc:
        log.warning("apt-config dump failed (%s); forwarding no host apt options", exc)
        return ()
    opts = []
    for line in out.splitlines():
        m = re.fullmatch(r'(\S+) "(.*)";', line.strip())
        if m and m.group(1) in FORWARDED_APT_OPTIONS and m.group(2):
            opts.append(f'{m.group(1)} "{m.group(2)}";')
    return tuple(opts)
