"""Observers: threads that look at one thing on a fixed period while a case runs and record what they saw
as ``model.Sample`` rows — who holds the VIP (on the wire, ARP), which apiservers each haproxy counts as
UP, the etcd leader and its term, the kcm/scheduler lease holders, each node's Ready condition.

Each observer is a ``Poller``: a bounded thread (``harness.probe.Worker``) that joins the topology's
network namespace when asked and calls its ``look`` function every ``period`` s. A look that fails is a
sample with ``error`` set — a dead node is something to see, not a reason to stop looking.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import Any

from harness.probe import ArpHolders, Worker
from installer.etcd import ctl
from installer.loadbalancer import runtime
from installer.topology import Host
from scenarios.errors import ScenarioError
from scenarios.failover.clients import https_url, request
from scenarios.failover.model import Sample
from scenarios.installed import Installed
from scenarios.workload import EtcdHTTP, TLSFiles

log = logging.getLogger(__name__)

#: What a look returns: (observer, value) pairs, all read at one moment.
Look = Callable[[], Sequence[tuple[str, str]]]


class Poller(Worker):
    """Calls ``look`` every ``period`` s and records its answers (or its error) as samples."""

    def __init__(self, name: str, look: Look, *, observers: Sequence[str], period: float, netns: str | None,
                 max_duration: float, on_stop: Callable[[], None] | None = None) -> None:
        super().__init__(name, netns, max_duration)
        self.look = look
        self.on_stop = on_stop
        self.observers = tuple(observers)
        self.period = period
        self.samples: list[Sample] = []

    def _loop(self, deadline: float) -> None:
        try:
            self._poll(deadline)
        finally:
            if self.on_stop is not None:
                self.on_stop()  # in this thread: what it opened (sockets, SSH) lives here

    def _poll(self, deadline: float) -> None:
        nxt = time.monotonic()
        while not self._stop.is_set() and time.monotonic() < deadline:
            t = time.monotonic()
            try:
                self.samples.extend(Sample(name, t, value) for name, value in self.look())
            except Exception as exc:  # noqa: BLE001 - recorded: an observer that cannot look is data
                self.samples.extend(Sample(name, t, "", error=f"{type(exc).__name__}: {exc}")
                                    for name in self.observers)
            nxt += self.period
            self._stop.wait(max(0.0, nxt - time.monotonic()))


def vip(inst: Installed, *, period: float = 0.2, max_duration: float) -> Poller:
    """Who answers ARP for the VIP on the topology's bridge (atomic across nodes; no login needed)."""
    topo, cluster = inst.topo, inst.cluster
    names = {cluster.state.nodes[h.name].mac: h.name for h in topo.lb}
    arp = ArpHolders(cluster.state.bridge, str(topo.vip), names)
    return Poller("observe-vip", lambda: [("vip", ",".join(sorted(arp())))], observers=["vip"],
                  period=period, netns=inst.netns, max_duration=max_duration, on_stop=arp.close)


def etcd_leader(inst: Installed, client: EtcdHTTP, *, period: float = 0.5, max_duration: float) -> Poller:
    """The leader every reachable member names, and the raft term: ``node2/7`` (``?/7`` for an unknown id;
    several answers joined by ``|`` when members disagree)."""
    urls = dict(zip(ctl.client_urls(inst.topo.etcd), inst.topo.etcd, strict=True))

    def look() -> list[tuple[str, str]]:
        ids: dict[str, str] = {}
        seen: set[tuple[str, str]] = set()
        for url, host in urls.items():
            try:
                st = client.status(url, timeout=0.5)
            except Exception:  # noqa: BLE001 - an unreachable member simply says nothing
                continue
            header = st.get("header", {})
            ids[str(header.get("member_id"))] = host.name
            seen.add((str(st.get("leader")), str(header.get("raft_term") or st.get("raftTerm"))))
        return [("etcd leader", "|".join(sorted({f"{ids.get(lead, '?')}/{term}" for lead, term in seen})))]

    return Poller("observe-etcd", look, observers=["etcd leader"], period=period, netns=inst.netns,
                  max_duration=max_duration)


