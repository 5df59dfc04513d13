"""Clients of the Kubernetes API that record what they saw while a failover case runs, as ``model.Op`` rows:
the ``/readyz`` prober (``ApiProber``), and what it shares with the write ledger (``scenarios.failover.ledger``):
the admin client certificate (``ApiTLS``), one HTTPS request with a time budget (``request`` → ``Reply``),
and the threads that run on a fixed schedule inside the topology's network namespace (``Recorder``).

Jepsen's split, as in ``scenarios.workload``: a client records every operation as ok / failed / unknown and
decides nothing; checkers judge the history afterwards. The outcome rules are pure functions of a ``Reply``
(``readyz_outcome`` here, ``ledger.write_outcome``), so they read as a table and are tested as one.

Every request opens a fresh TCP + TLS connection. A kept-alive connection through the VIP is pinned by
haproxy to one apiserver, so it would measure that apiserver rather than what a new client of the VIP
sees; and requests that overlap need connections of their own anyway.
"""

from __future__ import annotations

import errno
import http.client
import logging
import math
import os
import shutil
import socket
import ssl
import tempfile
import threading
import time
import urllib.parse
import weakref
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Self

from core import waiting
from harness import netns as netns_mod
from installer.pki import kubeconfig
from scenarios.errors import ScenarioError
from scenarios.failover.model import Op, Outcome
from scenarios.workload import TLSFiles

log = logging.getLogger(__name__)

#: Most threads a ``Recorder`` starts: ``timeout / interval`` requests can be in flight at once.
MAX_THREADS = 64


# -- the admin client certificate ---------------------------------------------------------------------


@dataclass(frozen=True)
class ApiTLS(TLSFiles):
    """The cluster CA and a client certificate for kube-apiserver: ``TLSFiles`` (``context()`` is its), plus
    the private directory the certificate and key were extracted to, which ``close()`` removes."""

    scratch: Path | None = None

    @classmethod
    def from_store(cls, pki: Path) -> ApiTLS:
        """The cluster CA (``ca/ca.crt``) and the admin identity of ``cluster/admin.conf`` from a PKI store
        (``installer.pki.store``).

        admin.conf embeds its certificate and key (``client-*-data``); they are written to a fresh directory
        (mode 0700, files 0600) that ``close()`` removes, as does interpreter exit if ``close()`` is never
        called. The kubeconfig is read by ``installer.pki.kubeconfig.parse``, the reader of the layout that
        module writes (and kubeadm's), so no YAML library is needed at run time.
        """
        ca, conf = pki / "ca" / "ca.crt", pki / "cluster" / "admin.conf"
        for p in (ca, conf):
            if not p.is_file():
                raise FileNotFoundError(f"{p} is missing: build the PKI store first (`kha pki init`)")
        kc = kubeconfig.parse(conf.read_bytes(), str(conf))
        scratch = Path(tempfile.mkdtemp(prefix="kha-admin-tls-"))  # mkdtemp: mode 0700, only ours
        try:
            cert, key = scratch / "admin.crt", scratch / "admin.key"
            _write_private(cert, kc.cert_pem)
            _write_private(key, kc.key_pem)
        except BaseException:
            shutil.rmtree(scratch, ignore_errors=True)
            raise
        tls = cls(ca, cert, key, scratch)
        weakref.finalize(tls, shutil.rmtree, scratch, True)
        return tls

    def close(self) -> None:
        """Remove the extracted certificate and key (contexts made before keep working)."""
        if self.scratch is not None:
            shutil.rmtree(self.scratch, ignore_errors=True)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


# -- one HTTPS request ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Reply:
    """What one HTTPS request got: an HTTP answer (``status``, ``body``), or none and why (``error``).

    ``sent`` says whether any of the request may have left this host (the TLS handshake had completed);
    ``timed_out`` whether the request ran out of time. ``error`` is "<phase>: <kind>", the phase being
    connect (TCP and TLS), send or answer, and the kind refused, unreachable, timeout, reset,
    closed without an answer, tls <reason>, or the errno's name.
    """

    status: int | None
    body: bytes = b""
    error: str = ""
    sent: bool = False
    timed_out: bool = False

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")


