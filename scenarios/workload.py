"""A Jepsen-style etcd workload: a writer that records every operation, and a checker that judges afterwards.

Owns the client side of the failure suites' etcd checks. The ``Writer`` runs in a thread of its own that
joins the topology's network namespace (``harness.netns.enter``), so it reaches the nodes' addresses the
way a client on their network would, and talks to etcd's gRPC gateway: JSON over HTTPS with the client
certificate kube-apiserver uses (https://etcd.io/docs/v3.4/dev-guide/api_grpc_gateway/). Each write puts
one unique key (``k/000001`` …) and is recorded as

* ``ok``       etcd acknowledged it: it must be readable afterwards from every member;
* ``failed``   it certainly did not happen (the connection was never made, or etcd refused it outright);
* ``unknown``  it may or may not have happened (a timeout or a lost connection after the request left).

Nothing is decided while the writer runs; the ``Checker`` reads every key back from every member
(linearizable reads, so each member first catches up with the leader) and reports acknowledged writes
that are missing (the number that must be zero) and the windows in which no write succeeded.
Loops are bounded by a count and a duration, and stop by themselves.
"""

from __future__ import annotations

import base64
import http.client
import itertools
import json
import logging
import queue
import ssl
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from harness import netns
from scenarios.errors import ClientError
from scenarios.failover.model import Outcome

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True)
class Op:
    """One write as the client saw it. Times are ``time.monotonic()`` seconds."""

    index: int
    key: str
    value: str
    outcome: Outcome
    start: float
    end: float
    endpoint: str  # where it succeeded, or the last endpoint tried
    attempts: int = 1
    error: str = ""


@dataclass(frozen=True)
class TLSFiles:
    ca: Path
    cert: Path
    key: Path

    @classmethod
    def from_store(cls, pki: Path) -> TLSFiles:
        """The etcd CA and kube-apiserver's etcd client certificate from a PKI store (``installer.pki.store``)."""
        files = cls(pki / "ca" / "etcd" / "ca.crt", pki / "cluster" / "pki" / "apiserver-etcd-client.crt",
                    pki / "cluster" / "pki" / "apiserver-etcd-client.key")
        for p in (files.ca, files.cert, files.key):
            if not p.is_file():
                raise FileNotFoundError(f"{p} is missing: build the PKI store first (`kha pki init`)")
        return files

    def context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(self.ca))
        ctx.load_cert_chain(str(self.cert), str(self.key))
        return ctx


def _b64(s: str) -> str:
    return base64.b64encode(s.encode()).decode()


def _unb64(s: str) -> str:
    return base64.b64decode(s).decode()


def prefix_end(prefix: str) -> str:
    """etcd's range end for "every key starting with prefix": the prefix with its last byte + 1."""
    raw = prefix.encode()
    return (raw[:-1] + bytes([raw[-1] + 1])).decode()


class EtcdHTTP:
    """A minimal client of etcd's JSON gateway; one kept-alive connection per endpoint (per thread)."""

    def __init__(self, tls: TLSFiles, timeout: float = 1.0) -> None:
        self.ssl = tls.context()
        self.timeout = timeout
        self._local = threading.local()

    def _conns(self) -> dict[str, http.client.HTTPSConnection]:
        conns: dict[str, http.client.HTTPSConnection] | None = getattr(self._local, "conns", None)
        if conns is None:
            conns = self._local.conns = {}
        return conns

    def close(self) -> None:
        for c in self._conns().values():
            c.close()
        self._conns().clear()

    def post(self, endpoint: str, path: str, body: dict[str, Any], timeout: float | None = None) -> dict[str, Any]:
        """POST ``body`` to ``endpoint`` (``https://host:2379``) + ``path``; the decoded JSON answer."""
        conns = self._conns()
        limit = timeout or self.timeout
        conn = conns.get(endpoint)
        if conn is None:
            host, port = endpoint.removeprefix("https://").rsplit(":", 1)
            conn = http.client.HTTPSConnection(host, int(port), timeout=limit, context=self.ssl)
            try:
                conn.connect()
            except (OSError, ssl.SSLError) as exc:
                conn.close()
                # Nothing was sent: the write certainly did not happen.
                raise ClientError(f"connect: {exc}", definite=True) from exc
            conns[endpoint] = conn
        elif conn.sock is not None:
            conn.sock.settimeout(limit)
        try:
            conn.request("POST", path, body=json.dumps(body), headers={"Content-Type": "application/json"})
            resp = conn.getresponse()
            data = resp.read()
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            conns.pop(endpoint, None)
            # The request may have reached etcd and been applied: indeterminate.
            raise ClientError(f"{type(exc).__name__}: {exc}", definite=False) from exc
        if resp.status != 200:
            # 4xx: etcd rejected the request itself; anything else (503 "request timed out", "leader
            # changed") can still have been committed.
            raise ClientError(f"HTTP {resp.status}: {data[:200]!r}", definite=400 <= resp.status < 500)
        answer: dict[str, Any] = json.loads(data)
        return answer

    def put(self, endpoint: str, key: str, value: str, timeout: float | None = None) -> int:
        """Returns the revision of the write."""
        out = self.post(endpoint, "/v3/kv/put", {"key": _b64(key), "value": _b64(value)}, timeout)
        return int(out.get("header", {}).get("revision", 0))

    def range(self, endpoint: str, prefix: str, timeout: float | None = None) -> dict[str, str]:
        """Every key under ``prefix`` and its value, read linearizably through ``endpoint``."""
        out = self.post(endpoint, "/v3/kv/range", {"key": _b64(prefix), "range_end": _b64(prefix_end(prefix))},
                        timeout)
        return {_unb64(kv["key"]): _unb64(kv.get("value", "")) for kv in out.get("kvs", [])}

    def status(self, endpoint: str, timeout: float | None = None) -> dict[str, Any]:
        """``/v3/maintenance/status``: member id, leader id, raft term, revision (IDs are strings in JSON)."""
        return self.post(endpoint, "/v3/maintenance/status", {}, timeout)


