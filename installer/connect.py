"""From inventory hosts to SSH transports: who to log in as, which key, which known_hosts, which proxy.

The inventory says user, port, password or key per host. An OpenSSH ``ssh_config`` file (the one
the harness writes, or a user's own with a bastion) may add HostName, Port, User, IdentityFile,
UserKnownHostsFile and ProxyCommand; inventory values that are set explicitly win over defaults but
the ssh_config wins over the inventory's defaults (root, 22).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import paramiko

from installer.remote import NodeAddress, SSHTransport, Transport
from installer.topology import Host


@dataclass
class Connector:
    """Makes (and caches) one transport per node."""

    known_hosts: Path
    ssh_config: Path | None = None
    trust_unknown: bool = False
    connect_timeout: float = 15.0
    _open: dict[str, Transport] = field(default_factory=dict)
    _config: paramiko.SSHConfig | None = None

    def _lookup(self, host: Host) -> dict[str, object]:
        if self.ssh_config is None:
            return {}
        if self._config is None:
            self._config = paramiko.SSHConfig.from_path(str(self.ssh_config))
        opts = self._config.lookup(host.name)
        if opts.get("hostname") == host.name:  # paramiko echoes the name back when no block matched
            opts = self._config.lookup(str(host.address))
        return dict(opts)

    def address(self, host: Host) -> NodeAddress:
        """The inventory's values; ssh_config fills in what the inventory leaves at its defaults."""
        opts = self._lookup(host)
        return NodeAddress(
            name=host.name,
            host=str(opts.get("hostname", host.address)),
            port=int(str(opts["port"])) if host.port == 22 and "port" in opts else host.port,
            user=str(opts["user"]) if host.user == "root" and "user" in opts else host.user,
            password=host.password,
            key_file=host.key_file or _first(opts.get("identityfile")),
            proxy_command=str(opts["proxycommand"]) if "proxycommand" in opts else None,
        )

    def known_hosts_for(self, host: Host) -> Path:
        files = self._lookup(host).get("userknownhostsfile")
        return Path(str(files).split()[0]) if files else self.known_hosts

    def __call__(self, host: Host) -> Transport:
        t = self._open.get(host.name)
        if t is None:
            addr = self.address(host)
            t = SSHTransport(addr, self.known_hosts_for(host), trust_unknown=self.trust_unknown,
                             connect_timeout=self.connect_timeout)
            self._open[host.name] = t
        return t

    def __enter__(self) -> Connector:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        for t in self._open.values():
            t.close()
        self._open.clear()


def _first(value: object) -> str | None:
    if isinstance(value, list):
        return str(value[0]) if value else None
    return str(value) if value else None
