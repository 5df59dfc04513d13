"""How ``kha pki init`` grows with the number of hosts: a cold store for 100, 400 and 1,000 hosts
(3 masters, 3 etcd members, the rest workers), then the ratio of each time to linear growth from the
smallest size. A ratio near 1 is linear; quadratic growth shows as ratio ≈ size / smallest size.
Also timed: a re-run on the unchanged inventory (must write nothing) and ``check``.

Before issue 15 the same run took 0.30 s / 9.05 s / 211 s (ratio 7.7 at 400 hosts): ``plan`` asked
every host's roles with a pass over the groups that looked each host up by a linear search.

    .venv/bin/python bench/bench_pki_scale.py [--sizes 100,400,1000] [--key-type ecdsa|rsa]

Keys are generated for masters and etcd members only (workers get ``ca.crt`` alone), so the key type
decides a constant, not the growth; ECDSA is the default to keep that constant small.
Everything is generated in a temporary directory and removed afterwards.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from installer import topology
from installer.pki.store import Store

MASTERS = ETCD = 3


def inventory(dest: Path, hosts: int, key_type: str) -> Path:
    """An m-master-shaped inventory with ``hosts`` hosts; addresses from 10.0.0.0/16 (HA VIP .0.1)."""
    names = [f"node{i}" for i in range(1, hosts + 1)]
    lines = ["[all]"]
    lines += [f"{n} ansible_host=10.0.{(i + 10) // 250}.{(i + 10) % 250 + 2} ansible_user=root"
              for i, n in enumerate(names)]
    lines += ["[lb]", *names[:2], "[etcd]", *names[:ETCD], "[kube-master]", *names[:MASTERS],
              "[kube-worker]", *names[MASTERS:]]
    lines += ["[new-master]", "[new-worker]", "[new-etcd]", "[del-worker]", "[del-master]", "[del-etcd]",
              "[del-node]", "[all:vars]", 'lb_mode="haproxy"', 'lb_kube_apiserver_ip="10.0.0.1"',
              'kube_version="1.29.2"', 'kube_pod_subnet="10.128.0.0/10"', 'kube_service_subnet="10.96.0.0/16"',
              f'cert_key_type="{key_type}"']
    dest.write_text("\n".join(lines) + "\n")
    return dest


def one(hosts: int, key_type: str) -> tuple[float, int, float, float]:
    """(cold init seconds, files written, re-run seconds, check seconds) for a ``hosts``-host store."""
    with tempfile.TemporaryDirectory(prefix="kha-bench-pki-scale-") as tmp:
        inv = inventory(Path(tmp) / "hosts.ini", hosts, key_type)
        started = time.perf_counter()
        changes = Store(Path(tmp) / "store", topology.load(inv)).init(inv.read_bytes())
        cold = time.perf_counter() - started
        started = time.perf_counter()
        again = Store(Path(tmp) / "store", topology.load(inv)).init(inv.read_bytes())
        rerun = time.perf_counter() - started
        if again:
            raise SystemExit(f"re-run changed files: {[str(c) for c in again[:5]]}")
        started = time.perf_counter()
        if not Store.open(Path(tmp) / "store").check().ok:
            raise SystemExit("check failed on a fresh store")
        return cold, len(changes), rerun, time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="100,400,1000", help="host counts, comma-separated")
    parser.add_argument("--key-type", default="ecdsa", choices=("ecdsa", "rsa"))
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    print(f"kha pki init, {args.key_type} keys, {MASTERS} masters + {ETCD} etcd + workers")
    base: tuple[int, float] | None = None
    for n in sizes:
        secs, files, rerun, check = one(n, args.key_type)
        base = base or (n, secs)
        ratio = (secs / base[1]) / (n / base[0])
        print(f"  {n:>5} hosts  cold {secs:6.2f}s  {files:>5} files  {secs / n * 1000:5.2f} ms/host  "
              f"ratio to linear {ratio:.2f}   re-run {rerun:5.2f}s  check {check:5.2f}s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
