"""testinfra on kha's own SSH layer: a testinfra backend whose commands go through ``installer.remote``.

testinfra's paramiko backend reads an ssh_config but not what the inventory says (``ansible_user``,
``ansible_ssh_pass``, a key), does not pin host keys in the cluster's known_hosts, and knows nothing of
sudo for a login user other than root. kha's ``Connector`` does all of that already, so ``kha check``
hands testinfra a ``Host`` whose backend runs each command over the node's ``Transport`` — as root
(``sudo -n`` when the login user is not root): the checks read keys and root-only sockets.
"""

from __future__ import annotations

from typing import Any

from testinfra.backend.base import BaseBackend, CommandResult
from testinfra.host import Host

from installer.remote import Transport

#: A testinfra command that does not answer in this long is a failed look, not a hung check.
COMMAND_TIMEOUT_S = 30.0


class TransportBackend(BaseBackend):  # type: ignore[misc]  # testinfra ships no type information
    """Runs testinfra's shell lines as ``sh -c LINE`` over ``transport`` (as root)."""

    NAME = "kha"

    def __init__(self, transport: Transport, *args: Any, **kwargs: Any) -> None:
        self.transport = transport
        super().__init__(transport.node, *args, **kwargs)

    def run(self, command: str, *args: str, **kwargs: Any) -> CommandResult:
        # testinfra quotes ``args`` into ``command`` itself (BaseBackend.quote): the line is its own.
        line = self.get_command(command, *args)
        res = self.transport.run(["sh", "-c", line], sudo=True, check=False, timeout=COMMAND_TIMEOUT_S)
        return self.result(res.exit_code, self.encode(line), res.stdout, res.stderr)


def host(transport: Transport) -> Any:
    """A testinfra ``Host`` (``host.service``, ``host.file``, ``host.sysctl`` …) on ``transport``'s node."""
    backend = TransportBackend(transport)
    h = Host(backend)
    backend.set_host(h)
    return h
