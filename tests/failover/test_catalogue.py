"""The fault catalogue on a running HA Kubernetes (``tox -e failover``; one case: ``pytest -k <case>``).

Every case is held to its promises: the client-visible outage through the VIP within the case's bound
(formula and source in ``scenarios/failover/catalogue.py``), 0 acknowledged writes lost (read back through
each apiserver and from etcd), exactly one VIP holder after the heal (two while VRRP is cut, in that case),
everything whole again within the recovery bound, etcd's hashes equal. Cases that need what this driver
cannot give (a clock or kernel of the node's own) are not collected on it; the README lists them.
``--kha-tier pr`` (CI, ``tox -e failover-pr``) runs the cases marked ``tier="pr"``; the default runs all.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from kha import cli
from scenarios.failover import catalogue, run
from scenarios.installed import Installed
from scenarios.report.make import Ran
from scenarios.report.model import CaseRef
from scenarios.report.pytest_plugin import note

pytestmark = pytest.mark.failover

Measured = Callable[..., None]
QEMU_ONLY = {"own-clock", "netem"}


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "case" in metafunc.fixturenames:
        driver = str(metafunc.config.getoption("kha_driver") or "lxc")
        tier = metafunc.config.getoption("kha_tier")
        cases = [c for c in catalogue.CASES if (driver != "lxc" or not QEMU_ONLY & set(c.needs))
                 and tier in ("full", c.tier)]
        metafunc.parametrize("case", cases, ids=[c.name for c in cases])


def test_case(case: catalogue.Case, kubernetes_m_master: Installed, results: Path, measured: Measured,
              request: pytest.FixtureRequest) -> None:
    note(request.node, Ran(CaseRef(case.name), results / case.name))  # a failure's report holds the records
    done = run.run_case(case, kubernetes_m_master, results)
    r = done.result
    measured(f"{case.name}: outage {r.outage_s:.2f}s (bound {r.bound_s:.2f}s × {case.margin:g}), writes acked "
             f"{r.writes_acked} lost {r.writes_lost} unknown {r.writes_unknown}; {done.folder}",
             outage_s=r.outage_s, bound_s=r.bound_s, writes_lost=r.writes_lost)
    failed = "\n".join(f"✗ {c.name}: {c.detail}" for c in r.failures())
    picture = done.folder / "timeline.png"
    assert r.ok, f"{case.name} broke {len(r.failures())} promise(s) (timeline: {picture}):\n{failed}"


def test_kha_fault_run_on_a_kept_cluster(kubernetes_m_master: Installed, tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """The operator's way in: ``kha fault run`` on a cluster ``kha status`` knows, as after ``--kha-keep``."""
    inst = kubernetes_m_master
    monkeypatch.setenv("KHA_STATE_DIR", str(inst.cluster.state.state_dir.parent))
    argv = ["fault", "run", "kill-etcd-leader", "--name", inst.cluster.name, "-i", str(inst.inventory),
            "--state", str(inst.state), "--out", str(tmp_path)]
    if inst.bundle is not None:
        argv += ["--bundle", str(inst.bundle)]
    assert cli.main(argv) == 0, capsys.readouterr()
    out = capsys.readouterr().out
    assert "✓ kill-etcd-leader" in out and "✓ no acknowledged write lost" in out, out
    for name in ("history.json", "result.json", "timeline.png", "timeline.svg"):
        assert (tmp_path / "kill-etcd-leader" / name).is_file(), name
