"""A lost state folder does not push a new CA over a running cluster.

The installed m-master (etcd and load balancers, ``etcd_lb``) was built from one state folder; ``kha install``
is then run with a fresh one, as after ``hosts.ini`` moved to another folder. Its pki phase makes a new
store (local), and the connect phase reads each node's CA certificates and refuses: exit 1, the node and
``--replace-ca`` named, no file on any node newer than the moment before the run, etcd still healthy.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from installer.nodeops import PENDING_DIR
from scenarios.installed import Installed

pytestmark = pytest.mark.integration

MARKER = "/run/kha-before-lost-state"


def test_install_with_a_lost_state_folder_refuses_without_touching_a_node(etcd_lb: Installed, tmp_path: Path) -> None:
    inst = etcd_lb
    nodes = [h for h in inst.topo.hosts if inst.topo.roles(h.name)]
    with inst.connector() as connect:  # closed here: its SSH proxies must not outlive the test
        for host in nodes:
            connect(host).run(["touch", MARKER], sudo=True)
        time.sleep(1.1)  # file times a whole second apart from the marker's
        argv = [sys.executable, "-m", "kha.cli", "install", "-i", str(inst.inventory), "--state",
                str(tmp_path / "lost"), "--ssh-config", str(inst.cluster.ssh_config), "--known-hosts",
                str(inst.cluster.known_hosts), "--only", "pki,connect,etcd,loadbalancer"]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=600, check=False)
        said = done.stdout + done.stderr
        assert done.returncode == 1, said
        first = nodes[0].name
        assert (f"phase connect failed on {first}: {first} trusts another CA than the PKI store "
                f"{tmp_path / 'lost'}") in said
        assert "/etc/kubernetes/pki/etcd/ca.crt has key sha256:" in said and "--replace-ca" in said
        for host in nodes:
            newer = connect(host).run(["find", "/etc", "/usr/local/bin", PENDING_DIR, "-newer", MARKER, "-type", "f"],
                                      sudo=True, check=False).stdout.split()
            assert newer == [], f"{host.name}: {newer}"
    assert inst.etcd_healthy()
