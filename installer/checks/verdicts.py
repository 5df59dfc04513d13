"""What the checks read off the nodes, judged: pure functions from the text a command printed (and what the
inventory expects) to ``None`` or the problem a user reads. The check modules look; these decide, so every
rule here is unit-tested without a node.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes

from installer.etcd import ctl
from installer.pki import crypto
from installer.topology import Host

#: etcd warns about peers whose clocks differ by more than 1 s ("prober detected unhealthy status …
#: clock difference"; etcd rafthttp/probing_status.go); a node off by half that is already drifting.
MAX_OFFSET_S = 0.5
#: chronyc -c tracking has 14 fields (chronyc(1)); the 5th is the system clock's offset from true time.
_OFFSET_FIELD = 4
_STRATUM_FIELD = 2


# -- time ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Clock:
    """What a node says about its clock: chronyd's tracking (when it runs), else the fallbacks."""

    chronyd: bool
    tracking: str = ""  # chronyc -n -c tracking
    timesyncd: bool = False
    ntp_synchronized: str = ""  # timedatectl show -p NTPSynchronized --value
    container: bool = False


def time_verdict(clock: Clock, *, chrony_enabled: bool, sync_problem: str | None) -> tuple[str | None, str]:
    """(problem, what was seen). ``sync_problem`` is the nodeprep phase's reading of ``clock.tracking``.

    chronyd running: its tracking must say synchronised, offset under ``MAX_OFFSET_S``. Not running: a
    problem when the inventory asks for chrony; else systemd-timesyncd's NTPSynchronized, else a container
    keeps its host's clock, else no time service at all is a problem.
    """
    if clock.chronyd:
        if sync_problem is not None:
            hint = "" if chrony_enabled else (
                " (chrony_enabled=false: the node's own chrony configuration, which kha leaves alone; give it a "
                "source it can reach, or set chrony_enabled=true so the first master serves every node)")
            return f"chrony: {sync_problem}{hint}", ""
        fields = clock.tracking.strip().split(",")
        offset = float(fields[_OFFSET_FIELD])
        seen = f"chrony offset {offset:+.6f}s stratum {fields[_STRATUM_FIELD]}"
        if abs(offset) > MAX_OFFSET_S:
            return f"{seen}: more than {MAX_OFFSET_S}s off", seen
        return None, seen
    if chrony_enabled:
        return "chrony_enabled=true but chronyd is not running", ""
    if clock.timesyncd:
        if clock.ntp_synchronized == "yes":
            return None, "systemd-timesyncd synchronised"
        return f"systemd-timesyncd runs but NTPSynchronized={clock.ntp_synchronized or '?'}", ""
    if clock.container:
        return None, "no time service (a container: its host's clock)"
    return ("no time service runs (neither chronyd nor systemd-timesyncd); set chrony_enabled=true to have kha "
            "install chrony"), ""


def active_swap(proc_swaps: str) -> list[str]:
    """The swap areas /proc/swaps lists (its first line is a header)."""
    return [" ".join(line.split()[:3]) for line in proc_swaps.splitlines()[1:] if line.strip()]


# -- etcd ------------------------------------------------------------------------------------------
def health_problem(health: Sequence[ctl.EndpointHealth], expected: Collection[str]) -> str | None:
    """Every expected client URL answered healthy."""
    seen = {h.endpoint: h for h in health}
    problems = [f"{url}: {seen[url].error or 'unhealthy'}" if url in seen else f"{url}: no answer"
                for url in expected if url not in seen or not seen[url].healthy]
    return "; ".join(problems) or None


def members_problem(members: Sequence[ctl.MemberInfo], hosts: Sequence[Host]) -> str | None:
    """The cluster's members are the inventory's [etcd] nodes: each started, none a learner, no other."""
    problems = []
    found: set[int] = set()
    for h in hosts:
        m = ctl.find_member(members, ctl.member_of(h))
        if m is None:
            problems.append(f"{h.name} ({ctl.member_of(h).peer_url}) is not a member")
            continue
        found.add(m.id)
        if not m.started:
            problems.append(f"{h.name} is a member that never started")
        if m.is_learner:
            problems.append(f"{h.name} is still a learner")
    extra = [f"{m.name or '(unstarted)'} {','.join(m.peer_urls)}" for m in members if m.id not in found]
    if extra:
        problems.append(f"members the inventory does not name: {'; '.join(extra)}")
    return "; ".join(problems) or None


def hashkv_problem(hashes: Mapping[str, tuple[int, int]], expected: Collection[str]) -> str | None:
    """Every member answered with the same KV hash (at one revision)."""
    missing = [url for url in expected if url not in hashes]
    if missing:
        return f"no hash from {', '.join(missing)}"
    if len({h for h, _ in hashes.values()}) > 1:
        return "members differ: " + ", ".join(f"{url} hash {h} rev {r}" for url, (h, r) in sorted(hashes.items()))
    return None


# -- load balancer -------------------------------------------------------------------------------
def backends_problem(up: Mapping[str, bool], masters: Iterable[str]) -> str | None:
    """haproxy's servers are exactly the masters, each UP."""
    want = sorted(masters)
    if sorted(up) != want:
        return f"servers {sorted(up)}, expected the masters {want}"
    down = sorted(n for n, ok in up.items() if not ok)
    return f"DOWN: {', '.join(down)} (UP: {', '.join(sorted(n for n in up if up[n])) or 'none'})" if down else None


_UPSTREAM = re.compile(r"upstream\s+kube_apiserver\s*\{(?P<body>[^}]*)\}")
_SERVER = re.compile(r"^\s*server\s+(\S+?)(?:\s|;)", re.MULTILINE)


