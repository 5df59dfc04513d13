"""Clients that watch a topology from inside its network while faults happen, and the histories they leave.

Jepsen's split: a client records every operation; a checker decides afterwards from the history. This
module owns two such clients and their histories:

* ``Prober`` opens a TCP connection to ``address:port`` on a fixed schedule (every 100 ms by default)
  and records each attempt as an ``Attempt`` (when its SYN left, on the monotonic clock; ok, latency,
  error kind).
  Attempts are non-blocking and overlap, so a connect that hangs does not delay the next one: the
  schedule, not the timeout, sets the resolution. ``History`` answers: the outages (maximal runs of
  failed attempts), the longest, how many.
* ``VipWatcher`` samples who holds a virtual IP (``sample()`` returns the holders' names) on its own
  schedule; ``Timeline`` answers: most holders at once, samples with two or more, the moves.
  ``ArpHolders`` is a sampler that asks the wire: one ARP request for the VIP on the topology's
  bridge, and every node that answers holds it — what a client sees, atomic across nodes, and it needs
  no login on a node that may be powered off or cut off.

Both run in a thread of their own that joins the topology's network namespace first
(``harness.netns.enter``; namespaces are per thread, the rest of the process stays put), or stays on
this host when ``netns`` is None. Both are bounded (``max_duration``), stop by themselves, and are
context managers. They log; they never print.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import selectors
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Self

from harness import netns as netns_mod
from harness.errors import HarnessError

log = logging.getLogger(__name__)

#: Default connect timeout. Below Linux's initial SYN retransmission timeout of 1 s (RFC 6298 §2.1,
#: TCP_TIMEOUT_INIT), so each attempt measures exactly one SYN: an attempt started during an outage
#: cannot be counted as served because a retransmitted SYN got through after the failover.
CONNECT_TIMEOUT_S = 0.5


class ProbeError(HarnessError):
    """A prober or watcher could not run (namespace not entered, thread died, bad arguments)."""


# -- the prober's history --------------------------------------------------------------------------


@dataclass(frozen=True)
class Attempt:
    """One connection attempt: its SYN left at ``start`` (time.monotonic, read when ``connect()``
    returned), its answer came ``latency`` s later."""

    start: float
    ok: bool
    latency: float
    #: None when ok; else "refused", "timeout", "unreachable", "reset" (aborted locally) or the errno
    #: name ("eperm").
    error: str | None = None


@dataclass(frozen=True)
class Outage:
    """A maximal run of failed attempts: from the first failure's start to the first success's start.

    ``end`` is None when the history ended before the service came back.
    """

    start: float
    end: float | None
    failures: int
    errors: tuple[str, ...]

    @property
    def duration(self) -> float | None:
        return None if self.end is None else self.end - self.start


@dataclass(frozen=True)
class History:
    """Every attempt of one prober run, sorted by start, with the run's bounds and named marks."""

    attempts: tuple[Attempt, ...]
    started: float
    stopped: float
    marks: tuple[tuple[str, float], ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "attempts", tuple(sorted(self.attempts, key=lambda a: a.start)))

    @property
    def ok_count(self) -> int:
        return sum(a.ok for a in self.attempts)

    @property
    def failed_count(self) -> int:
        return len(self.attempts) - self.ok_count

    def mark(self, label: str) -> float:
        """The time of the last mark named ``label`` (a ``KeyError`` names the marks there are)."""
        found = [t for name, t in self.marks if name == label]
        if not found:
            raise KeyError(f"no mark {label!r} in this history (marks: {[n for n, _ in self.marks]})")
        return found[-1]

    def since(self, t: float) -> History:
        """The attempts started at or after ``t`` (e.g. after a heal), as a history of their own."""
        return History(tuple(a for a in self.attempts if a.start >= t), max(t, self.started), self.stopped,
                       tuple(m for m in self.marks if m[1] >= t))

    def between(self, t0: float, t1: float) -> History:
        return History(tuple(a for a in self.attempts if t0 <= a.start < t1), t0, t1,
                       tuple(m for m in self.marks if t0 <= m[1] < t1))

    def outages(self) -> list[Outage]:
        out: list[Outage] = []
        run: list[Attempt] = []
        for a in self.attempts:
            if not a.ok:
                run.append(a)
                continue
            if run:
                out.append(_outage(run, a.start))
                run = []
        if run:
            out.append(_outage(run, None))
        return out

    @property
    def outage_count(self) -> int:
        """Number of outage windows: 1 is one failover; more means the service flapped."""
        return len(self.outages())

    def longest_outage(self) -> Outage | None:
        """The longest outage; one still going at the end counts until the history stopped."""
        outages = self.outages()
        if not outages:
            return None
        return max(outages, key=lambda o: (o.end if o.end is not None else self.stopped) - o.start)

    def first_ok_after(self, t: float) -> Attempt | None:
        return next((a for a in self.attempts if a.start >= t and a.ok), None)

    def first_outage_after(self, t: float) -> Outage | None:
        """The first outage that began at or after ``t`` (a fault's mark): its duration is the failover."""
        return next((o for o in self.outages() if o.start >= t), None)

    def summary(self) -> str:
        longest = self.longest_outage()
        worst = "none" if longest is None else (
            f"{longest.duration:.2f}s" if longest.duration is not None else "still down at the end")
        return (f"{len(self.attempts)} attempts over {self.stopped - self.started:.1f}s, {self.failed_count} failed, "
                f"{self.outage_count} outage(s), longest {worst}")


