"""What every day-2 flow test on the installed m-master asserts about a command run while the failover clients
recorded (``run.record``), and how it runs a ``kha`` command in-process."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pytest

from kha import cli
from scenarios.failover import catalogue, checker, run
from scenarios.failover.model import Outcome
from scenarios.installed import Installed

Measured = Callable[..., None]


def kha(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    """``kha ARGV`` in this process: its exit code and everything it printed."""
    rc = cli.main(list(argv))
    out = capsys.readouterr()
    return rc, out.out + out.err


def promises(inst: Installed, rec: run.Recorded[tuple[int, str]], what: str, measured: Measured,
             members: Sequence[str] | None = None) -> None:
    """The command succeeded; the longest stretch without a successful /readyz through the VIP stays within
    1.5 × haproxy's backend-down bound; 0 acknowledged writes lost; never two VIP holders; etcd's hashes
    equal across ``members`` (default: the inventory's [etcd])."""
    rc, out = rec.outcome
    assert rc == 0, out
    bound = catalogue.backend_down(inst.topo)
    vip = [o for o in rec.ops if o.client == checker.VIP_CLIENT]
    seconds = checker.longest_outage(vip, rec.started)
    failed = [o for o in vip if o.outcome is not Outcome.OK]
    holders = checker.holders_at([s for s in rec.samples if s.observer == "vip"])
    equal, detail = run.hashkv(inst, members)
    measured(f"{what}: {rec.stopped - rec.started:.1f}s, longest outage through the VIP {seconds:.2f}s "
             f"({len(failed)} of {len(vip)} probes failed; bound {bound.seconds:.2f}s × 1.5: {bound.formula}); "
             f"writes {rec.ledger.summary()}", outage_s=seconds, writes_lost=rec.ledger.lost)
    assert seconds <= 1.5 * bound.seconds, (what, [(o.start - rec.started, o.outcome, o.detail) for o in failed])
    assert rec.ledger.lost == 0 and not rec.ledger.failed_present, rec.ledger.summary()
    assert holders and max(n for _t, n in holders) == 1 and holders[-1][1] == 1, holders
    assert equal, detail
