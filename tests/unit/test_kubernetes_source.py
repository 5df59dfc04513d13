"""Where Kubernetes comes from: the offline bundle or upstream's package repositories (pkgs.k8s.io),
what each allows (checked before any node is touched), and the package install on a Debian node
(a scripted fake node: the repositories cannot be reached from here)."""

from __future__ import annotations

import io
from collections.abc import Mapping
from pathlib import Path

import pytest
import variants
from scripted import ScriptedNode
from test_install_bundle import make_bundle

from installer import install, topology
from installer.errors import ConfigError
from installer.facts import NodeFacts, OSFamily
from installer.kubernetes import packages, source
from installer.kubernetes import render as k8s_render
from installer.kubernetes.bundle import Bundle
from installer.phases import Context
from installer.settings import KubeVersion

MADISON = """\
   kubeadm | 1.29.4-2.1 | https://pkgs.k8s.io/core:/stable:/v1.29/deb  Packages
   kubeadm | 1.29.3-1.1 | https://pkgs.k8s.io/core:/stable:/v1.29/deb  Packages
   kubeadm | 1.29.0-1.1 | https://pkgs.k8s.io/core:/stable:/v1.29/deb  Packages
"""
DNF_LIST = """\
Last metadata expiration check: 0:00:04 ago on Sat 22 Nov 2026 10:00:00 AM UTC.
Available Packages
kubeadm.x86_64                 1.29.0-150500.1.1                 kha-kubernetes
kubeadm.x86_64                 1.29.3-150500.1.1                 kha-kubernetes
"""


def inventory(tmp_path: Path, scenario: str = "allinone", **vars: str) -> Path:
    return variants.inventory(tmp_path, scenario, **vars)


def topo(tmp_path: Path, scenario: str = "allinone", **vars: str) -> topology.Topology:
    return variants.topo(tmp_path, scenario, **vars)


# -- pure -----------------------------------------------------------------------------------------
def test_versions_are_read_from_apt_and_dnf_listings() -> None:
    assert packages.available(MADISON, OSFamily.DEBIAN) == ["1.29.4-2.1", "1.29.3-1.1", "1.29.0-1.1"]
    assert packages.available(DNF_LIST, OSFamily.REDHAT) == ["1.29.0-150500.1.1", "1.29.3-150500.1.1"]
    assert packages.pick(packages.available(MADISON, OSFamily.DEBIAN), "1.29.3") == "1.29.3-1.1"
    assert packages.pick(["1:1.29.3-1.1"], "1.29.3") == "1:1.29.3-1.1"  # an epoch is not the version
    assert packages.pick(packages.available(MADISON, OSFamily.DEBIAN), "1.29.30") is None


def test_the_repository_is_the_minor_versions_own() -> None:
    deb = packages.repo_file(KubeVersion(1, 29, 3), OSFamily.DEBIAN)
    assert deb.content.decode().splitlines()[-1] == (
        f"deb [signed-by={packages.DEB_KEY}] https://pkgs.k8s.io/core:/stable:/v1.29/deb/ /")
    rpm = packages.repo_file(KubeVersion(1, 31, 0), OSFamily.REDHAT).content.decode()
    assert "baseurl=https://pkgs.k8s.io/core:/stable:/v1.31/rpm/\n" in rpm
    assert "gpgkey=https://pkgs.k8s.io/core:/stable:/v1.31/rpm/repodata/repomd.xml.key\n" in rpm
    # A plain `dnf upgrade` must not move a control plane.
    assert "exclude=kubelet kubeadm kubectl cri-tools kubernetes-cni\n" in rpm


def test_packages_put_binaries_and_cni_plugins_where_upstream_does(tmp_path: Path) -> None:
    r = packages.release(topo(tmp_path, kube_version="1.29.3"))
    assert (r.version, r.bin_dir, r.cni_bin_dir) == ("1.29.3", "/usr/bin", "/opt/cni/bin")
    assert r.sandbox_image == "registry.k8s.io/pause:3.9"


def test_online_needs_an_exact_version_the_repositories_carry(tmp_path: Path) -> None:
    old = topo(tmp_path, kube_version="1.20.2")
    [p] = source.problems(old, None)
    assert p.field == "kube_version" and p.line is not None and "offline bundle" in p.message
    assert str(p).startswith(f"{old.source}:{p.line}: kube_version: ")
    [p] = source.problems(topo(tmp_path, kube_version="1.29.x"), None)
    assert "exact version" in p.message
    assert source.problems(topo(tmp_path, kube_version="1.29.3", network_plugin="calico"), None) == []


def test_a_bundle_must_match_kube_version_and_use_the_bridge(tmp_path: Path) -> None:
    bundle = Bundle.load(make_bundle(tmp_path / "bundle"))  # 1.20.2
    assert source.problems(topo(tmp_path), bundle) == []
    assert source.problems(topo(tmp_path, kube_version="1.20.x"), bundle) == []
    [p] = source.problems(topo(tmp_path, kube_version="1.21.0"), bundle)
    assert p.field == "kube_version" and "holds 1.20.2" in p.message
    [p] = source.problems(topo(tmp_path, network_plugin="flannel"), bundle)
    assert p.field == "network_plugin" and "network_plugin=bridge" in p.message
    assert source.release(topo(tmp_path), bundle) == bundle.release


