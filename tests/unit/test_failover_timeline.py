"""The failover timeline picture, judged the way an SRE reads it: the files exist at the promised size, the
SVG carries the case and the verdict as text, the moment two nodes held the VIP is red in the PNG, a 0.3 s
gap between /readyz probes shows, and the same history renders the same bytes."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.image import imread

from scenarios.failover import timeline
from scenarios.failover.model import CaseHistory, CaseResult, Check, FaultWindow, Op, Outcome, Sample

T0 = 1000.0  # monotonic seconds at injection
INJECT, HEAL = T0, T0 + 15.0
BOTH = (T0 + 16.0, T0 + 17.0)  # node1 comes back and preempts before node2 lets go: two holders
VIP_GAP = (T0 + 20.0, T0 + 20.3)  # no probe through the VIP ran
NODE2_GAP = (T0 - 5.0, T0 - 4.7)
NEW_TERM = T0 + 2.5  # node2 elected in term 8; node1, cut off, still names itself for a second


def states(observer: str, changes: list[tuple[float, str]], start: float, stop: float, *, every: float = 0.5,
           error: tuple[float, float] | None = None) -> list[Sample]:
    """Samples every ``every`` s, each with the value of the last change at or before it."""
    out = []
    t = start
    while t < stop:
        value = [v for at, v in changes if at <= t + 1e-9][-1]
        failed = error is not None and error[0] <= t < error[1]
        out.append(Sample(observer, round(t, 3), "" if failed else value, "ssh: timed out" if failed else ""))
        t += every
    return out


def probes(client: str, start: float, stop: float, *, failed: tuple[float, float] | None = None,
           gap: tuple[float, float] | None = None) -> list[Op]:
    """A probe every 0.1 s taking 0.02 s; failed inside ``failed``, none started inside ``gap``."""
    out = []
    for i in range(round((stop - start) / 0.1)):
        t = round(start + i * 0.1, 3)
        if gap and gap[0] <= t < gap[1]:
            continue
        bad = failed is not None and failed[0] <= t < failed[1]
        out.append(Op(client, t, t + 0.02, Outcome.FAILED if bad else Outcome.OK,
                      "connection refused" if bad else ""))
    return out


def make_history() -> CaseHistory:
    start, stop = T0 - 10.0, T0 + 30.0
    fault = FaultWindow("keepalived-master-down", "vip-holder", ("node1",), "stop keepalived on the VIP holder",
                        INJECT, HEAL)
    samples = states("vip", [(start, "node1"), (T0 + 0.5, ""), (T0 + 2.0, "node2"), (BOTH[0], "node1,node2"),
                             (BOTH[1], "node1")], start, stop)
    for lb in ("node1", "node2", "node3"):
        samples += states(f"haproxy {lb}", [(start, "UP node1,node2,node3"), (T0 + 3.0, "UP node2,node3 DOWN node1"),
                                            (T0 + 18.0, "UP node1,node2,node3")], start, stop,
                          error=(T0 + 1.0, HEAL) if lb == "node1" else None)
    samples += states("etcd leader", [(start, "node1/7"), (T0 + 0.5, "?/7"), (NEW_TERM, "node1/7|node2/8"),
                                      (NEW_TERM + 1.0, "node2/8")], start, stop)
    samples += states("lease kube-controller-manager", [(start, "node1"), (T0 + 12.0, "node3")], start, stop)
    samples += states("lease kube-scheduler", [(start, "node2")], start, stop)
    for node in ("node1", "node2", "node3"):
        changes = [(start, "True")]
        if node == "node1":
            changes += [(T0 + 5.0, "Unknown"), (T0 + 8.0, "False"), (T0 + 19.0, "True")]
        samples += states(f"ready {node}", changes, start, stop, every=1.0)
    ops = probes("readyz vip", start, stop, failed=(T0 + 0.5, T0 + 2.0), gap=VIP_GAP)
    ops += probes("readyz node1", start, stop, failed=(T0, HEAL))
    ops += probes("readyz node2", start, stop, gap=NODE2_GAP)
    ops += probes("readyz node3", start, stop)
    for i in range(160):
        t = start + i * 0.25
        if T0 + 0.5 <= t < T0 + 1.25:  # written, then the connection dropped: nobody knows
            ops.append(Op("write vip", t, t + 2.0, Outcome.UNKNOWN, "EOF after request"))
        elif T0 + 1.25 <= t < T0 + 2.0:
            ops.append(Op("write vip", t, t + 0.001, Outcome.FAILED, "connection refused"))
        else:
            ops.append(Op("write vip", t, t + 0.012 + 0.002 * (i % 5), Outcome.OK, f"w{i}@{100 + i}"))
    return CaseHistory("keepalived-master-down", "m-master", start, stop, fault, ops, samples)


def make_result() -> CaseResult:
    return CaseResult(
        case="keepalived-master-down", bound_s=4.5, bound_formula="3 × advert_int + 1.5 s", outage_s=1.6,
        writes_acked=151, writes_lost=0, writes_unknown=3,
        checks=(
            Check("outage within bound", True, "1.60 s ≤ 4.50 s", 1.6, 4.5),
            Check("no lost writes", True, "0 of 151 acknowledged writes missing", 0, 0),
            Check("one VIP holder", False, "node1,node2 held the VIP together for 1.00 s from t = 16.00 s", 1.0, 0),
        ))


@pytest.fixture(scope="module")
def drawn(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return timeline.render(make_history(), make_result(), tmp_path_factory.mktemp("timeline"), "case")


def strip(png: Path, ax: Axes, start: float, end: float, row: str) -> np.ndarray:
    """The RGB pixels the PNG shows from absolute time ``start`` to ``end`` along the middle of ``row`` (a y
    tick label) of ``ax``."""
    labels = [label.get_text() for label in ax.get_yticklabels()]
    (x0, y), (x1, _) = ax.transData.transform([(start - T0, labels.index(row)), (end - T0, labels.index(row))])
    image = imread(png)
    return np.asarray(image[image.shape[0] - 1 - int(y), int(x0):int(x1) + 1, :3])


def pixel(png: Path, ax: Axes, t: float, row: str) -> np.ndarray:
    """The RGB the PNG shows at absolute time ``t`` on ``row``."""
    return np.asarray(strip(png, ax, t, t, row)[0])


@pytest.fixture(scope="module")
def fig() -> Figure:
    """The figure ``render`` draws into the files, for where each row is: axes are labelled by group."""
    return timeline.figure(make_history(), make_result())


def axes(fig: Figure, label: str) -> Axes:
    return next(ax for ax in fig.axes if ax.get_label() == label)


def near(rgb: np.ndarray, colour: str) -> bool:
    """Whether ``rgb`` (one pixel, or any pixel of a strip) shows ``colour``."""
    want = np.array([int(colour[i:i + 2], 16) / 255 for i in (1, 3, 5)])
    return bool((np.abs(np.atleast_2d(rgb) - want).max(axis=-1) < 0.03).any())


def test_both_files_at_the_promised_size(drawn: tuple[Path, Path]) -> None:
    png, svg = drawn
    assert (png.name, svg.name) == ("case.png", "case.svg")
    assert imread(png).shape[:2] == (timeline.SIZE_PX[1], timeline.SIZE_PX[0])
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert svg.read_text().lstrip().startswith("<?xml")


def test_the_svg_says_what_happened_and_the_verdict(drawn: tuple[Path, Path]) -> None:
    text = drawn[1].read_text()
    for wanted in ("keepalived-master-down", "vip-holder → node1", "healed at 15.00 s",
                   "outage through the VIP 1.60 s ≤ bound 4.50 s (3 × advert_int + 1.5 s)",
                   "acked 151, lost 0, unknown 3", "FAIL",
                   "✗ one VIP holder: node1,node2 held the VIP together for 1.00 s from t = 16.00 s"):
        assert wanted in text, wanted
    assert "✗ outage within bound" not in text  # only the failed checks are listed


def test_two_vip_holders_are_drawn_red(drawn: tuple[Path, Path], fig: Figure) -> None:
    vip = axes(fig, "vip")
    middle = (BOTH[0] + BOTH[1]) / 2
    for node in ("node1", "node2"):
        assert near(pixel(drawn[0], vip, middle, node), timeline.RED), node
    before = pixel(drawn[0], vip, T0 + 10.0, "node2")  # node2 alone: its own colour, not red
    assert not near(before, timeline.RED)
    assert near(before, timeline.NODE_PALETTE[1])
    assert near(pixel(drawn[0], vip, T0 + 1.0, "(nobody)"), timeline.RED)


def test_the_leader_change_is_marked(drawn: tuple[Path, Path], fig: Figure) -> None:
    leaders = axes(fig, "leaders")
    assert near(pixel(drawn[0], leaders, T0 - 5.0, "etcd leader"), timeline.NODE_PALETTE[0])  # node1
    assert near(pixel(drawn[0], leaders, T0 + 1.0, "etcd leader"), timeline.RED)  # no leader
    assert near(pixel(drawn[0], leaders, NEW_TERM + 0.5, "etcd leader"), timeline.RED)  # members disagree
    assert near(pixel(drawn[0], leaders, T0 + 10.0, "etcd leader"), timeline.NODE_PALETTE[1])  # node2
    assert near(strip(drawn[0], leaders, NEW_TERM - 0.05, NEW_TERM + 0.05, "etcd leader"), "#000000")  # term 8
    assert not near(strip(drawn[0], leaders, T0 - 9.0, T0 + 2.4, "etcd leader"), "#000000")
    text = drawn[1].read_text()
    assert ">no leader<" in text and ">node2/8<" in text


def test_a_gap_of_0_3_s_between_probes_shows(drawn: tuple[Path, Path], fig: Figure) -> None:
    readyz = axes(fig, "readyz")
    for row, (start, end) in (("readyz vip", VIP_GAP), ("readyz node2", NODE2_GAP)):
        inside = strip(drawn[0], readyz, start + 0.05, end - 0.05, row)
        assert len(inside) >= 5, "0.2 s is several pixels at this span"
        assert not near(inside, timeline.GREEN), row
        assert near(strip(drawn[0], readyz, start - 0.3, start, row), timeline.GREEN), row  # probes before it
        assert near(strip(drawn[0], readyz, end, end + 0.3, row), timeline.GREEN), row  # and after it
    assert near(pixel(drawn[0], readyz, T0 + 1.0, "readyz vip"), timeline.RED)


def test_only_rows_with_data_are_drawn(tmp_path: Path) -> None:
    history = make_history()
    history.fault = dataclasses.replace(history.fault, healed=None)
    history.ops = [o for o in history.ops if o.client == "readyz vip"]
    history.samples = [s for s in history.samples if s.observer == "etcd leader"]
    fig = timeline.figure(history, None)
    assert [ax.get_label() for ax in fig.axes] == ["leaders", "readyz"]
    assert [t.get_text() for t in fig.axes[1].get_yticklabels()] == ["readyz vip"]
    _, svg = timeline.render(history, None, tmp_path, "history-only")
    assert "NOT CHECKED" in svg.read_text()
    assert "never healed" in svg.read_text()


def test_the_same_history_renders_the_same_bytes(drawn: tuple[Path, Path], tmp_path: Path) -> None:
    png, svg = timeline.render(make_history(), make_result(), tmp_path, "again")
    assert svg.read_bytes() == drawn[1].read_bytes()
    assert png.read_bytes() == drawn[0].read_bytes()


def test_the_parsers_read_what_the_observers_write() -> None:
    assert timeline.holders("node1, node2") == ["node1", "node2"]
    assert timeline.holders("") == []
    assert timeline.backend_states("UP node1,node2 DOWN node3") == {"node1": "UP", "node2": "UP", "node3": "DOWN"}
    assert timeline.backend_states("UP  DOWN node1,node2") == {"node1": "DOWN", "node2": "DOWN"}
    assert timeline.backend_states("unreachable: TimeoutError") == {}
    assert timeline.leader_terms("node2/7") == [("node2", 7)]
    assert timeline.leader_terms("node1/7|node2/8") == [("node1", 7), ("node2", 8)]
    assert timeline.leader_terms("?/7") == [("?", 7)]
    assert timeline.leader_terms("") == []
    assert sorted(["node10", "node2"], key=timeline.natural) == ["node2", "node10"]


def test_legend_names_every_colour() -> None:
    text = timeline.legend()
    assert "red" in text and "VIP on 2+ nodes" in text and "fault window" in text
    assert len(text.splitlines()) == len(timeline.KEY)
