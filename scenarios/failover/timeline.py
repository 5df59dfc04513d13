"""The timeline picture of one failover case: what every client and observer recorded, on one time axis with
t = 0 at the injection, the fault window shaded across all rows, and the checker's verdict underneath.
An SRE should understand the case from the picture alone, so every encoding is listed once in ``KEY``,
which draws the legend at the top and gives ``legend()`` its text.

Rows, top to bottom, each only when the history has data for it:

* VIP holder: a row per node the VIP was seen on (observer ``vip``), a bar where that node holds it, red
  where two or more held it at once; a "(nobody)" row, red, where no node held it;
* haproxy backends: a row per load-balancer node (observers ``haproxy <node>``), green when all backends are
  UP, yellow when some are not (the text names them), red when none is UP;
* leaders: the etcd leader (``etcd leader``, "node2/7") and the lease holders (``lease <name>``), coloured by
  node, red for no leader (or members naming different ones), with every etcd term change marked;
* /readyz: each probe a bar from its start to its end (clients ``readyz <target>``), raw, never bucketed;
* write latency: every write (clients ``write <target>``) at its start time, coloured by outcome;
* node Ready (``ready <node>``): True, False, Unknown.

Observers sample: a sampled state is drawn from its sample until the next sample of the same observer (the
last one until the case stopped); a sample whose observer could not look is drawn grey.

Deterministic: a fixed size and dpi, no dates or versions in the files, and a fixed ``svg.hashsalt``, so the
same history renders the same bytes. Drawn on matplotlib's Agg canvas, never a display.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib as mpl
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from scenarios.failover.model import CaseHistory, CaseResult, Outcome, Sample

FIG_W_IN, FIG_H_IN, DPI = 14.0, 11.0, 110
SIZE_PX = (round(FIG_W_IN * DPI), round(FIG_H_IN * DPI))  # (width, height) of the PNG

# Figure fractions: the plots sit between the header (title, fault line, legend) and the footer (verdict).
LEFT, RIGHT, PLOTS_TOP, PLOTS_BOTTOM = 0.12, 0.985, 0.875, 0.215
TITLE_GAP = 0.022  # room above each group of rows for its title
SCATTER_ROWS = 4.0  # the write-latency scatter is as tall as this many rows

GREEN, RED, ORANGE, YELLOW, GREY = "#2ca02c", "#d62728", "#ff7f0e", "#f2cf3a", "#bdbdbd"
FAULT_SHADE = "#c9c3e6"
# Nodes get their own colours (leaders, lease holders, VIP holders): none of them green, red, orange or
# yellow, which say ok / failed / unknown / partial everywhere in the picture.
NODE_PALETTE = ("#1f77b4", "#9467bd", "#8c564b", "#17becf", "#7f7f7f", "#393b79", "#637939", "#7b4173")

OUTCOME_COLOURS = {Outcome.OK: GREEN, Outcome.FAILED: RED, Outcome.UNKNOWN: ORANGE}
READY_COLOURS = {"True": GREEN, "False": RED, "Unknown": ORANGE}

# The one key to the picture: (how it is drawn, what it means). It draws the legend and is legend()'s text.
KEY: tuple[tuple[str, str, str], ...] = (
    ("patch", GREEN, "ok · Ready True · all backends UP"),
    ("patch", RED, "failed · Ready False · no backend UP · VIP on 2+ nodes or none · no leader, or members "
                   "disagree"),
    ("patch", ORANGE, "unknown (may or may not have happened) · Ready Unknown"),
    ("patch", YELLOW, "some haproxy backends not UP"),
    ("patch", GREY, "the observer could not look"),
    ("patch", FAULT_SHADE, "fault window (inject → heal)"),
    ("line", "black", "etcd term change"),
)

SVG_SALT = "kha-failover-timeline"
PNG_METADATA: dict[str, str | None] = {"Software": None}
SVG_METADATA: dict[str, str | None] = {"Date": None, "Creator": None}

MAX_FAILED_CHECKS = 5  # footer lines for failed checks; the rest are counted
MAX_DETAIL = 150  # characters of a failed check's detail


def legend() -> str:
    """The key to the picture as text, one encoding a line (for a report beside the PNG, or a terminal)."""
    names = {GREEN: "green", RED: "red", ORANGE: "orange", YELLOW: "yellow", GREY: "grey",
             FAULT_SHADE: "shaded", "black": "black tick"}
    return "\n".join(f"{names[colour]:<11} {meaning}" for _, colour, meaning in KEY)


def render(history: CaseHistory, result: CaseResult | None, out_dir: Path, stem: str) -> tuple[Path, Path]:
    """Draw ``history`` (and ``result``'s verdict, when checked) to ``out_dir/stem.png`` and ``stem.svg``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    png, svg = out_dir / f"{stem}.png", out_dir / f"{stem}.svg"
    with _settings():
        fig = figure(history, result)
        fig.savefig(png, format="png", dpi=DPI, metadata=PNG_METADATA)
        fig.savefig(svg, format="svg", dpi=DPI, metadata=SVG_METADATA)
    return png, svg


def figure(history: CaseHistory, result: CaseResult | None) -> Figure:
    """The picture as a matplotlib ``Figure`` on an Agg canvas; its axes are labelled by group ("vip",
    "haproxy", "leaders", "readyz", "writes", "ready") so a test can find where a row is drawn."""
    with _settings():
        fig = Figure(figsize=(FIG_W_IN, FIG_H_IN), dpi=DPI)
        FigureCanvasAgg(fig)
        _Drawing(history, fig).draw(result)
    return fig


def _settings() -> contextlib.AbstractContextManager[None]:
    """matplotlib's settings for drawing and saving, whatever the user's matplotlibrc says."""
    return mpl.rc_context({
        "svg.hashsalt": SVG_SALT,  # ids of clip paths and such, otherwise random per run
        "svg.fonttype": "none",  # text stays text: the SVG can be searched and copied from
        "font.family": "DejaVu Sans",  # ships with matplotlib: the same glyphs on every machine
        "font.size": 8.0,
        "path.simplify": False,  # every probe is drawn, however short
        "axes.unicode_minus": False,
    })


# -- parsing what the observers wrote ------------------------------------------------------------------------


@dataclass(frozen=True)
class Segment:
    """A sampled state held from ``start`` until ``end`` (absolute times, as recorded)."""

    start: float
    end: float
    value: str
    error: str


def segments(samples: Sequence[Sample], end: float) -> list[Segment]:
    """Each sample's value held until the next sample (the last until ``end``); equal neighbours merged."""
    out: list[Segment] = []
    ordered = sorted(samples, key=lambda s: s.t)
    for i, s in enumerate(ordered):
        stop = ordered[i + 1].t if i + 1 < len(ordered) else max(end, s.t)
        value = "" if s.error else s.value
        if out and out[-1].value == value and bool(out[-1].error) == bool(s.error) and out[-1].end == s.t:
            out[-1] = Segment(out[-1].start, stop, value, out[-1].error)
        else:
            out.append(Segment(s.t, stop, value, s.error))
    return out


def holders(value: str) -> list[str]:
    """The VIP observer's value: comma-separated holder names ("" for nobody)."""
    return [h.strip() for h in value.split(",") if h.strip()]


def backend_states(value: str) -> dict[str, str]:
    """haproxy's value "UP node1,node2 DOWN node3" as {backend: state}: a word in capitals names a state, the
    comma-separated names after it are the backends in that state."""
    states: dict[str, str] = {}
    state = ""
    tokens = value.split()
    if not tokens or not tokens[0].isupper():  # "haproxy not answering (1)", "unreachable: TimeoutError"
        return {}
    for token in tokens:
        if token.isupper():
            state = token
        else:
            for name in holders(token):
                states[name] = state or "?"
    return states


def leader_terms(value: str) -> list[tuple[str, int | None]]:
    """The etcd leader observer's value as (leader, term) answers: "node2/7" is [("node2", 7)]; members that
    disagree are joined by "|" ("node1/7|node2/8"); "?" names no leader or an id no member claimed; ""
    is no member answering, []."""
    answers: list[tuple[str, int | None]] = []
    for answer in value.split("|"):
        if answer.strip():
            name, _, term = answer.partition("/")
            answers.append((name.strip(), int(term) if term.strip().isdigit() else None))
    return answers


def natural(name: str) -> tuple[object, ...]:
    """Sort key that puts node2 before node10."""
    return tuple(int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name))


