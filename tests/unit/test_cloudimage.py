"""Unit tests for ``images.cloudimage``: a cloud image is downloaded into the store only when its bytes hash to
the recipe's pinned sha256; an unpinned recipe, an unreachable host, a mismatch, a short read, a disk of the
wrong format are refused with what a user needs to act on, and leave no image in the cache. The network is a
fake opener here (no socket is opened: ``no_network``); tests/integration/test_cloud_image.py serves real
HTTP from 127.0.0.1."""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import io
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

import images
from images import cli, cloudimage
from images.cloudimage import CloudImage, CloudImageStore
from images.errors import BuildError, DigestMismatch, DownloadError, NeedsDownload, RecipeError, UnpinnedDigest
from images.recipes import RECIPES, CloudImageRecipe

pytestmark = pytest.mark.usefixtures("no_network")

URL = "http://127.0.0.1:8123/local-cloud.qcow2"


class FakeResponse(io.BytesIO):
    def __init__(self, body: bytes, length: int | None = None) -> None:
        super().__init__(body)
        self.headers = {"Content-Length": str(len(body) if length is None else length)}


class FakeServer:
    """Serves ``body`` for every URL and counts the requests (an httpx-style fake transport)."""

    def __init__(self, body: bytes, length: int | None = None) -> None:
        self.body = body
        self.length = length
        self.requests: list[str] = []

    def __call__(self, url: str) -> Any:
        self.requests.append(url)
        return FakeResponse(self.body, self.length)


@pytest.fixture(scope="module")
def qcow2_bytes(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    path = tmp_path_factory.mktemp("disk") / "vendor.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(path), "64M"], check=True)
    return path.read_bytes()


def recipe_for(body: bytes, **kw: Any) -> CloudImageRecipe:
    fields: dict[str, Any] = {"name": "local-cloud", "description": "test", "url": URL,
                              "sha256": hashlib.sha256(body).hexdigest(), "login_user": "debian"}
    return CloudImageRecipe(**(fields | kw))


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch, qcow2_bytes: bytes) -> FakeServer:
    server = FakeServer(qcow2_bytes)
    monkeypatch.setattr(cloudimage, "_opener", lambda url: server)
    return server


def image_dirs(cache: Path) -> list[str]:
    folder = cache / "images"
    return sorted(p.name for p in folder.iterdir() if not p.name.endswith((".lock", ".failed.log"))) \
        if folder.is_dir() else []


def test_a_pinned_image_is_downloaded_verified_and_then_reused(cache: Path, served: FakeServer,
                                                              qcow2_bytes: bytes) -> None:
    r = recipe_for(qcow2_bytes)
    img = cloudimage.obtain(r)
    assert isinstance(img, CloudImage) and img.qcow2.read_bytes() == qcow2_bytes
    assert (img.sha256, img.boot, img.login_user, img.url) == (r.sha256, "uefi", "debian", URL)
    doc = json.loads(img.manifest.read_text())
    assert doc["kind"] == "cloud-image" and doc["download_bytes"] == len(qcow2_bytes)
    assert "rootfs" not in doc["files"] and "kernel" not in doc["files"]
    assert cloudimage.obtain(r) == img == cloudimage.lookup(r)
    assert served.requests == [URL], "a cached image sends no traffic and is not downloaded again"
    # The built-image side of the store does not mistake it for a kernel-boot image, and vice versa.
    assert images.list_images() == [] and cloudimage.list_cloud_images() == [img]


def test_a_digest_mismatch_names_recipe_url_and_both_digests_and_keeps_nothing(
    cache: Path, served: FakeServer, qcow2_bytes: bytes
) -> None:
    wrong = "ab" * 32
    with pytest.raises(DigestMismatch) as err:
        cloudimage.obtain(recipe_for(qcow2_bytes, sha256=wrong))
    msg = str(err.value)
    got = hashlib.sha256(qcow2_bytes).hexdigest()
    assert "'local-cloud'" in msg and URL in msg and f"expected sha256 {wrong}" in msg and f"got {got}" in msg
    assert err.value.cli_exit_code == 2
    assert image_dirs(cache) == [], "no image, no .building directory, no downloaded bytes"
    assert cloudimage.lookup(recipe_for(qcow2_bytes, sha256=wrong)) is None