def nginx_upstreams(conf: str) -> list[str]:
    """The ``server ADDRESS:PORT`` entries of nginx.conf's ``upstream kube_apiserver`` block."""
    m = _UPSTREAM.search(conf)
    return _SERVER.findall(m.group("body")) if m else []


def vip_problem(holders: Sequence[str], vip: str) -> str | None:
    if len(holders) == 1:
        return None
    return f"VIP {vip} on {', '.join(holders)}: more than one node" if holders else f"VIP {vip} on no node"


# -- Kubernetes ------------------------------------------------------------------------------------
def nodes_problem(nodes: Sequence[Mapping[str, Any]], expected: Collection[str], version: str) -> str | None:
    """Every inventory node is a Node, Ready, with kubelet ``version`` (``v1.20.2``), and no other Node."""
    by_name = {n["metadata"]["name"]: n for n in nodes}
    problems = []
    missing = sorted(set(expected) - set(by_name))
    if missing:
        problems.append(f"not registered: {', '.join(missing)}")
    extra = sorted(set(by_name) - set(expected))
    if extra:
        problems.append(f"nodes the inventory does not name: {', '.join(extra)}")
    for name in sorted(set(by_name) & set(expected)):
        status = by_name[name].get("status", {})
        ready = {c.get("type"): c for c in status.get("conditions", [])}.get("Ready", {})
        if ready.get("status") != "True":
            problems.append(f"{name}: Ready={ready.get('status', 'Unknown')} ({ready.get('message', 'no message')})")
        if not by_name[name].get("spec", {}).get("podCIDR"):
            problems.append(f"{name}: no pod range (spec.podCIDR): the controller-manager allocates none")
        kubelet = status.get("nodeInfo", {}).get("kubeletVersion")
        if kubelet != version:
            problems.append(f"{name}: kubelet {kubelet}, expected {version}")
    return "; ".join(problems) or None


def pods_problem(pods: Sequence[Mapping[str, Any]], static: Collection[str], nodes: Collection[str]) -> str | None:
    """Every kube-system pod Running with its containers ready; the masters' static pods and one kube-proxy
    per node among them."""
    problems = []
    names = {p["metadata"]["name"] for p in pods}
    for p in sorted(pods, key=lambda p: str(p["metadata"]["name"])):
        status = p.get("status", {})
        unready = [c["name"] for c in status.get("containerStatuses", []) if not c.get("ready")]
        if status.get("phase") != "Running" or unready:
            problems.append(f"{p['metadata']['name']} on {p.get('spec', {}).get('nodeName', '?')}: "
                            f"{status.get('phase')}" + (f", not ready: {', '.join(unready)}" if unready else ""))
    missing = sorted(set(static) - names)
    if missing:
        problems.append(f"no pod: {', '.join(missing)}")
    proxied = {p.get("spec", {}).get("nodeName") for p in pods if str(p["metadata"]["name"]).startswith("kube-proxy-")}
    unproxied = sorted(set(nodes) - proxied)
    if unproxied:
        problems.append(f"no kube-proxy pod on {', '.join(unproxied)}")
    return "; ".join(problems) or None


# -- certificates ----------------------------------------------------------------------------------
_PEM = re.compile(rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.DOTALL)


def served_chain(s_client_output: bytes) -> list[x509.Certificate]:
    """The certificates ``openssl s_client -showcerts`` printed, the served leaf first."""
    return [x509.load_pem_x509_certificate(m.group(0)) for m in _PEM.finditer(s_client_output)]


def fingerprint(cert: x509.Certificate) -> str:
    return cert.fingerprint(hashes.SHA256()).hex()[:16]


def served_problem(chain: Sequence[x509.Certificate], *, ca: x509.Certificate | None, store_leaf: x509.Certificate |
                   None, now: dt.datetime, warn_days: int) -> tuple[str | None, str]:
    """(problem, what was seen) for the leaf a port serves.

    ``ca``: the store's CA it must be issued by (None: no chain to check, as for the kubelet's self-signed
    serving certificate). ``store_leaf``: the store's copy of what the node should serve (None: not in the
    store). Either way it must be valid ``warn_days`` more days.
    """
    if not chain:
        return "served no certificate", ""
    leaf = chain[0]
    subject = leaf.subject.rfc4514_string()
    seen = f"{subject}, until {leaf.not_valid_after_utc:%Y-%m-%d}"
    if ca is not None and not crypto.issued_by(leaf, ca):
        return (f"{subject} is not issued by the store's CA {ca.subject.rfc4514_string()} "
                f"(its issuer: {leaf.issuer.rfc4514_string()})"), seen
    if store_leaf is not None and fingerprint(store_leaf) != fingerprint(leaf):
        return (f"serves {subject} (sha256 {fingerprint(leaf)}, until {leaf.not_valid_after_utc:%Y-%m-%d}), not the "
                f"store's (sha256 {fingerprint(store_leaf)}, until {store_leaf.not_valid_after_utc:%Y-%m-%d}): "
                "restart it to load the store's certificate"), seen
    if leaf.not_valid_before_utc > now:
        return f"{subject} is not valid before {leaf.not_valid_before_utc:%Y-%m-%d %H:%M}Z", seen
    left = leaf.not_valid_after_utc - now
    if left < dt.timedelta(days=warn_days):
        return (f"{subject} expires {leaf.not_valid_after_utc:%Y-%m-%d} ({max(0, left.days)} days left, "
                f"--warn-days {warn_days})"), seen
    return None, seen


def mode_problem(path: str, exists: bool, mode: int, want: int) -> str | None:
    if not exists:
        return f"{path} is missing"
    if mode != want:
        return f"{path} has mode {mode:04o}, expected {want:04o}"
    return None
