"""``kha check`` on the installed topology: every check passes (one test per check, so a red check is a red
test with its evidence), then breaking one thing at a time turns the check that watches it red, naming the
node and what it saw, and healing it turns it green again.

These are the e2e tier's node and cluster checks: the check modules (``installer/checks``) are the only copy,
run here exactly as an operator runs them — ``kha check`` as a command, its JUnit XML read back.
"""

from __future__ import annotations

import io
import re
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
from e2e_support import Installed

from core import run
from installer import install
from installer.checks import run as checks
from installer.checks.plugin import MODULE_PREFIX, check_name
from installer.etcd import backup
from installer.loadbalancer import render as lb_render
from installer.settings import LBMode
from installer.topology import LBKind

pytestmark = pytest.mark.e2e


@dataclass(frozen=True)
class Checked:
    """One ``kha check`` run: exit code, what it printed, and each check's (status, evidence or detail)."""

    code: int
    output: str
    results: dict[str, tuple[str, str]]


def kha_check(inst: Installed, tmp: Path, *args: str, inventory: Path | None = None) -> Checked:
    junit = tmp / f"check-{time.monotonic_ns()}.xml"
    argv = [sys.executable, "-m", "kha", "check", "-i", str(inventory or inst.inventory), "--state", str(inst.state),
            "--ssh-config", str(inst.cluster.ssh_config), "--known-hosts", str(inst.cluster.known_hosts),
            "--junitxml", str(junit), *args]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=900, check=False)
    results: dict[str, tuple[str, str]] = {}
    if junit.exists():
        for case in ET.parse(junit).getroot().iter("testcase"):
            name = check_name(MODULE_PREFIX + case.get("classname", "").removeprefix("test_"), case.get("name", ""))
            props = {p.get("name"): p.get("value", "") for p in case.iter("property")}
            status = "failed" if case.find("failure") is not None or case.find("error") is not None else (
                "skipped" if case.find("skipped") is not None else "passed")
            results[name] = (status, props.get("evidence", "") or props.get("detail", ""))
    return Checked(proc.returncode, proc.stdout + proc.stderr, results)


def _expected_skips(inst: Installed) -> set[str]:
    kind = inst.topo.lb_kind
    if kind is LBKind.VIP:
        return set()
    vip = {"loadbalancer/vip", "loadbalancer/keepalived"}
    # An external LB (slb) is not kha's: the fixture's stand-in is checked by apiserver/endpoint instead.
    return vip | {"loadbalancer/backends"} if kind is LBKind.SLB else vip


@pytest.fixture(scope="module")
def checked(installed: Installed, tmp_path_factory: pytest.TempPathFactory) -> Checked:
    start = time.monotonic()
    result = kha_check(installed, tmp_path_factory.mktemp("kha-check"))
    installed.timings.add("kha check (every check, right after the install)", time.monotonic() - start)
    installed.timings.checks = _check_lines(result)
    return result


def _check_lines(res: Checked) -> list[str]:
    """The ✓ / ✗ / - line of each check ``kha check`` printed (name, seconds), without the evidence under it."""
    return [ln for ln in res.output.splitlines() if ln[:2] in ("✓ ", "✗ ", "- ")]


@pytest.mark.parametrize("name", checks.catalogue())
def test_check_passes(checked: Checked, installed: Installed, name: str) -> None:
    assert name in checked.results, checked.output
    status, said = checked.results[name]
    if name in _expected_skips(installed):
        assert status == "skipped", said
    else:
        assert status == "passed", f"{name}: {said}\n--- kha check ---\n{checked.output}"


def test_kha_check_exit_code_and_lines(checked: Checked) -> None:
    assert checked.code == 0, checked.output
    assert [ln.split()[1] for ln in _check_lines(checked)] == checks.catalogue(), checked.output


def _broken(res: Checked, name: str, *words: str) -> None:
    """``kha check`` failed (exit 1) on ``name`` and its evidence holds ``words`` (a ``re:`` word: a pattern)."""
    assert res.code == 1, res.output
    status, evidence = res.results[name]
    assert status == "failed", res.output
    for w in words:
        found = re.search(w[3:], evidence) if w.startswith("re:") else w in evidence
        assert found, f"{w!r} not in the evidence of {name}:\n{evidence}"
    assert f"✗ {name}" in res.output, res.output


def _green(res: Checked, names: Sequence[str]) -> None:
    assert res.code == 0, res.output
    assert all(res.results[n][0] in ("passed", "skipped") for n in names), res.output


def test_a_stopped_load_balancer_turns_loadbalancer_backends_red(installed: Installed, tmp_path: Path) -> None:
    """kha's LB stopped on one node turns loadbalancer/backends red (with slb: the external LB unreachable turns
    apiserver/endpoint red)."""
    topo = installed.topo
    if topo.lb_kind is LBKind.SLB:
        _unreachable_external_lb_turns_apiserver_endpoint_red(installed, tmp_path)
        return
    daemon = "nginx" if topo.settings.lb_mode is LBMode.NGINX else "haproxy"
    node = lb_render.lb_nodes(topo)[-1]
    installed.run(node, ["systemctl", "stop", daemon])
    try:
        res = kha_check(installed, tmp_path, "--only", "loadbalancer", "--timeout", "5")
        # The unit's state: inactive, or failed where the graceful stop outlived the unit's stop timeout
        # (nginx's QUIT waits for kubelet's watch connections through the node-local LB; Debian gives it 5 s).
        _broken(res, "loadbalancer/backends", f"{node.name}: {daemon} is not running",
                f"re:{daemon}: (inactive|failed) ")
        if topo.lb_kind is LBKind.VIP:  # keepalived sees its local proxy gone: FAULT on that node
            _broken(res, "loadbalancer/keepalived", f"{node.name}: the local proxy check fails")
    finally:
        installed.run(node, ["systemctl", "start", daemon])
    _green(kha_check(installed, tmp_path, "--only", "loadbalancer"), ["loadbalancer/backends"])


