"""Unit tests for ``images.bundle``: recipe hash, docker-archive writer, crictl shim (against a fake ``ctr``),
the upstream recipe's offline fail-fast, the manifest schema, the cache protocol and ``kha bundle``.
No network, no root, no Go: the real build is tests/integration/test_bundle_build.py."""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import re
import subprocess
import sys
import tarfile
import textwrap
from pathlib import Path

import pytest

from core.bundle_manifest import (
    BuildFacts,
    BundleManifest,
    Cni,
    Crictl,
    FileEntry,
    ImageEntry,
    ManifestError,
    Source,
    file_entry,
)
from images import bundle
from images.bundle import cli as bundle_cli
from images.bundle import recipe as recipe_module
from images.bundle.apt import PrivateApt
from images.bundle.crictl import install_shim
from images.bundle.dockerarchive import ImageConfig, read_archive_manifest, write_docker_archive
from images.bundle.errors import UnknownBundle
from images.bundle.gotree import openapi_packages
from images.bundle.recipe import (
    BUNDLE_RECIPES,
    DEFAULT_BUNDLE,
    DebianSourceRecipe,
    UpstreamRecipe,
    bundle_hash,
    bundle_recipe,
    recipe_doc,
)
from images.bundle.store import BundleStore
from images.bundle.upstream import upstream_manifest
from images.errors import ImageError, NeedsDownload, UnknownRecipe
from images.run import Progress
from images.sources import Mirrors
from installer.errors import ConfigError
from installer.kubernetes.bundle import Bundle as InstallerBundle
from kha import cli as kha_cli

pytestmark = pytest.mark.usefixtures("no_network")


def _debian() -> DebianSourceRecipe:
    r = bundle_recipe(DEFAULT_BUNDLE)
    assert isinstance(r, DebianSourceRecipe)
    return r


# --- recipes -------------------------------------------------------------------------------------


def test_recipe_hash_is_stable_across_processes() -> None:
    here = bundle_hash(_debian())
    code = (
        "from images.bundle.recipe import bundle_recipe, bundle_hash; "
        "print(bundle_hash(bundle_recipe('kubernetes-1.20.2')))"
    )
    env = {**os.environ, "PYTHONHASHSEED": "123"}
    there = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    assert there.stdout.strip() == here
    assert len(here) == 12 and all(c in "0123456789abcdef" for c in here)


@pytest.mark.parametrize(
    "change",
    [
        lambda r: dataclasses.replace(r, source=dataclasses.replace(r.source, version="1.20.2-2")),
        lambda r: dataclasses.replace(r, stamp=dataclasses.replace(r.stamp, git_version="v1.20.3")),
        lambda r: dataclasses.replace(r, patches=dataclasses.replace(r.patches, reflect2_version="1.0.3")),
        lambda r: dataclasses.replace(r, images=(*r.images[:-1], dataclasses.replace(r.images[-1], tag="3.4"))),
        lambda r: dataclasses.replace(r, go_ldflags=("-s",)),
        lambda r: dataclasses.replace(r, cni_plugins=("bridge",)),
    ],
    ids=["source-version", "version-stamp", "reflect2", "pause-tag", "ldflags", "cni"],
)
def test_recipe_hash_changes_with_anything_that_decides_content(change: object) -> None:
    r = _debian()
    assert callable(change)
    assert bundle_hash(change(r)) != bundle_hash(r)


def test_recipes_are_what_the_brief_asks_for() -> None:
    r = _debian()
    assert r.kubernetes_version == "v1.20.2"
    assert r.source.package == "kubernetes" and r.source.suite == "bookworm" and "1.20.2" in r.source.version
    assert set(r.components) == {
        "kubeadm", "kubelet", "kubectl", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kube-proxy",
    }  # fmt: skip
    assert {r.image_ref(i) for i in r.images} == {
        "k8s.gcr.io/kube-apiserver:v1.20.2",
        "k8s.gcr.io/kube-controller-manager:v1.20.2",
        "k8s.gcr.io/kube-scheduler:v1.20.2",
        "k8s.gcr.io/kube-proxy:v1.20.2",
        "k8s.gcr.io/pause:3.2",
    }
    proxy = next(i for i in r.images if i.name == "kube-proxy")
    assert {"iptables", "conntrack", "libc6"} <= set(proxy.debs)
    flags = " ".join(r.stamp.ldflags())
    for pkg in ("client-go/pkg/version", "component-base/version"):
        assert f"-X k8s.io/kubernetes/vendor/k8s.io/{pkg}.gitVersion=v1.20.2" in flags
    assert len({bundle_hash(x) for x in BUNDLE_RECIPES.values()}) == len(BUNDLE_RECIPES)


