"""harness.probe: the checkers on synthetic histories, and the prober against real sockets on 127.0.0.1."""

from __future__ import annotations

import selectors
import socket
import threading
import time
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest

from harness import probe
from harness.probe import (
    ArpHolders,
    Attempt,
    History,
    ProbeError,
    Prober,
    Sample,
    Timeline,
    VipWatcher,
    arp_probe,
    mac_bytes,
    parse_arp_reply,
)


def history(pattern: str, step: float = 0.1, t0: float = 100.0) -> History:
    """``"..xx.x"``: one attempt per character, ``.`` accepted, ``x`` refused, ``step`` s apart."""
    attempts = [Attempt(t0 + i * step, c == ".", 0.001, None if c == "." else "refused") for i, c in enumerate(pattern)]
    return History(tuple(reversed(attempts)), t0, t0 + len(pattern) * step)


# -- History -------------------------------------------------------------------------------------------


def test_no_failures_no_outage() -> None:
    h = history("......")
    assert h.outages() == [] and h.outage_count == 0 and h.longest_outage() is None
    assert (h.ok_count, h.failed_count) == (6, 0)


def test_an_outage_runs_from_the_first_failure_to_the_first_success_after_it() -> None:
    h = history("..xxx...")
    (o,) = h.outages()
    assert o.start == pytest.approx(100.2) and o.end == pytest.approx(100.5)
    assert o.duration == pytest.approx(0.3) and o.failures == 3 and o.errors == ("refused",)


def test_attempts_are_sorted_by_start_whatever_order_they_finished_in() -> None:
    h = history(".x.")
    assert [a.start for a in h.attempts] == sorted(a.start for a in h.attempts)


def test_flapping_shows_as_several_windows_and_the_longest_is_found() -> None:
    h = history(".x..xxxx.xx.")
    assert h.outage_count == 3
    longest = h.longest_outage()
    assert longest is not None and longest.failures == 4 and longest.duration == pytest.approx(0.4)


def test_an_outage_still_going_at_the_end_has_no_end_and_counts_until_the_history_stopped() -> None:
    h = history("..x.xxxxxx")
    last = h.outages()[-1]
    assert last.end is None and last.duration is None
    assert h.longest_outage() == last


def test_first_outage_after_a_mark_and_since() -> None:
    h = history("x....xxx....")
    o = h.first_outage_after(100.25)
    assert o is not None and o.start == pytest.approx(100.5) and o.duration == pytest.approx(0.3)
    assert h.since(100.85).outage_count == 0
    assert h.first_outage_after(101.0) is None
    assert h.first_ok_after(100.55) == h.attempts[8]


def test_marks_are_kept_and_looked_up() -> None:
    h = History((), 0.0, 1.0, (("inject", 0.2), ("heal", 0.6)))
    assert h.mark("heal") == 0.6
    with pytest.raises(KeyError, match="inject"):
        h.mark("nope")


# -- Timeline ----------------------------------------------------------------------------------------


def timeline(*holders: str, errors: frozenset[int] = frozenset()) -> Timeline:
    """One sample per argument: ``"a"``, ``"ab"`` (two holders), ``""`` (none); 0.2 s apart."""
    samples = tuple(Sample(i * 0.2, i * 0.2 + 0.01, frozenset(h), "boom" if i in errors else None)
                    for i, h in enumerate(holders))
    return Timeline(samples, 0.0, len(holders) * 0.2)


def test_one_failover_is_one_move_through_an_empty_gap() -> None:
    tl = timeline("a", "a", "", "", "b", "b")
    assert [(m.source, m.target) for m in tl.moves()] == [("a", "b")]
    assert tl.moves()[0].at == pytest.approx(0.8)
    assert tl.max_holders() == 1 and tl.split_brain() == ()
    assert tl.holders_seen() == [frozenset("a"), frozenset(), frozenset("b")]


def test_flapping_counts_every_move_and_split_brain_is_seen() -> None:
    tl = timeline("a", "b", "ab", "a", "b")
    assert [(m.source, m.target) for m in tl.moves()] == [("a", "b"), ("b", "a"), ("a", "b")]
    assert tl.max_holders() == 2 and [s.holders for s in tl.split_brain()] == [frozenset("ab")]


