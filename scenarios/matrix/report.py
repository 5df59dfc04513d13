"""``kha matrix report``: one HTML page and a Markdown summary over ``kha matrix run`` folders.

The latest run (by start time) is reported: each cell passed or failed, its install time, each failover
case's outage against its bound. Its figures are compared with a baseline (the last green run's figures,
``--save-baseline`` stores them): a figure above ``THRESHOLD`` × its baseline (and ``FLOOR_S`` above it) is
a regression, flagged even when the test passed, since a failover that got twice as slow still fits a
generous bound. Every run given
feeds the trend plots: one picture per figure and cell over the runs, drawn the way the failover timeline
is (matplotlib's Agg canvas, fixed size, dpi and metadata, so the same data gives the same bytes).
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

# The timeline's look (colours, dpi, reproducible metadata, rc settings), so every kha picture agrees.
from scenarios.failover.timeline import DPI, GREEN, GREY, PNG_METADATA, RED
from scenarios.failover.timeline import _settings as drawing_settings
from scenarios.matrix.model import slug
from scenarios.matrix.results import Baseline, CellResult, Run

THRESHOLD = 1.5
#: A figure must also be this many seconds above its baseline to count: an outage measured as 0.0 s (the VIP
#: moved between two probes) and then 0.3 s is the prober's 100 ms resolution and a 1 s VRRP advert, not a
#: failover that got slower; the ratio alone would call it infinitely worse.
FLOOR_S = 1.0
PLOT_W_IN, PLOT_H_IN = 6.0, 2.6


@dataclass(frozen=True)
class Regression:
    cell: str
    figure: str
    value: float
    baseline: float

    @property
    def ratio(self) -> float:
        return self.value / self.baseline if self.baseline else float("inf")


@dataclass(frozen=True)
class Made:
    latest: Run
    markdown: str
    markdown_path: Path
    html: Path
    plots: list[Path]
    regressions: list[Regression]


def regressions(run: Run, baseline: Baseline | None, threshold: float = THRESHOLD) -> list[Regression]:
    """Every figure of ``run`` above ``threshold`` × the baseline's and more than ``FLOOR_S`` above it
    (figures the baseline lacks: none)."""
    if baseline is None:
        return []
    out = []
    for r in run.results:
        base = baseline.figures.get(r.cell, {})
        for name, value in sorted(r.figures.items()):
            if name in base and value > threshold * base[name] and value - base[name] > FLOOR_S:
                out.append(Regression(r.cell, name, value, base[name]))
    return out


def trends(runs: Sequence[Run]) -> dict[tuple[str, str], list[tuple[int, float]]]:
    """(cell, figure) → [(run index, value)] over ``runs`` (oldest first)."""
    out: dict[tuple[str, str], list[tuple[int, float]]] = {}
    for i, run in enumerate(runs):
        for r in run.results:
            for name, value in r.figures.items():
                out.setdefault((r.cell, name), []).append((i, value))
    return out


def _verdict(r: CellResult) -> str:
    return "✓ pass" if r.ok else "✗ FAIL"


def _flag(reg: dict[tuple[str, str], Regression], cell: str, figure: str) -> str:
    found = reg.get((cell, figure))
    return f" ⚠ {found.ratio:.1f}× baseline {found.baseline:.1f}s" if found else ""


def markdown(run: Run, regs: Sequence[Regression], baseline: Baseline | None) -> str:
    by = {(g.cell, g.figure): g for g in regs}
    lines = [f"## kha matrix {run.tier or 'selection'}: {sum(r.ok for r in run.results)}/{len(run.results)} passed, "
             f"{len(run.refused)} refused, {len(regs)} regressions",
             "",
             f"wall {run.wall_s:.0f}s with {run.jobs} job(s); "
             f"cells one by one {sum(r.seconds for r in run.results):.0f}s; "
             f"baseline: {baseline.source if baseline else 'none'} (a figure above {THRESHOLD}× it and {FLOOR_S:.0f}s "
             "more is a regression)",
             "", "| cell | result | seconds | install | tests |", "|---|---|---:|---:|---|"]
    for r in run.results:
        install = r.figures.get("install_s")
        shown = "" if install is None else f"{install:.1f}s{_flag(by, r.cell, 'install_s')}"
        j = r.junit
        lines.append(f"| `{r.cell}` | {_verdict(r)} | {r.seconds:.0f} | {shown} | "
                     f"{j.tests} run, {j.failures + j.errors} failed, {j.skipped} skipped |")
    for ref in run.refused:
        lines.append(f"| `{ref.cell}` | refused | | | {'; '.join(ref.reasons)} |")
    cases = [(r.cell, name, c) for r in run.results for name, c in sorted(r.cases.items())]
    if cases:
        lines += ["", "| cell | failover case | result | outage | bound |", "|---|---|---|---:|---:|"]
        for cell, name, c in cases:
            outage = "" if c.outage_s is None else f"{c.outage_s:.2f}s{_flag(by, cell, f'failover/{name}/outage_s')}"
            lines.append(f"| `{cell}` | {name} | {'✓' if c.ok else '✗'} | {outage} | {c.bound_s:.2f}s |")
    if regs:
        lines += ["", "Regressions (worse than the baseline even where the test passed):"]
        lines += [f"- `{g.cell}` {g.figure}: {g.value:.2f} vs {g.baseline:.2f} ({g.ratio:.1f}×)" for g in regs]
    return "\n".join(lines) + "\n"


def plot(points: Sequence[tuple[int, float]], labels: Sequence[str], title: str, baseline: float | None,
         path: Path) -> Path:
    """One figure over the runs: a line, the last point red when it regressed, the baseline dashed."""
    with drawing_settings():
        fig = Figure(figsize=(PLOT_W_IN, PLOT_H_IN), dpi=DPI)
        FigureCanvasAgg(fig)
        ax = fig.add_subplot()
        xs, ys = [p[0] for p in points], [p[1] for p in points]
        ax.plot(xs, ys, color=GREY, linewidth=1.0)
        bad = baseline is not None and ys[-1] > THRESHOLD * baseline
        ax.scatter(xs, ys, color=[RED if bad and i == len(xs) - 1 else GREEN for i in range(len(xs))], zorder=3)
        if baseline is not None:
            ax.axhline(baseline, color=GREY, linestyle="--", linewidth=0.8, label="baseline")
            ax.axhline(THRESHOLD * baseline, color=RED, linestyle=":", linewidth=0.8, label=f"{THRESHOLD}× baseline")
            ax.legend(loc="upper left", fontsize=7)
        ax.set_xticks(range(len(labels)), labels=list(labels), rotation=30, ha="right")
        ax.set_ylabel("seconds")
        ax.set_ylim(bottom=0)
        ax.set_title(title, fontsize=8)
        fig.tight_layout()
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, format="png", dpi=DPI, metadata=PNG_METADATA)
    return path


def _run_label(run: Run) -> str:
    return run.folder.name


def page(run: Run, regs: Sequence[Regression], baseline: Baseline | None, plots: dict[tuple[str, str], Path],
         out: Path) -> str:
    by = {(g.cell, g.figure): g for g in regs}
    e = html.escape
    rows = []
    for r in run.results:
        figs = "<br>".join(
            f"{e(name)}: {value:.2f}s{e(_flag(by, r.cell, name))}" for name, value in sorted(r.figures.items()))
        colour = GREEN if r.ok else RED
        log = f'<a href="{e(str(run.folder / slug(r.cell) / r.log))}">log</a>'
        rows.append(f'<tr><td><code>{e(r.cell)}</code></td><td style="color:{colour}">{e(_verdict(r))}</td>'
                    f"<td>{r.seconds:.0f}s</td><td>{figs}</td><td>{log}</td></tr>")
    for ref in run.refused:
        rows.append(f"<tr><td><code>{e(ref.cell)}</code></td><td>refused</td><td></td>"
                    f"<td>{e('; '.join(ref.reasons))}</td><td></td></tr>")
    pics = "\n".join(f'<figure><img src="{e(str(p.relative_to(out)))}" alt="{e(cell)} {e(fig)}">'
                     f"<figcaption><code>{e(cell)}</code> {e(fig)}</figcaption></figure>"
                     for (cell, fig), p in sorted(plots.items()))
    warn = "".join(f"<li><code>{e(g.cell)}</code> {e(g.figure)}: {g.value:.2f}s vs {g.baseline:.2f}s "
                   f"({g.ratio:.1f}×)</li>" for g in regs)
    return ("<!doctype html>\n<html><head><meta charset=\"utf-8\">"
            f"<title>kha matrix {e(run.tier or 'selection')}</title>"
            "<style>body{font-family:sans-serif}td,th{border:1px solid #ccc;padding:3px 6px;vertical-align:top}"
            "table{border-collapse:collapse}figure{display:inline-block;margin:6px}</style></head><body>\n"
            f"<h1>kha matrix {e(run.tier or 'selection')}: {sum(r.ok for r in run.results)}/{len(run.results)} "
            f"passed, {len(run.refused)} refused</h1>\n"
            f"<p>run {e(str(run.folder))}; wall {run.wall_s:.0f}s with {run.jobs} job(s); baseline "
            f"{e(baseline.source) if baseline else 'none'}; a figure above {THRESHOLD}× its baseline and "
            f"{FLOOR_S:.0f}s more is a regression even when its test passed.</p>\n"
            + (f"<h2>Regressions</h2><ul>{warn}</ul>\n" if regs else "")
            + "<table><tr><th>cell</th><th>result</th><th>time</th><th>figures</th><th></th></tr>\n"
            + "\n".join(rows) + "\n</table>\n<h2>Over the last runs</h2>\n" + pics + "\n</body></html>\n")


def make(runs: Sequence[Run], baseline: Baseline | None, out: Path) -> Made:
    ordered = sorted(runs, key=lambda r: r.started)
    latest = ordered[-1]
    regs = regressions(latest, baseline)
    labels = [_run_label(r) for r in ordered]
    plots: dict[tuple[str, str], Path] = {}
    for (cell, fig), points in sorted(trends(ordered).items()):
        base = baseline.figures.get(cell, {}).get(fig) if baseline else None
        name = f"{slug(cell)}__{slug(fig)}.png"
        plots[(cell, fig)] = plot(points, labels, f"{cell}\n{fig}", base, out / "plots" / name)
    text = markdown(latest, regs, baseline)
    md = out / "summary.md"
    md.write_text(text)
    index = out / "index.html"
    index.write_text(page(latest, regs, baseline, plots, out))
    return Made(latest, text, md, index, list(plots.values()), regs)
