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

In the one store (``images.cache``) like base images and the bundle: ``CACHE/testimages/NAME-DIGEST``, the
digest over the recipe below and ``BUILDER_VERSION``, so a complete directory is always usable and a cached
build sends no traffic. The archive is reproducible (``images.bundle.dockerarchive``): same .deb, same bytes.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from images.bundle.apt import PrivateApt
from images.bundle.dockerarchive import ImageConfig, write_docker_archive
from images.cache import BUILD_LOG, Store, remove_tree
from images.cache import digest as recipe_digest
from images.errors import BuildError
from images.recipes import DebootstrapRecipe
from images.run import Progress, file_log, run, step
from images.sources import APT_ETC, resolve_mirrors

__all__ = ["BUSYBOX", "TestImage", "TestImageRecipe", "build", "get"]

log = logging.getLogger(__name__)

#: Bump when the builder changes what lands in the archive without a recipe field changing.
BUILDER_VERSION = "1"
ARCHIVE = "image.tar"
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
        return recipe_digest("builder_version", BUILDER_VERSION, self)


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
    def from_manifest(cls, directory: Path, doc: dict[str, Any]) -> TestImage | None:
        archive = directory / str(doc.get("archive", ""))
        if not archive.is_file():
            return None
        return cls(ref=str(doc["ref"]), archive=archive, sha256=str(doc["sha256"]),
                   package_version=str(doc["package_version"]))


class TestImageStore(Store[TestImageRecipe, dict[str, Any], TestImage]):
    """Test images under ``root/testimages`` (``root``: the kha cache unless given)."""

    __test__ = False

    def __init__(self, root: Path | None = None) -> None:
        super().__init__(root, "testimages", digest=TestImageRecipe.digest, load=TestImage.from_manifest,
                         seal=lambda r, work, doc, seconds: doc)


def path_for(r: TestImageRecipe, cache: Path | None = None) -> Path:
    return TestImageStore(cache).path_for(r)


def get(r: TestImageRecipe = BUSYBOX, *, cache: Path | None = None) -> TestImage | None:
    """The cached image for the recipe as it is now, or ``None`` (never builds)."""
    return TestImageStore(cache).lookup(r)


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
    store = TestImageStore(cache)
    env = os.environ if env is None else env

    def builder(rec: TestImageRecipe, work: Path, progress: Progress | None) -> dict[str, Any]:
        return _build(rec, work, store.dir / ".apt", env=env, apt_etc=apt_etc, progress=progress)

    return store.obtain(r, lambda: builder, progress=progress)


def _build(r: TestImageRecipe, work: Path, apt_root: Path, *, env: Mapping[str, str], apt_etc: Path,
           progress: Progress | None) -> dict[str, Any]:
    """Build the image into ``work``; return its manifest (the store writes it last)."""
    # The mirror is chosen as for the base images and the bundle (KHA_DEBIAN_MIRROR, KHA_OFFLINE, apt config).
    probe = DebootstrapRecipe(name=r.name, description="e2e test image", distro="debian", suite=r.suite, packages=())
    apt = PrivateApt(apt_root, resolve_mirrors(probe, env, apt_etc), r.suite)
    scratch = work / ".scratch"
    with file_log(work / BUILD_LOG) as logfile:
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
    log.info("%s: %s (%d bytes, sha256 %s)", r.ref, work.name, archive.size, archive.sha256)
    return {"ref": r.ref, "archive": ARCHIVE, "sha256": archive.sha256, "size": archive.size,
            "package": r.package, "package_version": deb.version, "recipe": dataclasses.asdict(r),
            "builder_version": BUILDER_VERSION}
