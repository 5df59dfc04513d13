"""scenarios.failover.clients and .ledger: the outcome rules as tables; the /readyz prober and the write ledger
against a real HTTPS server on 127.0.0.1 that plays kube-apiserver and etcd's gateway (certificates made at
test time, client certificates required); and the ledger checker on histories built to fail each check."""

from __future__ import annotations

import base64
import datetime as dt
import json
import re
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from cryptography.x509.oid import ExtendedKeyUsageOID

from core import waiting
from installer.pki import crypto, kubeconfig
from installer.pki.table import SANs
from installer.settings import KeyType
from scenarios.errors import ClientError, ScenarioError
from scenarios.failover import ledger
from scenarios.failover.clients import ApiProber, ApiTLS, Reply, readyz_outcome
from scenarios.failover.ledger import (
    Listing,
    Mismatch,
    Missing,
    WriteLedger,
    check_ledger,
    ensure_namespace,
    object_name,
    read_ledger,
    write_outcome,
)
from scenarios.failover.model import Op, Outcome
from scenarios.workload import EtcdHTTP

OK, FAILED, UNKNOWN = Outcome.OK, Outcome.FAILED, Outcome.UNKNOWN


# -- the outcome rules ----------------------------------------------------------------------------------------


def status(code: int, reason: str, message: str = "") -> Reply:
    body = {"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": reason, "message": message,
            "code": code}
    return Reply(code, json.dumps(body).encode(), sent=True)


@pytest.mark.parametrize(("reply", "outcome", "detail"), [
    (Reply(200, b"ok", sent=True), OK, "ok"),
    (Reply(500, b"[+]ping ok\n[-]etcd failed: reason withheld\nreadyz check failed", sent=True), FAILED,
     "HTTP 500: [-]etcd failed: reason withheld"),
    (Reply(503, b"no server available", sent=True), FAILED, "HTTP 503: no server available"),
    (Reply(200, b"something else", sent=True), FAILED, "HTTP 200: something else"),
    (Reply(None, error="connect: refused"), FAILED, "connect: refused"),
    (Reply(None, error="connect: unreachable"), FAILED, "connect: unreachable"),
    (Reply(None, error="answer: closed without an answer", sent=True), FAILED, "answer: closed without an answer"),
    (Reply(None, error="connect: timeout", timed_out=True), UNKNOWN, "connect: timeout"),
    (Reply(None, error="answer: timeout", sent=True, timed_out=True), UNKNOWN, "answer: timeout"),
])
def test_readyz_outcome(reply: Reply, outcome: Outcome, detail: str) -> None:
    assert readyz_outcome(reply) == (outcome, detail)


@pytest.mark.parametrize(("reply", "outcome", "detail"), [
    (Reply(201, b'{"metadata": {"name": "w-a-000001", "resourceVersion": "4711"}}', sent=True), OK, "4711"),
    # nothing of the request left: certainly no effect, even on a timeout
    (Reply(None, error="connect: refused"), FAILED, "connect: refused"),
    (Reply(None, error="connect: timeout", timed_out=True), FAILED, "connect: timeout"),
    (Reply(None, error="connect: tls CERTIFICATE_VERIFY_FAILED"), FAILED, "connect: tls CERTIFICATE_VERIFY_FAILED"),
    # rejected before anything was stored
    (status(403, "Forbidden", "no"), FAILED, "HTTP 403 Forbidden: no"),
    (status(404, "NotFound", "namespaces \"x\" not found"), FAILED, 'HTTP 404 NotFound: namespaces "x" not found'),
    (status(422, "Invalid", "bad name"), FAILED, "HTTP 422 Invalid: bad name"),
    (status(429, "TooManyRequests", "slow down"), FAILED, "HTTP 429 TooManyRequests: slow down"),
    # may have been stored
    (status(409, "AlreadyExists", "exists"), UNKNOWN, "HTTP 409 AlreadyExists: exists"),
    (status(500, "InternalError", "etcdserver: request timed out"), UNKNOWN,
     "HTTP 500 InternalError: etcdserver: request timed out"),
    (status(504, "Timeout", "etcd"), UNKNOWN, "HTTP 504 Timeout: etcd"),
    (Reply(503, b"<html>no server</html>", sent=True), UNKNOWN, "HTTP 503: <html>no server</html>"),
    (Reply(None, error="answer: timeout", sent=True, timed_out=True), UNKNOWN, "answer: timeout"),
    (Reply(None, error="answer: reset", sent=True), UNKNOWN, "answer: reset"),
    (Reply(201, b"{}", sent=True), UNKNOWN, "HTTP 201 without a resourceVersion: {}"),
])
def test_write_outcome(reply: Reply, outcome: Outcome, detail: str) -> None:
    assert write_outcome(reply) == (outcome, detail)


