"""Unit tests for ``images``: recipes and their hash, mirror choice and the offline fail-fast, the
store's atomic and locked builds (with a fake builder: no mmdebstrap here), the build's command runner and
step lines, the initrd lister, the CLI."""

from __future__ import annotations

import argparse
import dataclasses
import gzip
import json
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

import images
from core import waiting
from core.errors import CommandFailed
from images import cli, testimage
from images.cache import cache_dir
from images.errors import (
    BuildCommandFailed,
    BuildError,
    ImageError,
    NeedsDownload,
    SourceConfigError,
    UnknownRecipe,
    UnpinnedDigest,
)
from images.image import INITRD, KERNEL, QCOW2, ROOTFS, BuildInfo, ImageStore
from images.initrd import list_initrd
from images.recipes import RECIPES, CloudImageRecipe, DebootstrapRecipe, Recipe, recipe, recipe_hash
from images.run import Progress, capture, run, step
from images.sources import check_source, read_apt_sources, resolve_mirrors

pytestmark = pytest.mark.usefixtures("no_network")


# --- recipes -------------------------------------------------------------------------------------


def test_recipe_hash_is_stable_across_processes() -> None:
    here = recipe_hash(recipe("debian-12"))
    code = "from images.recipes import recipe, recipe_hash; print(recipe_hash(recipe('debian-12')))"
    there = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert here == there
    assert len(here) == 12 and int(here, 16) >= 0


def test_recipe_hash_changes_with_the_package_list() -> None:
    base = recipe("debian-12")
    assert isinstance(base, DebootstrapRecipe)
    more = dataclasses.replace(base, packages=(*base.packages, "tcpdump"))
    fewer = dataclasses.replace(base, packages=base.packages[:-1])
    hashes = {recipe_hash(base), recipe_hash(more), recipe_hash(fewer)}
    assert len(hashes) == 3


def test_recipe_hash_changes_with_a_customize_step() -> None:
    base = recipe("debian-12")
    assert isinstance(base, DebootstrapRecipe)
    changed = dataclasses.replace(base, disable_units=(*base.disable_units, "containerd.service"))
    assert recipe_hash(changed) != recipe_hash(base)


def test_each_recipe_has_its_own_hash() -> None:
    assert len({recipe_hash(r) for r in RECIPES.values()}) == len(RECIPES)


def test_unknown_recipe_lists_the_valid_names() -> None:
    with pytest.raises(UnknownRecipe) as err:
        recipe("debian-99")
    assert "debian-99" in str(err.value)
    for name in ("debian-11", "debian-12", "debian-13", "ubuntu-22.04", "rocky-9"):
        assert name in str(err.value)


def test_per_suite_package_names() -> None:
    def packages(name: str) -> tuple[str, ...]:
        r = recipe(name)
        assert isinstance(r, DebootstrapRecipe)
        return r.packages

    # bullseye's server binary is nginx-light; from bookworm on it is "nginx".
    assert "nginx-light" in packages("debian-11") and "nginx" not in packages("debian-11")
    assert "nginx" in packages("debian-12") and "nginx-light" not in packages("debian-12")
    for name in ("debian-11", "debian-12", "debian-13"):
        assert {"etcd-server", "etcd-client", "libnginx-mod-stream", "chrony"} <= set(packages(name))
        assert "systemd-timesyncd" not in packages(name)


# --- sources: mirrors and the offline decision ---------------------------------------------------


def test_reads_enabled_apt_sources_only(apt_etc: Path) -> None:
    uris = [s.uri for s in read_apt_sources(apt_etc)]
    assert uris == [
        "http://mirror.example/debian",
        "http://mirror.example/debian-security",
        "https://vendor.example/apt",
    ]


def test_debian_mirror_comes_from_the_apt_configuration(apt_etc: Path) -> None:
    r = recipe("debian-11")
    assert isinstance(r, DebootstrapRecipe)
    m = resolve_mirrors(r, {}, apt_etc)
    assert (m.archive, m.security) == ("http://mirror.example/debian", "http://mirror.example/debian-security")
    lines = m.apt_lines(r)
    assert any(line.endswith("http://mirror.example/debian bullseye main") for line in lines)
    assert any(line.endswith("http://mirror.example/debian-security bullseye-security main") for line in lines)


