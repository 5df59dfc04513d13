"""Base images for the harness: a rootfs directory (libvirt-LXC), a qcow2 + kernel + initrd (qemu).

    import images
    img = images.build("debian-12")          # cached after the first build
    img.rootfs, img.qcow2, img.kernel, img.initrd, img.kernel_cmdline

- ``build(name, *, force=False, progress=None) -> Image``: the cached image, or a fresh build;
- ``get(name) -> Image | None``: the cached image for the recipe as it is now, without building;
- ``list_images() -> list[Image]``: every complete image in the cache;
- ``recipe(name)``: the recipe, or ``UnknownRecipe`` listing the valid names.

Recipes live in ``images.recipes``, an image's files and manifest in ``images.image``, the store every
built artefact lives in (base images, bundles, test images) in ``images.cache``, mirror choice and the
"needs a download" decision in ``images.sources``, the mmdebstrap build in ``images.debootstrap``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from images.debootstrap import build_image
from images.errors import BuildError, ImageError, NeedsDownload, SourceConfigError, UnknownRecipe
from images.image import Builder, BuildInfo, Image, ImageStore
from images.recipes import DEFAULT_RECIPE, RECIPES, CloudImageRecipe, DebootstrapRecipe, Recipe, recipe
from images.run import Progress
from images.sources import APT_ETC, check_source

__all__ = [
    "DEFAULT_RECIPE",
    "RECIPES",
    "BuildError",
    "Image",
    "ImageError",
    "NeedsDownload",
    "SourceConfigError",
    "UnknownRecipe",
    "build",
    "builder_for",
    "get",
    "list_images",
    "recipe",
]


def builder_for(r: Recipe, env: Mapping[str, str] | None = None, apt_etc: Path = APT_ETC) -> Builder:
    """The function that builds ``r`` here. Raises at once (``NeedsDownload``, ``SourceConfigError``)
    when its source is not reachable from this machine, before any work or traffic."""
    env = os.environ if env is None else env
    mirrors = check_source(r, env, apt_etc)
    if isinstance(r, CloudImageRecipe):
        raise ImageError(
            f"{r.name}: cloud-image recipes are data only; the builder that turns "
            f"{r.url} into a rootfs + qcow2 is not written yet"
        )
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
    return ImageStore(cache).obtain(r, lambda: builder_for(r), force=force, progress=progress)


def get(recipe_name: str, *, cache: Path | None = None) -> Image | None:
    """The cached image for the recipe as it is now, or ``None`` (never builds)."""
    return ImageStore(cache).lookup(recipe(recipe_name))


def list_images(*, cache: Path | None = None) -> list[Image]:
    """Every complete image in the cache (older recipe versions included)."""
    return ImageStore(cache).list()
