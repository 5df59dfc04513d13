"""Cloud images: a vendor disk downloaded from a pinned URL, checked against a pinned sha256, kept in the store.

    images/rocky-9-0a1b2c3d4e5f/
      disk.qcow2          the vendor's disk as served (a raw download is converted to qcow2)
      build.log
      manifest.json       kind "cloud-image": url, sha256, boot, login_user, sizes (written last)

There is no rootfs, kernel or initrd: the disk boots with its own bootloader (UEFI through OVMF, or BIOS)
and cloud-init configures each node from a NoCloud seed (``harness.cloudinit``). The store
(``images.cache``) gives a download the discipline of every build: one download of a recipe at a time (its
lock), into a ``.building-…`` dot-directory, renamed into place only after the digest matched and the
manifest was written; a failed or refused download leaves no image behind.

Refusals, in order: a recipe without a pinned digest (``UnpinnedDigest``, before any traffic: never trust
what a URL serves on first use), a host this machine cannot reach (``NeedsDownload``, decided from
configuration by ``images.sources``; a loopback URL is always reachable), then while streaming an HTTP
error or a short read (``DownloadError``) and a digest that differs (``DigestMismatch``, naming the recipe,
the URL and both digests). The digest is computed over the bytes as they arrive, so the file is read once.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import logging
import os
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from core.bundle_manifest import file_sha256
from images import cache
from images.cache import BUILD_LOG, MANIFEST, Built, Store
from images.errors import BuildError, DigestMismatch, DownloadError, ImageError, UnpinnedDigest
from images.recipes import BUILDER_VERSION, Boot, CloudImageRecipe, recipe_hash
from images.run import Progress, capture, file_log, missing_tools, run, step
from images.sources import APT_ETC, check_cloud_image, is_loopback

log = logging.getLogger(__name__)

KIND = "cloud-image"
QCOW2 = "disk.qcow2"
MANIFEST_FORMAT = 1
DOWNLOAD = ".download"
CHUNK = 1 << 20
# Seconds without a byte before a download is given up (a stalled mirror must not hang a build forever).
READ_TIMEOUT = 60.0


@dataclass(frozen=True)
class CloudImage(Built):
    """A complete, verified cloud image in the cache. ``qcow2`` is read-only to its users (overlay base)."""

    qcow2: Path
    manifest: Path
    created: str
    url: str
    sha256: str
    boot: Boot
    login_user: str

    @classmethod
    def from_manifest(cls, directory: Path, doc: dict[str, Any]) -> CloudImage | None:
        """The cloud image in ``directory`` whose manifest is ``doc``; ``None`` for any other kind."""
        if doc.get("kind") != KIND or doc.get("format") != MANIFEST_FORMAT:
            return None
        return cls(name=doc["name"], digest=doc["hash"], path=directory, qcow2=directory / doc["files"]["qcow2"],
                   manifest=directory / MANIFEST, created=doc["created"], url=doc["url"], sha256=doc["sha256"],
                   boot=doc["boot"], login_user=doc["login_user"])


@dataclass(frozen=True)
class Downloaded:
    """What a download found out, for the manifest."""

    sha256: str
    bytes: int
    seconds: float
    source_format: str
    qcow2_virtual_bytes: int


#: A cloud-image builder fills an empty work directory with ``QCOW2``.
Builder = cache.Builder[CloudImageRecipe, Downloaded]


class CloudImageStore(Store[CloudImageRecipe, Downloaded, CloudImage]):
    """Cloud images under ``root/images``, beside the built images (each kind's loader skips the other's)."""

    def __init__(self, root: Path | None = None) -> None:
        super().__init__(root, "images", digest=recipe_hash, load=CloudImage.from_manifest, seal=_seal)


def pinned(r: CloudImageRecipe) -> str:
    """The recipe's sha256, or ``UnpinnedDigest``: decided from the recipe alone, before any traffic."""
    if r.sha256 is None:
        raise UnpinnedDigest(r.name, r.url, r.checksum_url)
    return r.sha256


def builder_for(r: CloudImageRecipe, env: Mapping[str, str] | None = None, apt_etc: Path = APT_ETC) -> Builder:
    """The download of ``r``, or a refusal at once (unpinned digest, unreachable host, missing qemu-img)."""
    env = os.environ if env is None else env
    expected = pinned(r)
    check_cloud_image(r, env, apt_etc)
    missing = missing_tools(["qemu-img"])
    if missing:
        raise ImageError("missing tools for cloud images: " + ", ".join(missing))

    def _build(rec: CloudImageRecipe, work: Path, progress: Progress | None) -> Downloaded:
        return download_image(rec, work, progress, expected=expected)

    return _build


def obtain(r: CloudImageRecipe, *, force: bool = False, progress: Progress | None = None, cache: Path | None = None,
           env: Mapping[str, str] | None = None) -> CloudImage:
    """The verified image of ``r``: from the cache (no traffic, nothing checked again), or downloaded now."""
    return CloudImageStore(cache).obtain(r, lambda: builder_for(r, env), force=force, progress=progress)


