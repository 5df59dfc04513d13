"""apt with a private configuration under the kha cache: the Debian source package and a few binary debs.

The host has no ``deb-src`` line, and its apt configuration is not ours to change. Every apt-get call here
adds ``-o Dir::Etc::sourcelist=…``, ``Dir::Etc::sourceparts=…`` and ``Dir::State::Lists=…`` pointing into
``CACHE/bundles/.apt/``, with ``deb`` and ``deb-src`` lines built from the mirror the machine's own apt
configuration names (``images.sources``: ``KHA_DEBIAN_MIRROR`` overrides, ``KHA_OFFLINE=1`` fails fast).
The host's apt.conf.d still applies, so a proxy or ``Acquire::Check-Valid-Until "false"`` (snapshot
mirrors) carry over. Nothing here takes the dpkg lock or touches /var/lib/apt.

apt.conf(5) Dir:: options: https://manpages.debian.org/bookworm/apt/apt.conf.5.en.html#DIRECTORIES
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from images.bundle.argv import in_dir
from images.errors import BuildCommandFailed, BuildError
from images.recipes import DEBIAN_KEYRING
from images.run import capture, run
from images.sources import Mirrors

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Deb:
    """A downloaded binary package."""

    package: str
    version: str
    path: Path


class PrivateApt:
    """apt-get and apt-cache over ``root`` (sources list, lists, nothing else of the host's state)."""

    def __init__(self, root: Path, mirrors: Mirrors, suite: str, component: str = "main") -> None:
        self.root = root
        self.mirrors = mirrors
        self.suite = suite
        self.component = component

    def source_lines(self) -> tuple[str, ...]:
        """``deb`` and ``deb-src`` for the suite, its -updates and (when configured) -security."""
        opts = f"[signed-by={DEBIAN_KEYRING}]"
        suites = [(self.mirrors.archive, self.suite), (self.mirrors.archive, f"{self.suite}-updates")]
        if self.mirrors.security:
            suites.append((self.mirrors.security, f"{self.suite}-security"))
        return tuple(
            f"{kind} {opts} {uri} {suite} {self.component}" for kind in ("deb", "deb-src") for uri, suite in suites
        )

    def options(self) -> list[str]:
        opts = {
            "Dir::Etc::sourcelist": str(self.root / "sources.list"),
            "Dir::Etc::sourceparts": str(self.root / "sources.list.d"),
            "Dir::State::Lists": str(self.root / "lists"),
            "Dir::Cache::archives": str(self.root / "archives"),
            # No binary caches of the index: they would be rebuilt on every call anyway.
            "Dir::Cache::pkgcache": "",
            "Dir::Cache::srcpkgcache": "",
            # The downloads land in root-only cache directories the _apt user cannot write.
            "APT::Sandbox::User": "root",
        }
        return [arg for k, v in opts.items() for arg in ("-o", f"{k}={v}")]

    def _setup(self) -> None:
        for d in ("sources.list.d", "lists/partial", "archives/partial"):
            (self.root / d).mkdir(parents=True, exist_ok=True)
        want = "".join(f"{line}\n" for line in self.source_lines())
        path = self.root / "sources.list"
        if not path.is_file() or path.read_text() != want:
            path.write_text(want)

    def update(self, logfile: TextIO) -> None:
        """Fetch the indexes (a few seconds; an If-Modified-Since hit when nothing changed)."""
        self._setup()
        run(["apt-get", "-q", *self.options(), "update"], logfile=logfile, what="apt-get update (private lists)")

    def source(self, package: str, version: str, dest: Path, logfile: TextIO) -> Path:
        """Download ``package=version``'s source files into ``dest`` (kept there: a rebuild does not fetch
        them again; apt checks each file's hash against the signed index). Returns the .dsc."""
        dest.mkdir(parents=True, exist_ok=True)
        try:
            run(
                in_dir(dest, ["apt-get", "-q", *self.options(), "source", "--download-only", f"{package}={version}"]),
                logfile=logfile,
                what=f"apt-get source {package}={version}",
            )
        except BuildCommandFailed as exc:
            raise BuildCommandFailed.of(
                exc,
                f"{package} {version} is not on {self.mirrors.archive} ({self.suite}): the recipe pins that "
                f"version; if the mirror moved on, update DebianSource.version in images/bundle/recipe.py",
            ) from None
        # Debian file names drop the epoch: "1:2.0-1" → "_2.0-1.dsc".
        dsc = dest / f"{package}_{version.split(':', 1)[-1]}.dsc"
        if not dsc.is_file():
            raise BuildError(f"apt-get source finished but {dsc} is not there")
        return dsc

    def download(self, packages: Sequence[str], dest: Path, logfile: TextIO) -> dict[str, Deb]:
        """The candidate version of each binary package, downloaded into the empty directory ``dest``."""
        dest.mkdir(parents=True, exist_ok=True)
        run(
            in_dir(dest, ["apt-get", "-q", *self.options(), "download", *sorted(set(packages))]),
            logfile=logfile,
            what="apt-get download",
        )
        found: dict[str, Deb] = {}
        for path in sorted(dest.glob("*.deb")):
            fields = capture(["dpkg-deb", "--show", "--showformat=${Package}\t${Version}", str(path)])
            name, _, version = fields.strip().partition("\t")
            found[name] = Deb(name, version, path)
        missing = sorted(set(packages) - set(found))
        if missing:
            raise BuildError(f"apt-get download did not produce {', '.join(missing)} in {dest}")
        return found
