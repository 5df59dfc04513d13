"""Waiting for a condition: the one poll-until-deadline loop (etcd healthy, the VIP on one node, pod
ranges allocated, nodes Ready, a node answering SSH, a daemon's socket …).

A check returns ``None`` when the condition holds, or a few words on what is still wrong; the last
of those words is what the error says when time runs out, so a timeout always explains itself.
"""

from __future__ import annotations

import time
from collections.abc import Callable


def until(
    check: Callable[[], str | None],
    *,
    timeout: float,
    interval: float | Callable[[float], float],
    error: Callable[[str], BaseException],
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> float:
    """Call ``check`` every ``interval`` s until it returns None; return the seconds that took.

    ``interval`` may be a function of the seconds waited so far (poll fast at first, then back off).
    An exception from ``check`` is not caught: a check fails fast on what no wait will mend.

    After ``timeout`` s raise ``error(last answer)`` (a ``KhaError`` in library code, an
    ``AssertionError`` in tests). The check always runs once more after the deadline has passed, so
    a condition that came true during the last sleep still counts.
    """
    start = clock()
    while True:
        problem = check()
        if problem is None:
            return clock() - start
        waited = clock() - start
        if waited > timeout:
            raise error(problem)
        sleep(interval(waited) if callable(interval) else interval)