def test_unknown_bundle_lists_the_valid_names() -> None:
    with pytest.raises(UnknownBundle) as err:
        bundle_recipe("kubernetes-9.9")
    assert isinstance(err.value, UnknownRecipe) and isinstance(err.value, ImageError)
    assert "kubernetes-9.9" in str(err.value) and DEFAULT_BUNDLE in str(err.value)
    assert "bundle recipe" in str(err.value)


# --- docker-archive writer -----------------------------------------------------------------------


def _tree(root: Path, *, mtime: int = 1_600_000_000) -> Path:
    (root / "usr" / "local" / "bin").mkdir(parents=True)
    (root / "etc").mkdir()
    binary = root / "usr" / "local" / "bin" / "tool"
    binary.write_bytes(b"\x7fELF pretend binary\n" * 100)
    binary.chmod(0o755)
    (root / "etc" / "passwd").write_text("root:x:0:0::/root:/sbin/nologin\n")
    (root / "etc" / "passwd").chmod(0o644)
    (root / "usr" / "sbin").mkdir()
    (root / "usr" / "sbin" / "alias").symlink_to("../local/bin/tool")
    os.link(binary, root / "usr" / "sbin" / "hardlink")
    for dirpath, dirnames, filenames in os.walk(root):
        for n in [*dirnames, *filenames]:
            os.utime(Path(dirpath) / n, (mtime, mtime), follow_symlinks=False)
    for d in (
        root / "usr",
        root / "usr" / "local",
        root / "usr" / "local" / "bin",
        root / "etc",
        root / "usr" / "sbin",
    ):
        d.chmod(0o755)
    return root


def _write(tmp: Path, root: Path, name: str = "img.tar") -> tuple[Path, str]:
    archive = write_docker_archive(
        tmp / name,
        ["k8s.gcr.io/tool:v1"],
        root,
        ImageConfig(entrypoint=("/usr/local/bin/tool",), env=("PATH=/usr/local/bin:/usr/bin",)),
        mtime=1_610_496_000,
        created="2021-01-13T00:00:00Z",
    )
    assert archive.sha256 == hashlib.sha256(archive.path.read_bytes()).hexdigest()
    assert archive.size == archive.path.stat().st_size
    return archive.path, archive.sha256


def test_docker_archive_structure(tmp_path: Path) -> None:
    path, _ = _write(tmp_path, _tree(tmp_path / "root"))
    listing = subprocess.run(["tar", "-tf", str(path)], capture_output=True, text=True, check=True).stdout.split()
    assert "manifest.json" in listing
    configs = [n for n in listing if n.endswith(".json") and n != "manifest.json"]
    layers = [n for n in listing if n.endswith("/layer.tar")]
    assert len(configs) == 1 and len(layers) == 1
    (manifest,) = read_archive_manifest(path)
    assert manifest == {"Config": configs[0], "RepoTags": ["k8s.gcr.io/tool:v1"], "Layers": layers}
    with tarfile.open(path) as tf:
        config_member, layer_member = tf.extractfile(configs[0]), tf.extractfile(layers[0])
        assert config_member is not None and layer_member is not None
        config_bytes, layer_bytes = config_member.read(), layer_member.read()
    # Digests are content addresses: the names are the sha256 of what they hold.
    assert configs[0] == hashlib.sha256(config_bytes).hexdigest() + ".json"
    assert layers[0].split("/")[0] == hashlib.sha256(layer_bytes).hexdigest()
    config = json.loads(config_bytes)
    assert config["rootfs"] == {"type": "layers", "diff_ids": ["sha256:" + hashlib.sha256(layer_bytes).hexdigest()]}
    assert config["config"]["Entrypoint"] == ["/usr/local/bin/tool"]
    assert config["config"]["Env"] == ["PATH=/usr/local/bin:/usr/bin"]
    assert config["os"] == "linux" and config["architecture"] == "amd64"

    layer_tar = tmp_path / "layer.tar"
    layer_tar.write_bytes(layer_bytes)
    with tarfile.open(layer_tar) as tf:
        members = tf.getmembers()
    names = [m.name for m in members]
    assert names == sorted(names, key=lambda n: n.split("/"))
    assert "usr/local/bin/tool" in names and "etc/passwd" in names
    assert all(m.uid == 0 and m.gid == 0 and m.mtime == 1_610_496_000 for m in members)
    by_name = {m.name: m for m in members}
    assert by_name["usr/sbin/alias"].issym() and by_name["usr/sbin/alias"].linkname == "../local/bin/tool"
    assert by_name["usr/sbin/hardlink"].islnk() and by_name["usr/sbin/hardlink"].linkname == "usr/local/bin/tool"
    assert by_name["usr/local/bin/tool"].mode == 0o755 and by_name["etc/passwd"].mode == 0o644