def request(url: str, ctx: ssl.SSLContext, *, timeout: float, method: str = "GET", body: bytes | None = None,
            headers: Mapping[str, str] | None = None) -> Reply:
    """One request to ``url`` (https) on a new connection. Network failures are answers (a ``Reply`` without
    a status), never exceptions: a client records them.

    ``timeout`` bounds the whole request: each blocking step (connect and handshake, send, the answer's
    head, its body) gets what is left of it, so an answer trickling in can overrun it by one read at most.
    """
    parts = urllib.parse.urlsplit(url)
    if parts.scheme != "https" or not parts.hostname:
        raise ScenarioError(f"not an https URL: {url!r}")
    target = urllib.parse.urlunsplit(("", "", parts.path or "/", parts.query, ""))
    deadline = time.monotonic() + timeout
    host, port = parts.hostname, parts.port or 443
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    phase, sent = "connect", False
    try:
        # Connect and handshake here rather than in HTTPSConnection.connect(), which gives each the whole
        # timeout; http.client uses a connection's socket as it finds it.
        raw = socket.create_connection((host, port), timeout=timeout)
        try:
            raw.settimeout(_left(deadline))
            sock = conn.sock = ctx.wrap_socket(raw, server_hostname=host)
        except BaseException:
            raw.close()
            raise
        sock.settimeout(_left(deadline))
        phase, sent = "send", True
        conn.request(method, target, body=body, headers=dict(headers or {}))
        phase = "answer"
        sock.settimeout(_left(deadline))
        resp = conn.getresponse()
        sock.settimeout(_left(deadline))
        data = resp.read()
    except (OSError, http.client.HTTPException) as exc:
        return Reply(None, error=f"{phase}: {_kind(exc)}", sent=sent, timed_out=isinstance(exc, TimeoutError))
    finally:
        conn.close()
    return Reply(resp.status, data, sent=True)


def https_url(base_url: str, path: str) -> str:
    """``base_url`` (``https://host:port``) joined with ``path``; ``ScenarioError`` if it is not https."""
    parts = urllib.parse.urlsplit(base_url)
    if parts.scheme != "https" or not parts.hostname:
        raise ScenarioError(f"not an https URL: {base_url!r}")
    return base_url.rstrip("/") + path


