"""The report as a file: what made it (``origin.json``), how it is packed, and how it is opened again.

A report is one ``.tar.gz`` holding one folder: ``origin.json`` (this module's: the scenario, driver,
install steps, the fault schedule that ran, the outcome, and the provenance a replay must match — base
image and bundle digests, kha's commit), ``manifest.json`` and the collected artefacts
(``scenarios.report.collect``), ``replay/inventory.ini`` (the inventory the topology was booted and
installed from, redacted) and ``results/<case>/`` (history, checker inputs, result, timeline) for each
case that ran.

Opening checks before anything else happens: a file that is not a gzip tarball, one cut short, member
names that would escape the folder, a missing ``origin.json`` or one written by a newer kha are each a
``ReportError`` (exit 2) naming the file.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import shutil
import tarfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from core.errors import InputError

#: The report format this kha writes and the newest it reads.
FORMAT = 1
ORIGIN = "origin.json"
INVENTORY = "replay/inventory.ini"
RESULTS = "results"


class ReportError(InputError):
    """A report that cannot be read (exit 2; nothing was booted or changed)."""


@dataclass(frozen=True)
class CaseRef:
    """One fault case of the schedule that ran: the catalogue's name (its selector is re-resolved by role on
    the replayed topology), the seed of its random part, and how its bound was scaled."""

    name: str
    seed: int = 0
    bound_scale: float = 1.0


@dataclass(frozen=True)
class Provenance:
    """What a replay must boot and install from to be the same experiment."""

    image: str
    image_digest: str
    bundle: str | None = None
    bundle_digest: str | None = None
    kha_commit: str | None = None


@dataclass(frozen=True)
class Origin:
    """What made the report, and what happened."""

    cluster: str
    #: the catalogue scenario (its node sizes), or None when booted straight from an inventory
    scenario: str | None
    driver: str
    provenance: Provenance
    #: the install phases that ran (``--only``); empty: every phase
    install_only: tuple[str, ...] = ()
    cases: tuple[CaseRef, ...] = ()
    #: "failed", "passed" (a test or a case decided it) or "collected" (``kha report collect`` by hand)
    outcome: str = "collected"
    failed_checks: tuple[str, ...] = ()
    made_by: str = "kha report collect"
    made_at: str = field(default_factory=lambda: dt.datetime.now(dt.UTC).isoformat(timespec="seconds"))
    format: int = FORMAT

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any], where: str) -> Origin:
        version = data.get("format")
        if not isinstance(version, int):
            raise ReportError(f"{where}: no report format number: not a kha report")
        if version > FORMAT:
            raise ReportError(f"{where}: report format {version} was written by a newer kha; this one reads "
                              f"formats up to {FORMAT}: use the kha that wrote it (its commit is in the report)")
        try:
            return cls(
                cluster=str(data["cluster"]), scenario=data.get("scenario"), driver=str(data["driver"]),
                provenance=Provenance(**data["provenance"]),
                install_only=tuple(data.get("install_only", ())),
                cases=tuple(CaseRef(**c) for c in data.get("cases", ())),
                outcome=str(data.get("outcome", "collected")), failed_checks=tuple(data.get("failed_checks", ())),
                made_by=str(data.get("made_by", "")), made_at=str(data.get("made_at", "")), format=version)
        except (KeyError, TypeError) as exc:
            raise ReportError(f"{where}: origin.json is incomplete ({type(exc).__name__}: {exc})") from None


@dataclass(frozen=True)
class Report:
    """An unpacked report: its folder and what made it."""

    path: Path  # the .tar.gz it came from (or the folder itself)
    folder: Path
    origin: Origin

    @property
    def inventory(self) -> Path:
        return self.folder / INVENTORY

    def results(self, case: str) -> Path:
        return self.folder / RESULTS / case

    def manifest(self) -> dict[str, Any]:
        path = self.folder / "manifest.json"
        return read_json(path) if path.is_file() else {}

    def missing(self) -> list[dict[str, Any]]:
        path = self.folder / "missing.json"
        data = read_json(path) if path.is_file() else []
        return data if isinstance(data, list) else []


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ReportError(f"{path}: not readable JSON: {exc}") from None


def write_origin(folder: Path, origin: Origin) -> Path:
    path = folder / ORIGIN
    path.write_text(json.dumps(origin.to_json(), indent=1, sort_keys=True) + "\n")
    return path


def pack(folder: Path, out: Path) -> Path:
    """``folder`` as ``out`` (.tar.gz), its contents under one top folder named like ``out``."""
    top = out.name.removesuffix(".tar.gz").removesuffix(".tgz")
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.name + ".partial")
    with tarfile.open(partial, "w:gz") as tar:
        tar.add(folder, arcname=top)
    partial.replace(out)
    return out


def open_report(path: str | Path, into: Path) -> Report:
    """The report at ``path`` (a ``.tar.gz`` or an unpacked folder), unpacked under ``into``; ``ReportError``
    for anything that is not a whole report this kha can read."""
    path = Path(path)
    if path.is_dir():
        return _load(path, path)
    if not path.is_file():
        raise ReportError(f"{path}: no such report")
    tops: set[str] = set()
    try:
        with tarfile.open(path, "r:gz") as tar:
            members = tar.getmembers()
            tops = {PurePosixPath(m.name).parts[0] for m in members if m.name}
            bad = [m.name for m in members if not _safe(m)]
            if bad:
                raise ReportError(f"{path}: unsafe member {bad[0]!r} (absolute, '..' or a link): not a kha report")
            if len(tops) != 1:
                raise ReportError(f"{path}: {len(tops)} top folders; a kha report has one")
            tar.extractall(into, filter="data")
    except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
        for top in tops:  # what a cut-short tarball left half unpacked
            shutil.rmtree(into / top, ignore_errors=True)
        raise ReportError(f"{path}: not a whole kha report (a gzip tarball): {type(exc).__name__}: {exc}") from None
    return _load(path, into / tops.pop())


def _safe(m: tarfile.TarInfo) -> bool:
    p = PurePosixPath(m.name)
    return not p.is_absolute() and ".." not in p.parts and (m.isfile() or m.isdir())


def _load(path: Path, folder: Path) -> Report:
    origin_file = folder / ORIGIN
    if not origin_file.is_file():
        raise ReportError(f"{path}: no {ORIGIN}: not a kha report")
    data = read_json(origin_file)
    if not isinstance(data, dict):
        raise ReportError(f"{origin_file}: not a JSON object")
    return Report(path, folder, Origin.from_json(data, str(path)))
