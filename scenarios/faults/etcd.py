"""etcd faults for the failure suites: kill the leader, remove a member and re-add it empty.

Each is an inject/heal pair (``scenarios.faults.Fault``) acting over the installer's SSH transports and
reusing the day-2 code (``installer.etcd.membership``), so a fault does exactly what an operator would.
Both record what they hit and how long healing took, for the suites and the benchmark to report.
"""

from __future__ import annotations

import logging
import time

from installer import nodeops
from installer.etcd import membership
from installer.etcd.context import EtcdContext
from installer.etcd.ctl import host_of
from installer.topology import Host
from scenarios.errors import FaultError

log = logging.getLogger(__name__)


class KillEtcdLeader:
    """``systemctl kill -s KILL etcd`` on the member that is the raft leader right now.

    The unit has ``Restart=on-failure`` with ``RestartSec=2s``, so systemd brings the process back by
    itself about 2 s later (as a follower, once the others have elected a new leader); ``heal`` starts it
    in case it did not come back, and waits until every member is healthy.
    """

    def __init__(self, ctx: EtcdContext) -> None:
        self.ctx = ctx
        self.description = "kill -9 etcd on the raft leader (systemd restarts it after 2 s)"
        self.victim: Host | None = None
        self.leader_id = 0
        self.killed_at = 0.0
        self.heal_seconds = 0.0

    def inject(self) -> None:
        member, _ = self.ctx.admin().leader()
        victim = host_of(self.ctx.topo.hosts, member)
        if victim is None:
            raise FaultError(f"the leader {member.name} ({member.hex_id}) is not a host of the inventory")
        self.victim = victim
        self.leader_id = member.id
        self.description = f"kill -9 etcd on {self.victim.name} (the raft leader, {member.hex_id})"
        t = self.ctx.transport(self.victim)
        self.killed_at = time.monotonic()
        nodeops.systemctl(t, "kill", "-s", "KILL", "etcd")
        log.info("%s", self.description)

    def heal(self) -> None:
        if self.victim is None:
            return
        start = time.monotonic()
        t = self.ctx.transport(self.victim)
        if not nodeops.is_active(t, "etcd"):
            nodeops.systemctl(t, "start", "--no-block", "etcd")
        self.ctx.admin().wait_healthy()
        self.heal_seconds = time.monotonic() - start


class RemoveAndReAddMember:
    """Take ``node`` out of the cluster (``member remove``, stop, wipe its data dir), then bring it back as a
    new member with an empty data dir (learner, ``--initial-cluster-state existing``, promoted).

    ``rejoin_seconds``: from the start of ``heal`` to every member healthy with the node a voter again.
    """

    def __init__(self, ctx: EtcdContext, node: str) -> None:
        self.ctx = ctx
        self.host = ctx.topo.host(node)
        self.description = f"remove etcd member {node}, wipe its data dir, re-add it empty"
        self.inject_seconds = 0.0
        self.rejoin_seconds = 0.0

    def inject(self) -> None:
        start = time.monotonic()
        if not membership.remove_member(self.ctx, self.host):
            raise FaultError(f"{self.host.name} was removed but could not be stopped and wiped (unreachable)")
        self.inject_seconds = time.monotonic() - start
        log.info("%s: removed in %.1fs", self.host.name, self.inject_seconds)

    def heal(self) -> None:
        start = time.monotonic()
        membership.join_member(self.ctx, self.host)
        self.rejoin_seconds = time.monotonic() - start
        log.info("%s: re-added in %.1fs", self.host.name, self.rejoin_seconds)