def _outage(run: list[Attempt], end: float | None) -> Outage:
    kinds = tuple(dict.fromkeys(a.error or "?" for a in run))
    return Outage(run[0].start, end, len(run), kinds)


# -- threads that measure from inside the topology's network -----------------------------------------


class Worker:
    """A bounded thread that joins ``netns`` (if any) and runs ``_loop`` until stopped or out of time."""

    def __init__(self, name: str, netns: str | None, max_duration: float) -> None:
        if max_duration <= 0:
            raise ProbeError(f"{name}: max_duration must be positive, not {max_duration}")
        self.name = name
        self.netns = netns
        self.max_duration = max_duration
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._failure: BaseException | None = None
        self._thread: threading.Thread | None = None
        self.started = 0.0
        self.stopped = 0.0

    def start(self) -> Self:
        if self._thread is not None:
            raise ProbeError(f"{self.name}: already started")
        self._thread = threading.Thread(target=self._main, name=self.name, daemon=True)
        self._thread.start()
        if not self._ready.wait(10.0) or self._failure is not None:
            self._stop.set()
            raise ProbeError(f"{self.name}: could not start: {self._failure or 'no answer in 10 s'}") \
                from self._failure
        return self

    def stop(self) -> None:
        """Ask the thread to end, wait for it, and raise if it died of an error."""
        if self._thread is None:
            raise ProbeError(f"{self.name}: never started")
        self._stop.set()
        self._thread.join(self.join_timeout())
        if self._thread.is_alive():
            raise ProbeError(f"{self.name}: thread did not stop")
        if self._failure is not None:
            raise ProbeError(f"{self.name}: failed while running: {self._failure}") from self._failure

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def join_timeout(self) -> float:
        return 10.0

    def _main(self) -> None:
        try:
            if self.netns is not None:
                # Only this thread moves: the sockets it opens live in the topology's network.
                netns_mod.enter(self.netns)
            self.started = time.monotonic()
            self._ready.set()
            self._loop(self.started + self.max_duration)
        except BaseException as exc:  # handed to the caller's thread by start()/stop()
            log.exception("%s failed", self.name)
            self._failure = exc
        finally:
            self.stopped = time.monotonic()
            self._ready.set()

    def _loop(self, deadline: float) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._thread is None:
            return
        if exc is None:
            self.stop()
            return
        try:
            self.stop()
        except ProbeError:
            log.warning("%s: also failed while the block raised", self.name, exc_info=True)


