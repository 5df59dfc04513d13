"""The context of ``kha etcd …``: the install context, the command's options and an etcdctl runner per
set of members to keep off, set up by ``installer.context.open_context`` like every other context (and
walked through its phase trees, ``membership`` and ``snapshot``, by ``installer.context.walk``).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from installer.context import InstallContext, open_context
from installer.etcd.ctl import Admin

#: Day-2 commands are run exactly when a node may be down, and ``Admin`` pays one connect timeout per
#: dead node and command: shorter than the installer's default.
CONNECT_TIMEOUT_S = 10.0


@dataclass(kw_only=True)
class EtcdContext(InstallContext):
    """What a day-2 command carries besides the install context: its options and the etcdctl runners."""

    force: bool = False
    target: str | None = None
    snapshot: Path | None = None
    token: str | None = None
    admins: dict[frozenset[str], Admin] = field(default_factory=dict)

    @classmethod
    def open(cls, inventory: str | Path, **options: Any) -> EtcdContext:
        """``open_context`` with day-2's defaults: never write the cluster secrets (day-2 etcd does not
        need them, so no secrets file appears as a side effect) and a shorter connect timeout."""
        options.setdefault("connect_timeout", CONNECT_TIMEOUT_S)
        return open_context(cls, inventory, write_secrets=False, **options)

    def admin(self, avoid: Collection[str] = ()) -> Admin:
        key = frozenset(avoid)
        if key not in self.admins:
            self.admins[key] = Admin(self, self.topo.etcd, avoid=key)
        return self.admins[key]

