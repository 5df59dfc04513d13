"""The fault catalogue: one declarative table of cases (like the PKI table), each with the nodes it
targets (a selector), what it does, how long the fault holds, and the bound the client-visible outage
through the VIP is held to — derived from the timers that govern it, with the formula and its source
written next to the case.

Timers (kha's own settings, read from the modules that render them):
* keepalived (``installer.loadbalancer.render``): advert_int 1 s; the local-LB check every 1 s, fall 2,
  puts the instance into FAULT (priority-0 advert → the BACKUP waits only Skew_Time); a dead MASTER is
  noticed after Master_Down_Interval = 3 × advert_int + Skew_Time, Skew_Time = (256 − priority)/256 s
  (RFC 5798 §6.1, §6.4.3; keepalived.conf(5) vrrp_script).
* haproxy: each apiserver's /readyz checked every ``BACKEND_CHECK_INTER_S``, DOWN after ``FALL``, UP after
  ``RISE`` (haproxy configuration manual §5.2 inter/fall/rise).
* etcd: heartbeat 100 ms, election timeout 1000 ms; a follower campaigns after one to two election
  timeouts (raft §5.2: randomized in [T, 2T]); https://etcd.io/docs/v3.4/tuning/.
* kubelet restarts a killed static pod's container at once the first time (back-off starts at 10 s).
* client-go leader election (kcm, scheduler): lease 15 s, renew deadline 10 s, retry 2 s.

``margin`` is how generous the assertion is over the bound (1.5 where timers are loose or stacked).
A case that cannot apply to a topology or a machine says what it ``needs``; the suite lists it and
refuses it with that reason instead of running something else.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from installer.etcd import render as etcd_render
from installer.loadbalancer import render as lb_render
from installer.topology import Topology
from scenarios.errors import CaseRefused

#: A probe that starts just before the path heals still runs out its timeout: every bound of a
#: client-visible outage carries one probe timeout (the measurement's resolution, not slack).
PROBE_TIMEOUT_S = 1.0


@dataclass(frozen=True)
class Bound:
    """The longest client-visible outage through the VIP the timers allow, and how it is made up."""

    seconds: float
    formula: str
    source: str


BoundFor = Callable[[Topology], Bound]


def _skew(topo: Topology) -> float:
    """Skew_Time of the BACKUP that takes over (the second [lb] node, the highest priority after the first)."""
    if len(topo.lb) < 2:
        raise CaseRefused("the topology has fewer than two [lb] nodes: no VRRP failover")
    return (256 - lb_render.priority(topo, topo.lb[1])) / 256


def _backend_down() -> float:
    """A dead backend is DOWN after ``fall`` failed checks ``inter`` apart, the last one waiting out its
    ``timeout check`` (= inter): fall × inter + inter at the worst."""
    return lb_render.BACKEND_CHECK_INTER_S * (lb_render.BACKEND_CHECK_FALL + 1)


def _backend_up() -> float:
    return lb_render.BACKEND_CHECK_INTER_S * lb_render.BACKEND_CHECK_RISE


def _election() -> float:
    return 2 * etcd_render.ELECTION_TIMEOUT_MS / 1000


def lb_check_failover(topo: Topology) -> Bound:
    s = _skew(topo)
    t = lb_render.CHECK_INTERVAL_S * lb_render.CHECK_FALL + s + PROBE_TIMEOUT_S
    return Bound(t, f"keepalived check {lb_render.CHECK_INTERVAL_S}s × fall {lb_render.CHECK_FALL} + skew {s:.2f}s "
                 f"+ one probe timeout {PROBE_TIMEOUT_S:g}s", "keepalived.conf(5) vrrp_script; RFC 5798 §6.4.3")


def master_down(topo: Topology) -> Bound:
    s = _skew(topo)
    t = 3 * lb_render.ADVERT_INT_S + s + PROBE_TIMEOUT_S
    return Bound(t, f"3 × advert_int {lb_render.ADVERT_INT_S}s + skew {s:.2f}s + one probe timeout "
                 f"{PROBE_TIMEOUT_S:g}s", "RFC 5798 §6.1 Master_Down_Interval")


def master_down_and_backend(topo: Topology) -> Bound:
    """The VRRP master dies and with it an apiserver behind every haproxy: the BACKUP takes the VIP, and its
    haproxy still sends a share of new connections to the dead backend until its check marks it DOWN."""
    m = master_down(topo)
    d = _backend_down()
    return Bound(m.seconds + d, f"{m.formula} + haproxy inter {lb_render.BACKEND_CHECK_INTER_S:g}s × (fall "
                 f"{lb_render.BACKEND_CHECK_FALL} + check timeout) = {d:g}s", f"{m.source}; haproxy §5.2 inter/fall")


def backend_down(topo: Topology) -> Bound:
    d = _backend_down()
    return Bound(d + PROBE_TIMEOUT_S, f"haproxy inter {lb_render.BACKEND_CHECK_INTER_S:g}s × (fall "
                 f"{lb_render.BACKEND_CHECK_FALL} + check timeout) + one probe timeout {PROBE_TIMEOUT_S:g}s",
                 "haproxy §5.2 inter/fall/timeout check")


def election(topo: Topology) -> Bound:
    e = _election()
    return Bound(e + PROBE_TIMEOUT_S, f"2 × etcd election timeout {etcd_render.ELECTION_TIMEOUT_MS}ms + one probe "
                 f"timeout {PROBE_TIMEOUT_S:g}s", "etcd tuning; raft §5.2 randomized election timeout")


#: kube-apiserver's etcd client (k8s.io/apiserver/pkg/storage/storagebackend/factory/etcd3.go): gRPC
#: keepalive pings every 30 s, a connection without an answer for 10 s more is dropped.
APISERVER_ETCD_KEEPALIVE_S = 30.0
APISERVER_ETCD_KEEPALIVE_TIMEOUT_S = 10.0


def etcd_blackhole(topo: Topology) -> Bound:
    """A member that silently drops packets (partitioned, not down): an apiserver whose etcd client is on it
    hears nothing — no refusal, no reset — until its gRPC keepalive gives up on the connection; then it
    reconnects to a member that answers. Every apiserver may be on that member."""
    k = APISERVER_ETCD_KEEPALIVE_S + APISERVER_ETCD_KEEPALIVE_TIMEOUT_S
    return Bound(k + PROBE_TIMEOUT_S, f"apiserver etcd client gRPC keepalive {APISERVER_ETCD_KEEPALIVE_S:g}s + "
                 f"keepalive timeout {APISERVER_ETCD_KEEPALIVE_TIMEOUT_S:g}s + one probe timeout {PROBE_TIMEOUT_S:g}s",
                 "k8s.io/apiserver storagebackend/factory/etcd3.go keepaliveTime/keepaliveTimeout")


#: kube-apiserver's /readyz etcd check gives up after this long (--etcd-healthcheck-timeout, default 2 s).
APISERVER_ETCD_HEALTHCHECK_TIMEOUT_S = 2.0
#: gRPC's reconnect back-off starts at 1 s (grpc/doc/connection-backoff.md, BASE_DELAY).
GRPC_BACKOFF_BASE_S = 1.0


def not_ready(topo: Topology) -> Bound:
    """The apiserver is up but has lost etcd: its /readyz fails once its etcd check times out, then haproxy
    needs fall failed checks to drop it; meanwhile requests routed to it hang."""
    h, d = APISERVER_ETCD_HEALTHCHECK_TIMEOUT_S, _backend_down()
    return Bound(h + d + PROBE_TIMEOUT_S, f"apiserver etcd health check timeout {h:g}s + haproxy inter × (fall + "
                 f"check timeout) {d:g}s + one probe timeout {PROBE_TIMEOUT_S:g}s",
                 "kube-apiserver --etcd-healthcheck-timeout; haproxy §5.2")


def member_change(topo: Topology) -> Bound:
    """An etcd member leaves (and comes back empty): apiservers connected to it see the connection end and
    reconnect to another member after gRPC's first back-off."""
    return Bound(GRPC_BACKOFF_BASE_S + 2 * PROBE_TIMEOUT_S, f"gRPC reconnect back-off {GRPC_BACKOFF_BASE_S:g}s + "
                 f"two probe timeouts ({PROBE_TIMEOUT_S:g}s each)", "grpc connection-backoff BASE_DELAY")


