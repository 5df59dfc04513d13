"""What the e2e fixtures hand the tests: the installed topology (``Installed``), how to reach it (kubectl on
the first master, commands on any node), the phase timings, and the test image import.

A plain module beside conftest.py so the test modules can import its types (conftest modules are not
meant to be imported).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from images import testimage
from installer.phases import RunResult, Status, Step
from installer.remote import Transport
from scenarios import installed

#: Where test pods and services live (deleted with everything in it after the pod tests).
NAMESPACE = "kha-e2e"
IMPORT_PATH = "/var/tmp/kha-e2e-testimage.tar"

@dataclass
class Timings:
    """What the session spent where, for the terminal summary."""

    scenario: str
    driver: str
    rows: list[tuple[str, float]] = field(default_factory=list)
    #: the phases that ran (✓ or ✗), first install and the second one.
    phases: list[Step] = field(default_factory=list)
    rerun: list[Step] = field(default_factory=list)
    #: the ✓/✗ lines (each with its seconds) of the first ``kha check``, right after the install.
    checks: list[str] = field(default_factory=list)

    def add(self, what: str, seconds: float) -> None:
        self.rows.append((what, seconds))


def ran(result: RunResult) -> list[Step]:
    """The steps that ran (not deselected, not found unneeded), with their seconds."""
    return [s for s in result.steps if s.status in (Status.OK, Status.FAILED)]


@dataclass(kw_only=True)
class Installed(installed.Installed):
    """The installed topology of the e2e session: ``scenarios.installed.Installed`` plus the scenario
    name, the busybox test image imported into every node, and the session's timings."""

    scenario: str
    image: testimage.TestImage
    timings: Timings


def import_image(t: Transport, image: testimage.TestImage) -> bool:
    """Import the test image into the node's containerd (k8s.io: the CRI's namespace); False if it had it."""
    have = t.run(["ctr", "-n", "k8s.io", "images", "ls", "-q"], sudo=True).stdout.split()
    if image.ref in have:
        return False
    t.put(image.archive, IMPORT_PATH, mode=0o600, sudo=True)
    try:
        # --no-unpack, as the installer imports the bundle's images: the CRI unpacks into its own
        # snapshotter when a container is created (ctr would unpack into its default one).
        t.run(["ctr", "-n", "k8s.io", "images", "import", "--no-unpack", IMPORT_PATH], sudo=True, timeout=300)
    finally:
        t.run(["rm", "-f", IMPORT_PATH], sudo=True)
    return True
