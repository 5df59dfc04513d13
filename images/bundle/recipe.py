"""Bundle recipes: what goes into an offline Kubernetes bundle, as frozen data, and the hash that names a build.

Two kinds:

- ``DebianSourceRecipe``: built here from Debian's ``kubernetes`` source package (it carries the whole tree
  with ``vendor/``) with Debian's Go; the default, and the only kind this machine can build;
- ``UpstreamRecipe``: the release artifacts on dl.k8s.io (binaries, image archives) plus crictl and the CNI
  plugins from GitHub, for machines with internet. Data only here: building it needs a download, and
  ``images.bundle.build`` fails fast with ``NeedsDownload`` before any traffic (see ``images.sources``).

Like base images (``images.recipes``), the hash covers everything that decides the bundle's content plus
``BUNDLE_BUILDER_VERSION``; where the bytes come from (which Debian mirror) is machine configuration and is
recorded in the manifest, not hashed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Literal

from images.bundle.crictl import shim_text
from images.bundle.errors import UnknownBundle
from images.cache import digest
from images.recipes import named

# Bump when the builder changes what lands in a bundle without a recipe field changing.
BUNDLE_BUILDER_VERSION = "1"

# kubeadm 1.20's control-plane components, kubelet and kubectl: what `kubeadm init|join` needs on a node.
COMPONENTS: tuple[str, ...] = (
    "kubeadm",
    "kubelet",
    "kubectl",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kube-proxy",
)

# What the static pods and the kube-proxy DaemonSet of kubeadm 1.20 run. kubeadm writes `command:
# [kube-apiserver, ...]` (a bare name, found through PATH) and `/usr/local/bin/kube-proxy`; upstream's
# images put the binaries in /usr/local/bin too (build/lib/release.sh, "COPY ... /usr/local/bin/").
IMAGE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@dataclass(frozen=True)
class DebianSource:
    """A Debian source package, pinned to one version so the hash names exactly one tree."""

    package: str = "kubernetes"
    # 1.20.5+really1.20.2: Debian reverted 1.20.5 to 1.20.2 (bookworm's point releases carry deb12uN).
    version: str = "1.20.5+really1.20.2-1.1+deb12u1"
    suite: str = "bookworm"
    component: str = "main"


@dataclass(frozen=True)
class VersionStamp:
    """The ``-X`` linker stamps hack/lib/version.sh would set from git; a tarball has no git to ask.

    ``gitCommit`` is not stamped: the GitHub archive Debian's orig tarball comes from already carries the
    v1.20.2 commit in component-base/version/base.go (export-subst).
    """

    git_version: str = "v1.20.2"
    git_major: str = "1"
    git_minor: str = "20"
    git_tree_state: str = "archive"
    # The v1.20.2 tag's date: a fixed date keeps builds reproducible (no `date` at build time).
    build_date: str = "2021-01-13T00:00:00Z"
    # Both version packages, as in kube::version::ldflags (client-go's feeds `kubectl version`'s client).
    packages: tuple[str, ...] = (
        "k8s.io/kubernetes/vendor/k8s.io/client-go/pkg/version",
        "k8s.io/kubernetes/vendor/k8s.io/component-base/version",
    )

    def ldflags(self) -> tuple[str, ...]:
        values = (
            ("gitVersion", self.git_version),
            ("gitMajor", self.git_major),
            ("gitMinor", self.git_minor),
            ("gitTreeState", self.git_tree_state),
            ("buildDate", self.build_date),
        )
        return tuple(f"-X {pkg}.{key}={value}" for pkg in self.packages for key, value in values)


@dataclass(frozen=True)
class SourcePatches:
    """What the builder changes in the Debian tree before compiling (see images.bundle.gotree)."""

    # vendor/github.com/modern-go/reflect2 1.0.1 makes every component panic on JSON maps under Go 1.18+
    # (https://github.com/modern-go/reflect2/issues/23); 1.0.2 comes from this Debian package.
    reflect2_package: str = "golang-github-modern-go-reflect2-dev"
    reflect2_version: str = "1.0.2"
    # openapi-gen over every `+k8s:openapi-gen=` package, staging/ named as vendor/ (Makefile.generated_files);
    # a build below these sizes is the near-empty file that makes kube-apiserver crash-loop.
    openapi_min_bytes: int = 2_000_000
    openapi_min_schemas: int = 900


@dataclass(frozen=True)
class ContainerImage:
    """One docker-archive image: a single layer with a binary (and, for kube-proxy, Debian packages)."""

    name: str  # repository base name: kube-apiserver, pause, ...
    tag: str
    binary: str  # a component from bin/, or "pause"
    binary_path: str  # where the binary lands in the image
    entrypoint: tuple[str, ...]
    # Debian binary packages unpacked (dpkg-deb -x) into the layer, and symlinks made afterwards:
    # dpkg-deb -x runs no maintainer scripts, so update-alternatives' links have to be made here.
    debs: tuple[str, ...] = ()
    links: tuple[tuple[str, str], ...] = ()
    # Paths (globs, relative to the image root) removed after unpacking: what the packages ship that
    # nothing in the image reads. /usr/share/doc keeps only the copyright files, always.
    prune: tuple[str, ...] = ()
    # Commands run inside the finished layer (chroot) at build time: proof that the packages' shared
    # libraries are all there.
    checks: tuple[tuple[str, ...], ...] = ()


# kube-proxy (iptables mode) execs iptables, ip6tables, their -save/-restore (pkg/util/iptables) and
# conntrack (pkg/util/conntrack, to clear stale UDP entries). The closure of their Depends in bookworm,
# nothing more: no shell, no ipset (only the IPVS mode needs it), no kmod (the node loads modules).
KUBE_PROXY_DEBS: tuple[str, ...] = (
    "libc6",
    "libgcc-s1",
    "iptables",
    "libip4tc2",
    "libip6tc2",
    "libxtables12",
    "libmnl0",
    "libnetfilter-conntrack3",
    "libnfnetlink0",
    "libnftnl11",
    "netbase",  # /etc/protocols and /etc/services, read by iptables for `-p` and port names
    "conntrack",
)

# gconv: iconv modules (8 MB of libc6) that neither iptables nor conntrack load; docs and translations.
KUBE_PROXY_PRUNE: tuple[str, ...] = (
    "usr/lib/x86_64-linux-gnu/gconv",
    "usr/share/man",
    "usr/share/info",
    "usr/share/locale",
    "usr/share/lintian",
    "usr/share/bug",
)

# The nft backend, as Debian 12's update-alternatives sets it on the nodes: kube-proxy must write rules
# with the same backend as kubelet on the host, or the two sets of chains never meet. (Upstream's image
# guesses the host's mode with iptables-wrapper; our nodes are always Debian's default.)
_XTABLES = "xtables-nft-multi"
KUBE_PROXY_LINKS: tuple[tuple[str, str], ...] = tuple(
    (f"/usr/sbin/{tool}", _XTABLES)
    for tool in (
        "iptables",
        "iptables-save",
        "iptables-restore",
        "ip6tables",
        "ip6tables-save",
        "ip6tables-restore",
    )
)


def _control_plane(name: str, version: str) -> ContainerImage:
    return ContainerImage(
        name=name,
        tag=version,
        binary=name,
        binary_path=f"/usr/local/bin/{name}",
        entrypoint=(f"/usr/local/bin/{name}",),
    )


def default_images(version: str, pause_tag: str) -> tuple[ContainerImage, ...]:
    return (
        _control_plane("kube-apiserver", version),
        _control_plane("kube-controller-manager", version),
        _control_plane("kube-scheduler", version),
        ContainerImage(
            name="kube-proxy",
            tag=version,
            binary="kube-proxy",
            binary_path="/usr/local/bin/kube-proxy",
            entrypoint=("/usr/local/bin/kube-proxy",),
            debs=KUBE_PROXY_DEBS,
            links=KUBE_PROXY_LINKS,
            prune=KUBE_PROXY_PRUNE,
            checks=(
                ("/usr/sbin/iptables", "--version"),
                ("/usr/sbin/ip6tables-restore", "--version"),
                ("/usr/sbin/iptables-save", "--version"),
                ("/usr/sbin/conntrack", "--version"),
            ),
        ),
        # build/pause/Dockerfile: the static binary as /pause, nothing else.
        ContainerImage(name="pause", tag=pause_tag, binary="pause", binary_path="/pause", entrypoint=("/pause",)),
    )


@dataclass(frozen=True)
class DebianSourceRecipe:
    """A bundle compiled here from a Debian source package (see the module docstring)."""

    name: str
    description: str
    kubernetes_version: str
    source: DebianSource
    components: tuple[str, ...] = COMPONENTS
    stamp: VersionStamp = VersionStamp()
    patches: SourcePatches = SourcePatches()
    # The names kubeadm 1.20 asks the runtime for (`kubeadm config images list`): the images are tagged
    # with exactly these, so no `imageRepository` override is needed. etcd (external here) and CoreDNS
    # (no offline source) are not built.
    image_repository: str = "k8s.gcr.io"
    pause_tag: str = "3.2"  # cmd/kubeadm/app/constants/constants_unix.go PauseVersion
    images: tuple[ContainerImage, ...] = ()
    not_built: tuple[tuple[str, str], ...] = (
        ("etcd", "the installer runs an external etcd from Debian's etcd-server"),
        ("coredns", "no offline source: skip kubeadm's addon/coredns phase"),
    )
    # Go: GOPATH mode (GO111MODULE=off), static (CGO_ENABLED=0, as debian/rules), stripped.
    go_ldflags: tuple[str, ...] = ("-s", "-w", "-buildid=")
    # build/pause/Makefile's CFLAGS (the VERSION names our build, not upstream's image tag).
    pause_cflags: tuple[str, ...] = ("-Os", "-Wall", "-Werror", "-static", "-DVERSION=v3.2-kha")
    # The node image has these in /usr/lib/cni already (images.recipes); the bundle carries the same
    # Debian binaries so a node without them (or a real machine) gets them from one place.
    cni_package: str = "containernetworking-plugins"
    cni_plugins: tuple[str, ...] = ("bridge", "host-local", "loopback", "portmap")
    kind: Literal["debian-source"] = field(default="debian-source")

    def image_ref(self, image: ContainerImage) -> str:
        return f"{self.image_repository}/{image.name}:{image.tag}"


@dataclass(frozen=True)
class UpstreamRecipe:
    """Upstream release artifacts, for machines with internet. Data only here (see the module docstring).

    dl.k8s.io serves every binary and the control-plane image archives (docker-archive tarballs) under
    ``release/VERSION/bin/linux/ARCH/``, each with a ``.sha256`` next to it. pause is only on the registry.
    The digests are not pinned: nobody could fetch them from a machine that reaches dl.k8s.io; a builder
    must check each file against its ``.sha256`` and refuse a mismatch.
    """

    name: str
    description: str
    kubernetes_version: str
    base_url: str = "https://dl.k8s.io/release"
    arch: str = "amd64"
    components: tuple[str, ...] = COMPONENTS
    image_names: tuple[str, ...] = ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kube-proxy")
    image_repository: str = "k8s.gcr.io"
    pause_image: str = "k8s.gcr.io/pause:3.2"
    crictl_url: str = (
        "https://github.com/kubernetes-sigs/cri-tools/releases/download/v1.20.0/crictl-v1.20.0-linux-amd64.tar.gz"
    )
    cni_url: str = (
        "https://github.com/containernetworking/plugins/releases/download/v0.8.7/cni-plugins-linux-amd64-v0.8.7.tgz"
    )
    kind: Literal["upstream"] = field(default="upstream")

    def release_url(self, filename: str) -> str:
        return f"{self.base_url}/{self.kubernetes_version}/bin/linux/{self.arch}/{filename}"

    def urls(self) -> tuple[str, ...]:
        """Every URL a build would download (the first one decides "needs a download")."""
        return (
            *(self.release_url(c) for c in self.components),
            *(self.release_url(f"{i}.tar") for i in self.image_names),
            self.crictl_url,
            self.cni_url,
        )


BundleRecipe = DebianSourceRecipe | UpstreamRecipe


def bundle_hash(r: BundleRecipe) -> str:
    """12 hex digits over the whole recipe and the builder version, as base images are named. The crictl shim
    ships in every bundle as it is in this tree: its text counts as part of the builder (a fixed shim used
    to leave the old one in the cached bundle)."""
    shim = hashlib.sha256(shim_text().encode()).hexdigest()[:12]
    return digest("bundle_builder_version", f"{BUNDLE_BUILDER_VERSION}+crictl.{shim}", r)


def recipe_doc(r: BundleRecipe) -> dict[str, Any]:
    """The recipe as the manifest stores it: plain JSON values (tuples become lists)."""
    doc: dict[str, Any] = json.loads(json.dumps(dataclasses.asdict(r)))
    return doc


def _debian_1_20_2() -> DebianSourceRecipe:
    return DebianSourceRecipe(
        name="kubernetes-1.20.2",
        description="Kubernetes v1.20.2 from Debian 12's source package, built offline with Debian's Go 1.19",
        kubernetes_version="v1.20.2",
        source=DebianSource(),
        images=default_images("v1.20.2", "3.2"),
    )


DEFAULT_BUNDLE = "kubernetes-1.20.2"
BUNDLE_RECIPES: dict[str, BundleRecipe] = {
    r.name: r
    for r in (
        _debian_1_20_2(),
        UpstreamRecipe(
            name="kubernetes-1.20.2-upstream",
            description="Kubernetes v1.20.2 release artifacts from dl.k8s.io (needs internet)",
            kubernetes_version="v1.20.2",
        ),
    )
}


def bundle_recipe(name: str) -> BundleRecipe:
    """The bundle recipe called ``name``; ``UnknownBundle`` (listing the valid names) otherwise."""
    return named(BUNDLE_RECIPES, name, UnknownBundle)
