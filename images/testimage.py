"""The e2e test image: Debian's static busybox as ``kha.local/busybox:1``, a docker-archive for containerd.

    from images import testimage
    img = testimage.build()          # CACHE/testimages/busybox-HASH12/image.tar, cached after the first build
    img.ref, img.archive, img.sha256
    # on a node: ctr -n k8s.io images import --no-unpack image.tar; pods use imagePullPolicy: Never

Offline clusters have no registry, so the pods the e2e tier starts run this image. It is one layer: the
``busybox`` binary from Debian's ``busybox-static`` package (fetched with ``apt-get download`` through the
private apt configuration of ``images.bundle.apt``, under ``CACHE/testimages/.apt``) and a symlink per
applet the tests use. Debian's static busybox ``wget`` segfaults inside pods (../shared/MACHINE.md); its
``nc`` (no ``-z``: a connect with stdin at EOF exits 0 once the peer closes) and ``httpd`` work.

Cached like the bundle: the directory is named by a hash of the recipe below (``BUILDER_VERSION``
included), built in a dot-directory under a lock and renamed into place once complete, so a complete
directory is always usable and a cached build sends no traffic. The archive is reproducible
(``images.bundle.dockerarchive``): same .deb, same bytes.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from images.bundle.apt import PrivateApt
from images.bundle.dockerarchive import ImageConfig, write_docker_archive
from images.cache import build_lock, cache_dir, publish, remove_leftovers, remove_quietly, remove_tree
from images.errors import BuildError
from images.recipes import DebootstrapRecipe
from images.run import Progress, file_log, run, step
from images.sources import APT_ETC, resolve_mirrors

__all__ = ["BUSYBOX", "TestImage", "TestImageRecipe", "build", "get"]

log = logging.getLogger(__name__)

#: Bump when the builder changes what lands in the archive without a recipe field changing.
BUILDER_VERSION = "1"
ARCHIVE = "image.tar"
MANIFEST = "manifest.json"
#: A fixed timestamp for every tar entry and the image config: the archive depends on its inputs only.
EPOCH = 0
CREATED = "1970-01-01T00:00:00Z"


@dataclass(frozen=True)
class TestImageRecipe:
    """What decides the image's bytes (its hash names the cache directory)."""

    __test__ = False  # a data class, not a pytest test class

    name: str
    ref: str
    package: str
    suite: str
    binary: str  # path of the busybox binary inside the .deb
    applets: tuple[str, ...]

    def digest(self) -> str:
        doc = {"builder_version": BUILDER_VERSION, **dataclasses.asdict(self)}
        return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:12]


BUSYBOX = TestImageRecipe(
    name="busybox",
    ref="kha.local/busybox:1",
    package="busybox-static",
    suite="bookworm",
    binary="bin/busybox",
    applets=("sh", "nc", "httpd", "cat", "echo", "printf", "mkdir", "sleep", "hostname", "grep", "true"),
)


@dataclass(frozen=True)
class TestImage:
    """A complete, cached test image."""

    __test__ = False

    ref: str
    archive: Path
    sha256: str
    package_version: str

    @classmethod
    def load(cls, directory: Path) -> TestImage | None:
        try:
            doc = json.loads((directory / MANIFEST).read_text())
        except (OSError, ValueError):
            return None
        archive = directory / str(doc.get("archive", ""))
        if not archive.is_file():
            return None
        return cls(ref=str(doc["ref"]), archive=archive, sha256=str(doc["sha256"]),
                   package_version=str(doc["package_version"]))


def _root(cache: Path | None) -> Path:
    return (cache if cache is not None else cache_dir()) / "testimages"


def path_for(r: TestImageRecipe, cache: Path | None = None) -> Path:
    return _root(cache) / f"{r.name}-{r.digest()}"


def get(r: TestImageRecipe = BUSYBOX, *, cache: Path | None = None) -> TestImage | None:
    """The cached image for the recipe as it is now, or ``None`` (never builds)."""
    return TestImage.load(path_for(r, cache))


def build(
    r: TestImageRecipe = BUSYBOX,
    *,
    cache: Path | None = None,
    env: Mapping[str, str] | None = None,
    apt_etc: Path = APT_ETC,
    progress: Progress | None = None,
) -> TestImage:
    """The test image: from the cache, or built now (one ~1 MB download; a few seconds).

    Raises ``NeedsDownload``/``SourceConfigError`` before any traffic when no mirror is reachable, and
    ``BuildError`` when a step fails.
    """
    final = path_for(r, cache)
    if (img := TestImage.load(final)) is not None:
        return img
    root = _root(cache)
    root.mkdir(parents=True, exist_ok=True)
    with build_lock(root, final.name, progress):
        if (img := TestImage.load(final)) is not None:
            return img
        remove_leftovers(root, final.name)
        work = Path(tempfile.mkdtemp(prefix=f".building-{final.name}-", dir=root))
        try:
            _build(r, work, root / ".apt", env=os.environ if env is None else env, apt_etc=apt_etc, progress=progress)
            # An incomplete directory of that name (it did not load above) is not ours to reuse.
            publish(root, work, final)
        except BaseException:
            remove_quietly(work)
            raise
    img = TestImage.load(final)
    if img is None:
        raise BuildError(f"{final}: just built, but its manifest does not load")
    return img


def _build(r: TestImageRecipe, work: Path, apt_root: Path, *, env: Mapping[str, str], apt_etc: Path,
           progress: Progress | None) -> None:
    # The mirror is chosen as for the base images and the bundle (KHA_DEBIAN_MIRROR, KHA_OFFLINE, apt config).
    probe = DebootstrapRecipe(name=r.name, description="e2e test image", distro="debian", suite=r.suite, packages=())
    apt = PrivateApt(apt_root, resolve_mirrors(probe, env, apt_etc), r.suite)
    scratch = work / ".scratch"
    with file_log(work / "build.log") as logfile:
        with step(progress, f"apt-get download {r.package} ({r.suite}, private lists)"):
            apt.update(logfile)
            deb = apt.download([r.package], scratch / "debs", logfile)[r.package]
        with step(progress, f"image {r.ref}"):
            unpacked = scratch / "deb"
            run(["dpkg-deb", "-x", str(deb.path), str(unpacked)], logfile=logfile, what="dpkg-deb -x")
            binary = unpacked / r.binary
            if not binary.is_file():
                raise BuildError(f"{deb.path.name} has no {r.binary}")
            tree = scratch / "root"
            (tree / "bin").mkdir(parents=True)
            (tree / "tmp").mkdir(mode=0o1777)
            (tree / "tmp").chmod(0o1777)
            shutil.copyfile(binary, tree / "bin" / "busybox")
            (tree / "bin" / "busybox").chmod(0o755)
            for applet in r.applets:
                (tree / "bin" / applet).symlink_to("busybox")
            config = ImageConfig(cmd=("/bin/sh",), env=("PATH=/bin",))
            archive = write_docker_archive(work / ARCHIVE, [r.ref], tree, config, mtime=EPOCH, created=CREATED,
                                           created_by=f"kha testimage ({r.package} {deb.version})")
        remove_tree(scratch)
    doc = {"ref": r.ref, "archive": ARCHIVE, "sha256": archive.sha256, "size": archive.size,
           "package": r.package, "package_version": deb.version, "recipe": dataclasses.asdict(r),
           "builder_version": BUILDER_VERSION}
    (work / MANIFEST).write_text(json.dumps(doc, indent=2) + "\n")
    log.info("%s: %s (%d bytes, sha256 %s)", r.ref, work.name, archive.size, archive.sha256)
