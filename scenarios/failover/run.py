"""Running one case of the catalogue on an installed topology, start to verdict:

1. refuse what cannot apply here (the case's ``needs``), before anything is touched;
2. revert the topology to its installed snapshot and wait until it is whole (VIP on one node and
   serving, every node Ready, etcd healthy);
3. resolve the selector to nodes, build the fault (and prepare it, when the case starts from a failover);
4. start the clients (``/readyz`` through the VIP and on every apiserver, the write ledger through the
   VIP) and the observers (VIP on the wire, haproxy backends, etcd leader, leases, node Ready);
5. inject (t = 0), hold, heal; wait until the topology is whole again (the recovery time);
6. stop recording; read every ledger write back through each apiserver and from etcd; compare etcd's
   hashes; hand it all to the checker;
7. write ``history.json``, ``result.json`` and the timeline picture into the case's folder.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, TypeVar

from core import waiting
from installer.etcd import ctl
from installer.topology import Host, Topology
from scenarios.errors import CaseRefused, ScenarioError
from scenarios.failover import actions, checker, ledger, observers, selectors, timeline
from scenarios.failover.catalogue import Case
from scenarios.failover.clients import ApiProber, ApiTLS
from scenarios.failover.model import CaseHistory, CaseResult, FaultWindow, Op, Sample, write_json
from scenarios.installed import Installed
from scenarios.workload import EtcdHTTP, TLSFiles

log = logging.getLogger(__name__)
T = TypeVar("T")

#: The snapshot of the installed topology every case starts from.
SNAPSHOT = "kubernetes"
#: Clients and observers record this long before the injection and after the recovery.
CALM_S = 3.0
READY_TIMEOUT_S = 240.0
#: After a revert the kubelets report in again and the node lifecycle controller catches up: the topology
#: must stay whole this long before a case starts, so what the case sees is the fault's doing.
SETTLE_S = 5.0


def problem(case: Case, topo: Topology, driver: str) -> str | None:
    """Why ``case`` cannot run on this topology and node driver (None: it can). Checked before anything
    is touched."""
    for need in case.needs:
        if need == "vip" and (topo.vip is None or len(topo.lb) < 2):
            return f"{case.name} needs a VIP on two or more [lb] nodes; {topo.source} has none"
        if need == "own-clock" and driver == "lxc":
            return f"{case.name} needs nodes with a clock of their own (qemu): LXC nodes share the host's clock"
        if need == "netem" and driver == "lxc":
            return (f"{case.name} needs the netem qdisc in the nodes' kernel (qemu with the Debian kernel): "
                    "LXC nodes use the host's kernel, and this host's has no sch_netem")
    return None


def whole(inst: Installed, since: float | None = None) -> str | None:
    """None when the topology is whole: the API answers through the VIP, every node Ready (and, with
    ``since``, its kubelet has renewed its lease after that wall-clock time: a reverted topology still
    shows the Ready it had when the snapshot was taken), etcd healthy, the VIP on exactly one node; else
    what is not yet."""
    try:
        if inst.kubectl("get", "--raw", "/readyz", check=False, timeout=10).stdout.strip() != "ok":
            return "API /readyz through the VIP not ok"
        nodes = inst.kubectl("get", "nodes", "--no-headers", check=False, timeout=10).stdout.split("\n")
        ready = [line.split()[0] for line in nodes if len(line.split()) > 1 and line.split()[1] == "Ready"]
        if len(ready) != len(inst.kubernetes_nodes):
            return f"nodes Ready: {ready}"
        if since is not None:
            leases = inst.kubectl_json("get", "leases", "-n", "kube-node-lease")["items"]
            stale = [lease["metadata"]["name"] for lease in leases
                     if _wall(lease.get("spec", {}).get("renewTime", "")) <= since]
            if stale or len(leases) < len(inst.kubernetes_nodes):
                return f"kubelets not heard from since the revert: {stale or 'some leases missing'}"
        return inst.unsettled()
    except Exception as exc:  # noqa: BLE001 - a node still booting answers with errors: not whole yet
        inst.close()
        return f"{type(exc).__name__}: {exc}"


def _wall(stamp: str) -> float:
    """An RFC 3339 MicroTime (``2026-12-04T17:20:01.123456Z``) as seconds since the epoch (0 when absent)."""
    if not stamp:
        return 0.0
    return dt.datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def wait_whole(inst: Installed, timeout: float, since: float | None = None, *,
               settle: float = 0.0) -> tuple[float | None, str]:
    """Until ``whole`` holds (and still holds ``settle`` s later); the seconds it took, or None and why not."""
    start = time.monotonic()
    last = ["not asked"]

    def check() -> str | None:
        last[0] = whole(inst, since) or "whole"
        return None if last[0] == "whole" else last[0]

    try:
        waiting.until(check, timeout=timeout, interval=1.0, error=TimeoutError)
        if settle:
            time.sleep(settle)
            waiting.until(check, timeout=timeout, interval=1.0, error=TimeoutError)
    except TimeoutError:
        return None, last[0]
    return time.monotonic() - start, "whole"


def whole_now(inst: Installed, what: str, since: float | None) -> float:
    """Wait until the topology is whole (and stays so ``SETTLE_S``); the seconds it took. Raises if not."""
    took, said = wait_whole(inst, READY_TIMEOUT_S, since, settle=SETTLE_S)
    if took is None:
        raise ScenarioError(f"{inst.cluster.name} not whole {READY_TIMEOUT_S:.0f}s after the revert: {said}")
    log.info("%s: topology whole after %.1fs", what, took)
    return took


def fresh(inst: Installed, what: str) -> float:
    """Revert the topology to its installed snapshot and wait until it is whole again."""
    since = time.time()
    inst.revert(SNAPSHOT)
    return whole_now(inst, what, since)


def hashkv(inst: Installed, urls: Sequence[str] | None = None) -> tuple[bool, str]:
    """Whether every member (``urls``: the inventory's [etcd] by default) has the same hash at one revision."""
    urls = list(urls) if urls is not None else ctl.client_urls(inst.topo.etcd)
    ctx = inst.etcd()
    try:
        rev, hashes = ctx.admin().hashkv_at_common_revision(urls)
    except Exception as exc:  # noqa: BLE001 - reported as the check's evidence
        return False, f"could not compare: {type(exc).__name__}: {exc}"
    finally:
        ctx.connector.close()
    equal = len(hashes) == len(urls) and len({h for h, _ in hashes.values()}) == 1
    return equal, f"revision {rev}: " + ", ".join(f"{ep} {h}" for ep, (h, _r) in sorted(hashes.items()))


@dataclass(frozen=True)
class CaseRun:
    history: CaseHistory
    result: CaseResult
    folder: Path


@dataclass(frozen=True)
class Recorded(Generic[T]):
    """What the clients and observers saw while something was done to the topology, and its outcome."""

    started: float
    stopped: float
    ops: list[Op]
    samples: list[Sample]
    ledger: ledger.LedgerReport
    outcome: T


def record(inst: Installed, span: float, act: Callable[[], T], *,
           masters: Sequence[Host] | None = None) -> Recorded[T]:
    """Run ``act`` while the clients (``/readyz`` through the VIP and on every apiserver, the write ledger
    through the VIP) and the observers record, ``CALM_S`` before and after it; then read every ledger write
    back through each apiserver and from etcd. ``span``: the longest the clients may run. ``masters``: the
    control planes whose apiservers are probed and read back (default: the inventory's; a flow that removes
    one leaves it out)."""
    ns, vip = inst.netns, f"https://{inst.topo.vip}:{inst.topo.settings.lb_kube_apiserver_port}"
    pki = inst.state / "pki"
    with ApiTLS.from_store(pki) as tls:
        etcd = EtcdHTTP(TLSFiles.from_store(pki))
        ledger.ensure_namespace(vip, tls, netns=ns)
        probers = [ApiProber("readyz vip", vip, tls, netns=ns, max_duration=span)]
        apiservers = {h.name: f"https://{h.address}:6443" for h in (inst.topo.masters if masters is None else masters)}
        probers += [ApiProber(f"readyz {name}", url, tls, netns=ns, max_duration=span)
                    for name, url in apiservers.items()]
        writes = ledger.WriteLedger(vip, tls, netns=ns, max_duration=span)
        watchers = [observers.vip(inst, max_duration=span), observers.etcd_leader(inst, etcd, max_duration=span),
                    observers.haproxy(inst, max_duration=span), observers.api(inst, tls, vip, max_duration=span)]
        started = time.monotonic()
        for client in [*probers, writes]:
            client.start()
        for o in watchers:
            o.start()
        try:
            time.sleep(CALM_S)
            outcome = act()
            time.sleep(CALM_S)
        finally:
            # The history ends here: stopping an observer that waits on a dead node takes a while.
            stopped = time.monotonic()
            # Every recorder is stopped even when one of them failed; the first failure is raised after.
            failures = []
            for stop in [*(c.stop for c in [*probers, writes]), *(o.stop for o in watchers)]:
                try:
                    stop()
                except Exception as exc:  # noqa: BLE001 - kept and raised below, after the others stopped
                    failures.append(exc)
            if failures:
                raise failures[0]
        ops = [op for p in probers for op in p.history()] + writes.history()
        samples = [s for o in watchers for s in o.samples]
        listings = ledger.read_ledger(writes.listers(list(apiservers.values()), etcd,
                                                     ctl.client_urls(inst.topo.etcd)), netns=ns)
        report = ledger.check_ledger(ops, listings)
        etcd.close()
    return Recorded(started, stopped, ops, samples, report, outcome)


def run_case(case: Case, inst: Installed, out: Path, *, revert: bool = True, seed: int = 0,
             bound_scale: float = 1.0) -> CaseRun:
    """Run ``case`` on ``inst`` and write its history, result, the checker's inputs and the timeline under
    ``out/<case>/``. ``bound_scale`` tightens or loosens the outage bound (a failure made on purpose)."""
    why = problem(case, inst.topo, inst.cluster.state.spec.driver)
    if why is not None:
        raise CaseRefused(why)
    if not 0 < bound_scale <= 100:
        raise CaseRefused(f"bound scale {bound_scale:g} must be in (0, 100]")
    bound = checker.scaled(case.bound(inst.topo), bound_scale)
    if revert:
        fresh(inst, case.name)
    else:
        whole_now(inst, case.name, None)

    fault = actions.build(case, inst, selectors.resolve(case.selector, inst), seed)
    fault.prepare()  # may settle on other nodes (the etcd leader moved off the VRRP master)
    targets = list(fault.nodes)

    def act() -> tuple[float | None, str]:
        fault.inject()
        time.sleep(case.hold_s)  # the fault acts; the clients and observers record meanwhile
        fault.heal()
        return wait_whole(inst, case.recovery_s + 60)

    rec = record(inst, CALM_S + case.hold_s + case.recovery_s + CALM_S + 120, act)
    recovered, said = rec.outcome
    healed = fault.healed_at
    started, stopped, ops, samples, report = rec.started, rec.stopped, rec.ops, rec.samples, rec.ledger
    assert fault.injected_at is not None
    history = CaseHistory(case.name, inst.cluster.name, started, stopped,
                          FaultWindow(case.name, case.selector, tuple(targets), fault.description, fault.injected_at,
                                      healed), ops, samples)
    equal, detail = hashkv(inst)
    recovery = checker.Recovery(None if recovered is None or healed is None else recovered, said, equal, detail)
    written = checker.WriteCount(report.acked, report.lost, len(report.failed_present), report.unknown,
                                 len(report.mismatched) + len(report.unchecked), report.summary())
    inputs = checker.Inputs(bound, written, recovery, bound_scale)
    result = checker.check(case, inputs.bound, history, inputs.writes, inputs.recovery)
    folder = out / case.name
    write_json(folder / "history.json", history.to_json())
    write_json(folder / "inputs.json", inputs.to_json())
    write_json(folder / "result.json", {**result.to_json(), "bound_source": bound.source, "targets": targets,
                                        "ledger": report.summary(), "recovery": said, "seed": seed,
                                        "bound_scale": bound_scale, "selector": case.selector})
    timeline.render(history, result, folder, "timeline")
    return CaseRun(history, result, folder)
