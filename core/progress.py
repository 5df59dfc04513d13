"""User-facing progress: one line per step, in one format everywhere in kha::

    ✓ boot 4 nodes  1.9s
    ✗ kubernetes/init  31.2s
    - etcd/bootstrap (skipped)

Library code reports through a ``Steps`` object (or ``line``); where the lines go is the caller's
choice (the CLI prints them, tests and library code log them).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

Emit = Callable[[str], None]

OK, FAILED = "✓", "✗"


def line(ok: bool, name: str, seconds: float, detail: str = "") -> str:
    """``✓ name  1.9s`` (or ✗), then ``detail`` after two spaces when there is one."""
    text = f"{OK if ok else FAILED} {name}  {seconds:.1f}s"
    return f"{text}  {detail}" if detail else text


def skipped(name: str, reason: str = "") -> str:
    """``- name (skipped)``, or ``- name (skipped: reason)``."""
    return f"- {name} (skipped: {reason})" if reason else f"- {name} (skipped)"


def _log_line(text: str) -> None:
    log.info("%s", text)


@dataclass
class Steps:
    """Collects step results; ``emit`` receives each finished line."""

    emit: Emit = _log_line
    clock: Callable[[], float] = time.monotonic
    done: list[tuple[str, bool, float]] = field(default_factory=list)

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        start = self.clock()
        try:
            yield
        except BaseException:
            self.finish(name, False, self.clock() - start)
            raise
        self.finish(name, True, self.clock() - start)

    def finish(self, name: str, ok: bool, seconds: float, detail: str = "") -> None:
        self.done.append((name, ok, seconds))
        self.emit(line(ok, name, seconds, detail))

    def seconds(self, name: str) -> float:
        """How long the last step called ``name`` took (for benchmarks)."""
        for n, _ok, s in reversed(self.done):
            if n == name:
                return s
        raise KeyError(name)