# -- certificates, and a fake apiserver on 127.0.0.1 ------------------------------------------------------------


@dataclass(frozen=True)
class PKI:
    store: Path  # ca/ca.crt and cluster/admin.conf, as installer.pki.store lays them out
    cert_pem: bytes
    key_pem: bytes
    server: ssl.SSLContext  # the fake apiserver's: requires a client certificate from the CA


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    root = tmp_path_factory.mktemp("pki")
    now = dt.datetime.now(dt.UTC)
    ca_key = crypto.new_key(KeyType.ECDSA)
    ca = crypto.self_signed_ca(ca_key, "kubernetes", 1, now)
    srv_key, adm_key = crypto.new_key(KeyType.ECDSA), crypto.new_key(KeyType.ECDSA)
    srv = crypto.issue(ca, ca_key, srv_key, cn="kube-apiserver", organization=(),
                       usages=(ExtendedKeyUsageOID.SERVER_AUTH,), sans=SANs.of("127.0.0.1"),
                       valid_for=dt.timedelta(days=1), now=now)
    adm = crypto.issue(ca, ca_key, adm_key, cn="kubernetes-admin", organization=("system:masters",),
                       usages=(ExtendedKeyUsageOID.CLIENT_AUTH,), sans=SANs(), valid_for=dt.timedelta(days=1), now=now)
    (root / "ca").mkdir()
    (root / "ca" / "ca.crt").write_bytes(crypto.cert_pem(ca))
    (root / "cluster").mkdir()
    cert_pem, key_pem = crypto.cert_pem(adm), crypto.key_pem(adm_key)
    (root / "cluster" / "admin.conf").write_bytes(kubeconfig.render(kubeconfig.Kubeconfig(
        "kha", "https://10.56.56.10:8443", "kubernetes-admin", crypto.cert_pem(ca), cert_pem, key_pem)))
    server_dir = tmp_path_factory.mktemp("server")
    (server_dir / "tls.crt").write_bytes(crypto.cert_pem(srv))
    (server_dir / "tls.key").write_bytes(crypto.key_pem(srv_key))
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(server_dir / "tls.crt", server_dir / "tls.key")
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_verify_locations(root / "ca" / "ca.crt")
    return PKI(root, cert_pem, key_pem, ctx)


@pytest.fixture
def tls(pki: PKI) -> Iterator[ApiTLS]:
    with ApiTLS.from_store(pki.store) as files:
        yield files