def test_cli_refuses_a_mismatch_with_one_line_and_exit_2(
    cache: Path, served: FakeServer, qcow2_bytes: bytes, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setitem(RECIPES, "local-cloud", recipe_for(qcow2_bytes, sha256="cd" * 32))
    assert run_cli(["image", "build", "local-cloud"]) == 2
    out = capsys.readouterr()
    step, final = out.err.strip().splitlines()  # the step's ✗ line, then the command's one ✗ line
    assert out.out == "" and step.startswith("✗ download ") and "Traceback" not in out.err
    assert final.startswith("✗ image local-cloud ") and "does not match the recipe's pinned digest" in final
    assert image_dirs(cache) == []


def test_cli_downloads_a_pinned_image(cache: Path, served: FakeServer, qcow2_bytes: bytes,
                                      monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setitem(RECIPES, "local-cloud", recipe_for(qcow2_bytes))
    assert run_cli(["image", "build", "local-cloud"]) == 0
    assert capsys.readouterr().out.startswith("✓ image local-cloud ")
    assert run_cli(["image", "list"]) == 0
    assert "cloud image (uefi)" in capsys.readouterr().out


def test_cli_says_rocky_needs_a_pinned_digest_before_any_traffic(
    cache: Path, no_network: list[object], capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_cli(["image", "build", "rocky-9"]) == 2
    err = capsys.readouterr().err
    assert "no pinned sha256" in err and "machine with internet" in err and "CHECKSUM" in err
    assert no_network == [] and image_dirs(cache) == []


def test_unpinned_is_refused_even_when_the_host_is_reachable(cache: Path, served: FakeServer,
                                                            qcow2_bytes: bytes) -> None:
    with pytest.raises(UnpinnedDigest, match="no pinned sha256"):
        cloudimage.obtain(recipe_for(qcow2_bytes, sha256=None))
    assert served.requests == []


def test_offline_refuses_a_remote_host_but_not_this_machine(cache: Path, served: FakeServer,
                                                           qcow2_bytes: bytes) -> None:
    offline = {"KHA_OFFLINE": "1"}
    remote = recipe_for(qcow2_bytes, url="https://images.example/disk.qcow2")
    with pytest.raises(NeedsDownload, match="KHA_OFFLINE=1"):
        cloudimage.obtain(remote, env=offline)
    assert served.requests == []
    for host in ("127.0.0.1", "127.3.2.1", "localhost", "[::1]"):
        cloudimage.obtain(recipe_for(qcow2_bytes, url=f"http://{host}:1/d.qcow2"), env=offline)
    assert len(served.requests) == 4


def test_a_short_read_is_a_download_error(cache: Path, monkeypatch: pytest.MonkeyPatch, qcow2_bytes: bytes) -> None:
    server = FakeServer(qcow2_bytes[:1000], length=len(qcow2_bytes))
    monkeypatch.setattr(cloudimage, "_opener", lambda url: server)
    with pytest.raises(DownloadError, match="cut short: 1000 of"):
        cloudimage.obtain(recipe_for(qcow2_bytes))
    assert image_dirs(cache) == []


def test_a_raw_download_is_kept_as_qcow2(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    raw = b"\0" * (1 << 20)
    monkeypatch.setattr(cloudimage, "_opener", lambda url: FakeServer(raw))
    img = cloudimage.obtain(recipe_for(raw, format="raw"))
    info = json.loads(subprocess.run(["qemu-img", "info", "--output=json", str(img.qcow2)], check=True,
                                     capture_output=True, text=True).stdout)
    assert info["format"] == "qcow2" and info["virtual-size"] == len(raw)


def test_a_disk_of_another_format_than_the_recipe_says_is_refused(cache: Path, served: FakeServer,
                                                                  qcow2_bytes: bytes) -> None:
    with pytest.raises(BuildError, match="is a qcow2 disk, the recipe says raw"):
        cloudimage.obtain(recipe_for(qcow2_bytes, format="raw"))
    assert image_dirs(cache) == []


def test_a_qcow2_backed_by_a_host_file_is_refused(cache: Path, monkeypatch: pytest.MonkeyPatch,
                                                  tmp_path: Path) -> None:
    overlay = tmp_path / "overlay.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-u", "-b", "/etc/shadow", "-F", "raw",
                    str(overlay), "1M"], check=True)
    body = overlay.read_bytes()
    monkeypatch.setattr(cloudimage, "_opener", lambda url: FakeServer(body))
    with pytest.raises(BuildError, match="overlay on '/etc/shadow'"):
        cloudimage.obtain(recipe_for(body))


def test_recipes_with_a_malformed_digest_or_url_are_refused() -> None:
    with pytest.raises(RecipeError, match="not 64 lowercase hex"):
        recipe_for(b"", sha256="ABC")
    with pytest.raises(RecipeError, match="not http"):
        recipe_for(b"", url="file:///etc/passwd")


def test_images_build_points_a_cloud_recipe_to_its_own_path(cache: Path) -> None:
    with pytest.raises(images.ImageError, match=r"cloud image .*build_cloud\('rocky-9'\)"):
        images.build("rocky-9")
    assert images.get("rocky-9") is None and images.get_cloud("rocky-9") is None
    assert CloudImageStore(cache).lookup(dataclasses.replace(recipe_for(b""), name="x")) is None


def run_cli(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="kha")
    cli.add_parser(p.add_subparsers(dest="command", required=True))
    args = p.parse_args(argv)
    code: int = args.handler(args)
    return code
