"""``kha report show``: a report, readable: what made it and what failed, the versions and provenance,
each case's checks and timeline picture, what could not be collected, and the first error lines of each
journal."""

from __future__ import annotations

import re
from pathlib import Path

from scenarios.report.model import Report, read_json

_ERROR = re.compile(r"\b(error|failed|fatal|panic|refused|timeout)\b", re.IGNORECASE)
#: error lines shown per journal
FIRST = 3


def summary(report: Report) -> list[str]:
    o, p = report.origin, report.origin.provenance
    lines = [f"report {report.path}",
             f"  made by {o.made_by} at {o.made_at}: {o.outcome}"
             + (f" ({'; '.join(o.failed_checks)})" if o.failed_checks else ""),
             f"  topology {o.cluster}: scenario {o.scenario or '(inventory)'}, driver {o.driver}, install "
             f"{', '.join(o.install_only) or 'every phase'}",
             f"  image {p.image} {p.image_digest[:16]}; bundle {p.bundle or '-'} {(p.bundle_digest or '')[:16]}; "
             f"kha {p.kha_commit or 'unknown'}"]
    versions = report.manifest().get("versions", {})
    if isinstance(versions, dict) and versions:
        lines.append("  versions: " + ", ".join(f"{k} {v}" for k, v in sorted(versions.items())))
    for ref in o.cases:
        folder = report.results(ref.name)
        result = folder / "result.json"
        if not result.is_file():
            lines.append(f"  case {ref.name}: no result recorded (the case did not finish)")
            continue
        r = read_json(result)
        scale = f", bound ×{ref.bound_scale:g}" if ref.bound_scale != 1.0 else ""
        lines.append(f"  case {ref.name} (seed {ref.seed}{scale}): {'ok' if r.get('ok') else 'FAILED'}")
        lines += [f"    {'✓' if c.get('ok') else '✗'} {c.get('name')}: {c.get('detail')}" for c in r.get("checks", ())]
        picture = folder / "timeline.png"
        if picture.is_file():
            lines.append(f"    timeline: {picture}")
    missing = report.missing()
    if missing:
        lines.append(f"  not collected: {len(missing)}")
        lines += [f"    {m.get('node')}: {m.get('artefact')}: {m.get('reason')}" for m in missing[:10]]
    lines += _journal_errors(report.folder)
    return lines


def _journal_errors(folder: Path) -> list[str]:
    out = []
    for path in sorted(folder.glob("nodes/*/*")):
        if "journal" not in path.name or not path.is_file():
            continue
        hits = [line.strip() for line in path.read_text(errors="replace").splitlines() if _ERROR.search(line)]
        if hits:
            out.append(f"  {path.relative_to(folder)}: {len(hits)} error line(s), first:")
            out += [f"    {h[:200]}" for h in hits[:FIRST]]
    return out