def none(topo: Topology) -> Bound:
    return Bound(2 * PROBE_TIMEOUT_S, f"no outage: at most two probe timeouts ({PROBE_TIMEOUT_S:g}s each)",
                 "the fault does not touch the API path")


def held(hold_s: float) -> BoundFor:
    """The API is down while the fault holds (etcd without quorum), then: a leader within two election
    timeouts, every apiserver /readyz again, and haproxy puts them back after rise × inter."""
    def bound(topo: Topology) -> Bound:
        e, u = _election(), _backend_up()
        return Bound(hold_s + e + u + PROBE_TIMEOUT_S,
                     f"hold {hold_s:g}s + election {e:g}s + haproxy inter × rise {u:g}s + probe timeout",
                     "raft §5.2; haproxy §5.2 rise")
    return bound


def cold_start(budget_s: float) -> BoundFor:
    """Every node powered off and on: not a timer but a budget (boot, kubelet, static pods, etcd, readyz,
    haproxy rise), stated and measured."""
    def bound(topo: Topology) -> Bound:
        return Bound(budget_s, f"budget {budget_s:g}s from the first power-on (boot + kubelet + static pods + "
                     "etcd + haproxy rise)", "measured budget, not a timer")
    return bound


@dataclass(frozen=True)
class Case:
    """One fault case of the catalogue."""

    name: str
    selector: str
    action: str
    bound: BoundFor
    what: str
    #: how long the fault stays before it is healed (0: healed as soon as inject returns).
    hold_s: float = 8.0
    margin: float = 1.5
    #: from the heal until the VIP serves, every node is Ready and etcd is healthy.
    recovery_s: float = 90.0
    #: two VIP holders at once are what this case provokes (they must be seen, and gone after the heal).
    expect_two_holders: bool = False
    #: no node may go NotReady (a single LB fault must not disturb the kubelets' path to the API).
    no_notready: bool = False
    #: what the case needs beyond an LXC m-master: "vip" ([lb] nodes), "netem" (sch_netem), "own-clock"
    #: (nodes with a clock of their own: VMs; LXC nodes share the host's).
    needs: tuple[str, ...] = ("vip",)
    #: "pr": in CI's tier (``tox -e failover-pr``); "full": only in the whole catalogue (``tox -e failover``).
    tier: str = "full"


