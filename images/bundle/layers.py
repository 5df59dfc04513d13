"""The root trees of the bundle's container images, and their docker-archive tarballs.

One layer per image, as upstream's images are "the binary in a minimal base":

- control plane (kube-apiserver, kube-controller-manager, kube-scheduler): the binary in /usr/local/bin plus
  /etc/passwd, /etc/group, /etc/nsswitch.conf (build/nsswitch.conf: Go's resolver honours /etc/hosts only
  with it) and a /tmp; upstream bases them on distroless go-runner, which carries the same files;
- kube-proxy: the same, plus iptables and conntrack unpacked from Debian debs (``dpkg-deb -x``, no
  maintainer scripts, so the update-alternatives links are made here) and checked by running them in a
  chroot of the finished tree (every shared library they need must be there);
- pause: only /pause, as build/pause/Dockerfile.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import TextIO

from images.bundle.apt import Deb
from images.bundle.dockerarchive import Archive, ImageConfig, write_docker_archive
from images.bundle.recipe import IMAGE_PATH, ContainerImage, DebianSourceRecipe
from images.errors import BuildCommandFailed
from images.run import run

log = logging.getLogger(__name__)

PASSWD = "root:x:0:0:root:/root:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n"
GROUP = "root:x:0:\nnogroup:x:65534:\n"


def epoch(timestamp: str) -> int:
    """``2021-01-13T00:00:00Z`` as seconds since the epoch (the archives' fixed mtime)."""
    return int(dt.datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp())


def image_root(
    image: ContainerImage,
    root: Path,
    *,
    binary: Path,
    debs: Mapping[str, Deb],
    nsswitch: Path,
    logfile: TextIO,
) -> None:
    """Fill the empty directory ``root`` with ``image``'s tree."""
    root.mkdir(parents=True)
    for name in image.debs:
        run(["dpkg-deb", "-x", str(debs[name].path), str(root)], logfile=logfile, what=f"dpkg-deb -x {name}")
    _prune(root, image.prune)
    for path, target in image.links:
        link = root / path.lstrip("/")
        link.parent.mkdir(parents=True, exist_ok=True)
        link.unlink(missing_ok=True)
        link.symlink_to(target)
    if image.binary != "pause":
        etc = root / "etc"
        etc.mkdir(exist_ok=True)
        for name, text in (("passwd", PASSWD), ("group", GROUP)):
            if not (etc / name).exists():
                (etc / name).write_text(text)
                (etc / name).chmod(0o644)
        shutil.copyfile(nsswitch, etc / "nsswitch.conf")
        (etc / "nsswitch.conf").chmod(0o644)
        (root / "tmp").mkdir(exist_ok=True)
    dest = root / image.binary_path.lstrip("/")
    dest.parent.mkdir(parents=True, exist_ok=True)
    # A hard link, not a copy: 100 MB binaries, same file system, and the layer tar reads it once.
    os.link(binary, dest)
    _fix_dir_modes(root)


def _prune(root: Path, patterns: tuple[str, ...]) -> None:
    for pattern in patterns:
        for p in sorted(root.glob(pattern)):
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p)
            else:
                p.unlink()
    doc = root / "usr" / "share" / "doc"
    if doc.is_dir():
        # Debian policy 12.5: the copyright file travels with the binaries; changelogs and READMEs need not.
        for p in sorted(doc.rglob("*"), reverse=True):
            if p.is_symlink() or p.is_file():
                if p.name != "copyright":
                    p.unlink()
            elif p.is_dir() and not any(p.iterdir()):
                p.rmdir()


def _fix_dir_modes(root: Path) -> None:
    """Directories 0755 (/tmp 1777) whatever the umask: the modes go into the layer and its sha256."""
    for dirpath, _dirnames, _filenames in os.walk(root):
        p = Path(dirpath)
        if p != root:
            p.chmod(0o1777 if p == root / "tmp" else 0o755)


def check_root(image: ContainerImage, root: Path, logfile: TextIO) -> None:
    """Run the image's checks inside its tree (chroot: root only): a missing shared library fails here."""
    for argv in image.checks:
        try:
            run(["chroot", str(root), *argv], logfile=logfile, what=f"{image.name}: {' '.join(argv)} in the image")
        except BuildCommandFailed as exc:
            raise BuildCommandFailed.of(
                exc,
                f"{image.name}: {argv[0]} does not run inside the image tree: a Debian package is missing from "
                "the recipe's debs (see ldd on the build host)",
            ) from None


def write_image(
    r: DebianSourceRecipe,
    image: ContainerImage,
    root: Path,
    dest: Path,
) -> Archive:
    config = ImageConfig(entrypoint=image.entrypoint, env=(f"PATH={IMAGE_PATH}",))
    return write_docker_archive(
        dest,
        [r.image_ref(image)],
        root,
        config,
        mtime=epoch(r.stamp.build_date),
        created=r.stamp.build_date,
        created_by=f"kha bundle {r.name}: {image.binary_path} ({', '.join(image.debs) or 'no packages'})",
    )