def test_failed_samples_are_left_out_of_the_analysis() -> None:
    tl = timeline("a", "", "a", errors=frozenset({1}))
    assert len(tl.errors) == 1 and tl.holders_seen() == [frozenset("a")]


def test_settled_since_is_the_start_of_the_trailing_single_holder_run() -> None:
    assert timeline("a", "ab", "b", "b").settled_since() == pytest.approx(0.4)
    assert timeline("a", "a").settled_since() == pytest.approx(0.0)
    assert timeline("a", "").settled_since() is None
    assert timeline("a", "ab").settled_since() is None


# -- Prober on real sockets -----------------------------------------------------------------------------


class Server:
    """A TCP server on 127.0.0.1 that accepts and closes (as haproxy does without backends)."""

    def __init__(self) -> None:
        self.port = 0
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", self.port))
        sock.listen(64)
        self.port = sock.getsockname()[1]
        self._sock = sock
        self._thread = threading.Thread(target=self._serve, args=(sock,), daemon=True)
        self._thread.start()

    def _serve(self, sock: socket.socket) -> None:
        while True:
            try:
                conn, _ = sock.accept()
            except OSError:
                return
            conn.close()

    def stop(self) -> None:
        assert self._sock is not None and self._thread is not None
        self._sock.shutdown(socket.SHUT_RDWR)  # wakes accept() in the serving thread
        self._sock.close()
        self._thread.join(5)
        self._sock = None


@pytest.fixture
def server() -> Iterator[Server]:
    srv = Server()
    srv.start()
    yield srv
    if srv._sock is not None:
        srv.stop()


def test_prober_records_an_outage_while_the_server_is_down(server: Server) -> None:
    with Prober("127.0.0.1", server.port, interval=0.02, timeout=0.3, max_duration=10) as p:
        p.wait_for(lambda h: h.ok_count >= 5, timeout=5)
        down = p.mark("down")
        server.stop()
        time.sleep(0.3)
        up = p.mark("up")
        server.start()
        p.wait_for(lambda h: h.first_ok_after(up) is not None, timeout=5)
        time.sleep(0.1)
    h = p.history()
    assert h.outage_count == 1, h.summary()
    (o,) = h.outages()
    assert o.errors == ("refused",)
    assert o.duration is not None and 0.25 <= o.duration <= 1.0, h.summary()
    assert down <= o.start <= up and h.first_outage_after(down) == o
    assert all(a.latency < 0.3 for a in h.attempts)


