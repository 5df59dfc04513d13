"""The one poll-until-deadline loop: returns how long the condition took, and when time runs out
raises the caller's error carrying the check's last word on what was still wrong."""

from __future__ import annotations

import pytest

from core import waiting
from installer.errors import InstallerError


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_returns_the_seconds_the_condition_took() -> None:
    clock, answers = Clock(), iter(["node2 not Ready", "node2 not Ready", None])
    took = waiting.until(lambda: next(answers), timeout=30, interval=2, error=InstallerError,
                         clock=clock, sleep=clock.sleep)
    assert took == 4.0


def test_times_out_with_the_last_answer() -> None:
    clock, n = Clock(), iter(range(1000))
    with pytest.raises(InstallerError, match=r"^still 6 missing after 10s$"):
        waiting.until(lambda: f"{next(n)} missing", timeout=10, interval=2,
                      error=lambda said: InstallerError(f"still {said} after 10s"), clock=clock, sleep=clock.sleep)


def test_a_condition_true_at_the_deadline_still_counts() -> None:
    clock = Clock()
    answers = iter(["no", "no", None])  # checked at 0, 5 and then 10 = the deadline
    assert waiting.until(lambda: next(answers), timeout=10, interval=5, error=InstallerError,
                         clock=clock, sleep=clock.sleep) == 10.0
