"""Upstream release artifacts: the bundle manifest they would make, and the "needs a download" decision.

Data only on our machines: every URL is on dl.k8s.io or github.com, neither of which is an apt mirror, so
``check_upstream`` raises ``NeedsDownload`` from configuration alone (``images.sources.reachable_hosts``)
and nothing is sent. On a machine that lists those hosts (``KHA_REACHABLE_HOSTS=dl.k8s.io,github.com``) it
still stops, with "not written yet": the downloader (fetch, check each file against its ``.sha256``,
unpack crictl and the CNI tarball) is the remaining work.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit

from core.bundle_manifest import BundleManifest, Cni, Crictl, FileEntry, ImageEntry, Source
from images.bundle.recipe import UpstreamRecipe, bundle_hash, recipe_doc
from images.errors import ImageError, NeedsDownload
from images.sources import APT_ETC, reachable_hosts

CNI_PLUGINS = ("bridge", "host-local", "loopback", "portmap")


def check_upstream(r: UpstreamRecipe, env: Mapping[str, str], apt_etc: Path = APT_ETC) -> None:
    """``NeedsDownload`` naming the first URL whose host this machine is not configured to reach."""
    hosts = reachable_hosts(env, apt_etc)
    for url in r.urls():
        host = (urlsplit(url).hostname or "").lower()
        if host not in hosts:
            why = (
                "KHA_OFFLINE=1"
                if env.get("KHA_OFFLINE", "").strip().lower() in {"1", "yes", "true"}
                else f"{host} is not an apt mirror of this machine nor listed in KHA_REACHABLE_HOSTS"
            )
            raise NeedsDownload(r.name, url, why)
    raise ImageError(
        f"{r.name}: every host is reachable, but the upstream downloader is not written yet "
        "(the manifest it would fill: images.bundle.upstream.upstream_manifest)"
    )


def upstream_manifest(r: UpstreamRecipe, created: str = "") -> BundleManifest:
    """The manifest of ``r`` before download: every entry with its URL and ``.sha256`` URL, no digest yet."""
    files = tuple(
        FileEntry(
            path=f"bin/{c}",
            sha256=None,
            size=None,
            mode="0755",
            url=r.release_url(c),
            sha256_url=r.release_url(c) + ".sha256",
        )
        for c in r.components
    )
    files += (
        FileEntry(
            path="bin/crictl",
            sha256=None,
            size=None,
            mode="0755",
            url=r.crictl_url,
            sha256_url=r.crictl_url + ".sha256",
        ),
        *(
            FileEntry(
                path=f"cni/{p}", sha256=None, size=None, mode="0755", url=r.cni_url, sha256_url=r.cni_url + ".sha256"
            )
            for p in CNI_PLUGINS
        ),
    )
    images = (
        *(
            ImageEntry(
                ref=f"{r.image_repository}/{name}:{r.kubernetes_version}",
                archive=f"images/{name}.tar",
                sha256=None,
                size=None,
                url=r.release_url(f"{name}.tar"),
                sha256_url=r.release_url(f"{name}.tar") + ".sha256",
            )
            for name in r.image_names
        ),
        ImageEntry(ref=r.pause_image, archive=None, sha256=None, size=None),
    )
    return BundleManifest(
        name=r.name,
        hash=bundle_hash(r),
        kubernetes_version=r.kubernetes_version,
        created=created,
        source=Source(type="upstream", name="kubernetes", version=r.kubernetes_version, origin=r.base_url),
        files=files,
        images=images,
        cni=Cni(dir="cni", plugins=CNI_PLUGINS, source=r.cni_url),
        crictl=Crictl(path="bin/crictl", kind="cri-tools", note=r.crictl_url),
        not_built=(("pause", "registry only: the runtime pulls it"),),
        recipe=recipe_doc(r),
    )