def test_debian_mirror_env_override(apt_etc: Path) -> None:
    r = recipe("debian-12")
    assert isinstance(r, DebootstrapRecipe)
    m = resolve_mirrors(r, {"KHA_DEBIAN_MIRROR": "http://cache.local:3142/debian/"}, apt_etc)
    assert m.archive == "http://cache.local:3142/debian"
    assert "KHA_DEBIAN_MIRROR" in m.origin


def test_no_debian_mirror_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(SourceConfigError, match="KHA_DEBIAN_MIRROR"):
        check_source(recipe("debian-12"), {}, tmp_path)


# Ubuntu's own recipes are cloud images now; a debootstrap recipe with distro "ubuntu" still finds its mirror.
UBUNTU_JAMMY = DebootstrapRecipe(name="ubuntu-jammy", description="test", distro="ubuntu", suite="jammy",
                                 packages=("systemd",), components=("main", "universe"),
                                 default_mirror="http://archive.ubuntu.com/ubuntu")


def test_ubuntu_needs_a_download_when_no_ubuntu_mirror_is_configured(apt_etc: Path, no_network: list[object]) -> None:
    with pytest.raises(NeedsDownload) as err:
        check_source(UBUNTU_JAMMY, {}, apt_etc)
    assert no_network == [], "decided from configuration, not by trying to connect"
    msg = str(err.value)
    assert "needs a download from http://archive.ubuntu.com/ubuntu" in msg
    assert "this machine cannot reach it" in msg and "KHA_UBUNTU_MIRROR" in msg


def test_ubuntu_with_a_mirror_override_is_buildable(apt_etc: Path) -> None:
    m = resolve_mirrors(UBUNTU_JAMMY, {"KHA_UBUNTU_MIRROR": "http://ubuntu.local/ubuntu"}, apt_etc)
    assert m.archive == "http://ubuntu.local/ubuntu"
    assert "main universe" in m.apt_lines(UBUNTU_JAMMY)[0]


@pytest.mark.parametrize("name", ["ubuntu-22.04", "ubuntu-24.04", "rocky-9", "centos-stream-9"])
def test_vendor_cloud_images_are_refused_without_a_pinned_digest(
    name: str, apt_etc: Path, no_network: list[object]
) -> None:
    r = recipe(name)
    assert isinstance(r, CloudImageRecipe) and r.sha256 is None, "never pinned here: no internet to read it"
    with pytest.raises(UnpinnedDigest) as err:
        images.builder_for(r, {"KHA_REACHABLE_HOSTS": urlsplit(r.url).hostname or ""}, apt_etc)
    assert no_network == []
    msg = str(err.value)
    assert "no pinned sha256" in msg and r.url in msg and str(r.checksum_url) in msg
    assert err.value.cli_exit_code == 2


def test_a_pinned_cloud_image_on_an_unreachable_host_needs_a_download(apt_etc: Path) -> None:
    r = dataclasses.replace(recipe("rocky-9"), sha256="0" * 64)
    assert isinstance(r, CloudImageRecipe)
    with pytest.raises(NeedsDownload) as err:
        images.builder_for(r, {}, apt_etc)
    assert r.url in str(err.value) and "this machine cannot reach it" in str(err.value)


def test_offline_fails_fast_for_every_recipe(apt_etc: Path) -> None:
    for r in RECIPES.values():
        with pytest.raises((NeedsDownload, UnpinnedDigest), match=r"KHA_OFFLINE=1|cannot reach|no pinned sha256"):
            images.builder_for(r, {"KHA_OFFLINE": "1"}, apt_etc)


