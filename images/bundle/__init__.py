"""The offline Kubernetes bundle: binaries, image archives, CNI plugins and a crictl for kubeadm's nodes.

    from images import bundle
    b = bundle.build()                       # kubernetes-1.20.2: cached after the first build (~5–10 min)
    b.binary("kubeadm"), b.image_archives(), b.cni_dir, b.crictl, b.manifest

- ``build(name=DEFAULT_BUNDLE, *, force=False, progress=None, cache=None) -> Bundle``: cached, or built now;
- ``get(name) -> Bundle | None``: the cached bundle for the recipe as it is now, never builds;
- ``list_bundles() -> list[Bundle]``: every complete bundle in the cache;
- ``bundle_recipe(name)``: the recipe, or ``UnknownBundle`` listing the valid names.

Who owns what: recipes and their hash in ``recipe``, the manifest schema in ``core.bundle_manifest`` (the
installer reads the same one), a built bundle and its place in the store (``images.cache``) in ``store``,
the build steps in ``builder`` (apt in ``apt``, Go in ``gotree``, image trees in ``layers``,
docker-archive tarballs in ``dockerarchive``), the crictl shim in ``crictl``/``crictl.sh``, upstream
release artifacts (data only here) in ``upstream``, ``kha bundle`` in ``cli``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from core.bundle_manifest import BundleManifest, ManifestError
from images.bundle.builder import build_bundle
from images.bundle.errors import UnknownBundle
from images.bundle.recipe import (
    BUNDLE_RECIPES,
    DEFAULT_BUNDLE,
    BundleRecipe,
    DebianSourceRecipe,
    UpstreamRecipe,
    bundle_hash,
    bundle_recipe,
)
from images.bundle.store import Bundle, BundleBuilder, BundleStore
from images.bundle.upstream import check_upstream
from images.recipes import DebootstrapRecipe
from images.run import Progress
from images.sources import APT_ETC, resolve_mirrors

__all__ = [
    "BUNDLE_RECIPES",
    "DEFAULT_BUNDLE",
    "Bundle",
    "BundleManifest",
    "BundleRecipe",
    "DebianSourceRecipe",
    "ManifestError",
    "UnknownBundle",
    "UpstreamRecipe",
    "build",
    "builder_for",
    "bundle_hash",
    "bundle_recipe",
    "get",
    "list_bundles",
]


def builder_for(
    r: BundleRecipe, store: BundleStore, env: Mapping[str, str] | None = None, apt_etc: Path = APT_ETC
) -> BundleBuilder:
    """The function that builds ``r`` here. Raises at once (``NeedsDownload``, ``SourceConfigError``) when
    its source is not reachable from this machine, before any work or traffic."""
    env = os.environ if env is None else env
    if isinstance(r, UpstreamRecipe):
        check_upstream(r, env, apt_etc)  # always raises: NeedsDownload here, "not written yet" elsewhere
    assert isinstance(r, DebianSourceRecipe)
    # The mirror choice (KHA_DEBIAN_MIRROR, KHA_OFFLINE, the apt configuration) is the base images' own,
    # asked for the same Debian suite.
    probe = DebootstrapRecipe(
        name=r.name, description=r.description, distro="debian", suite=r.source.suite, packages=()
    )
    mirrors = resolve_mirrors(probe, env, apt_etc)

    def _build(rec: BundleRecipe, work: Path, progress: Progress | None) -> BundleManifest:
        assert isinstance(rec, DebianSourceRecipe)
        return build_bundle(
            rec,
            work,
            progress,
            mirrors=mirrors,
            apt_dir=store.apt_dir,
            downloads=store.downloads_dir,
            go_cache=store.go_cache,
        )

    return _build


def build(
    name: str = DEFAULT_BUNDLE, *, force: bool = False, progress: Progress | None = None, cache: Path | None = None
) -> Bundle:
    """The bundle for recipe ``name``: from the cache, or built now (``force``: rebuilt)."""
    r = bundle_recipe(name)
    store = BundleStore(cache)
    return store.obtain(r, lambda: builder_for(r, store), force=force, progress=progress)


def get(name: str = DEFAULT_BUNDLE, *, cache: Path | None = None) -> Bundle | None:
    """The cached bundle for the recipe as it is now, or ``None`` (never builds)."""
    return BundleStore(cache).lookup(bundle_recipe(name))


def list_bundles(*, cache: Path | None = None) -> list[Bundle]:
    """Every complete bundle in the cache (older recipe versions included)."""
    return BundleStore(cache).list()