def in_netns(name: str | None, fn: Callable[[], T], timeout: float = 120.0) -> T:
    """Run ``fn`` in a new thread that first joins network namespace ``name`` (None: here), and return its result."""
    box: queue.Queue[tuple[bool, Any]] = queue.Queue()

    def body() -> None:
        try:
            if name is not None:
                netns.enter(name)
            box.put((True, fn()))
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread as it is
            box.put((False, exc))

    threading.Thread(target=body, name=f"netns-{name}", daemon=True).start()
    try:
        ok, value = box.get(timeout=timeout)
    except queue.Empty:
        raise TimeoutError(f"work in namespace {name} did not finish in {timeout:.0f}s") from None
    if not ok:
        raise value
    result: T = value
    return result


@dataclass
class Writer:
    """Writes unique keys under ``prefix`` until ``count`` writes or ``duration`` seconds, whichever first.

    ``mode="failover"`` tries the endpoints in turn (starting round-robin) until one acknowledges, so the
    history measures when the *cluster* could not take a write; ``mode="round-robin"`` sends each write to
    one endpoint only. A put of the same key and value is idempotent, so retrying on another endpoint is
    safe. Use as a context manager or ``start()`` / ``stop()``; ``history`` is complete after ``join``.
    """

    client: EtcdHTTP
    endpoints: Sequence[str]
    netns: str | None = None
    prefix: str = "k/"
    count: int = 100_000
    duration: float = 60.0
    interval: float = 0.02
    timeout: float = 1.0
    mode: str = "failover"
    history: list[Op] = field(default_factory=list)
    started_at: float = 0.0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _error: BaseException | None = None

    def __post_init__(self) -> None:
        if self.mode not in ("failover", "round-robin"):
            raise ValueError(f"mode must be failover or round-robin, not {self.mode!r}")
        if not self.endpoints:
            raise ValueError("no endpoints to write to")

    def start(self) -> Writer:
        self._thread = threading.Thread(target=self._main, name="etcd-writer", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> list[Op]:
        self._stop.set()
        return self.join()

    def join(self, timeout: float | None = None) -> list[Op]:
        if self._thread is not None:
            self._thread.join(timeout if timeout is not None else self.duration + 30)
            if self._thread.is_alive():
                raise TimeoutError("the writer did not stop")
        if self._error is not None:
            raise self._error
        return self.history

    def __enter__(self) -> Writer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def acked(self) -> int:
        return sum(1 for op in self.history if op.outcome is Outcome.OK)

    def wait_acked(self, n: int, timeout: float = 30.0) -> None:
        """Until at least ``n`` writes were acknowledged (so a fault lands on a writer in full swing)."""
        deadline = time.monotonic() + timeout
        while self.acked() < n:
            if time.monotonic() > deadline or (self._thread is not None and not self._thread.is_alive()):
                raise TimeoutError(f"only {self.acked()} writes acknowledged after {timeout:.0f}s")
            time.sleep(0.05)

    def _main(self) -> None:
        try:
            if self.netns is not None:
                netns.enter(self.netns)
            self._loop()
        except BaseException as exc:  # noqa: BLE001 - re-raised by join() in the caller's thread
            self._error = exc
        finally:
            self.client.close()

    def _loop(self) -> None:
        self.started_at = time.monotonic()
        deadline = self.started_at + self.duration
        n = len(self.endpoints)
        for i in range(1, self.count + 1):
            now = time.monotonic()
            if self._stop.is_set() or now >= deadline:
                break
            key, value = f"{self.prefix}{i:06d}", f"v{i}"
            first = (i - 1) % n
            order = [self.endpoints[(first + j) % n] for j in range(n if self.mode == "failover" else 1)]
            outcome, endpoint, error, attempts = Outcome.FAILED, order[0], "", 0
            for ep in order:
                attempts += 1
                endpoint = ep
                try:
                    self.client.put(ep, key, value, self.timeout)
                except ClientError as exc:
                    error = str(exc)
                    if not exc.definite:
                        outcome = Outcome.UNKNOWN
                    continue
                outcome, error = Outcome.OK, ""
                break
            self.history.append(Op(i, key, value, outcome, now, time.monotonic(), endpoint, attempts, error))
            pause = self.interval - (time.monotonic() - now)
            if pause > 0:
                self._stop.wait(pause)


@dataclass(frozen=True)
class Window:
    """A stretch without a successful write: from the last acknowledgement before it to the first after it."""

    start: float
    end: float

    @property
    def seconds(self) -> float:
        return self.end - self.start


@dataclass(frozen=True)
class Report:
    ops: int
    ok: int
    failed: int
    unknown: int
    #: endpoint → acknowledged keys it does not have (must all be empty).
    missing: dict[str, list[str]]
    #: writes recorded as failed that are present anyway: a client that misjudged (must be empty).
    failed_present: list[str]
    unknown_present: int
    longest_gap: float
    windows: list[Window]
    started: float

    @property
    def lost(self) -> int:
        """Acknowledged writes missing from at least one member."""
        return len({k for keys in self.missing.values() for k in keys})

    @property
    def valid(self) -> bool:
        return self.lost == 0 and not self.failed_present

    def summary(self) -> str:
        worst = max(self.windows, key=lambda w: w.seconds, default=None)
        at = f" at +{worst.start - self.started:.2f}s" if worst else ""
        return (f"{self.ops} writes: {self.ok} ok, {self.failed} failed, {self.unknown} unknown "
                f"({self.unknown_present} of those landed); lost {self.lost}; failed-but-present "
                f"{len(self.failed_present)}; longest gap between acknowledged writes "
                f"{1000 * self.longest_gap:.0f} ms{at}")


def gaps(history: Sequence[Op], threshold: float) -> tuple[float, list[Window]]:
    """The longest stretch between consecutive acknowledgements (counting from the first write's start and to
    the last write's end), and every stretch longer than ``threshold``."""
    if not history:
        return 0.0, []
    marks = [history[0].start, *sorted(op.end for op in history if op.outcome is Outcome.OK),
             max(op.end for op in history)]
    windows = [Window(a, b) for a, b in itertools.pairwise(marks) if b - a > threshold]
    longest = max((b - a for a, b in itertools.pairwise(marks)), default=0.0)
    return longest, windows


@dataclass
class Checker:
    """Reads everything back from every member after the fact and judges a writer's history."""

    client: EtcdHTTP
    endpoints: Sequence[str]
    netns: str | None = None
    read_timeout: float = 5.0
    retry_for: float = 30.0

    def read_all(self, prefix: str) -> dict[str, dict[str, str]]:
        """endpoint → {key: value}, each through a linearizable read on that member (retried while it recovers)."""
        def read() -> dict[str, dict[str, str]]:
            out: dict[str, dict[str, str]] = {}
            try:
                for ep in self.endpoints:
                    deadline = time.monotonic() + self.retry_for
                    while True:
                        try:
                            out[ep] = self.client.range(ep, prefix, self.read_timeout)
                            break
                        except ClientError as exc:
                            if time.monotonic() > deadline:
                                raise AssertionError(f"cannot read {prefix}* from {ep}: {exc}") from exc
                            time.sleep(0.5)
            finally:
                self.client.close()
            return out
        return in_netns(self.netns, read, timeout=self.retry_for * len(self.endpoints) + 30)

    def check(self, history: Sequence[Op], prefix: str = "k/", gap_threshold: float = 0.5) -> Report:
        data = self.read_all(prefix)
        acked = [op for op in history if op.outcome is Outcome.OK]
        missing = {ep: [op.key for op in acked if kv.get(op.key) != op.value] for ep, kv in data.items()}
        anywhere = {k for kv in data.values() for k in kv}
        failed_present = [op.key for op in history if op.outcome is Outcome.FAILED and op.key in anywhere]
        unknown_present = sum(1 for op in history if op.outcome is Outcome.UNKNOWN and op.key in anywhere)
        longest, windows = gaps(history, gap_threshold)
        return Report(
            ops=len(history), ok=len(acked),
            failed=sum(1 for op in history if op.outcome is Outcome.FAILED),
            unknown=sum(1 for op in history if op.outcome is Outcome.UNKNOWN),
            missing=missing, failed_present=failed_present, unknown_present=unknown_present,
            longest_gap=longest, windows=windows, started=history[0].start if history else 0.0)


def wait_for(cond: Callable[[], bool], timeout: float, what: str, step: float = 0.2) -> float:
    """Poll ``cond`` until true; seconds taken. AssertionError naming ``what`` on timeout."""
    start = time.monotonic()
    while not cond():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"{what}: not after {timeout:.0f}s")
        time.sleep(step)
    return time.monotonic() - start


def leader_of(client: EtcdHTTP, endpoints: Sequence[str], netns_name: str | None, timeout: float = 1.0) -> int:
    """The leader ID some member reports (0: none answered with a leader)."""
    def ask() -> int:
        try:
            for ep in endpoints:
                try:
                    leader = int(client.status(ep, timeout).get("leader", 0))
                except (ClientError, ValueError):
                    continue
                if leader:
                    return leader
            return 0
        finally:
            client.close()
    return in_netns(netns_name, ask)
