"""``kha bundle build|list|show``: wired into the main CLI with ``add_parser`` (as ``images.cli``).

Each handler returns the exit code; a failure is printed once, here, as a ✗ line (core.progress).
"""

from __future__ import annotations

import argparse
import sys
import time

from core.bundle_manifest import BundleManifest
from core.errors import KhaError
from core.progress import line
from images import bundle
from images.bundle.recipe import BUNDLE_RECIPES, DEFAULT_BUNDLE, UpstreamRecipe, bundle_hash, bundle_recipe
from images.bundle.upstream import upstream_manifest
from images.cli import build_or_reuse, list_builds


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> argparse.ArgumentParser:
    """Add ``bundle`` (``build``, ``list``, ``show``) to ``subparsers``; handlers are in ``args.handler``."""
    parser = subparsers.add_parser("bundle", help="build and show the offline Kubernetes bundle (binaries, images)")
    sub = parser.add_subparsers(dest="bundle_command", metavar="{build,list,show}", required=True)
    names = ", ".join(BUNDLE_RECIPES)

    build = sub.add_parser("build", help="build a bundle (or reuse the cached one)")
    build.add_argument("name", nargs="?", default=DEFAULT_BUNDLE, help=f"recipe (default {DEFAULT_BUNDLE}): {names}")
    build.add_argument("--force", action="store_true", help="rebuild even when the bundle is cached")
    build.set_defaults(handler=cmd_build)

    listing = sub.add_parser("list", help="list the bundle recipes and the bundles in the cache")
    listing.set_defaults(handler=cmd_list)

    show = sub.add_parser("show", help="print a bundle's manifest summary (upstream recipes: what they would fetch)")
    show.add_argument("name", nargs="?", default=DEFAULT_BUNDLE, help=f"recipe (default {DEFAULT_BUNDLE}): {names}")
    show.add_argument("--verify", action="store_true", help="check every file's size and sha256 against the manifest")
    show.set_defaults(handler=cmd_show)
    return parser


def cmd_build(args: argparse.Namespace) -> int:
    return build_or_reuse("bundle", args.name, force=args.force, get=bundle.get, build=bundle.build)


def cmd_list(args: argparse.Namespace) -> int:
    current = {name: bundle_hash(r) for name, r in BUNDLE_RECIPES.items()}
    return list_builds(current, bundle.list_bundles(), _bundle_line, _absent)


def _absent(name: str, digest: str) -> str:
    if isinstance(BUNDLE_RECIPES[name], UpstreamRecipe):
        return f"  {name:<28} {digest}  needs a download (dl.k8s.io, github.com)"
    return f"  {name:<28} {digest}  not built"


def cmd_show(args: argparse.Namespace) -> int:
    start = time.monotonic()
    try:
        r = bundle_recipe(args.name)
        if isinstance(r, UpstreamRecipe):
            _print_manifest(upstream_manifest(r), None)
            return 0
        b = bundle.get(args.name)
        if b is None:
            why = f"not built (kha bundle build {args.name})"
            print(line(False, f"bundle {args.name}", time.monotonic() - start, why), file=sys.stderr)
            return 1
        _print_manifest(b.manifest, str(b.path))
        if args.verify:
            problems = b.manifest.problems(b.path)
            took = time.monotonic() - start
            for p in problems:
                print(f"✗ {p}")
            if problems:
                print(line(False, "verify", took, f"{len(problems)} problems"))
                return 1
            n = len(b.manifest.files) + len(b.manifest.images)
            print(line(True, "verify", took, f"{n} files match their sha256"))
    except KhaError as exc:
        print(line(False, f"bundle {args.name}", time.monotonic() - start, str(exc)), file=sys.stderr)
        return 1
    return 0


def _print_manifest(m: BundleManifest, path: str | None) -> None:
    print(f"{m.name} {m.hash}  Kubernetes {m.kubernetes_version}  {path or '(not downloaded)'}")
    print(f"  source: {m.source.type} {m.source.name} {m.source.version} from {m.source.origin}")
    if m.build is not None:
        b = m.build
        print(
            f"  built {m.created} in {b.seconds:.0f}s (go build {b.go_build_seconds:.0f}s, "
            f"{'warm' if b.go_cache_warm else 'cold'} GOCACHE) with {b.go_version}; "
            f"openapi {b.openapi_bytes / 1e6:.2f} MB, {b.openapi_schemas} schemas"
        )
    for f in m.files:
        size = f"{f.size / 1e6:8.1f} MB" if f.size is not None else "       ? MB"
        print(f"  {size}  {f.path:<36} {(f.sha256 or '')[:12] or f.url}")
    for i in m.images:
        size = f"{i.size / 1e6:8.1f} MB" if i.size is not None else "       ? MB"
        where = i.archive or "registry only"
        print(f"  {size}  {i.ref:<48} {where}  {(i.sha256 or '')[:12] or i.url or ''}")
    print(f"  cni: {', '.join(m.cni.plugins)} in {m.cni.dir}/ from {m.cni.source}")
    print(f"  crictl: {m.crictl.path} ({m.crictl.kind}) {m.crictl.note}")
    for name, why in m.not_built:
        print(f"  not built: {name}: {why}")


def _bundle_line(b: bundle.Bundle, note: str) -> None:
    total = sum(f.size or 0 for f in b.manifest.files) + sum(i.size or 0 for i in b.manifest.images)
    secs = f"{b.manifest.build.seconds:.0f}s" if b.manifest.build else "-"
    print(f"✓ {b.name:<28} {b.digest}  {b.manifest.created}  {total / 1e6:.0f} MB  built in {secs}  {b.path}{note}")