#: SO_ERROR values that only a socket whose handshake had completed can hold. Linux's tcp_reset() gives a
#: socket still in SYN_SENT ECONNREFUSED, one in CLOSE_WAIT EPIPE, and any other state ECONNRESET
#: (https://github.com/torvalds/linux/blob/v6.6/net/ipv4/tcp_input.c, tcp_reset). A server that stops
#: with handshakes in its accept queue resets them: the handshake did complete (the attempt was served),
#: the prober just looked after the RST came.
_RESET_AFTER_HANDSHAKE = frozenset({errno.ECONNRESET, errno.EPIPE})


def _error_kind(code: int) -> str:
    if code == errno.ECONNREFUSED:
        return "refused"
    if code in (errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EHOSTDOWN):
        return "unreachable"
    if code in (errno.ECONNRESET, errno.ECONNABORTED):
        return "reset"
    if code == errno.ETIMEDOUT:
        return "timeout"
    return errno.errorcode.get(code, str(code)).lower()


class Prober(Worker):
    """TCP connects to ``address:port`` every ``interval`` s, each given ``timeout`` s, for at most
    ``max_duration`` s; ``history()`` at any time, ``stop()`` to end.

    An attempt succeeds when the three-way handshake completes: for a load balancer without live
    backends (haproxy accepts, then closes) that is exactly "the VIP serves". What the prober records
    must not depend on when its thread gets the CPU, so an attempt is timed from the moment
    ``connect()`` returned (not from when the loop woke: a fault in between would be charged to an
    attempt that seemed to start before it), and a reset that can only follow a completed handshake
    counts as served (the thread merely looked late).
    """

    def __init__(self, address: str, port: int, *, netns: str | None = None, interval: float = 0.1,
                 timeout: float = CONNECT_TIMEOUT_S, max_duration: float = 120.0, name: str | None = None) -> None:
        super().__init__(name or f"probe-{address}:{port}", netns, max_duration)
        if interval <= 0 or timeout <= 0:
            raise ProbeError(f"{self.name}: interval and timeout must be positive ({interval}, {timeout})")
        self.address = address
        self.port = port
        self.interval = interval
        self.timeout = timeout
        self._lock = threading.Lock()
        self._attempts: list[Attempt] = []
        self._marks: list[tuple[str, float]] = []

    def join_timeout(self) -> float:
        return self.timeout + 10.0

    def mark(self, label: str) -> float:
        """Record a named moment (``inject``, ``heal``) in the history; returns its time."""
        now = time.monotonic()
        with self._lock:
            self._marks.append((label, now))
        return now

    def history(self) -> History:
        """What was recorded so far (the prober keeps running)."""
        with self._lock:
            attempts, marks = tuple(self._attempts), tuple(self._marks)
        end = self.stopped if self.stopped else time.monotonic()
        return History(attempts, self.started or end, end, marks)

    def stop(self) -> None:
        super().stop()
        log.info("%s: %s", self.name, self.history().summary())

    def wait_for(self, predicate: Callable[[History], bool], timeout: float, poll: float = 0.05) -> History:
        """Poll ``history()`` until ``predicate`` holds; raise ``ProbeError`` after ``timeout`` s."""
        deadline = time.monotonic() + timeout
        while True:
            hist = self.history()
            if predicate(hist):
                return hist
            if self._failure is not None or not self.running:
                raise ProbeError(f"{self.name}: stopped while waiting ({hist.summary()})") from self._failure
            if time.monotonic() > deadline:
                raise ProbeError(f"{self.name}: condition not met within {timeout:.1f}s ({hist.summary()})")
            time.sleep(poll)

    def _record(self, attempt: Attempt) -> None:
        with self._lock:
            self._attempts.append(attempt)

    def _loop(self, deadline: float) -> None:
        sel = selectors.DefaultSelector()
        pending: dict[socket.socket, float] = {}  # socket → its attempt's start
        next_at = time.monotonic()
        try:
            while True:
                now = time.monotonic()
                launching = not self._stop.is_set() and now < deadline
                if not launching and not pending:
                    return
                if launching and now >= next_at:
                    self._launch(sel, pending)
                    next_at += self.interval
                    if next_at <= now:  # the thread was starved: skip the ticks it missed, keep the pace
                        next_at = now + self.interval
                wake = min([*(start + self.timeout for start in pending.values()),
                            *([next_at] if launching else []), now + 0.05])
                for key, _events in sel.select(max(0.0, wake - time.monotonic())):
                    sock = key.fileobj
                    assert isinstance(sock, socket.socket)
                    code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                    self._finish(sel, pending, sock, code)
                now = time.monotonic()
                for sock, start in list(pending.items()):
                    if now - start >= self.timeout:
                        self._finish(sel, pending, sock, None)
        finally:
            for sock in list(pending):
                sock.close()
            sel.close()

    def _launch(self, sel: selectors.BaseSelector, pending: dict[socket.socket, float]) -> None:
        try:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        except OSError as exc:
            self._record(Attempt(time.monotonic(), False, 0.0, _error_kind(exc.errno or 0)))
            return
        sock.setblocking(False)
        code = sock.connect_ex((self.address, self.port))
        # Read the clock once the SYN is out, not before: a thread descheduled between the two would
        # date a refusal caused by a fault in that gap to before the fault.
        start = time.monotonic()
        if code == errno.EINPROGRESS:
            pending[sock] = start
            sel.register(sock, selectors.EVENT_WRITE)
            return
        self._record(Attempt(start, code == 0, time.monotonic() - start, None if code == 0 else _error_kind(code)))
        sock.close()

    def _finish(self, sel: selectors.BaseSelector, pending: dict[socket.socket, float], sock: socket.socket,
                code: int | None) -> None:
        """``code`` is the socket's SO_ERROR (0 = connected), or None when the attempt timed out."""
        start = pending.pop(sock)
        sel.unregister(sock)
        sock.close()
        latency = time.monotonic() - start
        if code is None:
            self._record(Attempt(start, False, latency, "timeout"))
        elif code == 0 or code in _RESET_AFTER_HANDSHAKE:
            self._record(Attempt(start, True, latency))
        else:
            self._record(Attempt(start, False, latency, _error_kind(code)))


