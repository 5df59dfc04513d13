"""Integration: build the offline Kubernetes bundle for real (or reuse the cached one) and check what kubeadm
and the installer rely on: versions, the image names kubeadm asks for, every sha256 in the manifest, the
generated OpenAPI file, and that the archives import into a real containerd (a private one, started here on
its own socket) where the crictl shim then finds them.

Needs root, Debian's Go and the other build packages (images.bundle.builder.REQUIRED_TOOLS), the Debian
mirror, and containerd (for ctr). Missing tools fail the test, they never skip it. Cold: ~5–10 min on 2
cores; cached: seconds.
"""

from __future__ import annotations

import os
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

import pytest

from core.bundle_manifest import file_sha256
from core.errors import KhaError
from core.waiting import until
from images import bundle
from images.bundle.builder import preflight
from images.bundle.store import BundleStore
from images.run import missing_tools

pytestmark = pytest.mark.integration

VERSION = "v1.20.2"
NOT_BUILT = ("etcd", "coredns")  # external etcd; CoreDNS has no offline source
RUNTIME_TOOLS = {"containerd": "containerd", "ctr": "containerd", "runc": "runc"}


def _require(*tools: str) -> None:
    if missing := missing_tools(tools, RUNTIME_TOOLS):
        pytest.fail("missing on this machine: " + ", ".join(missing))


@pytest.fixture(scope="module")
def built() -> bundle.Bundle:
    cached = bundle.get()
    if cached is not None:
        return cached
    r = bundle.bundle_recipe(bundle.DEFAULT_BUNDLE)
    assert isinstance(r, bundle.DebianSourceRecipe)
    try:
        preflight(r)  # the builder's own check: root, the build tools, libc.a, reflect2
    except KhaError as exc:
        pytest.fail(f"this machine cannot build the bundle: {exc}")
    try:
        return bundle.build(progress=lambda line: print(f"  {line}"))
    except KhaError as exc:
        # A failed command carries its argv and the tail of its output; the store keeps the whole log.
        failed = BundleStore().failed_log(r)
        tail = "\n".join(failed.read_text().splitlines()[-60:]) if failed.is_file() else "(no build log)"
        pytest.fail(f"bundle build failed:\n{exc}\n--- {failed} (tail) ---\n{tail}")


def _run(*argv: str | Path) -> str:
    return subprocess.run([str(a) for a in argv], capture_output=True, text=True, check=True, timeout=120).stdout


