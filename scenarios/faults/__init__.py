"""Faults the failure suites inject into a running topology, each an inject/heal pair.

A fault ("nemesis" in Jepsen's words) names its target, breaks it, and heals it; the suites
measure what a client saw in between. Faults act through the harness (power, links) and through
the installer's transports (stop a daemon), which is why they live in ``scenarios``.
"""

from __future__ import annotations

from typing import Protocol


class Fault(Protocol):
    #: what the fault does, for reports ("stop haproxy on node1 (the VRRP MASTER)").
    description: str

    def inject(self) -> None: ...

    def heal(self) -> None: ...