# -- who holds the VIP -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sample:
    """The holders seen by one sample taken between ``start`` and ``end``; ``error`` if it failed."""

    start: float
    end: float
    holders: frozenset[str]
    error: str | None = None


@dataclass(frozen=True)
class Move:
    """The VIP went from one single holder to another (samples with none in between are skipped)."""

    at: float  # start of the first sample that saw the new holder
    source: str
    target: str


@dataclass(frozen=True)
class Timeline:
    samples: tuple[Sample, ...]
    started: float
    stopped: float

    @property
    def good(self) -> tuple[Sample, ...]:
        return tuple(s for s in self.samples if s.error is None)

    @property
    def errors(self) -> tuple[Sample, ...]:
        return tuple(s for s in self.samples if s.error is not None)

    def max_holders(self) -> int:
        return max((len(s.holders) for s in self.good), default=0)

    def split_brain(self) -> tuple[Sample, ...]:
        """Samples that saw two or more holders at once."""
        return tuple(s for s in self.good if len(s.holders) > 1)

    def moves(self) -> list[Move]:
        out: list[Move] = []
        last: str | None = None
        for s in self.good:
            if len(s.holders) != 1:
                continue
            (now,) = s.holders
            if last is not None and now != last:
                out.append(Move(s.start, last, now))
            last = now
        return out

    def holders_seen(self) -> list[frozenset[str]]:
        """The distinct holder sets in order, runs collapsed: [{a}, {}, {b}] for one failover."""
        out: list[frozenset[str]] = []
        for s in self.good:
            if not out or out[-1] != s.holders:
                out.append(s.holders)
        return out

    def settled_since(self) -> float | None:
        """Start of the trailing run of samples that all saw one and the same single holder; None if the
        last sample saw none or several."""
        good = self.good
        if not good or len(good[-1].holders) != 1:
            return None
        i = len(good) - 1
        while i > 0 and good[i - 1].holders == good[-1].holders:
            i -= 1
        return good[i].start

    def since(self, t: float) -> Timeline:
        return Timeline(tuple(s for s in self.samples if s.start >= t), max(t, self.started), self.stopped)

    def last(self) -> Sample | None:
        good = self.good
        return good[-1] if good else None

    def summary(self) -> str:
        seen = " → ".join("{" + ",".join(sorted(h)) + "}" for h in self.holders_seen())
        return (f"{len(self.samples)} samples over {self.stopped - self.started:.1f}s ({len(self.errors)} failed), "
                f"max {self.max_holders()} holder(s), {len(self.moves())} move(s): {seen or 'nothing seen'}")


