"""Kubernetes bundle build time: cold and warm (a cache hit).

    .venv/bin/python bench/bench_bundle.py            # the cached bundle's recorded build time + a warm lookup
    .venv/bin/python bench/bench_bundle.py --cold     # a real cold build in a temporary cache (~5–10 min)
    .venv/bin/python bench/bench_bundle.py --cold --warm-go   # ... but reuse the real GOCACHE (recipe change)

Without ``--cold`` nothing is built: it reports ``build.seconds`` from the cached bundle's manifest (failing
when there is none: run ``kha bundle build`` first). ``--cold`` builds in a temporary KHA cache (source
download, Go from scratch) and deletes it afterwards unless ``--keep``; ``--warm-go`` points that build at the
real cache's GOCACHE, which is what a recipe change costs. Needs root and the build packages for ``--cold``.
"""

from __future__ import annotations

import argparse
import logging
import os
import tempfile
import time
from pathlib import Path

from images import bundle
from images.bundle.store import BundleStore
from images.cache import remove_tree, tree_size


def _sizes(b: bundle.Bundle) -> str:
    bins = sum(f.size or 0 for f in b.manifest.files if f.path.startswith("bin/"))
    imgs = sum(i.size or 0 for i in b.manifest.images)
    cni = sum(f.size or 0 for f in b.manifest.files if f.path.startswith("cni/"))
    disk = tree_size(b.path)
    return f"bin {bins / 1e6:.0f} MB, images {imgs / 1e6:.0f} MB, cni {cni / 1e6:.0f} MB, on disk {disk / 1e6:.0f} MB"


def _warm(name: str, cache: Path | None) -> float:
    start = time.monotonic()
    again = bundle.build(name, cache=cache)
    took = time.monotonic() - start
    assert again.manifest.build is not None
    return took


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("name", nargs="?", default=bundle.DEFAULT_BUNDLE)
    parser.add_argument("--cold", action="store_true", help="build from nothing in a temporary cache")
    parser.add_argument("--warm-go", action="store_true", help="with --cold: reuse the real cache's GOCACHE")
    parser.add_argument("--keep", action="store_true", help="keep the temporary cache directory")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    if not args.cold:
        b = bundle.get(args.name)
        if b is None or b.manifest.build is None:
            print(f"✗ {args.name}: not built (kha bundle build {args.name}, or run with --cold)")
            return 1
        warm = _warm(args.name, None)
        facts = b.manifest.build
        kind = "warm-GOCACHE (a recipe change)" if facts.go_cache_warm else "cold"
        print(
            f"{args.name}: recorded {kind} build {facts.seconds:.1f}s (go build {facts.go_build_seconds:.1f}s) "
            f"at {b.manifest.created}; warm (cache hit) {warm * 1000:.1f}ms  [--cold for a fresh cold build]"
        )
        print(f"  {_sizes(b)}")
        return 0

    cache = Path(tempfile.mkdtemp(prefix="kha-bench-bundle-"))
    try:
        if args.warm_go:
            real = BundleStore().go_cache
            mine = BundleStore(cache).go_cache
            mine.parent.mkdir(parents=True, exist_ok=True)
            os.symlink(real, mine)
        start = time.monotonic()
        b = bundle.build(args.name, cache=cache, progress=lambda line: print(f"  {line}", flush=True))
        cold = time.monotonic() - start
        warm = _warm(args.name, cache)
        what = "cold build (warm GOCACHE)" if args.warm_go else "cold build"
        print(f"{args.name}: {what} {cold:.1f}s, warm (cache hit) {warm * 1000:.1f}ms")
        print(f"  {_sizes(b)}")
        go_cache = BundleStore(cache).go_cache
        if go_cache.is_dir() and not go_cache.is_symlink():
            print(f"  GOCACHE {tree_size(go_cache) / 1e6:.0f} MB")
    finally:
        if args.keep:
            print(f"  kept {cache}")
        else:
            link = BundleStore(cache).go_cache
            if link.is_symlink():
                link.unlink()
            remove_tree(cache)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