CASES: tuple[Case, ...] = (
    Case("stop-haproxy-on-vrrp-master", "vrrp-master", "stop-haproxy", lb_check_failover,
         "systemctl stop haproxy on the VRRP master: its check fails, FAULT, the BACKUP takes the VIP",
         no_notready=True, tier="pr"),
    Case("kill-keepalived-on-vrrp-master", "vrrp-master", "kill-keepalived", master_down,
         "kill -9 keepalived on the VRRP master: no goodbye advert; the BACKUP waits Master_Down_Interval",
         no_notready=True, tier="pr"),
    Case("power-off-vrrp-master", "vrrp-master", "power-off", master_down_and_backend,
         "power off the VRRP master (it also runs an apiserver and an etcd member)", tier="pr"),
    Case("cut-link-vrrp-master", "vrrp-master", "cut-link", etcd_blackhole,
         "cut the VRRP master's link (NO-CARRIER): no priority-0 advert, and its etcd member is blackholed for "
         "the apiservers' etcd clients (the VIP itself moves within Master_Down_Interval)", margin=1.0),
    Case("vrrp-master-returns", "vrrp-master", "power-off-then-return", none,
         "the old VRRP master comes back after a failover: nopreempt, the VIP must not flap back", hold_s=0),
    Case("kill-apiserver", "apiserver-not-on-vip", "kill-apiserver", backend_down,
         "kill -9 kube-apiserver on a control plane that does not hold the VIP (kubelet restarts it)", hold_s=5,
         tier="pr"),
    Case("apiserver-not-ready", "apiserver-not-on-vip", "block-etcd-client", not_ready,
         "the apiserver stays up but loses etcd: /readyz fails and haproxy's check must drop it", hold_s=12, tier="pr"),
    Case("kill-etcd-leader", "etcd-leader", "kill-etcd", election,
         "SIGKILL the etcd leader (systemd restarts it after 2 s, as a follower)", hold_s=5, tier="pr"),
    Case("power-off-etcd-follower", "etcd-follower", "power-off", backend_down,
         "power off an etcd member that is not the leader (its apiserver goes with it)"),
    Case("pause-etcd-leader", "etcd-leader", "pause-etcd-leader", etcd_blackhole,
         "freeze the etcd leader's node (not the VRRP master) for 10 s, then resume it: its member accepts "
         "connections and never answers, a blackhole for the apiservers' etcd clients", hold_s=10, margin=1.0),
    Case("readd-etcd-member", "etcd-follower", "readd-etcd-member", member_change,
         "remove an etcd member, wipe it, re-add it empty while the clients run", hold_s=0),
    Case("lose-etcd-quorum", "majority", "stop-etcd", held(20.0),
         "stop etcd on 2 of 3 members for 20 s, then start them", hold_s=20, margin=1.25, tier="pr"),
    Case("partition-control-plane", "apiserver-not-on-vip", "partition", etcd_blackhole,
         "cut one control plane off from the other nodes (nft drop, node up): its etcd member is blackholed",
         hold_s=12, margin=1.0),
    Case("vrrp-split-brain", "lb-nodes", "block-vrrp", master_down,
         "drop VRRP adverts between the LB nodes: two holders while it lasts, one after the heal",
         hold_s=8, expect_two_holders=True, tier="pr"),
    Case("netem-etcd-leader", "etcd-leader", "netem", none,
         "200 ms ± 50 ms delay on the etcd leader's peer traffic", hold_s=15, needs=("vip", "netem")),
    Case("stop-kubelet-containerd", "apiserver-not-on-vip", "stop-kubelet-containerd", none,
         "stop kubelet and containerd on a control plane (its containers keep running)", hold_s=10),
    Case("power-cycle-all", "all", "power-cycle", cold_start(150.0),
         "power off every node, then start them in a random order", hold_s=3, margin=1.0, recovery_s=240.0),
    Case("clock-jump", "apiserver-not-on-vip", "clock-jump", none,
         "jump one control plane's clock +5 min", hold_s=10, needs=("vip", "own-clock")),
)


def get(name: str) -> Case:
    for case in CASES:
        if case.name == name:
            return case
    raise CaseRefused(f"unknown case {name!r}; known: {', '.join(c.name for c in CASES)}")
