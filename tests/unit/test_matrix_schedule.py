"""``scenarios.matrix.schedule``: cells go to lanes as slots free up, never more at once than a lane's slots, in
plan order, each only where it is accepted, a failover cell with nothing beside it. Pure logic: the work is a
fake that sleeps and records what ran at once."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import pytest

from scenarios.matrix import hosts, schedule


@dataclass(frozen=True)
class Lane:
    text: str
    slots: int


class Recorder:
    """Fake work: sleeps a little; records the items running on each lane at once (the peak) and, for each
    item, what else was running on its lane at any time while it ran."""

    def __init__(self, seconds: dict[str, float] | None = None) -> None:
        self.seconds = seconds or {}
        self.lock = threading.Lock()
        self.now: dict[str, set[str]] = {}
        self.peak: dict[str, int] = {}
        self.order: list[tuple[str, str]] = []
        self.beside: dict[str, set[str]] = {}

    def __call__(self, item: str, lane: Lane | hosts.Hypervisor) -> str:
        with self.lock:
            here = self.now.setdefault(lane.text, set())
            self.beside[item] = set(here)
            for other in here:
                self.beside[other].add(item)
            here.add(item)
            self.peak[lane.text] = max(self.peak.get(lane.text, 0), len(here))
            self.order.append((item, lane.text))
        time.sleep(self.seconds.get(item, 0.02))
        with self.lock:
            self.now[lane.text].discard(item)
        return f"{item}@{lane.text}"


def started(work: Recorder) -> list[str]:
    return [item for item, _lane in work.order]


def test_no_lane_runs_more_items_at_once_than_its_slots_and_results_keep_plan_order() -> None:
    two, one = Lane("a", 2), Lane("b", 1)
    items = [f"c{i}" for i in range(9)]
    work = Recorder()
    out = schedule.dispatch(items, [two, one], work)
    assert [r.split("@")[0] for r in out] == items
    assert work.peak == {"a": 2, "b": 1}
    assert started(work) == items


def test_a_slot_is_taken_as_soon_as_it_frees_up() -> None:
    # c0 is long; c1 ends fast: c2 and c3 follow in c1's slot while c0 still runs (no waiting for a group).
    work = Recorder({"c0": 0.5, "c1": 0.02, "c2": 0.02, "c3": 0.02})
    schedule.dispatch(["c0", "c1", "c2", "c3"], [Lane("here", 2)], work)
    assert work.beside["c0"] == {"c1", "c2", "c3"}


def test_cells_go_to_hosts_as_they_free_up() -> None:
    a, b = Lane("hv1", 1), Lane("hv2", 1)
    work = Recorder({"c0": 0.5, "c1": 0.02, "c2": 0.02, "c3": 0.02})
    out = schedule.dispatch(["c0", "c1", "c2", "c3"], [a, b], work)
    assert out == ["c0@hv1", "c1@hv2", "c2@hv2", "c3@hv2"]


@pytest.mark.parametrize("slots", [1, 2, 3])
def test_an_alone_item_runs_with_nothing_beside_it_and_later_items_wait_for_it(slots: int) -> None:
    items = ["i0", "i1", "f2", "i3", "i4", "f5", "i6"]
    work = Recorder({"i0": 0.2, "i1": 0.05, "f2": 0.1})
    out = schedule.dispatch(items, [Lane("here", slots)], work, alone=lambda item: item.startswith("f"))
    assert [r.split("@")[0] for r in out] == items
    assert work.beside["f2"] == set() and work.beside["f5"] == set()
    assert started(work) == items  # neither starved by later items nor overtaken by them


def test_an_alone_item_holds_only_its_own_lane() -> None:
    here, other = Lane("here", 2), Lane("other", 1)
    # f0 can only run here; i1..i3 may run anywhere: while f0 holds "here", they run on "other".
    work = Recorder({"f0": 0.3})
    out = schedule.dispatch(["f0", "i1", "i2", "i3"], [here, other], work,
                            accepts=lambda item, lane: lane is here or not item.startswith("f"),
                            alone=lambda item: item.startswith("f"))
    assert out == ["f0@here", "i1@other", "i2@other", "i3@other"]
    assert work.beside["f0"] == set()


def test_a_cell_waits_for_a_host_that_accepts_it() -> None:
    remote, local = hosts.parse("qemu+ssh://ci@hv1.example/system 3\n"
                                "qemu+unix:///system?socket=/run/kha-second/libvirt-sock\n", "hosts.txt")
    lxc = {"l1", "l2"}
    work = Recorder()
    out = schedule.dispatch(["l1", "q1", "l2", "q2"], [remote, local], work,
                            accepts=lambda item, h: h.takes("lxc" if item in lxc else "qemu") is None)
    assert out == [f"l1@{local.text}", f"q1@{remote.text}", f"l2@{local.text}", f"q2@{remote.text}"]
    assert work.peak[local.text] == 1


def test_an_item_no_lane_accepts_is_refused_before_anything_runs() -> None:
    work = Recorder()
    with pytest.raises(ValueError, match="no host accepts 'l1'"):
        schedule.dispatch(["q1", "l1"], [Lane("hv1", 1)], work, accepts=lambda item, _lane: item.startswith("q"))
    assert work.order == []