class VipWatcher(Worker):
    """Calls ``sample()`` (→ the names holding the VIP now) every ``period`` s from inside ``netns``."""

    def __init__(self, sample: Callable[[], Iterable[str]], *, netns: str | None = None, period: float = 0.2,
                 max_duration: float = 120.0, name: str = "vip-watch") -> None:
        super().__init__(name, netns, max_duration)
        if period <= 0:
            raise ProbeError(f"{name}: period must be positive, not {period}")
        self.sample = sample
        self.period = period
        self._lock = threading.Lock()
        self._samples: list[Sample] = []

    def timeline(self) -> Timeline:
        with self._lock:
            samples = tuple(self._samples)
        end = self.stopped if self.stopped else time.monotonic()
        return Timeline(samples, self.started or end, end)

    def stop(self) -> None:
        super().stop()
        log.info("%s: %s", self.name, self.timeline().summary())

    def wait_for(self, predicate: Callable[[Timeline], bool], timeout: float, poll: float = 0.05) -> Timeline:
        """Poll ``timeline()`` until ``predicate`` holds; raise ``ProbeError`` after ``timeout`` s."""
        deadline = time.monotonic() + timeout
        while True:
            tl = self.timeline()
            if predicate(tl):
                return tl
            if self._failure is not None or not self.running:
                raise ProbeError(f"{self.name}: stopped while waiting ({tl.summary()})") from self._failure
            if time.monotonic() > deadline:
                raise ProbeError(f"{self.name}: condition not met within {timeout:.1f}s ({tl.summary()})")
            time.sleep(poll)

    def _loop(self, deadline: float) -> None:
        next_at = time.monotonic()
        while not self._stop.is_set() and time.monotonic() < deadline:
            start = time.monotonic()
            try:
                holders, error = frozenset(self.sample()), None
            except (OSError, HarnessError, TimeoutError) as exc:
                # A failed sample is recorded, not fatal: a checker decides whether it matters.
                holders, error = frozenset(), f"{type(exc).__name__}: {exc}"
            with self._lock:
                self._samples.append(Sample(start, time.monotonic(), holders, error))
            next_at = max(next_at + self.period, time.monotonic())
            self._stop.wait(max(0.0, next_at - time.monotonic()))


# -- ARP: who answers for the VIP on the wire ----------------------------------------------------------

_ETH_P_ARP = 0x0806
_SIOCGIFHWADDR = 0x8927  # <linux/sockios.h>
_BROADCAST = b"\xff" * 6


def mac_bytes(mac: str) -> bytes:
    parts = mac.split(":")
    if len(parts) != 6:
        raise ProbeError(f"not a MAC address: {mac!r}")
    return bytes(int(p, 16) for p in parts)


def mac_text(raw: bytes) -> str:
    return ":".join(f"{b:02x}" for b in raw)


