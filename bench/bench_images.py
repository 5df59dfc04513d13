"""Image build time: cold (a fresh, temporary cache: every package downloaded, everything built) and
warm (the same call again: a cache hit).

    .venv/bin/python bench/bench_images.py [RECIPE] [--keep]

Needs root and the Debian mirror from this machine's apt configuration. Prints one line per
measurement; the temporary cache is deleted afterwards unless --keep.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path

import images
from images.cache import remove_tree, tree_size


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("recipe", nargs="?", default=images.DEFAULT_RECIPE)
    parser.add_argument("--keep", action="store_true", help="keep the temporary cache directory")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    cache = Path(tempfile.mkdtemp(prefix="kha-bench-images-"))
    try:
        start = time.monotonic()
        img = images.build(args.recipe, cache=cache, progress=lambda line: print(f"  {line}"))
        cold = time.monotonic() - start

        start = time.monotonic()
        again = images.build(args.recipe, cache=cache)
        warm = time.monotonic() - start
        assert again == img

        print(f"{args.recipe}: cold build {cold:.1f}s, warm (cache hit) {warm * 1000:.1f}ms")
        print(
            f"  rootfs {tree_size(img.rootfs) / 1e6:.0f} MB, qcow2 {img.qcow2.stat().st_size / 1e6:.0f} MB, "
            f"kernel {img.kernel.stat().st_size / 1e6:.1f} MB, initrd {img.initrd.stat().st_size / 1e6:.1f} MB"
        )
    finally:
        if args.keep:
            print(f"  kept {cache}")
        else:
            remove_tree(cache)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