def test_kube_image_repository_names_every_image_online_and_offline(tmp_path: Path) -> None:
    """kubeadm-ha's kube_image_repository: kubeadm's imageRepository and the pause image live under it; a
    bundle's images (named k8s.gcr.io/...) are tagged with it on the nodes."""
    repo = "registry.kha.test:5000/k8s"
    online = source.release(topo(tmp_path, kube_version="1.29.3", kube_image_repository=repo), None)
    assert (online.image_repository, online.sandbox_image) == (repo, f"{repo}/pause:3.9")
    assert source.release(topo(tmp_path, kube_version="1.29.3"), None).image_repository == "registry.k8s.io"
    bundle = Bundle.load(make_bundle(tmp_path / "bundle"))
    offline = source.release(topo(tmp_path, kube_image_repository=repo), bundle)
    assert (offline.version, offline.bin_dir, offline.sandbox_image) == ("1.20.2", bundle.release.bin_dir,
                                                                         f"{repo}/pause:3.2")
    tags = {ref: k8s_render.renamed(ref, bundle.release.image_repository, offline.image_repository)
            for ref in bundle.images}
    assert tags == {"k8s.gcr.io/pause:3.2": f"{repo}/pause:3.2",
                    "k8s.gcr.io/kube-proxy:v1.20.2": f"{repo}/kube-proxy:v1.20.2"}
    assert k8s_render.renamed("docker.io/library/busybox:1", "k8s.gcr.io", repo) == "docker.io/library/busybox:1"


def test_install_refuses_before_touching_anything(tmp_path: Path) -> None:
    # Nodes at 10.56.56.x are not reachable from here: a refusal must come before any connection,
    # and before the state folder gets secrets.
    inv = inventory(tmp_path, kube_version="1.20.2")
    state = tmp_path / "state"
    with pytest.raises(ConfigError, match=r"pkgs\.k8s\.io starts at 1\.24") as err:
        install.run(inv, state=state, known_hosts=tmp_path / "known_hosts", out=io.StringIO())
    assert f"{inv}:" in str(err.value)
    assert not (state / "secrets.json").exists() and not (state / "pki").exists()


# -- a Debian node, scripted ----------------------------------------------------------------------
class FakeDebian(ScriptedNode):
    """Enough of a Debian node for the package path: dpkg's database, one repository, files."""

    def __init__(self, repo: str = MADISON, installed: Mapping[str, str] | None = None) -> None:
        super().__init__()
        self.repo = repo
        self.installed = dict(installed or {})
        self.held: set[str] = set()

    def _answer(self, argv: list[str]) -> tuple[int, str, str]:
        match argv:
            case ["dpkg-query", "-W", "-f", fmt, *names]:
                rows = [(n, self.installed[n]) for n in names if n in self.installed]
                if fmt.startswith("${db:Status-Status} "):
                    return (0, f"installed {rows[0][1]}", "") if rows else (1, "", "no packages found")
                return 0, "".join(f"{n} installed\n" for n, _ in rows), ""
            case ["apt-cache", "madison", "kubeadm"]:
                return 0, self.repo, ""
            case ["apt-get", "install", *args]:
                for a in args:
                    if not a.startswith("-"):
                        name, _, version = a.partition("=")
                        self.installed[name] = version or "1.0-1.1"
                return 0, "", ""
            case ["apt-mark", "hold", *names]:
                self.held |= set(names)
                return 0, "", ""
            case ["apt-get", "update", *_]:
                return 0, "", ""
        return super()._answer(argv)


PREREQS = {"curl": "8.0-1", "ca-certificates": "2023"}


def test_packages_install_at_exactly_kube_version_and_are_held(tmp_path: Path) -> None:
    node = FakeDebian(installed=PREREQS)
    packages.install(Context(), node, NodeFacts(), topo(tmp_path, kube_version="1.29.3"))
    assert {n: node.installed[n] for n in packages.PINNED} == dict.fromkeys(packages.PINNED, "1.29.3-1.1")
    assert {"cri-tools", "kubernetes-cni"} <= set(node.installed)
    assert node.held == set(packages.PACKAGES)
    assert node.files[packages.DEB_KEY] == b"key from https://pkgs.k8s.io/core:/stable:/v1.29/deb/Release.key"
    assert b"/v1.29/deb/ /" in node.files[packages.DEB_LIST]
    # A second run finds everything in place and changes nothing.
    node.log.clear()
    packages.install(Context(), node, NodeFacts(), topo(tmp_path, kube_version="1.29.3"))
    assert not [c for c in node.log if c.startswith(("apt-get", "curl", "apt-mark"))]


