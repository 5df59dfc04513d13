"""An interrupted ``kha install`` resumes (the README's claim): the install is killed while ``kubeadm
init`` is under way on the node, and a second run finishes it — every node Ready, nothing left pending.

The kill is timed by the node, not by a clock: as soon as kubeadm has written the kube-apiserver
manifest (init is half-way: its static pods are starting), kha is SIGKILLed with everything it started.
Whatever kubeadm then did on its own (finished, or died with the SSH session), the next run must cope:
an init that got through is not run again, a half-finished one is picked up (``RESUME_PREFLIGHT``), a
config written before its daemon's restart is still restarted (``nodeops.mark_pending``).
"""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from core import waiting
from harness.pytest_plugin import Topologies
from images import bundle as bundles
from installer import topology
from installer.connect import Connector
from installer.kubernetes.phases import APISERVER_MANIFEST
from installer.nodeops import PENDING_DIR
from installer.phases import Status
from scenarios import catalog
from scenarios.installed import install_onto

pytestmark = pytest.mark.integration


def test_install_killed_during_kubeadm_init_resumes(kha_topologies: Topologies, tmp_path: Path) -> None:
    cluster = kha_topologies.fresh(kha_topologies.get("allinone", "lxc"))
    kha_topologies.dirty.add(cluster.name)  # whatever happens here, later tests get a pristine node
    built = bundles.build()
    inventory = catalog.get("allinone").inventory
    host = topology.load(inventory).first_master
    state, log = tmp_path / "state", tmp_path / "first-run.log"
    argv = [sys.executable, "-m", "kha.cli", "install", "-i", str(inventory), "--state", str(state),
            "--ssh-config", str(cluster.ssh_config), "--known-hosts", str(cluster.known_hosts),
            "--bundle", str(built.path)]
    with Connector(cluster.known_hosts, cluster.ssh_config) as connect, log.open("w") as out:
        node = connect(host)
        # Its own session: the kill takes kha and the SSH proxies it started, nothing else.
        first = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                 start_new_session=True)
        try:
            def init_under_way() -> str | None:
                if first.poll() is not None:
                    return f"kha install ended (exit {first.returncode}) before kubeadm init wrote its manifests"
                return None if node.run(["test", "-e", APISERVER_MANIFEST], check=False).ok else "no manifest yet"

            waiting.until(init_under_way, timeout=300, interval=0.3, error=lambda said: AssertionError(
                f"{said}\n{log.read_text()}"))
        finally:
            if first.poll() is None:
                os.killpg(first.pid, signal.SIGKILL)
            first.wait(timeout=30)
        said = log.read_text()
        assert first.returncode == -signal.SIGKILL, said
        assert "✓ kubernetes/images" in said and "✓ kubernetes/init" not in said, said

        again = io.StringIO()
        inst, result = install_onto(cluster, inventory, state, bundle=built.path, out=again)
        try:
            assert result.paths(Status.FAILED) == [], again.getvalue()
            assert "kubernetes/ready" in result.paths(), again.getvalue()
            nodes = inst.kubectl("get", "nodes", "--no-headers").stdout
            assert nodes.split()[:2] == [host.name, "Ready"], nodes
            pending = node.run(["sh", "-c", f"ls -A {PENDING_DIR} 2>/dev/null"], check=False).stdout.split()
            assert pending == [], f"daemons still marked for a restart after the resumed run: {pending}"
        finally:
            inst.close()