def test_docker_archive_is_deterministic(tmp_path: Path) -> None:
    _, first = _write(tmp_path, _tree(tmp_path / "a", mtime=1_000_000_000), "a.tar")
    # Same content, other file times and another directory: the same bytes.
    _, second = _write(tmp_path, _tree(tmp_path / "b", mtime=1_700_000_000), "b.tar")
    assert first == second
    changed = _tree(tmp_path / "c")
    (changed / "etc" / "passwd").write_text("root:x:0:0::/root:/bin/sh\n")
    _, third = _write(tmp_path, changed, "c.tar")
    assert third != first
    assert not list(tmp_path.glob(".*.tmp")), "temporary files left next to the archives"


# --- crictl shim ---------------------------------------------------------------------------------

FAKE_CTR = r'''#!PYTHON
"""A fake ctr: logs its argv as one JSON line, answers from the JSON state file $FAKE_CTR_STATE."""
import json, os, sys

args = sys.argv[1:]
with open(os.environ["FAKE_CTR_LOG"], "a") as fh:
    fh.write(json.dumps(args) + "\n")
state = json.load(open(os.environ["FAKE_CTR_STATE"]))
assert args[0] == "--address" and args[2] == "--namespace", args
rest = args[4:]
if rest[0] == "version":
    if state.get("down"):
        print("ctr: failed to dial", file=sys.stderr)
        sys.exit(1)
    print("Client:\n  Version:  1.6.20~ds1\n\nServer:\n  Version:  1.6.20~ds1\n  UUID: x")
elif rest[:3] == ["images", "list", "-q"]:
    names = state.get("images", [])
    if len(rest) > 3:
        want = rest[3].removeprefix("name==")
        names = [n for n in names if n == want]
    print("\n".join(names))
elif rest[:2] == ["images", "pull"]:
    sys.exit(0 if state.get("pull_ok") else 1)
elif rest[:3] == ["containers", "list", "-q"]:
    flt = rest[3] if len(rest) > 3 else ""
    if "sandbox" in flt:
        print("\n".join(state.get("sandboxes", [])))
    elif "pod.uid" in flt:
        print("\n".join(state.get("pod_members", [])))
    else:
        print("\n".join(state.get("containers", [])))
elif rest[:2] == ["containers", "info"]:
    print('{\n  "ID": "%s",\n  "Labels": {\n    "io.kubernetes.pod.uid": "uid-1"\n  }\n}' % rest[2])
elif rest[:2] == ["tasks", "list"]:
    killed = set(state.get("killed", []))
    print("TASK    PID    STATUS\n" + "".join(f"{t}      10     {'STOPPED' if t in killed else 'RUNNING'}\n"
                                            for t in state.get("running", ["c1"])) + "c2      0      STOPPED")
elif rest[:2] == ["tasks", "kill"]:
    if state.get("unkillable") != rest[-1]:
        state.setdefault("killed", []).append(rest[-1])
        json.dump(state, open(os.environ["FAKE_CTR_STATE"], "w"))
elif rest[0] in ("tasks", "containers"):
    pass
else:
    print("fake ctr: unexpected", rest, file=sys.stderr)
    sys.exit(3)
'''


