"""One report from an installed topology and what ran on it: the collected artefacts (``collect``), what
made the report and its provenance (``origin.json``), the inventory a replay boots from, and each fault
case's records — packed into one ``.tar.gz``."""

from __future__ import annotations

import logging
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

from scenarios.installed import Installed
from scenarios.report import collect, redact
from scenarios.report.model import INVENTORY, RESULTS, CaseRef, Origin, Provenance, pack, read_json, write_origin

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Ran:
    """A fault case that ran (or began to): its place in the schedule and the folder its records go to
    (``history.json``, ``inputs.json``, ``result.json``, the timeline), as far as it got."""

    ref: CaseRef
    folder: Path

    def failed_checks(self) -> tuple[str, ...]:
        result = self.folder / "result.json"
        if not result.is_file():
            return ()
        return tuple(c["name"] for c in read_json(result).get("checks", ()) if not c.get("ok"))


@dataclass(frozen=True)
class Made:
    path: Path
    collected: collect.Collected


def provenance(inst: Installed) -> Provenance:
    image = inst.cluster.state.image
    bundle = collect.bundle_info(inst) or {}
    return Provenance(image.name, image.digest, bundle.get("name"), bundle.get("hash"),
                      collect.kha_info()["commit"])


def scenario_of(inst: Installed) -> str | None:
    source = inst.cluster.spec.source
    return source.removeprefix("scenario ") if source.startswith("scenario ") else None


def make(inst: Installed, out: Path, *, ran: Sequence[Ran] = (), outcome: str = "collected",
         made_by: str = "kha report collect", install_only: Sequence[str] = (),
         extra: Mapping[str, str] = MappingProxyType({})) -> Made:
    """Collect from ``inst`` and pack it, with the records of ``ran`` and the ``extra`` files (relative path →
    text: the test's JUnit record), as ``out`` (a ``.tar.gz``)."""
    failed = tuple(c for r in ran for c in r.failed_checks())
    origin = Origin(cluster=inst.cluster.name, scenario=scenario_of(inst), driver=inst.cluster.spec.driver,
                    provenance=provenance(inst), install_only=tuple(install_only),
                    cases=tuple(r.ref for r in ran), outcome=outcome, failed_checks=failed, made_by=made_by)
    with tempfile.TemporaryDirectory(prefix="kha-report-") as tmp:
        folder = Path(tmp) / "report"
        folder.mkdir()
        collected = collect.collect(inst, folder)
        write_origin(folder, origin)
        (folder / INVENTORY).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(inst.inventory, folder / INVENTORY)
        for r in ran:
            if r.folder.is_dir():
                shutil.copytree(r.folder, folder / RESULTS / r.ref.name, dirs_exist_ok=True)
        for rel, text in extra.items():
            (folder / rel).parent.mkdir(parents=True, exist_ok=True)
            (folder / rel).write_text(text)
        redact.redact_tree(folder, inst)
        path = pack(folder, out)
    log.info("report %s: %d artefacts, %d missing", path, collected.artefacts, len(collected.missing))
    return Made(path, collected)
