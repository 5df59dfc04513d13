"""Whether ``kha render`` grows linearly with the number of hosts: 100, 400 and 1000 hosts (three masters
and etcd members, two [lb] nodes holding a VIP, the rest workers), each rendered into a fresh folder.

    PYTHONPATH=. .venv/bin/python bench/bench_render_scale.py [--sizes 100,400,1000] [--rounds 3]

Per size (the fastest of the rounds, as the machine may be busy): seconds to read and check the
inventory, to ask the topology what every render asks per host (its record, its roles, each group, the
first master), to compute every node's files, to write them, and the total; then the ratio against
linear from the smallest size, of the lookups and of the total (1.0 = linear, 10 = quadratic at 1000
vs 100). Join configurations need the cluster CA: one ECDSA CA made here stands in for the PKI store
(whose own scale is bench/bench_pki_scale.py's). Everything lives in a temporary folder.
"""

from __future__ import annotations

import argparse
import datetime
import sys
import tempfile
import time
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from installer import render, topology
from installer.files import mirror
from installer.kubernetes import source
from installer.secrets import ClusterSecrets

#: the slowest growth accepted: total(N) / total(smallest) at most this times N / smallest.
GOAL_RATIO = 1.5


def inventory(dest: Path, hosts: int) -> Path:
    """``hosts`` nodes in 10.56.0.0/16: node1-3 masters and etcd, node1-2 [lb], the rest workers."""
    names = [f"node{i}" for i in range(1, hosts + 1)]
    lines = ["[all]"]
    lines += [f"{n} ansible_host=10.56.{(i + 11) // 250}.{(i + 11) % 250 + 1}" for i, n in enumerate(names)]
    lines += ["", "[lb]", *names[:2], "", "[etcd]", *names[:3], "", "[kube-master]", *names[:3], "",
              "[kube-worker]", *names[3:], ""]
    lines += ["[all:vars]", 'lb_mode="haproxy"', 'lb_kube_apiserver_ip="10.56.0.5"', 'node_subnet="10.56.0.0/16"',
              'kube_version="1.27.16"', 'network_plugin="bridge"', 'kube_pod_subnet="10.128.0.0/12"',
              'kube_service_subnet="10.96.0.0/16"', 'kube_network_node_prefix="24"']
    dest.write_text("\n".join(lines) + "\n")
    return dest


def ca_pem() -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kubernetes")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM)


def lookups(topo: topology.Topology) -> None:
    """What the renderers ask the topology about each host."""
    for h in topo.hosts:
        topo.host(h.name)
        topo.roles(h.name)
        for role in topology.Role:
            topo.group(role)
        _ = topo.first_master, topo.lb, topo.etcd


def one_round(hosts: int, ca: bytes) -> tuple[float, float, float, float, int]:
    """(load, lookups, compute, write seconds; files written)."""
    secrets = ClusterSecrets.generate()
    with tempfile.TemporaryDirectory(prefix="kha-bench-render-") as tmp:
        inv = inventory(Path(tmp) / "hosts.ini", hosts)
        started = time.perf_counter()
        topo = topology.load(inv)
        loaded = time.perf_counter()
        fresh = topology.load(inv)  # its first lookups build its indexes: count them
        asking = time.perf_counter()
        lookups(fresh)
        asked = time.perf_counter() - asking
        computing = time.perf_counter()
        files = render.node_files(topo, secrets, release=source.release(topo, None), ca_pem=ca)
        computed = time.perf_counter()
        written = mirror(files, Path(tmp) / "out")
        done = time.perf_counter()
        return loaded - started, asked, computed - computing, done - computed, len(written)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="100,400,1000", help="host counts, comma-separated")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    sizes = sorted(int(s) for s in args.sizes.split(","))
    ca = ca_pem()
    print(f"kha render, fastest of {args.rounds} rounds")
    print(f"  {'hosts':>5}  {'load':>7}  {'lookups':>7}  {'compute':>7}  {'write':>7}  {'total':>7}  {'files':>6}  "
          "ratio vs linear: lookups, total")
    base: tuple[int, float, float] | None = None
    ok = True
    for n in sizes:
        rounds = [one_round(n, ca) for _ in range(args.rounds)]
        load, asked, compute, write = (min(r[i] for r in rounds) for i in range(4))
        total = min(r[0] + r[2] + r[3] for r in rounds)
        base = base or (n, max(asked, 1e-9), total)
        grow = n / base[0]
        asked_ratio, total_ratio = (asked / base[1]) / grow, (total / base[2]) / grow
        ok = ok and asked_ratio <= GOAL_RATIO and total_ratio <= GOAL_RATIO
        print(f"  {n:>5}  {load:>6.3f}s  {asked:>6.4f}s  {compute:>6.3f}s  {write:>6.3f}s  {total:>6.3f}s  "
              f"{rounds[0][4]:>6}  {asked_ratio:.2f}, {total_ratio:.2f}")
    print(("✓" if ok else "✗") + f" growth within {GOAL_RATIO}x of linear")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
