"""haproxy's runtime API as kha reads it: the one ``show servers state`` command line and its parser.

The haproxy template enables ``stats socket /run/haproxy/admin.sock`` (root only); ``kha check``, the
failover observer and the bug report ask it the same question through here.
"""

from __future__ import annotations

import shlex

#: haproxy's runtime API socket (haproxy.cfg.j2, ``stats socket``).
ADMIN_SOCKET = "/run/haproxy/admin.sock"
#: The backend the haproxy template defines in front of the apiservers.
BACKEND = "kube-apiserver"
#: haproxy's operational state of a server that is UP (SRV_ST_RUNNING; management guide, "show servers state").
_RUNNING = "2"


def servers_state_argv(backend: str | None = BACKEND) -> list[str]:
    """The command that prints ``show servers state [BACKEND]`` (run it as root: the socket is 0600)."""
    question = f"show servers state {backend}" if backend else "show servers state"
    return ["sh", "-c", f"echo {shlex.quote(question)} | socat stdio {shlex.quote(ADMIN_SOCKET)}"]


def parse_servers_state(text: str) -> dict[str, bool]:
    """haproxy's ``show servers state`` → server name → UP (operational state 2, SRV_ST_RUNNING)."""
    out: dict[str, bool] = {}
    for line in text.splitlines():
        if not line[:1].isdigit():  # the version line and "#" headers; server rows start with the backend id
            continue
        cols = line.split()
        if len(cols) > 5:
            out[cols[3]] = cols[5] == _RUNNING
    return out
