"""User-facing progress: one line per step, ending in ✓ or ✗ and the seconds it took.

Library code reports through a ``Steps`` object; where the lines go is the caller's choice (the CLI
prints them, tests and library use log them). ``with steps.step("boot 4 nodes"):`` prints
``✓ boot 4 nodes  1.9s`` when the block succeeds and ``✗ boot 4 nodes  1.9s`` when it raises.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

Emit = Callable[[str], None]


def _log_line(line: str) -> None:
    log.info("%s", line)


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
            self._finish(name, False, self.clock() - start)
            raise
        self._finish(name, True, self.clock() - start)

    def _finish(self, name: str, ok: bool, seconds: float) -> None:
        self.done.append((name, ok, seconds))
        self.emit(f"{'✓' if ok else '✗'} {name}  {seconds:.1f}s")

    def seconds(self, name: str) -> float:
        """How long the last step called ``name`` took (for benchmarks)."""
        for n, _ok, s in reversed(self.done):
            if n == name:
                return s
        raise KeyError(name)