class Shim:
    def __init__(self, tmp: Path) -> None:
        self.bin = tmp / "bin"
        self.bin.mkdir()
        self.crictl = self.bin / "crictl"
        install_shim(self.crictl)
        ctr = self.bin / "ctr"
        ctr.write_text(FAKE_CTR.replace("PYTHON", sys.executable, 1))
        ctr.chmod(0o755)
        self.log = tmp / "ctr.log"
        self.state = tmp / "state.json"
        self.config = tmp / "crictl.yaml"  # absent unless a test writes it
        self.set()

    def set(self, **state: object) -> None:
        self.state.write_text(json.dumps(state))

    def __call__(self, *args: str) -> subprocess.CompletedProcess[str]:
        self.log.unlink(missing_ok=True)
        env = {
            "PATH": f"{self.bin}:/usr/bin:/bin",
            "FAKE_CTR_LOG": str(self.log),
            "FAKE_CTR_STATE": str(self.state),
            "CRI_CONFIG_FILE": str(self.config),
        }
        return subprocess.run(["sh", str(self.crictl), *args], capture_output=True, text=True, env=env, check=False)

    def calls(self) -> list[list[str]]:
        if not self.log.exists():
            return []
        return [json.loads(line)[4:] for line in self.log.read_text().splitlines()]

    def addresses(self) -> set[tuple[str, str]]:
        return {(json.loads(line)[1], json.loads(line)[3]) for line in self.log.read_text().splitlines()}


@pytest.fixture
def shim(tmp_path: Path) -> Shim:
    return Shim(tmp_path)


SOCK = "unix:///run/containerd/containerd.sock"


def test_crictl_info_is_kubeadms_is_running_check(shim: Shim) -> None:
    out = shim("-r", SOCK, "info")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["status"]["conditions"][0]["type"] == "RuntimeReady"
    assert shim.calls() == [["version"]]
    assert shim.addresses() == {("/run/containerd/containerd.sock", "k8s.io")}
    shim.set(down=True)
    out = shim("-r", SOCK, "info")
    assert out.returncode != 0 and "failed to dial" in out.stderr


@pytest.mark.parametrize(
    "flags",
    [
        ["-r", "unix:///tmp/x.sock"],
        ["--runtime-endpoint", "unix:///tmp/x.sock"],
        ["--runtime-endpoint=unix:///tmp/x.sock"],
    ],
)
def test_crictl_endpoint_flag_forms(shim: Shim, flags: list[str]) -> None:
    out = shim(*flags, "info")
    assert out.returncode == 0, out.stderr
    assert shim.addresses() == {("/tmp/x.sock", "k8s.io")}


def test_crictl_endpoint_from_config_and_default(shim: Shim) -> None:
    assert shim("info").returncode == 0
    assert shim.addresses() == {("/run/containerd/containerd.sock", "k8s.io")}
    shim.config.write_text('runtime-endpoint: "unix:///var/run/other.sock"\nimage-endpoint: unix:///x\n')
    assert shim("info").returncode == 0
    assert shim.addresses() == {("/var/run/other.sock", "k8s.io")}
    out = shim("-r", "tcp://10.0.0.1:1234", "info")
    assert out.returncode == 1 and "only unix sockets" in out.stderr


def test_crictl_inspecti_and_pull_for_preflight(shim: Shim) -> None:
    shim.set(images=["k8s.gcr.io/pause:3.2", "sha256:abc"])
    assert shim("-r", SOCK, "inspecti", "k8s.gcr.io/pause:3.2").returncode == 0
    assert shim.calls() == [["images", "list", "-q", "name==k8s.gcr.io/pause:3.2"]]
    missing = shim("-r", SOCK, "inspecti", "k8s.gcr.io/coredns:1.7.0")
    assert missing.returncode == 1 and "no such image" in missing.stderr

    present = shim("-r", SOCK, "pull", "k8s.gcr.io/pause:3.2")
    assert present.returncode == 0 and "up to date" in present.stdout
    assert ["images", "pull", "k8s.gcr.io/pause:3.2"] not in shim.calls()

    shim.set(images=[], pull_ok=False)
    failed = shim("-r", SOCK, "pull", "k8s.gcr.io/coredns:1.7.0")
    assert failed.returncode != 0
    assert shim.calls()[-1] == ["images", "pull", "k8s.gcr.io/coredns:1.7.0"]


@pytest.mark.parametrize(
    ("given", "normalized"),
    [
        ("busybox", "docker.io/library/busybox:latest"),
        ("library/busybox:1.36", "docker.io/library/busybox:1.36"),
        ("k8s.gcr.io/pause", "k8s.gcr.io/pause:latest"),
        ("localhost/x:1", "localhost/x:1"),
        ("registry:5000/a/b", "registry:5000/a/b:latest"),
    ],
)
def test_crictl_normalizes_image_names_like_crictl(shim: Shim, given: str, normalized: str) -> None:
    shim("inspecti", given)
    assert shim.calls() == [["images", "list", "-q", f"name=={normalized}"]]


