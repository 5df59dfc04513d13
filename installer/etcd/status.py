"""``kha etcd status``: one row per member the cluster lists, with what each member says about itself
(leader, voter or learner, raft term, revision, db size, health), and the table a person reads."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from installer.etcd.context import EtcdContext
from installer.etcd.ctl import EndpointHealth, EndpointStatus, MemberInfo


@dataclass(frozen=True)
class StatusRow:
    name: str
    id: str
    peer_url: str
    leader: bool
    learner: bool
    raft_term: int | None
    revision: int | None
    db_size: int | None
    health: str  # "healthy", "unhealthy: why", "not started"

    @property
    def healthy(self) -> bool:
        return self.health == "healthy"


def status_rows(members: Sequence[MemberInfo], statuses: Sequence[EndpointStatus],
                health: dict[str, EndpointHealth]) -> list[StatusRow]:
    by_id = {s.member_id: s for s in statuses}
    rows = []
    for m in members:
        s = by_id.get(m.id)
        if not m.started:
            h = "not started"
        else:
            checks = [health[u] for u in m.client_urls if u in health]
            if checks and all(c.healthy for c in checks):
                h = "healthy"
            else:
                h = "unhealthy: " + ("; ".join(c.error for c in checks if c.error) or "no answer")
        rows.append(StatusRow(
            name=m.name or "(not started)", id=m.hex_id, peer_url=",".join(m.peer_urls),
            leader=s is not None and s.is_leader, learner=m.is_learner,
            raft_term=s.raft_term if s else None, revision=s.revision if s else None,
            db_size=s.db_size if s else None, health=h))
    return rows


def read(ctx: EtcdContext) -> list[StatusRow]:
    """One row per member the cluster lists, with what each member says about itself."""
    admin = ctx.admin()
    members = admin.member_list()
    urls = [u for m in members if m.started for u in m.client_urls]
    return status_rows(members, admin.statuses(urls), admin.health(urls))


def _size(n: int | None) -> str:
    if n is None:
        return "-"
    if n < 1024:
        return f"{n} B"
    size = n / 1024
    for unit in ("kB", "MB"):
        if size < 1024:
            return f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GB"


def format_status(rows: Sequence[StatusRow]) -> list[str]:
    header = ("NAME", "ID", "PEER URL", "LEADER", "VOTER", "RAFT TERM", "REVISION", "DB SIZE", "HEALTH")

    def opt(v: int | None) -> str:
        return "-" if v is None else str(v)

    table = [header, *((r.name, r.id, r.peer_url, "yes" if r.leader else "no", "learner" if r.learner else "yes",
                        opt(r.raft_term), opt(r.revision), _size(r.db_size), r.health) for r in rows)]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    return ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in table]
