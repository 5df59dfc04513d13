"""A real etcd accepts the certificates kha issues, and refuses the ones it must refuse.

The fixture builds a PKI store (RSA and ECDSA) from the m-master scenario inventory, starts the
Debian etcd (3.4) on 127.0.0.1 with node1's ``etcd/server`` and ``etcd/peer`` certificates and
mutual TLS on both the client and the peer port (``--client-cert-auth``, ``--peer-client-cert-auth``,
trusted CA = ``etcd/ca.crt``), data dir under tmp_path, and ends only the process it started.
Then ``etcdctl`` talks to it exactly as kube-apiserver and the kubelet's etcd probe would, through the
installer's own etcdctl command line (``installer.etcd.ctl.argv``).

This tier fails, never skips, when etcd or etcdctl is missing (``apt-get install etcd-server etcd-client``).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from installer import topology
from installer.etcd import ctl as etcd_client
from installer.pki.store import Store

pytestmark = pytest.mark.integration

INVENTORY = Path(__file__).resolve().parents[2] / "scenarios" / "inventories" / "hosts.m-master.hostname.ini"
START_TIMEOUT = 30.0


def need(binary: str) -> str:
    path = shutil.which(binary)
    if path is None:
        pytest.fail(f"{binary} is not installed: this test needs a real etcd 3.4+ "
                    "(Debian: apt-get install etcd-server etcd-client)")
    return path


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def clean_env() -> dict[str, str]:
    # etcdctl 3.4 refuses --endpoints when ETCDCTL_ENDPOINTS is also set, and etcd reads ETCD_* variables.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ETCD_", "ETCDCTL_"))}
    env["ETCDCTL_API"] = "3"
    return env


@dataclass(frozen=True)
class Etcd:
    endpoint: str
    store: Path
    pid: int
    log: Path

    def node_file(self, node: str, rel: str) -> str:
        return str(self.store / "nodes" / node / "pki" / rel)

    def ctl(self, *args: str, cert: str, key: str, cacert: str | None = None, timeout: str = "5s",
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        """etcdctl as a client holding ``cert``/``key``; a refused handshake only ends at ``timeout``."""
        need("etcdctl")
        argv = etcd_client.argv(*args, endpoints=[self.endpoint], dial_timeout="2s", command_timeout=timeout,
                                cacert=cacert or self.node_file("node1", "etcd/ca.crt"), cert=cert, key=key)
        return subprocess.run(argv, capture_output=True, text=True, env=env or clean_env(), timeout=30, check=False)

    def as_healthcheck(self, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return self.ctl(*args, cert=self.node_file("node1", "etcd/healthcheck-client.crt"),
                        key=self.node_file("node1", "etcd/healthcheck-client.key"), env=env)

    def as_apiserver(self, *args: str) -> subprocess.CompletedProcess[str]:
        return self.ctl(*args, cert=self.node_file("node1", "apiserver-etcd-client.crt"),
                        key=self.node_file("node1", "apiserver-etcd-client.key"))


@pytest.fixture(scope="module", params=["rsa", "ecdsa"])
def etcd(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Etcd]:
    etcd_bin = need("etcd")
    need("etcdctl")
    tmp = tmp_path_factory.mktemp(f"etcd-{request.param}")
    inv = tmp / "hosts.ini"
    inv.write_text(INVENTORY.read_text() + f'cert_key_type="{request.param}"\n')
    store = tmp / "store"
    Store(store, topology.load(inv)).init(inv.read_bytes())

    pki = store / "nodes" / "node1" / "pki" / "etcd"
    client, peer = free_port(), free_port()
    data = tmp / "data"
    data.mkdir(mode=0o700)
    argv = [
        etcd_bin, "--name", "node1", "--data-dir", str(data),
        "--listen-client-urls", f"https://127.0.0.1:{client}", "--advertise-client-urls", f"https://127.0.0.1:{client}",
        "--listen-peer-urls", f"https://127.0.0.1:{peer}", "--initial-advertise-peer-urls", f"https://127.0.0.1:{peer}",
        "--initial-cluster", f"node1=https://127.0.0.1:{peer}", "--initial-cluster-state", "new",
        "--cert-file", str(pki / "server.crt"), "--key-file", str(pki / "server.key"),
        "--client-cert-auth", "--trusted-ca-file", str(pki / "ca.crt"),
        "--peer-cert-file", str(pki / "peer.crt"), "--peer-key-file", str(pki / "peer.key"),
        "--peer-client-cert-auth", "--peer-trusted-ca-file", str(pki / "ca.crt"),
    ]
    log = tmp / "etcd.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=clean_env())
    handle = Etcd(f"https://127.0.0.1:{client}", store, proc.pid, log)
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            health = handle.as_healthcheck("endpoint", "health")
            if health.returncode == 0:
                break
            if proc.poll() is not None:
                pytest.fail(f"etcd exited with {proc.returncode}:\n{log.read_text()[-4000:]}")
            if time.monotonic() > deadline:
                pytest.fail(f"etcd not healthy after {START_TIMEOUT:g}s: {health.stderr}\n{log.read_text()[-4000:]}")
            time.sleep(0.2)
        yield handle
    finally:
        proc.terminate()  # only the process this fixture started
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def test_apiserver_etcd_client_can_write_and_read(etcd: Etcd) -> None:
    put = etcd.as_apiserver("put", "/registry/kha-test", "hello")
    assert put.returncode == 0, put.stderr
    get = etcd.as_apiserver("get", "/registry/kha-test", "--print-value-only")
    assert get.returncode == 0, get.stderr
    assert get.stdout.strip() == "hello"


def test_healthcheck_client_is_accepted(etcd: Etcd) -> None:
    health = etcd.as_healthcheck("endpoint", "health")
    assert health.returncode == 0, health.stderr
    assert "is healthy" in health.stdout + health.stderr


def test_the_installers_etcdctl_works_where_etcdctl_variables_are_set(etcd: Etcd) -> None:
    """A node's /etc/environment may set ETCDCTL_*; etcdctl 3.4 then refuses the same flags on its command
    line, unless (as kha's command line does) they are unset first."""
    env = {**clean_env(), "ETCDCTL_ENDPOINTS": "https://127.0.0.1:1", "ETCDCTL_CACERT": "/nonexistent",
           "ETCDCTL_WRITE_OUT": "table"}
    health = etcd.as_healthcheck("endpoint", "health", "-w", "json", env=env)
    assert health.returncode == 0, health.stderr
    assert json.loads(health.stdout)[0]["health"] is True
    # The same etcdctl without the unsets (the install phases' own line until now) is refused.
    argv = etcd_client.argv("endpoint", "health", endpoints=[etcd.endpoint],
                            cert=etcd.node_file("node1", "etcd/healthcheck-client.crt"),
                            key=etcd.node_file("node1", "etcd/healthcheck-client.key"))
    bare = subprocess.run(argv[argv.index("etcdctl"):], capture_output=True, text=True, env=env, timeout=30,
                          check=False)
    assert bare.returncode != 0 and "conflicting environment variable" in bare.stderr


def test_a_client_certificate_from_the_cluster_ca_is_refused(etcd: Etcd) -> None:
    """apiserver-kubelet-client is a valid client certificate, but of the cluster CA: etcd must say no."""
    put = etcd.ctl("put", "/registry/intruder", "x", cert=etcd.node_file("node1", "apiserver-kubelet-client.crt"),
                   key=etcd.node_file("node1", "apiserver-kubelet-client.key"), timeout="2s")
    assert put.returncode != 0, put.stdout
    get = etcd.as_apiserver("get", "/registry/intruder", "--print-value-only")
    assert get.returncode == 0, get.stderr
    assert get.stdout.strip() == "", "the refused client wrote nothing"
    # etcd says why: "rejected connection … tls: failed to verify client certificate: … unknown authority"
    # (Go before 1.20 wrote "client's certificate").
    assert re.search(r"failed to verify client('s)? certificate", etcd.log.read_text())


def test_the_server_is_not_trusted_through_the_cluster_ca(etcd: Etcd) -> None:
    """The etcd server certificate comes from the etcd CA: a client trusting only the cluster CA refuses it."""
    got = etcd.ctl("get", "x", cacert=etcd.node_file("node1", "ca.crt"),
                   cert=etcd.node_file("node1", "apiserver-etcd-client.crt"),
                   key=etcd.node_file("node1", "apiserver-etcd-client.key"), timeout="2s")
    assert got.returncode != 0
    # etcdctl only says "context deadline exceeded"; the server sees the client abort the handshake.
    assert "remote error: tls: bad certificate" in etcd.log.read_text()


def test_a_missing_binary_fails_the_tier_instead_of_skipping_it() -> None:
    with pytest.raises(pytest.fail.Exception, match="is not installed"):
        need("kha-no-such-etcd")