def test_crictl_pods_stopp_rmp_for_kubeadm_reset(shim: Shim) -> None:
    shim.set(sandboxes=["p1", "p2"], pod_members=["p1", "c1"])
    out = shim("-r", SOCK, "pods", "-q")
    assert out.returncode == 0 and out.stdout.split() == ["p1", "p2"]
    assert shim.calls() == [["containers", "list", "-q", 'labels."io.cri-containerd.kind"==sandbox']]

    shim.set(sandboxes=["p1", "p2"], pod_members=["p1", "c1"], running=["p1", "c1"])
    out = shim("-r", SOCK, "stopp", "p1")
    assert out.returncode == 0, out.stderr
    # the pod's container before its sandbox: killed, seen stopped, deleted (never --all, never --force)
    assert shim.calls() == [
        ["containers", "info", "p1"],
        ["containers", "list", "-q", 'labels."io.kubernetes.pod.uid"==uid-1'],
        ["tasks", "kill", "--signal", "SIGKILL", "c1"],
        ["tasks", "list"],
        ["tasks", "delete", "c1"],
        ["tasks", "kill", "--signal", "SIGKILL", "p1"],
        ["tasks", "list"],
        ["tasks", "delete", "p1"],
    ]
    out = shim("-r", SOCK, "rmp", "p1")
    assert out.returncode == 0, out.stderr
    assert ["containers", "delete", "p1"] in shim.calls() and ["containers", "delete", "c1"] in shim.calls()


def test_crictl_ps_images_and_unsupported(shim: Shim) -> None:
    shim.set(containers=["c1", "c2"], images=["k8s.gcr.io/pause:3.2", "sha256:abc"])
    assert shim("ps", "-q").stdout.split() == ["c1"]  # only the RUNNING task
    assert shim("ps", "-a", "-q").stdout.split() == ["c1", "c2"]
    assert shim("images", "-q").stdout.split() == ["k8s.gcr.io/pause:3.2"]
    out = shim("logs", "c1")
    assert out.returncode == 1 and "not supported" in out.stderr
    out = shim("pods", "--label", "x=y")
    assert out.returncode == 1 and "unsupported argument" in out.stderr
    assert shim().returncode == 1


# --- upstream and offline fail-fast --------------------------------------------------------------


def test_upstream_recipe_fails_fast_offline(apt_etc: Path, tmp_path: Path) -> None:
    r = bundle_recipe("kubernetes-1.20.2-upstream")
    assert isinstance(r, UpstreamRecipe)
    store = BundleStore(tmp_path / "cache")
    with pytest.raises(NeedsDownload) as err:
        bundle.builder_for(r, store, env={}, apt_etc=apt_etc)
    assert err.value.source.startswith("https://dl.k8s.io/release/v1.20.2/bin/linux/amd64/")
    assert "dl.k8s.io" in str(err.value) and "needs a download" in str(err.value)
    assert not (tmp_path / "cache").exists(), "the fail-fast path must not create anything"

    # Reachable by configuration: still no downloader, and it says so (never a silent attempt).
    with pytest.raises(ImageError, match="not written yet") as err2:
        bundle.builder_for(r, store, env={"KHA_REACHABLE_HOSTS": "dl.k8s.io,github.com"}, apt_etc=apt_etc)
    assert not isinstance(err2.value, NeedsDownload)