def _unreachable_external_lb_turns_apiserver_endpoint_red(installed: Installed, tmp_path: Path) -> None:
    """lb_mode=slb: kha installs no LB, so the one the nodes cannot reach is the external one (the fixture's
    stand-in, whose address is taken off the topology's bridge for a while): apiserver/endpoint is red."""
    topo = installed.topo
    address = f"{topo.settings.lb_kube_apiserver_ip}/{topo.node_network.prefixlen}"
    ip = ["ip", "-n", installed.netns, "addr"]
    bridge = ["dev", installed.cluster.state.bridge]
    run.run([*ip, "del", address, *bridge])
    try:
        res = kha_check(installed, tmp_path, "--only", "apiserver/endpoint", "--timeout", "5")
        _broken(res, "apiserver/endpoint", f"{topo.masters[0].name}: ", str(topo.settings.lb_kube_apiserver_ip))
    finally:
        run.run([*ip, "add", address, *bridge])
    _green(kha_check(installed, tmp_path, "--only", "apiserver/endpoint"), ["apiserver/endpoint"])


def test_a_moved_certificate_turns_pki_files_red(installed: Installed, tmp_path: Path) -> None:
    node = installed.topo.masters[-1]
    path = "/etc/kubernetes/pki/apiserver.crt"
    installed.run(node, ["mv", path, "/root/apiserver.crt.moved-by-kha-e2e"])
    try:
        res = kha_check(installed, tmp_path, "--only", "pki", "--timeout", "0")
        _broken(res, "pki/files", f"{node.name}: {path} is missing")
    finally:
        installed.run(node, ["mv", "/root/apiserver.crt.moved-by-kha-e2e", path])
    _green(kha_check(installed, tmp_path, "--only", "pki"), ["pki/files", "pki/served"])


def test_a_stopped_chrony_turns_node_time_red(installed: Installed, tmp_path: Path) -> None:
    """With chrony_enabled (kha installs chrony: ``prepare/time``), a node whose chronyd stopped is red."""
    inventory = tmp_path / installed.inventory.name
    # The inventories end in [all:vars]: the knob lands there (as tests/e2e/test_node_prep.py sets its knobs).
    text = "\n".join(ln for ln in installed.inventory.read_text().splitlines() if not ln.startswith("chrony_enabled="))
    inventory.write_text(text + "\nchrony_enabled=true\n")
    install.run(inventory, state=installed.state, ssh_config=installed.cluster.ssh_config,
                known_hosts=installed.cluster.known_hosts, only=["prepare/time"], out=io.StringIO())
    ok = kha_check(installed, tmp_path, "--only", "node/time", inventory=inventory)
    _green(ok, ["node/time"])
    assert "chrony offset" in ok.results["node/time"][1], ok.output
    node = installed.topo.hosts[-1]
    installed.run(node, ["systemctl", "stop", "chrony"])
    try:
        res = kha_check(installed, tmp_path, "--only", "node/time", "--timeout", "0", inventory=inventory)
        _broken(res, "node/time", f"{node.name}: chrony_enabled=true but chronyd is not running",
                "chrony: inactive (dead)")
    finally:
        installed.run(node, ["systemctl", "start", "chrony"])
    _green(kha_check(installed, tmp_path, "--only", "node/time", inventory=inventory), ["node/time"])


def test_a_stopped_or_failing_backup_turns_etcd_backup_red(installed: Installed, tmp_path: Path) -> None:
    node = installed.topo.etcd[-1]
    installed.run(node, ["systemctl", "stop", backup.TIMER])
    try:
        res = kha_check(installed, tmp_path, "--only", "etcd/backup", "--timeout", "0")
        _broken(res, "etcd/backup", f"{node.name}: {backup.TIMER} is inactive")
    finally:
        installed.run(node, ["systemctl", "start", backup.TIMER])
    # A snapshot run that fails (its script cannot be executed) is red until one succeeds again.
    installed.run(node, ["chmod", "0600", backup.SCRIPT_PATH])
    try:
        installed.run(node, ["systemctl", "start", backup.SERVICE], check=False, timeout=120)
        res = kha_check(installed, tmp_path, "--only", "etcd/backup", "--timeout", "0")
        _broken(res, "etcd/backup", f"{node.name}: the last snapshot failed", f"{backup.SERVICE}: failed")
    finally:
        installed.run(node, ["chmod", "0700", backup.SCRIPT_PATH])
    installed.run(node, ["systemctl", "start", backup.SERVICE], timeout=120)
    _green(kha_check(installed, tmp_path, "--only", "etcd/backup"), ["etcd/backup"])
