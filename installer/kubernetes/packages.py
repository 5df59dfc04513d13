"""Kubernetes from upstream's package repositories (pkgs.k8s.io), for nodes with internet.

The offline path copies kubeadm, kubelet and kubectl out of a bundle; this one adds the repository of
the inventory's minor version on each node, installs kubelet, kubeadm and kubectl at exactly
``kube_version`` (cri-tools and kubernetes-cni at the repository's own), and holds them: an unattended
upgrade must not move a control plane. The kubelet unit stays kha's (``bin_dir`` /usr/bin), so every
phase after this one is the same for both sources.

https://kubernetes.io/docs/setup/production-environment/tools/kubeadm/install-kubeadm/ — the
community repositories start at v1.24; the old apt.kubernetes.io and yum.kubernetes.io are gone
(https://kubernetes.io/blog/2023/08/31/legacy-package-repository-deprecation/), so older versions
come from an offline bundle.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from installer import nodeops
from installer.errors import ConfigError, PackageError, Problem
from installer.facts import NodeFacts, OSFamily
from installer.files import NodeFile
from installer.kubernetes.render import Release
from installer.nodeprep import render as prep
from installer.phases import Context
from installer.remote import Transport
from installer.settings import KubeVersion, Settings
from installer.topology import Topology

#: The first minor version pkgs.k8s.io carries.
FIRST_MINOR = 24
#: Pinned to kube_version; the repository is per minor version, so the rest match it by construction.
PINNED = ("kubelet", "kubeadm", "kubectl")
PACKAGES = (*PINNED, "cri-tools", "kubernetes-cni")
REPO_ID = "kha-kubernetes"
DEB_KEY = "/etc/apt/keyrings/kha-kubernetes.asc"  # apt reads an armored key when the name ends in .asc
DEB_LIST = f"/etc/apt/sources.list.d/{REPO_ID}.list"
RPM_REPO = f"/etc/yum.repos.d/{REPO_ID}.repo"
#: A repository's URL with no inventory to read (kha's defaults).
DEFAULTS = Settings()
#: What fetching the repository key needs on a Debian node.
DEB_PREREQUISITES = ("curl", "ca-certificates")


def release(topo: Topology) -> Release:
    """Upstream's image names for the version; packages put binaries in /usr/bin and CNI plugins in /opt/cni/bin."""
    up = Release.upstream(topo)
    return Release(up.version, up.image_repository, up.pause_tag, bin_dir="/usr/bin", cni_bin_dir="/opt/cni/bin")


def problems(topo: Topology) -> list[Problem]:
    """Why this inventory cannot be installed from the package repositories (empty when it can)."""
    v = topo.settings.kube_version
    line = topo.settings.line("kube_version")
    if v.patch is None:
        return [Problem(topo.source, line, f"kube_version={v}: packages are pinned to an exact version "
                        "(e.g. 1.29.3)", "kube_version")]
    if not v.at_least(1, FIRST_MINOR):
        return [Problem(topo.source, line, f"kube_version={v}: pkgs.k8s.io starts at 1.{FIRST_MINOR}; install "
                        "older versions from an offline bundle (kha bundle build; kha install --bundle DIR)",
                        "kube_version")]
    return []


def repo_url(v: KubeVersion, family: OSFamily, s: Settings = DEFAULTS) -> str:
    """The minor version's repository under ``kube_repo_url`` (pkgs.k8s.io's stable channel, or a mirror)."""
    kind = "deb" if family is OSFamily.DEBIAN else "rpm"
    return f"{s.kube_repo_url}/v{v.major}.{v.minor}/{kind}/"


def repo_file(v: KubeVersion, family: OSFamily, s: Settings = DEFAULTS) -> NodeFile:
    url = repo_url(v, family, s)
    if family is OSFamily.DEBIAN:
        return NodeFile(DEB_LIST, f"# Written by kha: Kubernetes {v.major}.{v.minor} packages\n"
                        f"deb [signed-by={DEB_KEY}] {url} /\n".encode())
    # exclude= keeps a plain `dnf upgrade` away from them; kha installs with --disableexcludes.
    return prep.yum_repo(RPM_REPO, REPO_ID, f"Kubernetes {v.major}.{v.minor}", url, f"{url}repodata/repomd.xml.key",
                         s=s, extra=[("exclude", " ".join(PACKAGES))])


_DEB_VERSION = re.compile(r"^\s*\S+\s*\|\s*(\S+)\s*\|")
_RPM_VERSION = re.compile(r"^(\S+)\.\S+\s+(\S+)\s+\S+")


def available(output: str, family: OSFamily) -> list[str]:
    """Package versions from ``apt-cache madison PKG`` or ``dnf list --showduplicates PKG``, as printed."""
    if family is OSFamily.DEBIAN:
        return [m.group(1) for line in output.splitlines() if (m := _DEB_VERSION.match(line))]
    return [m.group(2) for line in output.splitlines() if (m := _RPM_VERSION.match(line))]


def pick(versions: Iterable[str], version: str) -> str | None:
    """The package version of upstream ``version`` (``1.29.3`` → ``1.29.3-1.1``): its part before the first dash."""
    matching = [v for v in versions if v.split(":")[-1].split("-", 1)[0] == version]
    return matching[0] if matching else None