def test_upstream_build_through_the_public_api(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KHA_OFFLINE", "1")
    with pytest.raises(NeedsDownload, match="KHA_OFFLINE=1"):
        bundle.build("kubernetes-1.20.2-upstream")
    with pytest.raises(NeedsDownload, match="KHA_OFFLINE=1"):
        bundle.build(DEFAULT_BUNDLE)
    assert not (cache / "bundles").exists()


def test_private_apt_adds_deb_src_without_touching_the_host(tmp_path: Path) -> None:
    apt = PrivateApt(tmp_path / "apt", Mirrors("http://m.example/debian", "http://m.example/sec", "test"), "bookworm")
    lines = apt.source_lines()
    assert any(line.startswith("deb-src ") and " http://m.example/debian bookworm main" in line for line in lines)
    assert any(line.startswith("deb ") and "bookworm-security" in line for line in lines)
    opts = apt.options()
    values = dict(opts[i + 1].split("=", 1) for i in range(0, len(opts), 2))
    for key in ("Dir::Etc::sourcelist", "Dir::Etc::sourceparts", "Dir::State::Lists"):
        assert values[key].startswith(str(tmp_path / "apt")), key


# --- manifest ------------------------------------------------------------------------------------


def _manifest() -> BundleManifest:
    r = _debian()
    sha = "ab" * 32
    return BundleManifest(
        name=r.name,
        hash=bundle_hash(r),
        kubernetes_version="v1.20.2",
        created="2026-11-21T00:00:00+00:00",
        source=Source(
            type="debian-source",
            name="kubernetes",
            version=r.source.version,
            origin="http://m.example/debian bookworm main",
            files=(FileEntry("kubernetes_1.dsc", sha, 10),),
        ),
        files=(FileEntry("bin/kubeadm", sha, 123, "0755"), FileEntry("bin/crictl", sha, 5, "0755")),
        images=(ImageEntry("k8s.gcr.io/pause:3.2", "images/pause.tar", sha, 1000),),
        cni=Cni("cni", ("bridge",), "containernetworking-plugins 1.1.1 (Debian)"),
        crictl=Crictl("bin/crictl", "shim", "onto ctr"),
        not_built=(("k8s.gcr.io/coredns", "no offline source"),),
        build=BuildFacts(
            seconds=300.5,
            go_build_seconds=280.0,
            go_cache_warm=False,
            go_version="go version go1.19.8 linux/amd64",
            openapi_bytes=2_423_605,
            openapi_schemas=971,
            host_packages=(("golang-go", "2:1.19~1"),),
            debs=(("iptables", "1.8.9-2"),),
        ),
        recipe=recipe_doc(r),
    )


def test_manifest_round_trip() -> None:
    m = _manifest()
    again = BundleManifest.from_dict(json.loads(m.to_json()))
    assert again == m
    assert again.to_json() == m.to_json()


def test_manifest_describes_upstream_artifacts() -> None:
    r = bundle_recipe("kubernetes-1.20.2-upstream")
    assert isinstance(r, UpstreamRecipe)
    m = upstream_manifest(r)
    assert BundleManifest.from_dict(json.loads(m.to_json())) == m
    kubeadm = next(f for f in m.files if f.path == "bin/kubeadm")
    assert kubeadm.url == "https://dl.k8s.io/release/v1.20.2/bin/linux/amd64/kubeadm"
    assert kubeadm.sha256_url == kubeadm.url + ".sha256" and kubeadm.sha256 is None
    refs = {i.ref: i for i in m.images}
    assert refs["k8s.gcr.io/kube-apiserver:v1.20.2"].url == (
        "https://dl.k8s.io/release/v1.20.2/bin/linux/amd64/kube-apiserver.tar"
    )
    assert refs["k8s.gcr.io/pause:3.2"].archive is None
    assert m.source.type == "upstream" and m.build is None and m.crictl.kind == "cri-tools"


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda d: d.update(format=2), "format"),
        (lambda d: d.update(kind="something"), "kind"),
        (lambda d: d["files"][0].update(sha256="XYZ"), "files[0].sha256"),
        (lambda d: d["files"][0].update(path="../etc/passwd"), "files[0].path"),
        (lambda d: d["images"][0].update(size="big"), "images[0].size"),
        (lambda d: d.pop("cni"), "cni"),
        (lambda d: d["crictl"].update(kind="magic"), "crictl.kind"),
    ],
)
def test_manifest_errors_name_the_field(mutate: object, field: str) -> None:
    doc = json.loads(_manifest().to_json())
    assert callable(mutate)
    mutate(doc)
    with pytest.raises(ManifestError) as err:
        BundleManifest.from_dict(doc, "x/manifest.json")
    assert field in str(err.value) and "x/manifest.json" in str(err.value)


def test_manifest_problems_find_changed_files(tmp_path: Path) -> None:
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "kubeadm").write_bytes(b"kubeadm")
    entry = file_entry(tmp_path, "bin/kubeadm")
    m = dataclasses.replace(_manifest(), files=(entry,), images=())
    assert m.problems(tmp_path) == []
    (tmp_path / "bin" / "kubeadm").write_bytes(b"kubeadX")
    assert m.problems(tmp_path) == ["bin/kubeadm: sha256 differs from the manifest"]
    (tmp_path / "bin" / "kubeadm").unlink()
    assert m.problems(tmp_path) == ["bin/kubeadm: missing"]


