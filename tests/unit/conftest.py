"""Fixtures the unit tests of images and bundles share: no network, an apt configuration, a cache."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

DEBIAN_SOURCES = """\
Types: deb
# http://snapshot.debian.org/archive/debian/20250520T000000Z
URIs: http://mirror.example/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://mirror.example/debian-security
Suites: bookworm-security
Components: main
"""


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """Nothing in these tests may open a connection: "needs a download" is decided from configuration.

    Every attempt fails the call and is recorded in the returned list, so a test can also assert that none
    was made even where the code under test swallows the failure.
    """
    attempts: list[object] = []

    def refuse(*args: object, **kwargs: object) -> None:
        attempts.append(args)
        raise AssertionError(f"unit test tried to connect: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    return attempts


@pytest.fixture
def apt_etc(tmp_path: Path) -> Path:
    etc = tmp_path / "apt"
    (etc / "sources.list.d").mkdir(parents=True)
    (etc / "sources.list.d" / "debian.sources").write_text(DEBIAN_SOURCES)
    (etc / "sources.list.d" / "other.list.disabled-by-farm").write_text("deb http://ubuntu.example/ubuntu jammy main\n")
    (etc / "sources.list.d" / "vendor.list").write_text(
        "# a vendor repo\ndeb [arch=amd64] https://vendor.example/apt cloud-sdk-bookworm main\n"
    )
    return etc


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "cache"
    monkeypatch.setenv("KHA_CACHE_DIR", str(root))
    return root