def test_the_repository_key_comes_through_the_inventorys_proxy_unless_no_proxy_names_it(tmp_path: Path) -> None:
    # The same proxy the etcd release download takes (nodeprep.render.proxy_for): https_proxy for an https URL.
    node = FakeDebian(installed=PREREQS)
    packages.install(Context(), node, NodeFacts(), topo(tmp_path, kube_version="1.29.3",
                                                        https_proxy="http://10.0.0.1:3128"))
    assert node.ran("curl") == ["curl -fsSL --retry 3 --proxy http://10.0.0.1:3128 -o "
                                f"{packages.DEB_KEY} https://pkgs.k8s.io/core:/stable:/v1.29/deb/Release.key"]
    direct = FakeDebian(installed=PREREQS)
    packages.install(Context(), direct, NodeFacts(), topo(tmp_path, kube_version="1.29.3",
                                                          https_proxy="http://10.0.0.1:3128", no_proxy="pkgs.k8s.io"))
    assert [c for c in direct.ran("curl") if "--proxy" in c] == [] and len(direct.ran("curl")) == 1


def test_a_version_the_repository_lacks_is_named(tmp_path: Path) -> None:
    node = FakeDebian(installed=PREREQS)
    with pytest.raises(packages.PackageError, match=r"no kubeadm 1\.29\.9 \(it has 1\.29\.4-2\.1, 1\.29\.3-1\.1"):
        packages.install(Context(), node, NodeFacts(), topo(tmp_path, kube_version="1.29.9"))


def test_a_node_on_another_version_is_not_upgraded(tmp_path: Path) -> None:
    node = FakeDebian(installed={**PREREQS, "kubeadm": "1.28.2-1.1", "kubelet": "1.28.2-1.1"})
    with pytest.raises(ConfigError,
                       match=r"kube_version: kube_version=1\.29\.3 but the node has kubeadm 1\.28\.2.*kha upgrade"):
        packages.install(Context(), node, NodeFacts(), topo(tmp_path, kube_version="1.29.3"))
    assert not [c for c in node.log if c.startswith("apt-get")]


def test_dry_run_says_what_it_would_install(tmp_path: Path) -> None:
    node = FakeDebian(installed=PREREQS)
    ctx = Context(dry_run=True)
    packages.install(ctx, node, NodeFacts(), topo(tmp_path, kube_version="1.29.3"))
    said = [str(w) for w in ctx.report]
    assert any("fetch the repository key" in w for w in said)
    assert any("kubelet kubeadm kubectl cri-tools kubernetes-cni (1.29.3)" in w for w in said)
    assert node.installed == PREREQS and packages.DEB_KEY not in node.files


def test_render_shows_the_release_and_the_cni_manifest_an_install_would_use(tmp_path: Path) -> None:
    from kha import cli  # noqa: PLC0415

    inv = inventory(tmp_path, "m-master", kube_version="1.29.3", network_plugin="flannel")
    state = tmp_path / "state"
    assert cli.main(["render", "-i", str(inv), "--dir", str(tmp_path / "out"), "--state", str(state)]) == 0
    nodes = tmp_path / "out" / "nodes"
    t = topology.load(inv)
    manifests = sorted(p.relative_to(nodes).parts[0] for p in nodes.glob("*/etc/kha/cni/kube-flannel.yaml"))
    assert manifests == [t.first_master.name]
    unit = (nodes / t.first_master.name / "etc/systemd/system/kubelet.service").read_text()
    assert "ExecStart=/usr/bin/kubelet" in unit  # upstream's packages' place, not the bundle's

    bundle = make_bundle(tmp_path / "bundle")
    offline = inventory(tmp_path, "m-master")
    assert cli.main(["render", "-i", str(offline), "--dir", str(tmp_path / "off"), "--state", str(state),
                     "--bundle", str(bundle)]) == 0
    assert not list((tmp_path / "off" / "nodes").glob("*/etc/kha/cni/*"))
    unit = (tmp_path / "off" / "nodes" / t.first_master.name / "etc/systemd/system/kubelet.service").read_text()
    assert "ExecStart=/usr/local/bin/kubelet" in unit



def test_a_stale_package_index_is_refreshed_once(tmp_path: Path) -> None:
    # An earlier run wrote the list file and stopped before `apt-get update`: the index lacks the repo.
    t = topo(tmp_path, kube_version="1.29.3")
    node = FakeDebian(repo="", installed=PREREQS)
    node.files[packages.DEB_KEY] = b"key"
    node.files[packages.DEB_LIST] = packages.repo_file(t.settings.kube_version, OSFamily.DEBIAN).content
    real_answer = node._answer

    def answer(argv: list[str]) -> tuple[int, str, str]:
        if argv[-2:] == ["update", "-q"]:
            node.repo = MADISON  # the update brings the repository's index
        return real_answer(argv)

    node._answer = answer  # type: ignore[method-assign]
    packages.install(Context(), node, NodeFacts(), t)
    assert node.installed["kubeadm"] == "1.29.3-1.1"
    assert sum(c.startswith("apt-get update") for c in node.log) == 1