# --- openapi package discovery --------------------------------------------------------------------


def test_openapi_packages_follow_makefile_generated_files(tmp_path: Path) -> None:
    tagged = "// +k8s:openapi-gen=true\n\npackage v1\n"

    def go(rel: str, text: str) -> None:
        p = tmp_path / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)

    go("pkg/apis/abac/v1beta1/doc.go", tagged)
    go("staging/src/k8s.io/api/core/v1/doc.go", tagged)
    go("staging/src/k8s.io/code-generator/_examples/x/doc.go", tagged)  # excluded by the Makefile
    go("vendor/github.com/other/doc.go", tagged)  # real vendor/ is pruned
    go("_output/local/doc.go", tagged)
    go("pkg/untagged/doc.go", "package untagged\n// mentions +k8s:openapi-gen=true only in prose\n")
    assert openapi_packages(tmp_path) == [
        "k8s.io/kubernetes/pkg/apis/abac/v1beta1",
        "k8s.io/kubernetes/vendor/k8s.io/api/core/v1",
    ]


# --- store ---------------------------------------------------------------------------------------


def _fake_builder(calls: list[str]) -> bundle.BundleBuilder:
    def build(r: object, work: Path, progress: Progress | None) -> BundleManifest:
        calls.append(str(work))
        assert work.name.startswith(".building-")
        (work / "bin").mkdir()
        (work / "bin" / "kubeadm").write_text("#!/bin/sh\necho v1.20.2\n")
        m = _manifest()
        return dataclasses.replace(m, files=(file_entry(work, "bin/kubeadm"),), images=())

    return build


def test_store_builds_atomically_and_reuses(tmp_path: Path) -> None:
    store = BundleStore(tmp_path)
    r = _debian()
    calls: list[str] = []
    b = store.build(r, _fake_builder(calls))
    assert b.path == store.path_for(r) and b.digest == bundle_hash(r)
    assert (b.path / "manifest.json").is_file() and b.binary("kubeadm").is_file()
    assert b.manifest.build is not None and b.manifest.build.seconds < 60
    assert store.lookup(r) == b and store.list() == [b]
    assert store.build(r, _fake_builder(calls)) == b and len(calls) == 1
    store.build(r, _fake_builder(calls), force=True)
    assert len(calls) == 2
    assert sorted(p.name for p in (tmp_path / "bundles").iterdir()) == [f".{b.path.name}.lock", b.path.name]


def test_store_failed_build_leaves_nothing(tmp_path: Path) -> None:
    store = BundleStore(tmp_path)

    def broken(r: object, work: Path, progress: Progress | None) -> BundleManifest:
        (work / "half-written").write_text("x")
        raise ImageError("boom")

    with pytest.raises(ImageError, match="boom"):
        store.build(_debian(), broken)
    assert store.list() == []
    assert not [p for p in (tmp_path / "bundles").iterdir() if p.name.startswith(".building-")]

    def lying(r: object, work: Path, progress: Progress | None) -> BundleManifest:
        return dataclasses.replace(_manifest(), images=())  # lists files it never wrote

    with pytest.raises(ImageError, match="does not match its output"):
        store.build(_debian(), lying)
    assert store.lookup(_debian()) is None


# --- one schema: the installer reads what the builder wrote ----------------------------------------


def _node_builder(r: object, work: Path, progress: Progress | None) -> BundleManifest:
    """A built bundle with what a node gets: kubeadm, kubelet, kubectl, crictl and the pause archive."""
    for rel in ("bin/kubeadm", "bin/kubelet", "bin/kubectl", "bin/crictl", "images/pause.tar"):
        (work / rel).parent.mkdir(parents=True, exist_ok=True)
        (work / rel).write_text(f"{rel}\n")
    pause = file_entry(work, "images/pause.tar")
    return dataclasses.replace(
        _manifest(),
        files=tuple(file_entry(work, f"bin/{n}") for n in ("kubeadm", "kubelet", "kubectl", "crictl")),
        images=(ImageEntry("k8s.gcr.io/pause:3.2", pause.path, pause.sha256, pause.size),),
    )