# -- drawing -------------------------------------------------------------------------------------------------


@dataclass
class _Group:
    """One axes of the picture: its label, title, rows (top to bottom) and how to draw into it."""

    label: str
    title: str
    rows: list[str]
    height: float  # in rows


class _Drawing:
    def __init__(self, history: CaseHistory, fig: Figure) -> None:
        self.h = history
        self.fig = fig
        ends = [history.started, history.stopped, history.fault.injected]
        ends += [t for o in history.ops for t in (o.start, o.end)] + [s.t for s in history.samples]
        if history.fault.healed is not None:
            ends.append(history.fault.healed)
        self.start, self.stop = min(ends), max(ends)
        self.span = max(self.stop - self.start, 1e-6)
        self.plot_w_px = FIG_W_IN * DPI * (RIGHT - LEFT)
        self.colours = {n: NODE_PALETTE[i % len(NODE_PALETTE)] for i, n in enumerate(self._nodes())}

    # the nodes that get a colour, in a stable order
    def _nodes(self) -> list[str]:
        names: set[str] = set(self.h.fault.targets)
        for s in self.h.samples:
            if s.error:
                continue
            if s.observer == "vip" or s.observer.startswith("lease "):
                names.update(holders(s.value))
            elif s.observer == "etcd leader":
                names.update(name for name, _ in leader_terms(s.value) if name != "?")
            elif s.observer.startswith(("haproxy ", "ready ")):
                names.add(s.observer.split(" ", 1)[1])
        names.discard("")
        return sorted(names, key=natural)

    def px(self, seconds: float) -> float:
        return seconds / self.span * self.plot_w_px

    def observers(self, prefix: str) -> list[str]:
        return sorted((o for o in self.h.observers() if o.startswith(prefix)), key=natural)

    def clients(self, prefix: str) -> list[str]:
        return sorted((c for c in self.h.clients() if c.startswith(prefix)), key=natural)

    def draw(self, result: CaseResult | None) -> None:
        groups = self._groups()
        self._header()
        axes = self._layout(groups)
        for group, ax in zip(groups, axes, strict=True):
            getattr(self, f"_draw_{group.label}")(ax, group)
        for ax in axes:
            self._fault(ax)
        if axes:
            self._fault_label(axes[0])
            axes[-1].tick_params(labelbottom=True)
            axes[-1].set_xlabel("seconds since the fault was injected (t = 0)")
        self._footer(result, drawn=groups)

    def _groups(self) -> list[_Group]:
        groups: list[_Group] = []
        vip = self.h.samples_of("vip")
        if vip:
            rows = sorted({n for s in vip if not s.error for n in holders(s.value)}, key=natural)
            if not rows or any(not seg.error and not holders(seg.value) for seg in segments(vip, self.stop)):
                rows.append("(nobody)")
            groups.append(_Group("vip", "VIP holder (red: on two or more nodes at once, or on none)", rows,
                                 len(rows)))
        if lbs := self.observers("haproxy "):
            groups.append(_Group("haproxy", "haproxy backends seen by each load balancer (text: those not UP)",
                                 lbs, len(lbs)))
        leaders = [o for o in ("etcd leader",) if self.h.samples_of(o)] + self.observers("lease ")
        if leaders:
            groups.append(_Group("leaders", "etcd leader (node/term) and lease holders, coloured by node",
                                 leaders, len(leaders)))
        if readyz := self.clients("readyz "):
            groups.append(_Group("readyz", "/readyz: every probe from its start to its end, through the VIP "
                                 "and per apiserver", readyz, len(readyz)))
        if writes := self.clients("write "):
            groups.append(_Group("writes", "write latency (s, log scale) by start time, coloured by outcome: "
                                 + ", ".join(writes), writes, SCATTER_ROWS))
        if ready := self.observers("ready "):
            groups.append(_Group("ready", "node Ready", ready, len(ready)))
        return groups

    def _layout(self, groups: list[_Group]) -> list[Axes]:
        if not groups:
            return []
        room = PLOTS_TOP - PLOTS_BOTTOM - TITLE_GAP * len(groups)
        unit = room / sum(g.height for g in groups)
        axes: list[Axes] = []
        top = PLOTS_TOP
        for g in groups:
            height = g.height * unit
            top -= TITLE_GAP
            ax = self.fig.add_axes((LEFT, top - height, RIGHT - LEFT, height), label=g.label)
            top -= height
            if axes:
                ax.sharex(axes[0])
            ax.set_xlim(self.h.rel(self.start), self.h.rel(self.stop))
            ax.set_title(g.title, loc="left", fontsize=8, fontweight="bold", pad=3)
            ax.tick_params(labelbottom=False, labelsize=7.5, length=2)
            ax.grid(axis="x", color="#e3e3e3", linewidth=0.6)
            ax.set_axisbelow(True)
            if g.label != "writes":
                ax.set_ylim(len(g.rows) - 0.5, -0.5)
                ax.set_yticks(range(len(g.rows)), [_plain(r) for r in g.rows])
                ax.tick_params(axis="y", length=0)
            axes.append(ax)
        return axes

    def _bars(self, ax: Axes, row: int, spans: Iterable[tuple[float, float, str]], height: float = 0.7,
              edge: bool = False) -> None:
        """Bars on one row from absolute (start, end, colour): one collection per colour, in first-seen order.
        ``edge`` draws each bar with a hairline of its own colour and without antialiasing, so a probe of a
        few milliseconds is still a whole pixel of its full colour (gaps shrink by at most a pixel a side,
        which keeps a 0.3 s gap visible)."""
        by_colour: dict[str, list[tuple[float, float]]] = {}
        for start, end, colour in spans:
            by_colour.setdefault(colour, []).append((self.h.rel(start), max(end - start, 0.0)))
        for colour, xranges in by_colour.items():
            ax.broken_barh(xranges, (row - height / 2, height), facecolors=colour,
                           edgecolors=colour if edge else "none", linewidth=0.5 if edge else 0.0,
                           antialiased=not edge)

    def _text(self, ax: Axes, seg: Segment, row: int, text: str, colour: str = "white") -> None:
        """Text inside a bar, only where it fits (about 5.5 px a character at this size)."""
        if text and self.px(seg.end - seg.start) > 5.5 * len(text) + 6:
            ax.text(self.h.rel(seg.start) + self.span * 3 / self.plot_w_px, row, _plain(text), va="center",
                    ha="left", fontsize=7, color=colour, clip_on=True)

    def _draw_vip(self, ax: Axes, group: _Group) -> None:
        spans: dict[int, list[tuple[float, float, str]]] = {i: [] for i in range(len(group.rows))}
        for seg in segments(self.h.samples_of("vip"), self.stop):
            if seg.error:
                for row_spans in spans.values():
                    row_spans.append((seg.start, seg.end, GREY))
                continue
            on = holders(seg.value)
            if not on:
                spans[group.rows.index("(nobody)")].append((seg.start, seg.end, RED))
            for name in on:
                spans[group.rows.index(name)].append((seg.start, seg.end, RED if len(on) > 1 else self.colours[name]))
        for i, row_spans in spans.items():
            self._bars(ax, i, row_spans)

    def _draw_haproxy(self, ax: Axes, group: _Group) -> None:
        for i, observer in enumerate(group.rows):
            spans = []
            for seg in segments(self.h.samples_of(observer), self.stop):
                states = backend_states(seg.value)
                up = sum(1 for s in states.values() if s == "UP")
                if seg.error or not states:  # the observer could not look, or haproxy did not answer it
                    colour, text = GREY, f"could not look: {seg.error}" if seg.error else seg.value
                elif up == len(states):
                    colour, text = GREEN, f"{up}/{len(states)} UP"
                else:
                    colour = RED if up == 0 else YELLOW
                    text = " ".join(f"{n} {s}" for n, s in sorted(states.items(), key=lambda kv: natural(kv[0]))
                                    if s != "UP")
                spans.append((seg.start, seg.end, colour))
                self._text(ax, seg, i, text, "black" if colour in (YELLOW, GREY) else "white")
            self._bars(ax, i, spans)

    def _draw_leaders(self, ax: Axes, group: _Group) -> None:
        for i, observer in enumerate(group.rows):
            spans = []
            last_term: int | None = None
            for seg in segments(self.h.samples_of(observer), self.stop):
                if seg.error:
                    spans.append((seg.start, seg.end, GREY))
                    self._text(ax, seg, i, f"could not look: {seg.error}", "black")
                    continue
                if observer == "etcd leader":
                    answers = leader_terms(seg.value)
                    terms = [t for _, t in answers if t is not None]
                    term = max(terms) if terms else None
                    if term is not None and last_term is not None and term != last_term:
                        x = self.h.rel(seg.start)  # the new term is in the bar's text ("node2/8") where it fits
                        ax.plot([x, x], [i - 0.48, i + 0.48], color="black", linewidth=1.6, zorder=4)
                    last_term = term if term is not None else last_term
                    if not answers:
                        spans.append((seg.start, seg.end, GREY))
                        self._text(ax, seg, i, "no member answered", "black")
                        continue
                    name = answers[0][0] if len(answers) == 1 else ""  # members that disagree: red
                    label = " | ".join(f"{n}/{t if t is not None else '?'}" for n, t in answers)
                    if name == "?":  # leader id 0 (an election), or one no member answered for
                        label = "no leader"
                else:
                    name = seg.value.strip()
                    label = name or "none"
                spans.append((seg.start, seg.end, self.colours.get(name, RED)))
                self._text(ax, seg, i, label)
            self._bars(ax, i, spans)

    def _draw_readyz(self, ax: Axes, group: _Group) -> None:
        for i, client in enumerate(group.rows):
            ops = self.h.ops_of(client)
            # failures on top of successes, so an overlapping failure is never hidden
            order = {Outcome.OK: 0, Outcome.UNKNOWN: 1, Outcome.FAILED: 2}
            ops.sort(key=lambda o: order[o.outcome])
            self._bars(ax, i, ((o.start, o.end, OUTCOME_COLOURS[o.outcome]) for o in ops), height=0.6, edge=True)

    def _draw_writes(self, ax: Axes, group: _Group) -> None:
        ops = [o for c in group.rows for o in self.h.ops_of(c)]
        ax.set_yscale("log")
        floor = 1e-3  # a latency of 0 (a refused connection) still gets a dot
        for outcome in (Outcome.OK, Outcome.UNKNOWN, Outcome.FAILED):
            mine = [o for o in ops if o.outcome is outcome]
            if mine:
                ax.scatter([self.h.rel(o.start) for o in mine], [max(o.latency, floor) for o in mine], s=9,
                           color=OUTCOME_COLOURS[outcome], linewidths=0, label=f"{outcome} {len(mine)}", zorder=3)
        ax.legend(loc="upper right", fontsize=7, frameon=True, framealpha=0.8, markerscale=1.5)
        ax.grid(axis="y", color="#e3e3e3", linewidth=0.6, which="major")

    def _draw_ready(self, ax: Axes, group: _Group) -> None:
        for i, observer in enumerate(group.rows):
            spans = []
            for seg in segments(self.h.samples_of(observer), self.stop):
                colour = GREY if seg.error else READY_COLOURS.get(seg.value.strip(), GREY)
                spans.append((seg.start, seg.end, colour))
            self._bars(ax, i, spans)

    def _fault(self, ax: Axes) -> None:
        f = self.h.fault
        healed = self.h.rel(f.healed if f.healed is not None else self.stop)
        ax.axvspan(0.0, healed, color=FAULT_SHADE, alpha=0.45, linewidth=0, zorder=0)
        ax.axvline(0.0, color="#4b3f8f", linewidth=1.0, zorder=5)
        if f.healed is not None:
            ax.axvline(healed, color="#4b3f8f", linewidth=1.0, linestyle="--", zorder=5)

    def _fault_label(self, ax: Axes) -> None:
        f = self.h.fault
        healed = f"healed at {self.h.rel(f.healed):.2f} s" if f.healed is not None else "never healed"
        ax.annotate(_plain(f"{f.case} · {f.selector} → {', '.join(f.targets) or '(no target)'} · {healed}"),
                    xy=(0.0, 1.0), xycoords=("data", "axes fraction"), xytext=(3, 14), textcoords="offset points",
                    fontsize=7.5, color="#4b3f8f", va="bottom", ha="left", fontweight="bold", annotation_clip=False)

    def _header(self) -> None:
        f = self.h.fault
        self.fig.text(0.01, 0.985, _plain(f"{self.h.case} on {self.h.cluster}"), fontsize=13, fontweight="bold",
                      va="top")
        self.fig.text(0.01, 0.955, _plain(f"fault: {f.description} — selector {f.selector}, targets "
                                          f"{', '.join(f.targets) or '(none)'}; t = 0 at injection, recorded "
                                          f"{self.h.rel(self.start):.1f} s … {self.h.rel(self.stop):.1f} s"),
                      fontsize=9, va="top")
        handles: list[Patch | Line2D] = [
            Line2D([], [], color=colour, linewidth=1.6) if kind == "line" else Patch(facecolor=colour, label=meaning)
            for kind, colour, meaning in KEY]
        self.fig.legend(handles, [_plain(m) for _, _, m in KEY], loc="upper left", bbox_to_anchor=(0.005, 0.94),
                        ncol=4, fontsize=7.5, frameon=False, handlelength=1.6, columnspacing=1.4)

    def _footer(self, result: CaseResult | None, drawn: list[_Group]) -> None:
        y = 0.16
        if result is None:
            self.fig.text(0.01, y, "NOT CHECKED", fontsize=16, fontweight="bold", color=GREY, va="top")
            lines: list[tuple[str, str]] = [("no checker result: the picture shows the history only", "black")]
        else:
            self.fig.text(0.01, y, "PASS" if result.ok else "FAIL", fontsize=16, fontweight="bold",
                          color=GREEN if result.ok else RED, va="top")
            if result.outage_s is None:
                outage = (f"outage through the VIP: not measured; bound {result.bound_s:.2f} s "
                          f"({result.bound_formula})", "black")
            else:
                over = result.outage_s > result.bound_s
                outage = (f"outage through the VIP {result.outage_s:.2f} s {'>' if over else '≤'} bound "
                          f"{result.bound_s:.2f} s ({result.bound_formula})", RED if over else "black")
            writes = (f"writes: acked {result.writes_acked}, lost {result.writes_lost}, "
                      f"unknown {result.writes_unknown}", RED if result.writes_lost else "black")
            failed = result.failures()
            lines = [outage, writes]
            lines += [(f"✗ {c.name}: {_clip(c.detail)}", RED) for c in failed[:MAX_FAILED_CHECKS]]
            if len(failed) > MAX_FAILED_CHECKS:
                lines.append((f"… and {len(failed) - MAX_FAILED_CHECKS} more failed checks", RED))
            if not failed:
                lines.append((f"✓ all {len(result.checks)} checks held", GREEN))
        known = {"vip", "etcd leader"}
        prefixes = ("haproxy ", "lease ", "ready ", "readyz ", "write ")
        undrawn = sorted({o for o in self.h.observers() if o not in known and not o.startswith(prefixes)}
                         | {c for c in self.h.clients() if not c.startswith(prefixes)}, key=natural)
        if undrawn:
            lines.append((f"recorded but not drawn: {', '.join(undrawn)}", "#555555"))
        if not drawn:
            lines.append(("nothing was recorded to draw", RED))
        for i, (text, colour) in enumerate(lines):
            self.fig.text(0.11, y - 0.0005 - i * 0.015, _plain(text), fontsize=9, color=colour, va="top")


def _clip(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= MAX_DETAIL else text[: MAX_DETAIL - 1] + "…"


def _plain(text: str) -> str:
    """Text as written: a "$" from an error message must not start matplotlib's mathtext."""
    return text.replace("$", r"\$")