def haproxy(inst: Installed, *, period: float = 1.0, max_duration: float) -> Poller:
    """Which apiservers each LB node's haproxy counts as UP (its runtime API, over SSH): ``UP a,b DOWN c``.

    Each LB node is asked in a thread of its own, so a node that hangs (powered off mid-connection) costs
    its own row a "no answer", not every row: while a node's last question is unanswered, it is not asked
    again."""
    argv = runtime.servers_state_argv()
    connector = inst.connector()
    pool = ThreadPoolExecutor(max_workers=max(1, len(inst.topo.lb)), thread_name_prefix="observe-haproxy")
    pending: dict[str, Future[str]] = {}

    def state_of(host: Host) -> str:
        res = connector(host).run(argv, sudo=True, check=False, timeout=max(1.0, period))
        if not res.ok:
            return f"haproxy not answering ({res.exit_code})"
        st = runtime.parse_servers_state(res.stdout)
        up = ",".join(sorted(n for n, ok in st.items() if ok))
        down = ",".join(sorted(n for n, ok in st.items() if not ok))
        return f"UP {up}" + (f" DOWN {down}" if down else "")

    def look() -> list[tuple[str, str]]:
        for host in inst.topo.lb:
            if host.name not in pending:
                pending[host.name] = pool.submit(state_of, host)
        wait(list(pending.values()), timeout=period)
        out = []
        for host in inst.topo.lb:
            f = pending[host.name]
            if not f.done():
                out.append((f"haproxy {host.name}", "unreachable: no answer"))
                continue
            del pending[host.name]
            exc = f.exception()
            out.append((f"haproxy {host.name}", f"unreachable: {type(exc).__name__}" if exc else f.result()))
        return out

    def close() -> None:
        # Closing the transports ends a question still hanging on a dead node (a closed transport never
        # reconnects); only then are the threads done. A question that had not yet asked the connector
        # for its transport made a new one: the second close ends it.
        connector.close()
        pool.shutdown(wait=True, cancel_futures=True)
        connector.close()

    return Poller("observe-haproxy", look, observers=[f"haproxy {h.name}" for h in inst.topo.lb], period=period,
                  netns=None, max_duration=max_duration, on_stop=close)


LEASES = ("kube-controller-manager", "kube-scheduler")


def api(inst: Installed, tls: TLSFiles, base_url: str, *, period: float = 1.0, timeout: float = 1.0,
        max_duration: float) -> Poller:
    """Through ``base_url`` (the VIP): who holds the kcm and scheduler leases (client-go leader election),
    and each node's Ready condition (``True``/``False``/``Unknown``)."""
    names = [f"lease {lease}" for lease in LEASES] + [f"ready {h.name}" for h in inst.kubernetes_nodes]
    ctx = tls.context()

    def get(path: str) -> Any:
        reply = request(https_url(base_url, path), ctx, timeout=timeout)
        if reply.status != 200:
            raise ScenarioError(f"GET {path}: {reply.status or reply.error}")
        return json.loads(reply.body)

    def look() -> list[tuple[str, str]]:
        out = []
        for lease in LEASES:
            spec = get(f"/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/{lease}").get("spec", {})
            # client-go's identity is "<hostname>_<uuid>".
            out.append((f"lease {lease}", str(spec.get("holderIdentity", "")).split("_")[0]))
        for node in get("/api/v1/nodes").get("items", []):
            ready = [c for c in node.get("status", {}).get("conditions", []) if c.get("type") == "Ready"]
            out.append((f"ready {node['metadata']['name']}", ready[0].get("status", "Unknown") if ready else "Unknown"))
        return out

    return Poller("observe-api", look, observers=names, period=period, netns=inst.netns, max_duration=max_duration)
