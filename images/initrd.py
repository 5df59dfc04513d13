"""Listing the files in an initramfs, without initramfs-tools on the host.

``lsinitramfs`` lives in initramfs-tools-core, which drags udev onto the host. An initrd is one or
more "newc" cpio archives, the last usually compressed (an uncompressed early-microcode archive may
come first): https://docs.kernel.org/driver-api/early-userspace/buffer-format.html
zstd is decompressed with the host's ``zstd`` binary (package zstd); gzip, xz and bzip2 in Python.
"""

from __future__ import annotations

import bz2
import gzip
import lzma
import subprocess
from pathlib import Path

from images.errors import ImageError

_NEWC = (b"070701", b"070702")
_HEADER = 110
_TRAILER = "TRAILER!!!"


def list_initrd(path: Path) -> list[str]:
    """Every path in the initrd at ``path`` (as ``lsinitramfs`` prints them, without a leading ./)."""
    names: list[str] = []
    data = path.read_bytes()
    pos = 0
    while pos < len(data):
        if data[pos] == 0:  # padding between concatenated archives
            pos += 1
            continue
        if data[pos : pos + 6] in _NEWC:
            pos = _read_archive(data, pos, names, path)
            continue
        data, pos = _decompress(data[pos:], path), 0
    return names


def _align4(n: int) -> int:
    return (n + 3) & ~3


def _read_archive(data: bytes, pos: int, names: list[str], path: Path) -> int:
    while True:
        head = data[pos : pos + _HEADER]
        if len(head) < _HEADER or head[:6] not in _NEWC:
            raise ImageError(f"{path}: truncated or corrupt cpio archive at byte {pos}")
        fields = [int(head[6 + 8 * i : 14 + 8 * i], 16) for i in range(13)]
        filesize, namesize = fields[6], fields[11]
        name = data[pos + _HEADER : pos + _HEADER + namesize - 1].decode("utf-8", "replace")
        pos = _align4(pos + _HEADER + namesize)
        pos = _align4(pos + filesize)
        if name == _TRAILER:
            return pos
        if name != ".":
            names.append(name.removeprefix("./"))


def _decompress(blob: bytes, path: Path) -> bytes:
    if blob[:2] == b"\x1f\x8b":
        return gzip.decompress(blob)
    if blob[:6] == b"\xfd7zXZ\x00":
        return lzma.decompress(blob)
    if blob[:3] == b"BZh":
        return bz2.decompress(blob)
    if blob[:4] == b"\x28\xb5\x2f\xfd":
        try:
            proc = subprocess.run(["zstd", "-d", "-c", "-q"], input=blob, capture_output=True, check=False)
        except OSError as exc:
            raise ImageError(f"{path}: zstd-compressed initrd and no zstd here (apt-get install zstd)") from exc
        if proc.returncode != 0:
            raise ImageError(f"{path}: zstd -d failed: {proc.stderr.decode(errors='replace').strip()}")
        return proc.stdout
    raise ImageError(f"{path}: unknown initrd compression (magic {blob[:6].hex()})")