def test_build_fails_fast_offline_without_touching_the_cache(
    cache: Path, monkeypatch: pytest.MonkeyPatch, no_network: list[object]
) -> None:
    monkeypatch.setenv("KHA_OFFLINE", "1")
    builds: list[str] = []
    monkeypatch.setattr(images, "build_image", lambda r, *args, **kwargs: builds.append(r.name))
    with pytest.raises(NeedsDownload, match=r"debian-13"):
        images.build("debian-13")
    assert builds == [] and no_network == []
    assert not list(cache.rglob(".building-*"))


# --- cache ---------------------------------------------------------------------------------------


class FakeBuilder:
    """Writes the files a real build leaves, counts its calls, and can fail or hold until ``gate`` opens."""

    def __init__(self, *, fail: bool = False, gate: threading.Event | None = None) -> None:
        self.calls = 0
        self.fail = fail
        self.gate = gate
        self._mutex = threading.Lock()

    def __call__(self, r: Recipe, work: Path, progress: Progress | None) -> BuildInfo:
        with self._mutex:
            self.calls += 1
        (work / ROOTFS / "etc").mkdir(parents=True)
        (work / ROOTFS / "etc" / "os-release").write_text("ID=debian\n")
        if self.gate is not None:
            assert self.gate.wait(30), "the test never opened the gate"
        if self.fail:
            raise BuildCommandFailed(["mmdebstrap", "bookworm"], 1, "E: x", what="mmdebstrap")
        (work / QCOW2).write_bytes(b"QFI\xfb fake")
        (work / KERNEL).write_bytes(b"kernel")
        (work / INITRD).write_bytes(b"initrd")
        return BuildInfo(
            kernel_version="6.1.0-1-cloud-amd64",
            kernel_cmdline="root=/dev/vda rw",
            sources=("deb http://mirror.example/debian bookworm main",),
            mirror_origin="test",
            packages=(("etcd-server", "3.4.23"), ("haproxy", "2.6.12")),
            initrd_modules=("virtio_blk",),
            qcow2_virtual_bytes=8 << 30,
        )


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> FakeBuilder:
    builder = FakeBuilder()
    monkeypatch.setattr(images, "builder_for", lambda r, env=None, apt_etc=None: builder)
    return builder


def test_cache_dir_precedence(tmp_path: Path) -> None:
    assert cache_dir({"KHA_CACHE_DIR": str(tmp_path / "a"), "XDG_CACHE_HOME": "/x"}) == tmp_path / "a"
    assert cache_dir({"XDG_CACHE_HOME": str(tmp_path)}) == tmp_path / "kha"
    assert cache_dir({}) == Path.home() / ".cache" / "kha"


def test_build_once_then_reuse(cache: Path, fake: FakeBuilder) -> None:
    assert images.get("debian-12") is None
    img = images.build("debian-12")
    assert fake.calls == 1
    assert img.path == cache / "images" / f"debian-12-{recipe_hash(recipe('debian-12'))}"
    assert img.rootfs.is_dir() and img.qcow2.is_file() and img.kernel.is_file() and img.initrd.is_file()
    manifest = json.loads(img.manifest.read_text())
    assert manifest["hash"] == img.digest
    assert manifest["packages"]["etcd-server"] == "3.4.23"
    assert manifest["files"]["kernel"] == KERNEL
    assert manifest["sizes"]["qcow2_bytes"] == img.qcow2.stat().st_size
    assert len(manifest["qcow2_sha256"]) == 64

    again = images.build("debian-12")
    assert fake.calls == 1
    assert again == img == images.get("debian-12")
    assert images.list_images() == [img]


def test_force_rebuilds_in_place(cache: Path, fake: FakeBuilder) -> None:
    first = images.build("debian-12")
    second = images.build("debian-12", force=True)
    assert fake.calls == 2
    assert second.path == first.path
    assert [p.name for p in (cache / "images").iterdir() if not p.name.endswith(".lock")] == [first.path.name]


