"""Docker-archive tarballs (the ``docker save`` layout) written without docker, byte-for-byte reproducible.

What ``ctr -n k8s.io images import`` and ``docker load`` read (containerd images/archive/importer.go):

    <layer-digest>/layer.tar      the image's one layer: an uncompressed tar of a root tree
    <config-digest>.json          the image config: Env, Entrypoint, Cmd, rootfs.diff_ids
    manifest.json                 [{"Config": …, "RepoTags": [ref, …], "Layers": [<layer-digest>/layer.tar]}]

Spec: https://github.com/moby/moby/blob/master/image/spec/v1.2.md (config) and the "docker save" format.

Reproducible: entries sorted, one fixed mtime, uid/gid 0 with empty owner names, permissions kept from the
tree, hard links kept as links to the first path, JSON canonical (sorted keys, no spaces). The same tree,
config and mtime give the same archive bytes, and so the same sha256 in the bundle manifest.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import stat
import tarfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from images.errors import BuildError

# Layer media types say "tar": no compression, so the archive's sha256 depends on nothing but the inputs.
TAR_FORMAT = tarfile.PAX_FORMAT


@dataclass(frozen=True)
class ImageConfig:
    """The runtime part of an image config (the ``config`` object of the v1.2 spec)."""

    entrypoint: tuple[str, ...] = ()
    cmd: tuple[str, ...] = ()
    env: tuple[str, ...] = ()
    user: str = ""
    working_dir: str = "/"
    labels: tuple[tuple[str, str], ...] = ()

    def to_dict(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"Env": list(self.env), "WorkingDir": self.working_dir}
        if self.entrypoint:
            doc["Entrypoint"] = list(self.entrypoint)
        if self.cmd:
            doc["Cmd"] = list(self.cmd)
        if self.user:
            doc["User"] = self.user
        if self.labels:
            doc["Labels"] = dict(self.labels)
        return doc


@dataclass(frozen=True)
class Archive:
    """A written docker-archive: its path, sha256 and size, and the digests inside it."""

    path: Path
    sha256: str
    size: int
    config_digest: str  # sha256:… of the config JSON (the image ID docker shows)
    diff_id: str  # sha256:… of the layer tar
    refs: tuple[str, ...]


def _entries(root: Path) -> list[Path]:
    """Every path under ``root`` (not ``root`` itself), sorted by path components: parents before
    children, the same order on every machine. Symlinks to directories are listed, never followed."""
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        base = Path(dirpath)
        found += [base / n for n in [*dirnames, *filenames]]
    return sorted(found, key=lambda p: p.relative_to(root).parts)


def write_layer(root: Path, out: IO[bytes], mtime: int) -> None:
    """Write the tree ``root`` as an uncompressed, reproducible tar to ``out``."""
    seen: dict[tuple[int, int], str] = {}
    with tarfile.open(fileobj=out, mode="w", format=TAR_FORMAT) as tf:
        for path in _entries(root):
            arcname = path.relative_to(root).as_posix()
            st = path.lstat()
            info = tarfile.TarInfo(arcname)
            info.mtime = mtime
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            info.mode = stat.S_IMODE(st.st_mode)
            if stat.S_ISDIR(st.st_mode):
                info.type = tarfile.DIRTYPE
                tf.addfile(info)
            elif stat.S_ISLNK(st.st_mode):
                info.type = tarfile.SYMTYPE
                info.linkname = os.readlink(path)
                tf.addfile(info)
            elif stat.S_ISREG(st.st_mode):
                key = (st.st_dev, st.st_ino)
                if st.st_nlink > 1 and key in seen:
                    info.type = tarfile.LNKTYPE
                    info.linkname = seen[key]
                    tf.addfile(info)
                    continue
                seen[key] = arcname
                info.size = st.st_size
                with path.open("rb") as fh:
                    tf.addfile(info, fh)
            else:
                raise BuildError(f"{path}: not a file, directory or symlink; a layer cannot carry it")


class _HashingWriter(io.RawIOBase):
    """A write-only file that hashes and counts what passes through to ``out``."""

    def __init__(self, out: IO[bytes]) -> None:
        self.out = out
        self.sha = hashlib.sha256()
        self.size = 0

    def writable(self) -> bool:
        return True

    def tell(self) -> int:
        # tarfile asks where it is; the stream only ever grows, so that is the byte count.
        return self.size

    def write(self, b: Any) -> int:
        data = bytes(b)
        self.sha.update(data)
        self.size += len(data)
        self.out.write(data)
        return len(data)


def _canonical(doc: object) -> bytes:
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


def _add_bytes(tf: tarfile.TarFile, name: str, data: bytes, mtime: int) -> None:
    info = _member(name, mtime, tarfile.REGTYPE, 0o644)
    info.size = len(data)
    tf.addfile(info, io.BytesIO(data))


def _member(name: str, mtime: int, kind: bytes, mode: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = mode
    info.mtime = mtime
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def write_docker_archive(
    dest: Path,
    refs: Sequence[str],
    root: Path,
    config: ImageConfig,
    *,
    mtime: int,
    created: str,
    created_by: str = "kha bundle",
    architecture: str = "amd64",
) -> Archive:
    """Write the image ``refs`` (name:tag each), one layer made of the tree ``root``, to ``dest``.

    The layer is staged next to ``dest`` (same file system, no second copy in memory) and removed after.
    """
    if not refs:
        raise BuildError(f"{dest}: an image archive needs at least one name:tag")
    layer_tmp = dest.with_name(f".{dest.name}.layer.tmp")
    tmp = dest.with_name(f".{dest.name}.tmp")
    try:
        with layer_tmp.open("wb") as raw:
            hashing = _HashingWriter(raw)
            with io.BufferedWriter(hashing, buffer_size=1 << 20) as buffered:
                write_layer(root, buffered, mtime)
        layer_hex = hashing.sha.hexdigest()
        diff_id = f"sha256:{layer_hex}"
        image_config = {
            "architecture": architecture,
            "os": "linux",
            "created": created,
            "config": config.to_dict(),
            "rootfs": {"type": "layers", "diff_ids": [diff_id]},
            "history": [{"created": created, "created_by": created_by}],
        }
        config_bytes = _canonical(image_config)
        config_hex = hashlib.sha256(config_bytes).hexdigest()
        manifest = [{"Config": f"{config_hex}.json", "RepoTags": list(refs), "Layers": [f"{layer_hex}/layer.tar"]}]

        with tmp.open("wb") as raw:
            hashing = _HashingWriter(raw)
            with (
                io.BufferedWriter(hashing, buffer_size=1 << 20) as buffered,
                tarfile.open(fileobj=buffered, mode="w", format=TAR_FORMAT) as tf,
            ):
                tf.addfile(_member(layer_hex, mtime, tarfile.DIRTYPE, 0o755))
                info = _member(f"{layer_hex}/layer.tar", mtime, tarfile.REGTYPE, 0o644)
                info.size = layer_tmp.stat().st_size
                with layer_tmp.open("rb") as fh:
                    tf.addfile(info, fh)
                _add_bytes(tf, f"{config_hex}.json", config_bytes, mtime)
                _add_bytes(tf, "manifest.json", _canonical(manifest), mtime)
        os.rename(tmp, dest)
    finally:
        layer_tmp.unlink(missing_ok=True)
        tmp.unlink(missing_ok=True)
    return Archive(
        path=dest,
        sha256=hashing.sha.hexdigest(),
        size=hashing.size,
        config_digest=f"sha256:{config_hex}",
        diff_id=diff_id,
        refs=tuple(refs),
    )


def read_archive_manifest(path: Path) -> list[dict[str, Any]]:
    """The ``manifest.json`` inside a docker-archive (for checks and tests)."""
    with tarfile.open(path) as tf:
        member = tf.extractfile("manifest.json")
        if member is None:
            raise BuildError(f"{path}: no manifest.json inside")
        doc = json.loads(member.read())
    if not isinstance(doc, list):
        raise BuildError(f"{path}: manifest.json is not a list")
    return doc
