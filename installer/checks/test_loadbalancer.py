"""The apiserver load balancer: every LB node's proxy runs (unprivileged, as kha hardens it) with exactly the
masters as backends, each UP; exactly one node holds the VIP; keepalived runs on every [lb] node and
tracks its local proxy. (Node-local LB: the proxy on every node; no VIP, no keepalived.)"""

from __future__ import annotations

import pytest

from installer.checks import verdicts
from installer.checks.target import Target, output
from installer.loadbalancer import render, runtime, vip
from installer.settings import LBMode
from installer.topology import Host, LBKind

#: haproxy marks a backend UP after ``rise`` checks 1 s apart; keepalived elects within a few adverts.
DEADLINE_S = 30.0
HAPROXY_CHROOT = "/var/lib/haproxy"


def _lb_nodes(target: Target) -> tuple[Host, ...]:
    nodes = render.lb_nodes(target.topo)
    if not nodes:
        pytest.skip("an external load balancer (slb): not kha's to check")
    return nodes


def _service(target: Target, h: Host, unit: str) -> str | None:
    if target.host(h).service(unit).is_running:
        return None
    return f"{unit} is not running: {target.unit_state(h, unit)}"


def _haproxy(target: Target, h: Host) -> str | None:
    host = target.host(h)
    if problem := _service(target, h, "haproxy"):
        return problem
    problems = []
    if target.topo.settings.lb_haproxy_chroot:
        workers = [(pid, user) for pid, user in target.processes(h, "haproxy") if user != "root"]
        if not workers or {user for _, user in workers} != {"haproxy"}:
            problems.append(f"haproxy workers run as {sorted({u for _, u in workers}) or 'nobody'}, expected "
                            "haproxy (lb_haproxy_chroot)")
        for pid, _user in workers:
            root = host.run("readlink /proc/%s/root", str(pid)).stdout.strip()
            if root != HAPROXY_CHROOT:
                problems.append(f"haproxy worker {pid} is chrooted in {root or '/'}, expected {HAPROXY_CHROOT}")
    res = target.run(h, runtime.servers_state_argv())
    if not res.ok:
        problems.append(f"the runtime API does not answer: {output(res)}")
    elif problem := verdicts.backends_problem(runtime.parse_servers_state(res.stdout),
                                              [m.name for m in target.topo.masters]):
        problems.append(f"backend {runtime.BACKEND}: {problem}")
    return "; ".join(problems) or None


def _nginx(target: Target, h: Host) -> str | None:
    host = target.host(h)
    if problem := _service(target, h, "nginx"):
        return problem
    procs = target.processes(h, "nginx")
    if not {user for _, user in procs} - {"root"}:
        return f"nginx has no unprivileged worker: processes run as {sorted({u for _, u in procs}) or 'nobody'}"
    want = sorted(f"{b.address}:{b.port}" for b in render.backends(target.topo))
    have = sorted(verdicts.nginx_upstreams(host.file(render.NGINX_CONF).content_string))
    if have != want:
        return f"{render.NGINX_CONF} upstream kube_apiserver has {have}, expected the masters {want}"
    return None


def test_backends(target: Target, note: list[str]) -> None:
    nodes = _lb_nodes(target)
    mode = target.topo.settings.lb_mode
    look = _nginx if mode is LBMode.NGINX else _haproxy
    target.until(lambda: target.each(nodes, lambda h: look(target, h)), DEADLINE_S)
    note.append(f"{mode.value} on {len(nodes)} node(s), backends {', '.join(m.name for m in target.topo.masters)}")


def _vip(target: Target) -> str:
    if target.topo.lb_kind is not LBKind.VIP or target.topo.vip is None:
        pytest.skip(f"no VIP: {target.topo.lb_kind.value} load balancer")
    return str(target.topo.vip)


def test_vip(target: Target, note: list[str]) -> None:
    address = _vip(target)
    held: list[str] = []

    def look() -> str | None:
        held[:] = vip.holders(target.topo, target.transport)
        return verdicts.vip_problem(held, address)

    target.until(look, DEADLINE_S)
    note.append(f"{address} on {held[0]}")


def test_keepalived(target: Target) -> None:
    _vip(target)

    def look(h: Host) -> str | None:
        if problem := _service(target, h, "keepalived"):
            return problem
        conf = target.host(h).file(render.KEEPALIVED_CONF).content_string
        if f'script "{render.CHECK_SCRIPT}"' not in conf or "track_script" not in conf:
            return f"{render.KEEPALIVED_CONF} does not track the local proxy with {render.CHECK_SCRIPT}"
        # What keepalived runs every second: failing, it puts this node's instance into FAULT.
        res = target.run(h, [render.CHECK_SCRIPT])
        return None if res.ok else f"the local proxy check fails, keepalived is in FAULT here: {output(res)}"

    target.until(lambda: target.each(target.topo.lb, look), DEADLINE_S)