def lookup(r: CloudImageRecipe, *, cache: Path | None = None) -> CloudImage | None:
    """The cached image of ``r`` as the recipe is now, or ``None`` (never downloads)."""
    return CloudImageStore(cache).lookup(r)


def list_cloud_images(*, cache: Path | None = None) -> list[CloudImage]:
    """Every complete cloud image in the cache (older recipe versions included)."""
    return CloudImageStore(cache).list()


def download_image(r: CloudImageRecipe, work: Path, progress: Progress | None, *, expected: str,
                   opener: Callable[[str], Any] | None = None) -> Downloaded:
    """Download ``r.url`` into ``work``, check its digest while streaming, leave ``work/QCOW2``."""
    part = work / DOWNLOAD
    with file_log(work / BUILD_LOG) as logfile:
        with step(progress, f"download {r.url}"):
            start = time.monotonic()
            got, size = _stream(r.url, part, opener or _opener(r.url))
            seconds = time.monotonic() - start
            logfile.write(f"downloaded {r.url}: {size} bytes in {seconds:.1f}s, sha256 {got}\n")
            if got != expected:
                part.unlink(missing_ok=True)
                raise DigestMismatch(r.name, r.url, expected, got)
        with step(progress, f"check the disk ({r.format}) and keep it as qcow2"):
            info = _qemu_img_info(part)
            found = str(info.get("format"))
            if found != r.format:
                raise BuildError(f"image {r.name!r}: {r.url} is a {found} disk, the recipe says {r.format}")
            if info.get("backing-filename"):
                # A qcow2 backed by a path on this machine would read that file into every VM booted from it.
                raise BuildError(f"image {r.name!r}: {r.url} is a qcow2 overlay on {info['backing-filename']!r}; "
                                 "a cloud image must stand alone")
            if r.format == "qcow2":
                os.replace(part, work / QCOW2)
            else:
                run(["qemu-img", "convert", "-f", "raw", "-O", "qcow2", str(part), str(work / QCOW2)],
                    logfile=logfile, what="qemu-img convert")
                part.unlink()
    log.info("%s: %s verified (%d bytes, %.1fs)", r.name, r.url, size, seconds)
    return Downloaded(sha256=got, bytes=size, seconds=seconds, source_format=found,
                      qcow2_virtual_bytes=int(info["virtual-size"]))


def _opener(url: str) -> Callable[[str], Any]:
    # A loopback URL never goes through a proxy: the proxy would fetch its own 127.0.0.1.
    if is_loopback((urlsplit(url).hostname or "").lower()):
        direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        return lambda u: direct.open(u, timeout=READ_TIMEOUT)
    return lambda u: urllib.request.urlopen(u, timeout=READ_TIMEOUT)


def _stream(url: str, dest: Path, opener: Callable[[str], Any]) -> tuple[str, int]:
    """Write the body at ``url`` to ``dest``; its sha256 and size, computed as the bytes arrive."""
    digest = hashlib.sha256()
    size = 0
    try:
        with opener(url) as resp, dest.open("wb") as out:
            length = resp.headers.get("Content-Length")
            while chunk := resp.read(CHUNK):
                digest.update(chunk)
                out.write(chunk)
                size += len(chunk)
    except urllib.error.HTTPError as exc:
        raise DownloadError(f"download of {url} failed: HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise DownloadError(f"download of {url} failed: {reason}") from None
    if length is not None and int(length) != size:
        raise DownloadError(f"download of {url} was cut short: {size} of {length} bytes")
    return digest.hexdigest(), size


def _qemu_img_info(path: Path) -> dict[str, Any]:
    doc = json.loads(capture(["qemu-img", "info", "--output=json", str(path)], what="qemu-img info"))
    if not isinstance(doc, dict):
        raise BuildError(f"qemu-img info {path}: unexpected output")
    return doc


def _seal(r: CloudImageRecipe, work: Path, d: Downloaded, seconds: float) -> dict[str, Any]:
    qcow2 = work / QCOW2
    if not qcow2.is_file():
        raise ImageError(f"the download of {r.name} did not produce {QCOW2} in {work}")
    return {
        "format": MANIFEST_FORMAT,
        "kind": KIND,
        "name": r.name,
        "hash": recipe_hash(r),
        "builder_version": BUILDER_VERSION,
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "build_seconds": round(seconds, 1),
        "files": {"qcow2": QCOW2, "log": BUILD_LOG},
        "url": r.url,
        "sha256": d.sha256,
        "source_format": d.source_format,
        "download_bytes": d.bytes,
        "download_seconds": round(d.seconds, 1),
        # The disk as kept: the download itself for a qcow2 source, the conversion of a raw one.
        "qcow2_sha256": d.sha256 if d.source_format == "qcow2" else file_sha256(qcow2),
        "sizes": {"qcow2_bytes": qcow2.stat().st_size, "qcow2_virtual_bytes": d.qcow2_virtual_bytes},
        "boot": r.boot,
        "login_user": r.login_user,
        "recipe": dataclasses.asdict(r),
    }