def test_the_installer_reads_the_manifest_the_store_wrote(tmp_path: Path) -> None:
    built = BundleStore(tmp_path).build(_debian(), _node_builder)
    node = InstallerBundle.load(built.path)
    assert node.release.version == "1.20.2" and node.release.sandbox_image == "k8s.gcr.io/pause:3.2"
    assert {n: f.path for n, f in node.binaries.items()} == {n: built.binary(n) for n in node.binaries}
    assert node.crictl is not None and node.crictl.path == built.crictl
    assert {ref: f.path for ref, f in node.images.items()} == dict(built.image_archives())


def test_the_installer_names_the_field_the_schema_refuses(tmp_path: Path) -> None:
    built = BundleStore(tmp_path).build(_debian(), _node_builder)
    doc = json.loads((built.path / "manifest.json").read_text())
    doc["files"][1]["sha256"] = "XYZ"
    (built.path / "manifest.json").write_text(json.dumps(doc))
    with pytest.raises(ManifestError, match=r"files\[1\]\.sha256"):
        BundleManifest.load(built.path / "manifest.json")
    with pytest.raises(ConfigError) as err:
        InstallerBundle.load(built.path)
    assert "files[1].sha256" in str(err.value) and str(built.path / "manifest.json") in str(err.value)


# --- CLI -----------------------------------------------------------------------------------------


def test_cli_show_upstream_and_list(cache: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert kha_cli.main(["bundle", "show", "kubernetes-1.20.2-upstream"]) == 0
    out = capsys.readouterr().out
    assert "https://dl.k8s.io/release/v1.20.2/bin/linux/amd64/kubeadm" in out and "registry only" in out
    assert kha_cli.main(["bundle", "list"]) == 0
    out = capsys.readouterr().out
    assert f"{DEFAULT_BUNDLE}" in out and "not built" in out and "needs a download" in out
    assert kha_cli.main(["bundle", "show"]) == 1
    assert "not built" in capsys.readouterr().err


def test_cli_build_upstream_prints_one_failure_line(cache: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert kha_cli.main(["bundle", "build", "kubernetes-1.20.2-upstream"]) == 1
    err = capsys.readouterr().err
    assert re.match(r"✗ bundle kubernetes-1\.20\.2-upstream  \d+\.\ds  ", err), err
    assert "needs a download" in err


def test_cli_show_a_built_bundle(cache: Path, capsys: pytest.CaptureFixture[str]) -> None:
    b = BundleStore(cache).build(_debian(), _fake_builder([]))
    assert kha_cli.main(["bundle", "show", "--verify"]) == 0
    out = capsys.readouterr().out
    assert b.digest in out and "bin/kubeadm" in out and "✓ verify" in out
    b.binary("kubeadm").write_text("changed")
    assert kha_cli.main(["bundle", "show", "--verify"]) == 1
    assert "✗ bin/kubeadm" in capsys.readouterr().out


def test_cli_module_registers_the_subcommands() -> None:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command")
    bundle_cli.add_parser(sub)
    assert parser.parse_args(["bundle", "build", "--force"]).force is True
    assert parser.parse_args(["bundle", "show", "--verify"]).verify is True


def test_shim_is_posix_sh() -> None:
    script = Path(bundle.__file__).parent / "crictl.sh"
    subprocess.run(["sh", "-n", str(script)], check=True)
    assert textwrap.dedent(script.read_text()).startswith("#!/bin/sh\n")


def test_store_keeps_the_log_of_a_failed_build(tmp_path: Path) -> None:
    store = BundleStore(tmp_path)

    def failing(r: object, work: Path, progress: Progress | None) -> BundleManifest:
        (work / "build.log").write_text("$ go build ...\nundefined: reflect2.Foo\n")
        raise ImageError("go build failed")

    with pytest.raises(ImageError):
        store.build(_debian(), failing)
    assert "undefined: reflect2.Foo" in store.failed_log(_debian()).read_text()


def test_a_changed_crictl_shim_is_a_new_bundle(monkeypatch: pytest.MonkeyPatch) -> None:
    """The shim ships in the bundle: a cached bundle with the old shim must not be reused."""
    recipe = BUNDLE_RECIPES[DEFAULT_BUNDLE]
    before = bundle_hash(recipe)
    assert bundle_hash(recipe) == before
    monkeypatch.setattr(recipe_module, "shim_text", lambda: "#!/bin/sh\necho another shim\n")
    assert bundle_hash(recipe) != before
