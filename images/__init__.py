"""Base images for the harness: a rootfs directory (libvirt-LXC), a qcow2 + kernel + initrd (qemu), and
vendor cloud images (a verified qcow2 that boots with its own bootloader; qemu only).

    import images
    img = images.build("debian-12")          # cached after the first build
    img.rootfs, img.qcow2, img.kernel, img.initrd, img.kernel_cmdline
    cloud = images.build_cloud("rocky-9")    # downloaded and checked against the recipe's pinned sha256
    cloud.qcow2, cloud.boot, cloud.login_user

- ``build(name, *, force=False, progress=None) -> Image``: the cached image, or a fresh build;
- ``get(name) -> Image | None``: the cached image for the recipe as it is now, without building (``None``
  for a cloud-image recipe: see ``get_cloud``);
- ``list_images() -> list[Image]``: every complete built image in the cache;
- ``build_cloud(name)``, ``get_cloud(name)``, ``list_cloud_images()``: the same for cloud images;
- ``recipe(name)``: the recipe, or ``UnknownRecipe`` listing the valid names.

Recipes live in ``images.recipes``, an image's files and manifest in ``images.image``, the store every
built artefact lives in (base images, bundles, test images) in ``images.cache``, mirror choice and the
"needs a download" decision in ``images.sources``, the mmdebstrap build in ``images.debootstrap``, the
download of a cloud image in ``images.cloudimage``, a cloud disk made from a built image in
``images.clouddisk``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import overload

from images import cloudimage
from images.cloudimage import CloudImage
from images.debootstrap import build_image
from images.errors import (
    BuildError,
    DigestMismatch,
    ImageError,
    NeedsDownload,
    SourceConfigError,
    UnknownRecipe,
    UnpinnedDigest,
)
from images.image import Builder, BuildInfo, Image, ImageStore
from images.recipes import DEFAULT_RECIPE, RECIPES, CloudImageRecipe, DebootstrapRecipe, Recipe, recipe
from images.run import Progress
from images.sources import APT_ETC, check_source

__all__ = [
    "DEFAULT_RECIPE",
    "RECIPES",
    "BuildError",
    "CloudImage",
    "DigestMismatch",
    "Image",
    "ImageError",
    "NeedsDownload",
    "SourceConfigError",
    "UnknownRecipe",
    "UnpinnedDigest",
    "build",
    "build_cloud",
    "builder_for",
    "get",
    "get_cloud",
    "list_cloud_images",
    "list_images",
    "recipe",
]


@overload
def builder_for(r: DebootstrapRecipe, env: Mapping[str, str] | None = None, apt_etc: Path = APT_ETC) -> Builder: ...
@overload
def builder_for(r: CloudImageRecipe, env: Mapping[str, str] | None = None,
                apt_etc: Path = APT_ETC) -> cloudimage.Builder: ...
@overload
def builder_for(r: Recipe, env: Mapping[str, str] | None = None,
                apt_etc: Path = APT_ETC) -> Builder | cloudimage.Builder: ...
def builder_for(r: Recipe, env: Mapping[str, str] | None = None,
                apt_etc: Path = APT_ETC) -> Builder | cloudimage.Builder:
    """The function that builds (or downloads) ``r`` here. Raises at once (``NeedsDownload``,
    ``SourceConfigError``, ``UnpinnedDigest``) when it cannot be made from this machine, before any work
    or traffic."""
    env = os.environ if env is None else env
    if isinstance(r, CloudImageRecipe):
        return cloudimage.builder_for(r, env, apt_etc)
    mirrors = check_source(r, env, apt_etc)
    assert mirrors is not None

    def _build(rec: Recipe, work: Path, progress: Progress | None) -> BuildInfo:
        if not isinstance(rec, DebootstrapRecipe):
            raise ImageError(f"{rec.name}: not a debootstrap recipe")
        return build_image(rec, work, progress, mirrors=mirrors)

    return _build


def build(
    recipe_name: str = DEFAULT_RECIPE, *, force: bool = False, progress: Progress | None = None,
    cache: Path | None = None,
) -> Image:
    """The image for ``recipe_name``: from the cache, or built now (``force``: rebuilt)."""
    r = recipe(recipe_name)
    if isinstance(r, CloudImageRecipe):
        raise ImageError(f"{r.name} is a cloud image (a vendor disk: no rootfs, kernel or initrd); "
                         f"images.build_cloud({r.name!r}) or `kha image build {r.name}` downloads it")
    return ImageStore(cache).obtain(r, lambda: builder_for(r), force=force, progress=progress)


def build_cloud(recipe_name: str, *, force: bool = False, progress: Progress | None = None,
                cache: Path | None = None) -> CloudImage:
    """The verified cloud image for ``recipe_name``: from the cache, or downloaded now."""
    r = recipe(recipe_name)
    if not isinstance(r, CloudImageRecipe):
        raise ImageError(f"{r.name} is not a cloud image; images.build({r.name!r}) builds it")
    return cloudimage.obtain(r, force=force, progress=progress, cache=cache)


def get_cloud(recipe_name: str, *, cache: Path | None = None) -> CloudImage | None:
    """The cached cloud image for the recipe as it is now, or ``None`` (never downloads)."""
    r = recipe(recipe_name)
    return cloudimage.lookup(r, cache=cache) if isinstance(r, CloudImageRecipe) else None


def list_cloud_images(*, cache: Path | None = None) -> list[CloudImage]:
    """Every complete cloud image in the cache (older recipe versions included)."""
    return cloudimage.list_cloud_images(cache=cache)


def get(recipe_name: str, *, cache: Path | None = None) -> Image | None:
    """The cached image for the recipe as it is now, or ``None`` (never builds)."""
    return ImageStore(cache).lookup(recipe(recipe_name))


def list_images(*, cache: Path | None = None) -> list[Image]:
    """Every complete image in the cache (older recipe versions included)."""
    return ImageStore(cache).list()
