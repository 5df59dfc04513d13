"""What the e2e fixtures hand the tests: the installed topology (``Installed``), how to reach it (kubectl on
the first master, commands on any node), the phase timings, and the test image import.

A plain module beside conftest.py so the test modules can import its types (conftest modules are not
meant to be imported).
"""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.provider import Cluster
from images import testimage
from installer import install
from installer.connect import Connector
from installer.kubernetes.bundle import Bundle as InstallBundle
from installer.kubernetes.phases import ADMIN_CONF
from installer.phases import RunResult, Status, Step
from installer.remote import Result, Transport
from installer.topology import Host, Role, Topology

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

    def add(self, what: str, seconds: float) -> None:
        self.rows.append((what, seconds))


def ran(result: RunResult) -> list[Step]:
    """The steps that ran (not deselected, not found unneeded), with their seconds."""
    return [s for s in result.steps if s.status in (Status.OK, Status.FAILED)]


@dataclass
class Installed:
    """An installed topology, and ways to reach it as its admin would."""

    scenario: str
    cluster: Cluster
    topo: Topology
    inventory: Path
    state: Path
    bundle: Path
    image: testimage.TestImage
    install_log: str
    connector: Connector
    timings: Timings

    @property
    def bin_dir(self) -> str:
        return InstallBundle.load(self.bundle, verify=False).release.bin_dir

    @property
    def kubernetes_nodes(self) -> list[Host]:
        wanted = {*self.topo.groups[Role.MASTER], *self.topo.groups[Role.WORKER]}
        return [h for h in self.topo.hosts if h.name in wanted]

    def node(self, host: Host | str) -> Transport:
        return self.connector(self.topo.host(host) if isinstance(host, str) else host)

    def run(self, host: Host | str, argv: Sequence[str], *, check: bool = True, timeout: float = 60,
            stdin: str | None = None) -> Result:
        return self.node(host).run(argv, sudo=True, check=check, timeout=timeout, stdin=stdin)

    def kubectl(self, *args: str, stdin: str | None = None, check: bool = True, timeout: float = 60) -> Result:
        """kubectl on the first master with the admin kubeconfig (over SSH, as ``kha`` itself does)."""
        argv = [f"{self.bin_dir}/kubectl", f"--kubeconfig={ADMIN_CONF}", *args]
        return self.run(self.topo.first_master, argv, check=check, timeout=timeout, stdin=stdin)

    def kubectl_json(self, *args: str) -> Any:
        """``kubectl … -o json``, parsed."""
        return json.loads(self.kubectl(*args, "-o", "json").stdout)

    def install(self, out: io.StringIO) -> RunResult:
        """Run ``kha install`` (every phase) against the topology again, with the same state folder."""
        return install.run(self.inventory, state=self.state, ssh_config=self.cluster.ssh_config,
                    known_hosts=self.cluster.known_hosts, bundle=self.bundle, out=out)


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