def arp_probe(src_mac: bytes, target_ip: str) -> bytes:
    """An Ethernet frame carrying an ARP probe for ``target_ip`` (RFC 5227 §2.1.1: sender IP 0.0.0.0).

    A probe changes no neighbour table on the nodes, and Linux answers it with a reply sent straight
    back to ``src_mac`` from every interface that owns ``target_ip`` (arp_process in net/ipv4/arp.c).
    """
    eth = _BROADCAST + src_mac + struct.pack("!H", _ETH_P_ARP)
    arp = struct.pack("!HHBBH6s4s6s4s", 1, 0x0800, 6, 4, 1, src_mac, bytes(4), bytes(6),
                      socket.inet_aton(target_ip))
    return eth + arp


def parse_arp_reply(frame: bytes, target_ip: str, our_mac: bytes) -> str | None:
    """The sender MAC of an ARP reply to our probe for ``target_ip``; None for any other frame."""
    if len(frame) < 42 or frame[12:14] != struct.pack("!H", _ETH_P_ARP):
        return None
    _htype, ptype, _hlen, _plen, op, sha, spa, tha, _tpa = struct.unpack("!HHBBH6s4s6s4s", frame[14:42])
    if ptype != 0x0800 or op != 2 or spa != socket.inet_aton(target_ip) or tha != our_mac:
        return None
    return mac_text(sha)


class ArpHolders:
    """A ``VipWatcher`` sampler: sends one ARP probe for ``vip`` on ``interface`` and names every MAC
    that answers within ``window`` s (``names`` maps MAC → node; unknown MACs are returned as is).

    Call it from a thread inside the network namespace that holds ``interface`` (the watcher's); the
    raw socket is opened on first use, in that thread. Needs CAP_NET_RAW (the harness runs as root).
    """

    def __init__(self, interface: str, vip: str, names: Mapping[str, str], window: float = 0.1) -> None:
        self.interface = interface
        self.vip = vip
        self.names = {mac.lower(): name for mac, name in names.items()}
        self.window = window
        self._sock: socket.socket | None = None
        self._mac = b""

    def _open(self) -> socket.socket:
        if self._sock is None:
            sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(_ETH_P_ARP))
            try:
                sock.bind((self.interface, _ETH_P_ARP))
                ifreq = fcntl.ioctl(sock.fileno(), _SIOCGIFHWADDR, struct.pack("256s", self.interface.encode()))
            except OSError:
                sock.close()
                raise
            self._mac = ifreq[18:24]
            sock.setblocking(False)
            self._sock = sock
        return self._sock

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def __call__(self) -> set[str]:
        sock = self._open()
        while True:  # drop late answers to an earlier probe
            try:
                sock.recv(2048)
            except BlockingIOError:
                break
        sock.send(arp_probe(self._mac, self.vip))
        seen: set[str] = set()
        deadline = time.monotonic() + self.window
        with selectors.DefaultSelector() as sel:
            sel.register(sock, selectors.EVENT_READ)
            while (left := deadline - time.monotonic()) > 0:
                if not sel.select(left):
                    break
                while True:
                    try:
                        frame = sock.recv(2048)
                    except BlockingIOError:
                        break
                    mac = parse_arp_reply(frame, self.vip, self._mac)
                    if mac is not None:
                        seen.add(self.names.get(mac, mac))
        return seen


@dataclass
class Watch:
    """A prober and a VIP watcher started and stopped together (what a failover test runs)."""

    prober: Prober
    watcher: VipWatcher
    closers: list[Callable[[], None]] = field(default_factory=list)

    def __enter__(self) -> Self:
        self.prober.start()
        try:
            self.watcher.start()
        except ProbeError:
            self.prober.stop()
            raise
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        try:
            self.watcher.__exit__(exc_type, exc, tb)
        finally:
            try:
                self.prober.__exit__(exc_type, exc, tb)
            finally:
                for close in self.closers:
                    close()

    def mark(self, label: str) -> float:
        return self.prober.mark(label)