def test_a_handshake_reset_before_the_prober_looked_counts_as_served(monkeypatch: pytest.MonkeyPatch) -> None:
    # A server that stops with handshakes in its accept queue resets them. Whether the prober's thread
    # looked before or after that RST (a matter of scheduling) must not change the history: the
    # handshake completed, the attempt was served. Here the thread looks late on purpose.
    launched, look = threading.Event(), threading.Event()

    class LateSelector(selectors.DefaultSelector):
        def register(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
            key = super().register(fileobj, events, data)
            launched.set()
            return key

        def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
            look.wait(5)
            return super().select(timeout)

    monkeypatch.setattr(probe, "selectors", SimpleNamespace(DefaultSelector=LateSelector,
                                                            EVENT_WRITE=selectors.EVENT_WRITE))
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as lst:
        lst.bind(("127.0.0.1", 0))
        lst.listen(8)
        with Prober("127.0.0.1", lst.getsockname()[1], interval=30, timeout=1, max_duration=10) as p:
            assert launched.wait(5)
            with selectors.DefaultSelector() as queue:  # the handshake sits in the accept queue
                queue.register(lst, selectors.EVENT_READ)
                assert queue.select(5)
            lst.close()  # resets it
            look.set()
            p.wait_for(lambda h: len(h.attempts) == 1, timeout=5)
    (attempt,) = p.history().attempts
    assert attempt.ok and attempt.error is None, attempt


def test_prober_keeps_its_schedule_while_connects_hang() -> None:
    # A listener that never accepts, with its accept queue full: Linux drops further SYNs, so every
    # connect hangs until the prober's timeout. Attempts must still start every interval, not every timeout.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as lst:
        lst.bind(("127.0.0.1", 0))
        lst.listen(0)
        port = lst.getsockname()[1]
        fillers = []
        for _ in range(4):
            c = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            c.setblocking(False)
            c.connect_ex(("127.0.0.1", port))
            fillers.append(c)
        time.sleep(0.1)
        try:
            with Prober("127.0.0.1", port, interval=0.05, timeout=0.3, max_duration=10) as p:
                time.sleep(1.0)
        finally:
            for c in fillers:
                c.close()
    h = p.history()
    assert len(h.attempts) >= 15, h.summary()  # ~20 at 50 ms; ~4 if each attempt waited for the last
    assert h.ok_count == 0 and {a.error for a in h.attempts} == {"timeout"}
    assert all(0.3 <= a.latency < 1.0 for a in h.attempts)
    assert h.outage_count == 1 and h.outages()[0].end is None


def test_prober_stops_by_itself_after_max_duration(server: Server) -> None:
    p = Prober("127.0.0.1", server.port, interval=0.02, timeout=0.2, max_duration=0.3).start()
    deadline = time.monotonic() + 3.0
    while p.running and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not p.running
    p.stop()
    h = p.history()
    assert 5 <= len(h.attempts) <= 20 and h.outage_count == 0
    assert h.stopped - h.started < 1.0


def test_prober_refuses_a_namespace_it_cannot_enter() -> None:
    with pytest.raises(ProbeError, match="could not start"):
        Prober("127.0.0.1", 1, netns="kha-no-such-namespace-for-sure", max_duration=1).start()


def test_prober_rejects_nonsense_arguments() -> None:
    with pytest.raises(ProbeError):
        Prober("127.0.0.1", 1, interval=0)
    with pytest.raises(ProbeError):
        Prober("127.0.0.1", 1, max_duration=-1)


# -- VipWatcher -----------------------------------------------------------------------------------------


def test_watcher_records_samples_and_sampler_errors() -> None:
    answers: list[set[str] | OSError] = [{"a"}, {"a"}, set(), OSError("ssh down"), {"b"}]

    def sample() -> set[str]:
        item = answers.pop(0) if answers else {"b"}
        if isinstance(item, OSError):
            raise item
        return item

    with VipWatcher(sample, period=0.01, max_duration=5) as w:
        w.wait_for(lambda tl: len(tl.samples) >= 8, timeout=5)
    tl = w.timeline()
    assert len(tl.errors) == 1 and "ssh down" in (tl.errors[0].error or "")
    assert [(m.source, m.target) for m in tl.moves()] == [("a", "b")]
    assert all(s.start <= s.end for s in tl.samples)


def test_watcher_wait_for_gives_up_with_the_summary() -> None:
    with VipWatcher(lambda: {"a"}, period=0.01, max_duration=5) as w, \
            pytest.raises(ProbeError, match=r"within 0\.2s .*1 holder"):
        w.wait_for(lambda tl: tl.max_holders() > 1, timeout=0.2)


# -- ARP frames -------------------------------------------------------------------------------------------


def test_arp_probe_and_reply_round_trip() -> None:
    ours, theirs = mac_bytes("52:54:00:00:00:01"), mac_bytes("52:54:00:aa:bb:cc")
    frame = arp_probe(ours, "10.56.56.10")
    assert len(frame) == 42 and frame[:6] == b"\xff" * 6 and frame[6:12] == ours
    assert frame[28:32] == bytes(4)  # sender IP 0.0.0.0: an RFC 5227 probe
    # What Linux sends back: a reply from the holder's MAC, for the VIP, to our MAC, target IP 0.0.0.0.
    reply = (ours + theirs + b"\x08\x06" + b"\x00\x01\x08\x00\x06\x04\x00\x02" + theirs
             + socket.inet_aton("10.56.56.10") + ours + bytes(4))
    assert parse_arp_reply(reply, "10.56.56.10", ours) == "52:54:00:aa:bb:cc"
    assert parse_arp_reply(reply, "10.56.56.11", ours) is None  # another address
    assert parse_arp_reply(frame, "10.56.56.10", ours) is None  # our own request
    assert parse_arp_reply(reply[:30], "10.56.56.10", ours) is None


def test_arp_holders_maps_macs_to_names_case_insensitively() -> None:
    arp = ArpHolders("br0", "10.56.56.10", {"52:54:00:AA:BB:CC": "node1"})
    assert arp.names == {"52:54:00:aa:bb:cc": "node1"}
    with pytest.raises(ProbeError):
        mac_bytes("52:54:00")
