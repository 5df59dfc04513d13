"""How long building a PKI store takes: the full m-master tree, cold, with RSA 2048 and ECDSA P-256,
then a re-run on the unchanged inventory (which must write nothing). Goal: cold RSA under 2 s.

    .venv/bin/python bench/bench_pki.py [--rounds N]

Everything is generated in a temporary directory and removed afterwards.
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

from installer import topology
from installer.pki.store import Store

INVENTORY = Path(__file__).resolve().parents[1] / "scenarios" / "inventories" / "hosts.m-master.hostname.ini"
GOAL_COLD_RSA = 2.0


def inventory(dest: Path, key_type: str) -> Path:
    text = re.sub(r"(?m)^cert_key_type=.*\n", "", INVENTORY.read_text()) + f'cert_key_type="{key_type}"\n'
    dest.write_text(text)
    return dest


def one_round(key_type: str) -> tuple[float, float, int]:
    """(cold seconds, re-run seconds, files written cold)."""
    with tempfile.TemporaryDirectory(prefix="kha-bench-pki-") as tmp:
        inv = inventory(Path(tmp) / "hosts.ini", key_type)
        root = Path(tmp) / "store"
        started = time.perf_counter()
        changes = Store(root, topology.load(inv)).init(inv.read_bytes())
        cold = time.perf_counter() - started
        started = time.perf_counter()
        again = Store(root, topology.load(inv)).init(inv.read_bytes())
        rerun = time.perf_counter() - started
        if again:
            raise SystemExit(f"re-run changed files: {[str(c) for c in again]}")
        return cold, rerun, len(changes)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    ok = True
    print(f"m-master PKI store ({INVENTORY.name}), {args.rounds} rounds, median (min–max)")
    for key_type in ("rsa", "ecdsa"):
        results = [one_round(key_type) for _ in range(args.rounds)]
        cold = [r[0] for r in results]
        rerun = [r[1] for r in results]
        files = results[0][2]
        line = (f"  {key_type:<5}  cold {statistics.median(cold):.3f}s ({min(cold):.3f}–{max(cold):.3f})  "
                f"re-run {statistics.median(rerun):.3f}s ({min(rerun):.3f}–{max(rerun):.3f})  {files} files")
        if key_type == "rsa":
            met = statistics.median(cold) < GOAL_COLD_RSA
            ok = ok and met
            line += f"  {'✓' if met else '✗'} goal < {GOAL_COLD_RSA:g}s"
        print(line)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