class FakeApi:
    """kube-apiserver (``/readyz``, namespaces, ConfigMap create and list) and etcd's ``/v3/kv/range``, in
    memory, over HTTPS with client certificates required.

    ``readyz``: "ok", "fail" (500 with a failing check) or "hang" (until ``release``). ``script``: what the
    next creates do, in order (then "create"): "create" (201), "403", "500", "hang", "drop" (close without
    an answer), or "store-then-409" / "store-then-hang" / "store-then-504" (stored, then that answer).
    """

    def __init__(self, ctx: ssl.SSLContext) -> None:
        self.ctx = ctx
        self.port = 0
        self.readyz = "ok"
        self.script: list[str] = []
        self.forbid_namespaces = False
        self.namespaces: set[str] = set()
        self.objects: dict[tuple[str, str], tuple[str, dict[str, str]]] = {}  # (ns, name) → (rv, labels)
        self.creates: list[str] = []  # names POSTed, in order
        self.ranges: list[dict[str, Any]] = []  # etcd range requests
        self.release = threading.Event()
        self.lock = threading.Lock()
        self._rv = 100
        self._server: _Server | None = None

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def start(self) -> None:
        server = _Server(("127.0.0.1", self.port), _Handler)
        server.api = self
        self.port = server.server_address[1]
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
        self._server = server

    def stop(self) -> None:
        """Close the listener: connections are refused until ``start()`` (same port)."""
        assert self._server is not None
        self._server.shutdown()
        self._server.server_close()
        self._server = None

    def store(self, ns: str, name: str, labels: dict[str, str]) -> str:
        with self.lock:
            self._rv += 1
            self.objects[(ns, name)] = (str(self._rv), labels)
            return str(self._rv)

    def next_action(self, name: str) -> str:
        with self.lock:
            self.creates.append(name)
            return self.script.pop(0) if self.script else "create"


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    api: FakeApi

    def get_request(self) -> tuple[socket.socket, Any]:
        sock, addr = self.socket.accept()
        # The handshake happens in the handler's thread, so a slow client never holds up accept().
        return self.api.ctx.wrap_socket(sock, server_side=True, do_handshake_on_connect=False), addr

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # clients that gave up (timeouts, by design) are not errors here


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def setup(self) -> None:
        self.request.settimeout(10)
        self.request.do_handshake()
        super().setup()

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _send(self, code: int, body: bytes | dict[str, Any], kind: str = "application/json") -> None:
        data = json.dumps(body).encode() if isinstance(body, dict) else body
        try:
            self.send_response(code)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except OSError:  # the client gave up
            self.close_connection = True

    def _status(self, code: int, reason: str, message: str) -> None:
        self._send(code, {"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": reason,
                          "message": message, "code": code})

    def do_GET(self) -> None:
        api, url = self.server.api, urlsplit(self.path)
        if url.path == "/readyz":
            if api.readyz == "hang":
                api.release.wait(10)
            if api.readyz == "fail":
                self._send(500, b"[+]ping ok\n[-]etcd failed: reason withheld\nreadyz check failed\n", "text/plain")
            else:
                self._send(200, b"ok", "text/plain")
            return
        if m := re.fullmatch(r"/api/v1/namespaces/([^/]+)/configmaps", url.path):
            key, value = parse_qs(url.query)["labelSelector"][0].split("=")
            with api.lock:
                items = [{"metadata": {"name": name, "namespace": ns, "resourceVersion": rv, "labels": labels}}
                         for (ns, name), (rv, labels) in sorted(api.objects.items())
                         if ns == m.group(1) and labels.get(key) == value]
                self._send(200, {"kind": "ConfigMapList", "apiVersion": "v1",
                                 "metadata": {"resourceVersion": str(api._rv)}, "items": items})
            return
        self._status(404, "NotFound", url.path)

    def do_POST(self) -> None:
        api, path = self.server.api, urlsplit(self.path).path
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
        if path == "/api/v1/namespaces":
            name = body["metadata"]["name"]
            if api.forbid_namespaces:
                self._status(403, "Forbidden", "namespaces is forbidden")
            elif name in api.namespaces:
                self._status(409, "AlreadyExists", f'namespaces "{name}" already exists')
            else:
                api.namespaces.add(name)
                self._send(201, body)
            return
        if m := re.fullmatch(r"/api/v1/namespaces/([^/]+)/configmaps", path):
            self._create(m.group(1), body["metadata"]["name"], body["metadata"].get("labels", {}))
            return
        if path == "/v3/kv/range":
            self._range(body)
            return
        self._status(404, "NotFound", path)

    def _create(self, ns: str, name: str, labels: dict[str, str]) -> None:
        api = self.server.api
        action = api.next_action(name)
        rv = api.store(ns, name, labels) if action in ("create", "store-then-409", "store-then-hang",
                                                       "store-then-504") else ""
        if action == "create":
            self._send(201, {"kind": "ConfigMap", "metadata": {"name": name, "namespace": ns, "resourceVersion": rv,
                                                               "labels": labels}})
        elif action == "store-then-409":
            self._status(409, "AlreadyExists", f'configmaps "{name}" already exists')
        elif action in ("hang", "store-then-hang"):
            api.release.wait(10)
            self.close_connection = True
        elif action == "store-then-504":
            self._status(504, "Timeout", "Timeout: request did not complete within requested timeout")
        elif action == "403":
            self._status(403, "Forbidden", "forbidden")
        elif action == "500":
            self._status(500, "InternalError", "boom")
        elif action == "drop":
            self.close_connection = True
        else:
            raise AssertionError(f"unknown action {action}")

    def _range(self, body: dict[str, Any]) -> None:
        api = self.server.api
        api.ranges.append(body)
        start, end = (base64.b64decode(body[k]).decode() for k in ("key", "range_end"))
        kvs = []
        with api.lock:
            for (ns, name), (rv, _) in sorted(api.objects.items()):
                key = f"/registry/configmaps/{ns}/{name}"
                if start <= key < end:
                    kv = {"key": base64.b64encode(key.encode()).decode(), "create_revision": rv, "mod_revision": rv,
                          "version": "1"}
                    if not body.get("keys_only"):
                        kv["value"] = base64.b64encode(b"k8s\x00\n\x0f\n\x02v1\x12\tConfigMap\xff").decode()
                    kvs.append(kv)
        self._send(200, {"header": {"revision": str(api._rv)}, "kvs": kvs, "count": str(len(kvs))})


