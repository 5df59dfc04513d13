"""Who holds the VIP, as the ``[lb]`` nodes themselves say: the one lookup the install phases, the
fault suites and the tests use (``ip -o -4 addr show to VIP/32`` on every ``[lb]`` node, in parallel).

Every ``[lb]`` node must answer over SSH; while one may be powered off or cut off, ask the wire
instead (``harness.probe.ArpHolders``).
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from concurrent.futures import ThreadPoolExecutor

from installer.errors import LoadBalancerError
from installer.remote import Transport
from installer.topology import Host, Topology


def holders(topo: Topology, transport: Callable[[Host], Transport], among: Collection[str] | None = None) -> list[str]:
    """The names of the ``[lb]`` nodes (or of those ``among`` them) that have the VIP configured now."""
    if topo.vip is None:
        raise LoadBalancerError("the topology has no VIP (lb_kube_apiserver_ip)")
    vip = str(topo.vip)
    argv = ["ip", "-o", "-4", "addr", "show", "to", f"{vip}/32"]
    # Transports opened here, in order, so a connector's cache is never raced by the threads.
    asked = [h for h in topo.lb if among is None or h.name in among]
    transports = [transport(h) for h in asked]
    with ThreadPoolExecutor(max_workers=max(1, len(transports))) as pool:
        answers = list(pool.map(lambda t: vip in t.run(argv, check=False, timeout=15).stdout, transports))
    return [h.name for h, held in zip(asked, answers, strict=True) if held]