def test_a_cached_bundle_is_reused_without_building(built: bundle.Bundle, monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[str] = []
    monkeypatch.setattr(bundle, "builder_for", lambda r, *args: asked.append(r.name))
    assert bundle.build() == built
    assert asked == [], "a cached bundle needs no builder (and so no source, no traffic)"


def test_kubeadm_version(built: bundle.Bundle) -> None:
    assert _run(built.binary("kubeadm"), "version", "-o", "short").strip() == VERSION


def test_kubectl_client_version(built: bundle.Bundle) -> None:
    out = _run(built.binary("kubectl"), "version", "--client")
    assert f'GitVersion:"{VERSION}"' in out


@pytest.mark.parametrize(
    "component", ["kubelet", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kube-proxy"]
)
def test_component_versions(built: bundle.Bundle, component: str) -> None:
    assert _run(built.binary(component), "--version").strip() == f"Kubernetes {VERSION}"


def test_kubelet_config_defaults_do_not_panic(built: bundle.Bundle) -> None:
    """The reflect2 trap: with the vendored 1.0.1 under Go 1.19 this panics on JSON maps."""
    out = _run(
        built.binary("kubeadm"), "config", "print", "init-defaults", "--component-configs", "KubeletConfiguration"
    )
    assert "kind: KubeletConfiguration" in out


def test_every_file_and_archive_matches_the_manifest(built: bundle.Bundle) -> None:
    m = built.manifest
    assert m.kubernetes_version == VERSION and m.source.type == "debian-source"
    assert m.problems(built.path) == []
    for image in m.images:
        assert image.archive is not None
        path = built.path / image.archive
        assert path.is_file() and file_sha256(path) == image.sha256, image.ref
    assert {f.path for f in m.files} >= {f"bin/{c}" for c in bundle.bundle_recipe(m.name).components} | {"bin/crictl"}


def test_openapi_file_was_complete(built: bundle.Bundle) -> None:
    facts = built.manifest.build
    assert facts is not None
    assert facts.openapi_bytes >= 2_000_000 and facts.openapi_schemas >= 900
    log = built.build_log.read_text()
    assert f"zz_generated.openapi.go: {facts.openapi_bytes} bytes, {facts.openapi_schemas} schemas" in log


def test_kubeadm_image_list_matches_the_archives(built: bundle.Bundle) -> None:
    r = bundle.bundle_recipe(built.name)
    assert isinstance(r, bundle.DebianSourceRecipe)
    listed = _run(
        built.binary("kubeadm"),
        "config",
        "images",
        "list",
        "--kubernetes-version",
        VERSION,
        "--image-repository",
        r.image_repository,
    ).split()
    wanted = {ref for ref in listed if ref.rsplit(":", 1)[0].rsplit("/", 1)[-1] not in NOT_BUILT}
    archived = {ref for ref, _ in built.image_archives()}
    assert wanted == archived
    assert "k8s.gcr.io/pause:3.2" in archived


def _layer_names(archive: Path) -> list[str]:
    with tarfile.open(archive) as outer:
        layer = next(m for m in outer.getmembers() if m.name.endswith("/layer.tar"))
        fh = outer.extractfile(layer)
        assert fh is not None
        with tarfile.open(fileobj=fh) as inner:
            return inner.getnames()


def test_image_layers_carry_what_they_run(built: bundle.Bundle) -> None:
    archives = dict(built.image_archives())
    proxy = _layer_names(archives[f"k8s.gcr.io/kube-proxy:{VERSION}"])
    for path in ("usr/local/bin/kube-proxy", "usr/sbin/iptables", "usr/sbin/ip6tables-restore", "usr/sbin/conntrack"):
        assert path in proxy, path
    assert _layer_names(archives["k8s.gcr.io/pause:3.2"]) == ["pause"]
    assert "usr/local/bin/kube-apiserver" in _layer_names(archives[f"k8s.gcr.io/kube-apiserver:{VERSION}"])


CONTAINERD_CONFIG = """\
version = 2
root = "{root}"
state = "{state}"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "{sock}"
"""


@pytest.fixture(scope="module")
def containerd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A private containerd (own root, state and socket; no CRI plugin), stopped afterwards."""
    _require("containerd", "ctr")
    base = tmp_path_factory.mktemp("containerd")
    sock = base / "containerd.sock"
    config = base / "config.toml"
    config.write_text(CONTAINERD_CONFIG.format(root=base / "root", state=base / "state", sock=sock))
    log = (base / "containerd.log").open("w")
    proc = subprocess.Popen(["containerd", "--config", str(config)], stdout=log, stderr=subprocess.STDOUT)

    def answers() -> str | None:
        if proc.poll() is not None:
            _no_containerd(base, f"it exited ({proc.returncode})")
        done = subprocess.run(["ctr", "--address", str(sock), "version"], capture_output=True, check=False)
        return None if done.returncode == 0 else "ctr version does not answer yet"

    try:
        until(answers, timeout=30, interval=0.2, error=lambda why: _no_containerd(base, why))
        yield sock
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def _no_containerd(base: Path, why: str) -> NoReturn:
    pytest.fail(f"private containerd did not come up ({why}): {(base / 'containerd.log').read_text()[-2000:]}")


def test_archives_import_into_containerd_and_crictl_finds_them(built: bundle.Bundle, containerd: Path) -> None:
    ctr = ["ctr", "--address", str(containerd), "--namespace", "k8s.io"]
    for ref, archive in built.image_archives():
        out = _run(*ctr, "images", "import", archive)
        assert ref in out or "done" in out.lower() or out == "", out
    present = set(_run(*ctr, "images", "list", "-q").split())
    assert {ref for ref, _ in built.image_archives()} <= present

    crictl = [str(built.crictl), "-r", f"unix://{containerd}"]
    assert subprocess.run([*crictl, "info"], capture_output=True, check=False).returncode == 0
    for ref, _ in built.image_archives():
        assert subprocess.run([*crictl, "inspecti", ref], capture_output=True, check=False).returncode == 0, ref
        pulled = subprocess.run([*crictl, "pull", ref], capture_output=True, text=True, check=False)
        assert pulled.returncode == 0 and "up to date" in pulled.stdout
    missing = subprocess.run([*crictl, "inspecti", "k8s.gcr.io/coredns:1.7.0"], capture_output=True, check=False)
    assert missing.returncode == 1


@pytest.mark.parametrize(
    "case",
    [
        (f"k8s.gcr.io/kube-proxy:{VERSION}", ["/usr/sbin/iptables", "--version"], "(nf_tables)"),
        (f"k8s.gcr.io/kube-proxy:{VERSION}", ["/usr/sbin/ip6tables-restore", "--version"], "nf_tables"),
        (f"k8s.gcr.io/kube-proxy:{VERSION}", ["/usr/sbin/conntrack", "--version"], "conntrack v"),
        (f"k8s.gcr.io/kube-apiserver:{VERSION}", ["kube-apiserver", "--version"], f"Kubernetes {VERSION}"),
        ("k8s.gcr.io/pause:3.2", ["/pause", "-v"], "pause.c"),
    ],
    ids=["iptables", "ip6tables-restore", "conntrack", "apiserver-on-PATH", "pause"],
)
def test_images_run_under_runc(
    built: bundle.Bundle, containerd: Path, case: tuple[str, list[str], str], request: pytest.FixtureRequest
) -> None:
    """The imported images run: kube-proxy's iptables finds its libraries, kubeadm's bare command names resolve."""
    _require("runc")
    ref, argv, says = case
    ctr = ["ctr", "--address", str(containerd), "--namespace", "k8s.io"]
    archive = dict(built.image_archives())[ref]
    _run(*ctr, "images", "import", archive)
    name = f"kha-test-{request.node.callspec.id}-{os.getpid()}"
    out = subprocess.run(
        [*ctr, "run", "--rm", ref, name, *argv], capture_output=True, text=True, timeout=60, check=False
    )
    assert out.returncode == 0 and says in out.stdout + out.stderr, out