@pytest.fixture
def api(pki: PKI) -> Iterator[FakeApi]:
    fake = FakeApi(pki.server)
    fake.start()
    yield fake
    fake.release.set()
    if fake._server is not None:
        fake.stop()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def ops_between(ops: list[Op], after: float, before: float) -> list[Op]:
    """The ops that started after ``after`` and ended before ``before``."""
    return [o for o in ops if o.start > after and o.end < before]


# -- ApiTLS ------------------------------------------------------------------------------------------------------


def test_tls_from_store_extracts_the_admin_identity_privately_and_close_removes_it(pki: PKI) -> None:
    tls = ApiTLS.from_store(pki.store)
    assert tls.ca == pki.store / "ca" / "ca.crt"
    assert tls.scratch is not None and tls.scratch.stat().st_mode & 0o777 == 0o700
    assert tls.cert.read_bytes() == pki.cert_pem and tls.key.read_bytes() == pki.key_pem
    assert {p.stat().st_mode & 0o777 for p in (tls.cert, tls.key)} == {0o600}
    assert tls.context().verify_mode == ssl.CERT_REQUIRED
    tls.close()
    assert not tls.scratch.exists()


def test_tls_from_store_names_what_is_missing(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"ca/ca\.crt is missing"):
        ApiTLS.from_store(tmp_path)


# -- ApiProber ---------------------------------------------------------------------------------------------------