def _installed(t: Transport, family: OSFamily, name: str) -> str | None:
    if family is OSFamily.DEBIAN:
        r = t.run(["dpkg-query", "-W", "-f", "${db:Status-Status} ${Version}", name], check=False)
        status, _, version = r.stdout.strip().partition(" ")
        return version if r.ok and status == "installed" else None
    r = t.run(["rpm", "-q", "--qf", "%{VERSION}-%{RELEASE}", name], check=False)
    return r.stdout.strip() if r.ok else None


def install(ctx: Context, t: Transport, facts: NodeFacts, topo: Topology) -> None:
    """Add the repository, install kubelet/kubeadm/kubectl at kube_version, hold them. Idempotent."""
    v = topo.settings.kube_version
    wanted = release(topo).version
    family = facts.os_family
    have = {name: _installed(t, family, name) for name in PINNED}
    other = {n: got for n, got in have.items() if got is not None and pick([got], wanted) is None}
    if other:
        # Moving a node to another version is an upgrade (kubeadm upgrade), not an install.
        listed = ", ".join(f"{n} {got}" for n, got in sorted(other.items()))
        raise ConfigError([Problem(topo.source, topo.settings.line("kube_version"),
                                   f"kube_version={wanted} but the node has {listed}; move a running cluster to "
                                   f"another version with `kha upgrade -i INVENTORY --to {wanted}`",
                                   "kube_version")])
    if all(have.values()):
        return
    _install(ctx, t, facts, topo.settings, v, names=PINNED, extra=("cri-tools", "kubernetes-cni"))


def upgrade(ctx: Context, t: Transport, facts: NodeFacts, v: KubeVersion, names: Sequence[str], *,
            s: Settings) -> bool:
    """``names`` (of ``PINNED``) at exactly ``v``, from ``v``'s minor repository (the list file is switched to
    it), held again; False when they already are (a resumed upgrade skips them)."""
    wanted = str(v)
    have = {name: _installed(t, facts.os_family, name) for name in names}
    if all(got is not None and pick([got], wanted) is not None for got in have.values()):
        return False
    _install(ctx, t, facts, s, v, names=names)
    return True


def _install(ctx: Context, t: Transport, facts: NodeFacts, s: Settings, v: KubeVersion, *, names: Sequence[str],
             extra: Sequence[str] = ()) -> None:
    if facts.os_family is OSFamily.DEBIAN:
        _install_deb(ctx, t, facts, s, v, names=names, extra=extra)
    else:
        _install_rpm(ctx, t, s, v, names=names, extra=extra)


def _install_deb(ctx: Context, t: Transport, facts: NodeFacts, s: Settings, v: KubeVersion, *,
                 names: Sequence[str], extra: Sequence[str]) -> None:
    wanted = str(v)
    env = {"DEBIAN_FRONTEND": "noninteractive"}
    nodeops.ensure_packages(ctx, t, facts, DEB_PREREQUISITES)
    if not t.run(["test", "-s", DEB_KEY], check=False).ok and not ctx.would(f"fetch the repository key to {DEB_KEY}"):
        t.run(["install", "-d", "-m", "0755", "/etc/apt/keyrings"], sudo=True)
        key = f"{repo_url(v, OSFamily.DEBIAN, s)}Release.key"
        nodeops.fetch(t, key, DEB_KEY, proxy=prep.proxy_for(s, key), timeout=120)
    updated = False
    if nodeops.sync_files(ctx, t, [repo_file(v, OSFamily.DEBIAN, s)]) and not ctx.would("apt-get update"):
        t.run(["apt-get", "update", "-q"], sudo=True, env=env, timeout=600)
        updated = True
    if ctx.would(f"install {' '.join([*names, *extra])} ({wanted}) and hold them"):
        return

    def offered() -> list[str]:
        return available(t.run(["apt-cache", "madison", "kubeadm"], sudo=True).stdout, OSFamily.DEBIAN)

    versions = offered()
    if pick(versions, wanted) is None and not updated:
        # The list file may be from an earlier run that stopped before its update, or the index old.
        t.run(["apt-get", "update", "-q"], sudo=True, env=env, timeout=600)
        versions = offered()
    exact = pick(versions, wanted)
    if exact is None:
        raise PackageError(f"{repo_url(v, OSFamily.DEBIAN, s)} has no kubeadm {wanted} "
                           f"(it has {', '.join(versions[:5]) or 'nothing'})")
    argv = ["apt-get", "install", "-y", "-q", "--no-install-recommends", "--allow-change-held-packages",
            *(f"{name}={exact}" for name in names), *extra]
    t.run(argv, sudo=True, env=env, timeout=900)
    t.run(["apt-mark", "hold", *names, *extra], sudo=True)


def _install_rpm(ctx: Context, t: Transport, s: Settings, v: KubeVersion, *, names: Sequence[str],
                 extra: Sequence[str]) -> None:
    wanted = str(v)
    nodeops.sync_files(ctx, t, [repo_file(v, OSFamily.REDHAT, s)])
    if ctx.would(f"install {' '.join([*names, *extra])} ({wanted})"):
        return
    out = t.run(["dnf", "list", "--showduplicates", f"--disableexcludes={REPO_ID}", "kubeadm"], sudo=True,
                timeout=600).stdout
    exact = pick(available(out, OSFamily.REDHAT), wanted)
    if exact is None:
        raise PackageError(f"{repo_url(v, OSFamily.REDHAT, s)} has no kubeadm {wanted}")
    t.run(["dnf", "install", "-y", "-q", f"--disableexcludes={REPO_ID}",
           *(f"{name}-{exact}" for name in names), *extra], sudo=True, timeout=900)
