"""The one scheduler of ``kha matrix run``: cells go to lanes as their slots free up.

A lane is where cells run: this machine with ``--jobs N`` slots, or each host of ``--hosts FILE`` with its
own. Cells start in plan order (the tier's order), each on the first lane (in order) that accepts it and
has a free slot; a slot that frees up is taken at once by the next cell that fits, not when the rest of a
group is done.

A cell of a suite whose verdicts are timings (``alone``: the failover catalogue, whose outages are held to
bounds) runs with nothing beside it on its lane: it waits until the lane is idle and then holds every slot
of it, and while it waits no later cell starts there, so it is neither starved nor crowded.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Protocol, TypeVar


class Lane(Protocol):
    """Somewhere cells run, so many at once."""

    @property
    def slots(self) -> int: ...


T = TypeVar("T")
L = TypeVar("L", bound=Lane)
R = TypeVar("R")


def dispatch(items: Sequence[T], lanes: Sequence[L], work: Callable[[T, L], R], *,
             accepts: Callable[[T, L], bool] = lambda _item, _lane: True,
             alone: Callable[[T], bool] = lambda _item: False) -> list[R]:
    """``work(item, lane)`` for every item, on a lane that ``accepts`` it, never more at once on a lane than
    its slots, an ``alone`` item with nothing beside it. Results in ``items``' order.

    Every item must be accepted by some lane (the plan refuses the others first): one that is not raises
    ``ValueError`` before anything runs.
    """
    for item in items:
        if not any(accepts(item, lane) for lane in lanes):
            raise ValueError(f"no host accepts {item!r}")
    free = [lane.slots for lane in lanes]
    pending = list(enumerate(items))
    out: dict[int, R] = {}
    running: dict[Future[R], tuple[int, int, int]] = {}  # → (item index, lane index, slots taken)
    with ThreadPoolExecutor(max_workers=max(1, sum(free))) as pool:
        while pending or running:
            held: set[int] = set()  # lanes an alone item waits to have to itself
            for index, item in list(pending):
                options = [i for i, lane in enumerate(lanes) if i not in held and accepts(item, lane)]
                if alone(item):
                    lane = next((i for i in options if free[i] == lanes[i].slots), None)
                    if lane is None:
                        held.update(options[:1])
                        continue
                    take = lanes[lane].slots
                else:
                    lane = next((i for i in options if free[i] > 0), None)
                    if lane is None:
                        continue
                    take = 1
                free[lane] -= take
                pending.remove((index, item))
                running[pool.submit(work, item, lanes[lane])] = (index, lane, take)
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                index, lane, take = running.pop(future)
                free[lane] += take
                out[index] = future.result()
    return [out[i] for i in range(len(items))]