def test_prober_records_ok_then_refused_then_unknown_while_hanging_then_ok(api: FakeApi, tls: ApiTLS) -> None:
    with ApiProber("readyz test", api.url, tls, interval=0.05, timeout=1.0, max_duration=60) as p:
        p.wait_for("3 ok", lambda ops: sum(o.outcome is OK for o in ops) >= 3, timeout=10)
        api.stop()
        down = time.monotonic()
        p.wait_for("3 refused", lambda ops: len([o for o in ops if o.start > down]) >= 3, timeout=10)
        restarting = time.monotonic()
        api.readyz = "hang"
        api.start()
        hanging = time.monotonic()
        p.wait_for("3 unknown", lambda ops: sum(o.start > hanging and o.outcome is UNKNOWN for o in ops) >= 3,
                   timeout=10)
        released = time.monotonic()
        api.readyz = "ok"
        api.release.set()
        p.wait_for("ok again", lambda ops: any(o.start > released and o.outcome is OK for o in ops), timeout=10)
    ops = p.history()
    assert {o.client for o in ops} == {"readyz test"}
    assert sum(o.outcome is OK and o.end < down for o in ops) >= 3
    refused = ops_between(ops, down, restarting)
    assert len(refused) >= 3 and {(o.outcome, o.detail) for o in refused} == {(FAILED, "connect: refused")}
    hung = ops_between(ops, hanging, released)  # ended while the server answered nobody: timed out
    assert len(hung) >= 3 and {(o.outcome, o.detail) for o in hung} == {(UNKNOWN, "answer: timeout")}
    # a hanging request does not hold up the schedule: requests overlapped
    assert any(a.start < b.start < a.end for a in hung for b in hung), hung


def test_prober_records_a_failing_check_as_failed(api: FakeApi, tls: ApiTLS) -> None:
    api.readyz = "fail"
    with ApiProber("readyz test", api.url, tls, interval=0.05, timeout=2.0, max_duration=30) as p:
        p.wait_for("an answer", bool, timeout=10)
    assert (p.history()[0].outcome, p.history()[0].detail) == (FAILED, "HTTP 500: [-]etcd failed: reason withheld")


def test_prober_stops_by_itself_after_max_duration(api: FakeApi, tls: ApiTLS) -> None:
    p = ApiProber("readyz test", api.url, tls, interval=0.05, timeout=1.0, max_duration=0.3).start()
    waiting.until(lambda: "still running" if p.running else None, timeout=10, interval=0.02, error=AssertionError)
    ops = p.stop()
    assert ops and all(o.start < p.started + 0.3 for o in ops)


def test_prober_that_cannot_enter_its_namespace_does_not_start(tls: ApiTLS) -> None:
    p = ApiProber("readyz test", "https://127.0.0.1:1", tls, netns="kha-test-no-such-netns", max_duration=5)
    with pytest.raises(ScenarioError, match="could not start"):
        p.start()


# -- WriteLedger ------------------------------------------------------------------------------------------------


def test_ledger_records_each_answer_and_writes_each_name_once(api: FakeApi, tls: ApiTLS) -> None:
    api.script = ["create", "store-then-409", "store-then-hang", "403", "store-then-504", "hang", "drop", "500"]
    # Timeouts well above what a loaded machine needs for a TLS round trip on loopback: only the scripted
    # hangs may time out (they hang until released, 10 s), so each outcome below is the script's.
    with WriteLedger(api.url, tls, namespace="kha-ledger", rate_hz=50, timeout=2.0, max_duration=60, run="t1") as w:
        w.wait_for("10 writes", lambda ops: len(ops) >= 10, timeout=30)
    ops = w.history()
    names = [object_name("t1", i) for i in range(1, len(ops) + 1)]
    assert names[0] == "w-t1-000001"
    assert api.creates == names  # one request per name, in order: nothing retried
    got = [(o.outcome, o.detail) for o in ops[:10]]
    rv = {name: stored for (_, name), (stored, _) in api.objects.items()}
    assert got == [
        (OK, f"{names[0]}@{rv[names[0]]}"),
        (UNKNOWN, f'{names[1]}: HTTP 409 AlreadyExists: configmaps "{names[1]}" already exists'),
        (UNKNOWN, f"{names[2]}: answer: timeout"),
        (FAILED, f"{names[3]}: HTTP 403 Forbidden: forbidden"),
        (UNKNOWN, f"{names[4]}: HTTP 504 Timeout: Timeout: request did not complete within requested timeout"),
        (UNKNOWN, f"{names[5]}: answer: timeout"),
        (UNKNOWN, f"{names[6]}: answer: closed without an answer"),
        (UNKNOWN, f"{names[7]}: HTTP 500 InternalError: boom"),
        (OK, f"{names[8]}@{rv[names[8]]}"),
        (OK, f"{names[9]}@{rv[names[9]]}"),
    ]
    assert {labels["kha-ledger"] for _, labels in api.objects.values()} == {"t1"}

    # ... and the checker, on what a real read through the apiserver and etcd's gateway returns
    etcd = EtcdHTTP(tls)
    listings = read_ledger(w.listers([api.url], etcd, [api.url]), retry_for=5)
    assert [x.reader for x in listings] == ["apiserver 127.0.0.1", "etcd 127.0.0.1"]
    assert listings[0].objects == listings[1].objects == rv
    assert api.ranges and all(r["keys_only"] for r in api.ranges)
    report = check_ledger(ops, listings)
    assert report.valid, report.summary()
    assert (report.writes, report.failed, report.unknown) == (len(ops), 1, 6)
    assert report.unknown_landed == (names[1], names[2], names[4])
    assert report.lost == 0 and report.failed_present == () and report.mismatched == ()