def _left(deadline: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError("out of time")
    return left


def _kind(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timeout"
    if isinstance(exc, http.client.RemoteDisconnected):  # before ConnectionResetError: it is one
        return "closed without an answer"
    if isinstance(exc, ConnectionRefusedError):
        return "refused"
    if isinstance(exc, ssl.SSLError):
        return f"tls {exc.reason or exc}"
    if isinstance(exc, ConnectionResetError | ConnectionAbortedError | BrokenPipeError):
        return "reset"
    if isinstance(exc, OSError) and exc.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EHOSTDOWN):
        return "unreachable"
    if isinstance(exc, OSError) and exc.errno:
        return errno.errorcode.get(exc.errno, str(exc.errno)).lower()
    return f"{type(exc).__name__}: {exc}"


def gist(text: str, limit: int = 160) -> str:
    """One line of at most ``limit`` characters from an answer's body."""
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


# -- threads that record on a fixed schedule ----------------------------------------------------------------


class Recorder:
    """``threads`` threads that join network namespace ``netns`` (None: stay here) and record ``Op`` rows on
    one fixed schedule, slot *i* at ``t0 + i × interval``, until ``stop()`` or ``max_duration`` s after the
    start. Thread *k* takes slots k, k + threads, k + 2 × threads …; a thread that comes to a slot a whole
    interval late skips it (counted in ``skipped``) rather than bunching requests. Subclasses define
    ``_work``; a context manager; logs, never prints.
    """

    def __init__(self, name: str, *, netns: str | None, interval: float, timeout: float, max_duration: float,
                 threads: int) -> None:
        if interval <= 0 or timeout <= 0 or max_duration <= 0:
            raise ScenarioError(f"{name}: interval, timeout and max_duration must be positive "
                                f"({interval}, {timeout}, {max_duration})")
        if not 1 <= threads <= MAX_THREADS:
            raise ScenarioError(f"{name}: {threads} threads needed (timeout {timeout} s / interval {interval} s); "
                                f"at most {MAX_THREADS}")
        self.name = name
        self.netns = netns
        self.interval = interval
        self.timeout = timeout
        self.max_duration = max_duration
        self.threads = threads
        self.started = 0.0
        self.stopped = 0.0
        self.skipped = 0
        self._ops: list[Op] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._go = threading.Event()
        self._failure: BaseException | None = None
        self._threads: list[threading.Thread] = []

    # -- life cycle

    def start(self) -> Self:
        """Start the threads; return once all of them are inside ``netns`` and the schedule began."""
        if self._threads:
            raise ScenarioError(f"{self.name}: already started")
        ready = [threading.Event() for _ in range(self.threads)]
        self._threads = [threading.Thread(target=self._main, args=(k, ready[k]), name=f"{self.name}/{k}",
                                          daemon=True) for k in range(self.threads)]
        for t in self._threads:
            t.start()
        limit = time.monotonic() + 10.0
        all_ready = all(r.wait(max(0.0, limit - time.monotonic())) for r in ready)
        if self._failure is not None or not all_ready:
            self._stop.set()
            self._go.set()
            raise ScenarioError(f"{self.name}: could not start: {self._failure or 'threads not ready in 10 s'}") \
                from self._failure
        self.started = time.monotonic()
        self._go.set()
        log.debug("%s: started, %d thread(s), every %.3f s, for at most %.0f s", self.name, self.threads,
                  self.interval, self.max_duration)
        return self

    def stop(self) -> list[Op]:
        """Ask the threads to end, wait for requests in flight, and return the history; raises if a thread died."""
        if not self._threads:
            raise ScenarioError(f"{self.name}: never started")
        self._stop.set()
        limit = time.monotonic() + self.timeout + 10.0
        for t in self._threads:
            t.join(max(0.0, limit - time.monotonic()))
        if any(t.is_alive() for t in self._threads):
            raise ScenarioError(f"{self.name}: threads did not stop")
        if not self.stopped:
            self.stopped = time.monotonic()
        if self._failure is not None:
            raise ScenarioError(f"{self.name}: failed while running: {self._failure}") from self._failure
        log.info("%s: %s", self.name, self.summary())
        return self.history()

    @property
    def running(self) -> bool:
        return any(t.is_alive() for t in self._threads)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if not self._threads:
            return
        if exc is None:
            self.stop()
            return
        try:
            self.stop()
        except ScenarioError:
            log.warning("%s: also failed while the block raised", self.name, exc_info=True)

    # -- the history

    def history(self) -> list[Op]:
        """Every operation recorded so far, by start time (the threads keep running)."""
        with self._lock:
            ops = list(self._ops)
        return sorted(ops, key=lambda o: o.start)

    def summary(self) -> str:
        ops = self.history()
        count = {o: sum(1 for op in ops if op.outcome is o) for o in Outcome}
        late = f", {self.skipped} slot(s) skipped" if self.skipped else ""
        return (f"{len(ops)} ops: {count[Outcome.OK]} ok, {count[Outcome.FAILED]} failed, "
                f"{count[Outcome.UNKNOWN]} unknown{late}")

    def wait_for(self, what: str, predicate: Callable[[list[Op]], bool], timeout: float) -> float:
        """Until ``predicate(history())`` holds (say, 20 acknowledged writes before a fault is injected);
        the seconds that took. ``ScenarioError`` naming ``what`` after ``timeout`` s, or once the
        threads stopped without it holding."""
        def check() -> str | None:
            if predicate(self.history()):
                return None
            if self._failure is not None or (self._go.is_set() and not self.running):
                if predicate(self.history()):
                    return None
                raise ScenarioError(f"{self.name}: stopped before {what} ({self.summary()})") from self._failure
            return f"{self.name}: not yet {what} ({self.summary()})"
        return waiting.until(check, timeout=timeout, interval=0.02, error=ScenarioError)

    # -- inside the threads

    def _record(self, op: Op) -> None:
        with self._lock:
            self._ops.append(op)

    def _slots(self, first: int, step: int, deadline: float) -> Iterator[int]:
        """Slot numbers first, first + step, … as each one's time comes; ends at ``deadline`` or ``stop()``."""
        i = first
        while True:
            at = self.started + i * self.interval
            if at >= deadline or self._stop.wait(max(0.0, at - time.monotonic())):
                return
            if time.monotonic() - at < self.interval:
                yield i
            else:
                with self._lock:
                    self.skipped += 1
            i += step

    def _main(self, k: int, ready: threading.Event) -> None:
        try:
            if self.netns is not None:
                # Only this thread moves: the connections it opens live in the topology's network.
                netns_mod.enter(self.netns)
        except BaseException as exc:  # noqa: BLE001 - handed to start() in the caller's thread
            self._failure = exc
            return
        finally:
            ready.set()
        self._go.wait()
        if self._stop.is_set():
            return
        try:
            self._work(k, self.started + self.max_duration)
        except BaseException as exc:  # handed to stop() in the caller's thread
            log.exception("%s: thread %d failed", self.name, k)
            self._failure = exc
            self._stop.set()  # a broken client must not leave a history that looks whole

    def _work(self, k: int, deadline: float) -> None:
        raise NotImplementedError


# -- the /readyz prober ------------------------------------------------------------------------------------------


def readyz_outcome(reply: Reply) -> tuple[Outcome, str]:
    """The outcome of one ``GET /readyz`` and its detail.

    * ok: HTTP 200 with the body "ok": the apiserver served the request and says it is ready;
    * failed: certainly not served: no connection (refused, unreachable, TLS refused), the connection lost
      without an answer, or an answer other than 200 "ok" (a 5xx whose body lists the failing checks);
    * unknown: the request timed out, in any phase: the client gave up, which tells a slow server from a
      dead one no better than a coin (a SYN dropped while the VIP moves, an apiserver stuck on etcd).
    """
    if reply.status is None:
        return (Outcome.UNKNOWN if reply.timed_out else Outcome.FAILED), reply.error
    text = reply.text.strip()
    if reply.status == 200 and text == "ok":
        return Outcome.OK, "ok"
    failing = [line.strip() for line in text.splitlines() if line.strip().startswith("[-]")]
    return Outcome.FAILED, f"HTTP {reply.status}: {gist('; '.join(failing) or text)}"


class ApiProber(Recorder):
    """``GET {base_url}/readyz`` with a client certificate every ``interval`` s, each request given ``timeout``
    s, recorded as ``Op(client=name, …)`` by ``readyz_outcome``; stops by itself after ``max_duration`` s.

    Requests overlap, so one that hangs does not delay the next: ``ceil(timeout / interval) + 1`` threads
    take turns on one schedule (``Recorder``), each done with its request (bounded by ``timeout``) before
    its next turn comes. Threads rather than non-blocking sockets as in ``harness.probe.Prober``, because
    here a probe is a TLS handshake and an HTTP exchange, which ``http.client`` and ``ssl`` only do
    blocking; a fixed pool rather than a thread per request, because the threads join the network namespace
    once, before the schedule starts, so a namespace that cannot be entered fails ``start()`` instead of
    showing up as a history of failed probes. An op starts when its thread begins connecting.
    """

    def __init__(self, name: str, base_url: str, tls: TLSFiles, *, interval: float = 0.1, timeout: float = 1.0,
                 netns: str | None = None, max_duration: float) -> None:
        threads = math.ceil(timeout / interval) + 1 if interval > 0 and timeout > 0 else 1
        super().__init__(name, netns=netns, interval=interval, timeout=timeout, max_duration=max_duration,
                         threads=threads)
        self.url = https_url(base_url, "/readyz")
        self._ctx = tls.context()

    def _work(self, k: int, deadline: float) -> None:
        for _ in self._slots(k, self.threads, deadline):
            start = time.monotonic()
            reply = request(self.url, self._ctx, timeout=self.timeout)
            outcome, detail = readyz_outcome(reply)
            self._record(Op(self.name, start, time.monotonic(), outcome, detail))