def test_failed_build_leaves_nothing_that_looks_complete(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    failing = FakeBuilder(fail=True)
    monkeypatch.setattr(images, "builder_for", lambda r, env=None, apt_etc=None: failing)
    with pytest.raises(CommandFailed) as err:
        images.build("debian-12")
    assert isinstance(err.value, BuildError)
    assert err.value.argv == ("mmdebstrap", "bookworm") and err.value.output == "E: x"
    assert "mmdebstrap bookworm" in str(err.value) and "E: x" in str(err.value)
    assert images.get("debian-12") is None
    assert images.list_images() == []
    assert not [p for p in (cache / "images").iterdir() if not p.name.endswith(".lock")]


def test_interrupted_build_is_invisible_and_cleaned_up(cache: Path, fake: FakeBuilder) -> None:
    r = recipe("debian-12")
    leftover = cache / "images" / f".building-debian-12-{recipe_hash(r)}-abc123"
    (leftover / ROOTFS).mkdir(parents=True)
    (leftover / QCOW2).write_bytes(b"half")
    assert images.get("debian-12") is None
    assert images.list_images() == []
    images.build("debian-12")
    assert not leftover.exists()


def test_a_directory_without_manifest_is_not_an_image(cache: Path) -> None:
    r = recipe("debian-12")
    (cache / "images" / f"debian-12-{recipe_hash(r)}" / ROOTFS).mkdir(parents=True)
    assert images.get("debian-12") is None
    assert images.list_images() == []


def test_changed_recipe_builds_a_new_image(cache: Path) -> None:
    store = ImageStore(cache)
    fake = FakeBuilder()
    base = recipe("debian-12")
    assert isinstance(base, DebootstrapRecipe)
    changed = dataclasses.replace(base, packages=(*base.packages, "tcpdump"))
    a = store.build(base, fake)
    b = store.build(changed, fake)
    assert fake.calls == 2 and a.path != b.path
    assert store.lookup(changed) == b
    assert len(store.list()) == 2


def test_concurrent_builds_of_one_recipe_build_once(cache: Path) -> None:
    store = ImageStore(cache)
    gate = threading.Event()
    fake = FakeBuilder(gate=gate)
    r = recipe("debian-12")
    results: list[images.Image] = []
    waited: list[str] = []

    def worker() -> None:
        results.append(store.build(r, fake, progress=waited.append))

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for t in threads:
        t.start()
    # The first build holds until the two others are queued behind its lock (no sleep standing in).
    waiting.until(lambda: None if sum("waiting for another build" in w for w in waited) == 2 else "not yet",
                  timeout=30, interval=0.01, error=AssertionError)
    gate.set()
    for t in threads:
        t.join()
    assert fake.calls == 1
    assert len(results) == 3 and len({img.path for img in results}) == 1
    assert any("waiting for another build" in line for line in waited)


def test_test_images_live_in_the_same_store(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    builds: list[Path] = []

    def fake(r: testimage.TestImageRecipe, work: Path, apt_root: Path, **kwargs: object) -> dict[str, object]:
        builds.append(work)
        (work / testimage.ARCHIVE).write_bytes(b"tar")
        return {"ref": r.ref, "archive": testimage.ARCHIVE, "sha256": "ab" * 32, "package_version": "1:1.35.0-4+b3"}

    monkeypatch.setattr(testimage, "_build", fake)
    assert testimage.get() is None
    img = testimage.build()
    again = testimage.build()
    assert len(builds) == 1 and again == img == testimage.get()
    assert img.archive == cache / "testimages" / f"busybox-{testimage.BUSYBOX.digest()}" / testimage.ARCHIVE
    assert builds[0].parent == img.archive.parent.parent and builds[0].name.startswith(".building-busybox-")


# --- the build's commands and step lines -----------------------------------------------------------


def test_a_failed_build_command_is_a_command_failure_in_the_image_tree(tmp_path: Path) -> None:
    script = "echo fetching; echo 'E: 404  Not Found' >&2; exit 3"
    with (tmp_path / "build.log").open("w") as logfile, pytest.raises(CommandFailed) as err:
        run(["sh", "-c", script], logfile=logfile, what="apt-get update")
    assert isinstance(err.value, ImageError), "the harness and the e2e fixtures catch the image tree"
    assert err.value.argv == ("sh", "-c", script) and err.value.returncode == 3
    assert "E: 404" in err.value.output and "E: 404" in (tmp_path / "build.log").read_text()
    assert str(err.value).startswith("apt-get update: command failed (exit 3): sh -c ")

    with pytest.raises(CommandFailed) as err2:
        capture(["sh", "-c", "echo out; echo oops >&2; exit 2"], what="dpkg-query")
    assert isinstance(err2.value, BuildError) and err2.value.stderr == "oops\n" and err2.value.stdout == "out\n"
    assert capture(["echo", "hi"]) == "hi\n"


def test_build_steps_print_the_one_step_line() -> None:
    lines: list[str] = []
    with step(lines.append, "qcow2 (8G ext4)"):
        pass
    with pytest.raises(BuildError), step(lines.append, "clean and check the rootfs"):
        raise BuildError("no sshd")
    assert re.fullmatch(r"✓ qcow2 \(8G ext4\)  \d+\.\ds", lines[0]), lines
    assert re.fullmatch(r"✗ clean and check the rootfs  \d+\.\ds", lines[1]), lines


# --- initrd listing ------------------------------------------------------------------------------


def _newc(entries: dict[str, bytes]) -> bytes:
    out = bytearray()

    def pad() -> None:
        out.extend(b"\0" * (-len(out) % 4))

    for i, (name, data) in enumerate([*entries.items(), ("TRAILER!!!", b"")]):
        raw = name.encode() + b"\0"
        fields = [i + 1, 0o100644, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(raw), 0]
        out += b"070701" + b"".join(b"%08x" % f for f in fields) + raw
        pad()
        out += data
        pad()
    return bytes(out)


def test_list_initrd_reads_early_and_compressed_archives(tmp_path: Path) -> None:
    early = _newc({"kernel/x86/microcode/GenuineIntel.bin": b"ucode"})
    main = _newc({".": b"", "usr/lib/modules/6.1.0/kernel/drivers/block/virtio_blk.ko": b"\x7fELF", "init": b"#!"})
    path = tmp_path / "initrd.img"
    path.write_bytes(early + b"\0" * 512 + gzip.compress(main))
    assert list_initrd(path) == [
        "kernel/x86/microcode/GenuineIntel.bin",
        "usr/lib/modules/6.1.0/kernel/drivers/block/virtio_blk.ko",
        "init",
    ]


def test_list_initrd_rejects_garbage(tmp_path: Path) -> None:
    path = tmp_path / "initrd.img"
    path.write_bytes(b"not an initrd at all")
    with pytest.raises(ImageError, match="unknown initrd compression"):
        list_initrd(path)


# --- CLI -----------------------------------------------------------------------------------------


@pytest.fixture
def parser() -> Iterator[argparse.ArgumentParser]:
    p = argparse.ArgumentParser(prog="kha")
    cli.add_parser(p.add_subparsers(dest="command", required=True))
    yield p


def test_cli_build_prints_one_check_line(
    parser: argparse.ArgumentParser, cache: Path, fake: FakeBuilder, capsys: pytest.CaptureFixture[str]
) -> None:
    args = parser.parse_args(["image", "build", "debian-12"])
    assert args.handler(args) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and out[0].startswith("✓ image debian-12 ") and "built" in out[0]
    assert re.search(r" built  \d+\.\ds  /", out[0]), out[0]
    assert args.handler(args) == 0
    assert "cached" in capsys.readouterr().out
    assert fake.calls == 1


def test_cli_build_unknown_recipe_is_one_error_line(
    parser: argparse.ArgumentParser, cache: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = parser.parse_args(["image", "build", "nope"])
    assert args.handler(args) == 2  # bad input (core.errors.InputError)
    err = capsys.readouterr().err
    assert err.startswith("✗ image nope") and "debian-12" in err


def test_cli_list(
    parser: argparse.ArgumentParser, cache: Path, fake: FakeBuilder, capsys: pytest.CaptureFixture[str]
) -> None:
    images.build("debian-12")
    args = parser.parse_args(["image", "list"])
    assert args.handler(args) == 0
    out = capsys.readouterr().out
    assert "✓ debian-12" in out and "debian-11" in out and "not built" in out