def test_ledger_records_a_refused_connection_as_failed(tls: ApiTLS) -> None:
    with WriteLedger(f"https://127.0.0.1:{closed_port()}", tls, rate_hz=50, timeout=0.5, max_duration=30,
                     run="t2") as w:
        w.wait_for("3 writes", lambda ops: len(ops) >= 3, timeout=10)
    ops = w.history()
    assert [(o.outcome, o.detail) for o in ops] == [
        (FAILED, f"{object_name('t2', i)}: connect: refused") for i in range(1, len(ops) + 1)]


def test_a_server_that_accepts_but_never_completes_tls_is_unknown_to_the_prober_and_failed_to_the_ledger(
    tls: ApiTLS,
) -> None:
    # The kernel completes TCP handshakes into the backlog; nobody answers the ClientHello (as haproxy when its
    # backend is gone). The request never left: no write can have happened, but the probe timed out.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        url = f"https://127.0.0.1:{silent.getsockname()[1]}"
        with ApiProber("readyz test", url, tls, interval=0.1, timeout=0.3, max_duration=30) as p, \
                WriteLedger(url, tls, rate_hz=10, timeout=0.3, max_duration=30, run="t3") as w:
            p.wait_for("2 probes", lambda ops: len(ops) >= 2, timeout=10)
            w.wait_for("2 writes", lambda ops: len(ops) >= 2, timeout=10)
    assert {(o.outcome, o.detail) for o in p.history()} == {(UNKNOWN, "connect: timeout")}
    assert {(o.outcome, o.detail.split(": ", 1)[1]) for o in w.history()} == {(FAILED, "connect: timeout")}


def test_ledger_run_ids_are_fresh_and_checked(tls: ApiTLS) -> None:
    a = WriteLedger("https://127.0.0.1:1", tls, max_duration=1)
    b = WriteLedger("https://127.0.0.1:1", tls, max_duration=1)
    assert a.run != b.run
    with pytest.raises(ScenarioError, match="run id"):
        WriteLedger("https://127.0.0.1:1", tls, max_duration=1, run="Not-OK")


def test_ensure_namespace_is_idempotent_and_fails_fast_when_forbidden(api: FakeApi, tls: ApiTLS) -> None:
    ensure_namespace(api.url, tls, "kha-ledger", timeout=10)
    ensure_namespace(api.url, tls, "kha-ledger", timeout=10)
    assert api.namespaces == {"kha-ledger"}
    api.forbid_namespaces = True
    with pytest.raises(ClientError, match="403 Forbidden"):
        ensure_namespace(api.url, tls, "other", timeout=60)


# -- check_ledger on histories built to fail ----------------------------------------------------------------------


