"""``kha image build NAME [--force]`` and ``kha image list``: wired into the main CLI with ``add_parser``.

``build`` builds a Debian recipe, or downloads and verifies a cloud-image recipe (``images.cloudimage``).

    sub = parser.add_subparsers(dest="command", required=True)
    images.cli.add_parser(sub)
    args = parser.parse_args(); sys.exit(args.func(args))

Each handler returns the exit code; a failed build is printed once, here, as a ✗ line (core.progress).
``build_or_reuse`` and ``list_builds`` serve ``kha bundle`` too.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TypeVar

import images
from core.errors import KhaError
from core.progress import line
from images.cache import Built
from images.recipes import DEFAULT_RECIPE, RECIPES, CloudImageRecipe, recipe_hash


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> argparse.ArgumentParser:
    """Add ``image`` (with ``build`` and ``list``) to ``subparsers``; handlers are in ``args.handler``."""
    parser = subparsers.add_parser("image", help="build and list the harness's base images")
    sub = parser.add_subparsers(dest="image_command", metavar="{build,list}", required=True)

    build = sub.add_parser("build", help="build an image (or reuse the cached one)")
    build.add_argument(
        "name",
        nargs="?",
        default=DEFAULT_RECIPE,
        help=f"recipe (default {DEFAULT_RECIPE}): {', '.join(RECIPES)}",
    )
    build.add_argument("--force", action="store_true", help="rebuild even when the image is cached")
    build.set_defaults(handler=cmd_build)

    listing = sub.add_parser("list", help="list the recipes and the images in the cache")
    listing.set_defaults(handler=cmd_list)
    return parser


T = TypeVar("T", bound=Built)


def build_or_reuse(kind: str, name: str, *, force: bool, get: Callable[[str], T | None],
                   build: Callable[..., T]) -> int:
    """``kha image|bundle build``: reuse the cached one unless ``force``; one ✓ or ✗ line with seconds."""
    start = time.monotonic()
    try:
        cached = None if force else get(name)
        made = cached or build(name, force=force, progress=step_line)
    except KhaError as exc:
        print(line(False, f"{kind} {name}", time.monotonic() - start, str(exc)), file=sys.stderr)
        # Bad input (an unknown name, an unpinned or mismatching digest) exits 2, a failed build 1.
        return exc.cli_exit_code
    how = "cached" if cached else "built"
    print(line(True, f"{kind} {made.name} {made.digest} {how}", time.monotonic() - start, str(made.path)))
    return 0


def list_builds(current: Mapping[str, str], built: Sequence[T], show: Callable[[T, str], None],
                absent: Callable[[str, str], str]) -> int:
    """``kha image|bundle list``: each recipe's current build (``absent(name, digest)`` when there is none),
    then the builds of older recipe versions."""
    for name, digest in current.items():
        mine = [b for b in built if b.name == name and b.digest == digest]
        if mine:
            show(mine[0], "")
        else:
            print(absent(name, digest))
    for b in built:
        if current.get(b.name) != b.digest:
            show(b, "  (older recipe version)")
    return 0


def cmd_build(args: argparse.Namespace) -> int:
    if args.name in RECIPES and isinstance(RECIPES[args.name], CloudImageRecipe):
        # A cloud image is downloaded and verified, not built: same line, same cache, other store.
        return build_or_reuse("image", args.name, force=args.force, get=images.get_cloud, build=images.build_cloud)
    return build_or_reuse("image", args.name, force=args.force, get=images.get, build=images.build)


def cmd_list(args: argparse.Namespace) -> int:
    current = {name: recipe_hash(r) for name, r in RECIPES.items()}
    built: list[images.Image | images.CloudImage] = [*images.list_images(), *images.list_cloud_images()]
    return list_builds(current, sorted(built, key=lambda b: b.path), _image_line, _absent)


def _absent(name: str, _digest: str) -> str:
    r = RECIPES[name]
    if isinstance(r, CloudImageRecipe) and r.sha256 is None:
        return f"  {name:<20} {'-':<12}  not downloaded (no pinned sha256: needs a machine with internet to pin one)"
    return f"  {name:<20} {'-':<12}  {'not downloaded' if isinstance(r, CloudImageRecipe) else 'not built'}"


def _image_line(img: images.Image | images.CloudImage, note: str) -> None:
    size = img.qcow2.stat().st_size / 1e6 if img.qcow2.exists() else 0.0
    what = f"cloud image ({img.boot})" if isinstance(img, images.CloudImage) else "qcow2"
    print(f"✓ {img.name:<20} {img.digest}  {img.created}  {what} {size:.0f} MB  {img.path}{note}")


def step_line(text: str) -> None:
    print(f"  {text}", file=sys.stderr)