def w(i: int, outcome: Outcome, rv: int | None = None, *, end: float | None = None, run: str = "r") -> Op:
    """The ``i``-th write of run ``run``, started at ``i`` and ended at ``end`` (default ``i + 0.1``)."""
    name = object_name(run, i)
    detail = f"{name}@{rv}" if outcome is OK else f"{name}: answer: timeout"
    return Op(ledger.LEDGER_CLIENT, float(i), end if end is not None else i + 0.1, outcome, detail)


def listed(reader: str, t: float = 100.0, **objects: int) -> Listing:
    """``listed("etcd a", _1=11)``: reader "etcd a" read at ``t`` and saw w-r-000001 at resourceVersion 11."""
    return Listing(reader, t, {object_name("r", int(k[1:])): str(v) for k, v in objects.items()})


HISTORY = [w(1, OK, 11), w(2, FAILED), w(3, UNKNOWN), w(4, UNKNOWN), w(5, OK, 15)]


def test_checker_passes_a_clean_history_and_counts_unknown_writes_that_landed() -> None:
    report = check_ledger(HISTORY, [listed("apiserver a", _1=11, _3=13, _5=15), listed("etcd a", _1=11, _3=13, _5=15)])
    assert report.valid and report.lost == 0, report.summary()
    assert (report.writes, report.acked, report.failed, report.unknown) == (5, 2, 1, 2)
    assert report.unknown_landed == (object_name("r", 3),)
    assert all(c.ok for c in report.checks())
    assert report.summary() == ("5 writes: 2 ok, 1 failed, 2 unknown (1 of those landed); lost 0; failed-but-present "
                                "0; resourceVersion mismatches 0; unchecked 0; 2 readers")


def test_checker_finds_an_acknowledged_write_missing_from_one_reader() -> None:
    report = check_ledger(HISTORY, [listed("apiserver a", _1=11, _5=15), listed("etcd a", _1=11)])
    assert not report.valid and report.lost == 1
    assert report.missing == (Missing("etcd a", object_name("r", 5)),)
    assert [c.name for c in report.checks() if not c.ok] == ["no acknowledged write lost"]


def test_checker_finds_a_failed_write_that_exists() -> None:
    report = check_ledger(HISTORY, [listed("apiserver a", _1=11, _2=12, _5=15)])
    assert not report.valid and report.lost == 0
    assert report.failed_present == (object_name("r", 2),)
    assert [c.name for c in report.checks() if not c.ok] == ["no failed write present"]


def test_checker_finds_an_object_listed_at_another_resource_version() -> None:
    report = check_ledger(HISTORY, [listed("apiserver a", _1=11, _5=15), listed("apiserver b", _1=11, _5=9)])
    assert not report.valid and report.lost == 0
    assert report.mismatched == (Mismatch("apiserver b", object_name("r", 5), "15", "9"),)
    assert [c.name for c in report.checks() if not c.ok] == ["resourceVersions as created"]


def test_a_read_judges_only_the_writes_acknowledged_before_it_began() -> None:
    early = listed("apiserver a", t=3.0, _1=11)  # began before write 5 was acknowledged, so need not show it
    late = listed("apiserver a", t=100.0, _1=11, _5=15)
    assert check_ledger(HISTORY, [early, late]).valid
    only_early = check_ledger(HISTORY, [early])
    assert not only_early.valid and only_early.lost == 0 and only_early.unchecked == (object_name("r", 5),)


def test_checker_ignores_other_clients_and_refuses_to_judge_without_reads_or_with_foreign_ops() -> None:
    probe = Op("readyz vip", 0.0, 0.1, OK, "ok")
    assert check_ledger([probe, *HISTORY], [listed("etcd a", _1=11, _5=15)]).writes == 5
    with pytest.raises(ScenarioError, match="no listings"):
        check_ledger(HISTORY, [])
    with pytest.raises(ScenarioError, match="not a write ledger op"):
        check_ledger([Op(ledger.LEDGER_CLIENT, 0.0, 0.1, OK, "w-r-000001")], [listed("etcd a")])
