"""The files that make a node an etcd member: a systemd unit with TLS everywhere, and the
one-time initial-cluster settings. Certificates come from the PKI store (installer.pki) and land
under /etc/kubernetes/pki/etcd, where kubeadm's own tree keeps them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from installer.files import NodeFile, environment, render
from installer.topology import Host, Topology

PKI_DIR = "/etc/kubernetes/pki/etcd"
UNIT_PATH = "/etc/systemd/system/etcd.service"
INITIAL_ENV_PATH = "/etc/kha/etcd-initial.env"
ETCD_BIN = "/usr/bin/etcd"
CLIENT_PORT, PEER_PORT = 2379, 2380

_env = environment("installer.etcd")


@dataclass(frozen=True)
class Member:
    name: str
    address: str

    @property
    def peer_url(self) -> str:
        return f"https://{self.address}:{PEER_PORT}"

    @property
    def client_url(self) -> str:
        return f"https://{self.address}:{CLIENT_PORT}"


def members(hosts: Sequence[Host]) -> list[Member]:
    return [Member(h.name, str(h.address)) for h in hosts]


def initial_cluster(ms: Sequence[Member]) -> str:
    return ",".join(f"{m.name}={m.peer_url}" for m in ms)


def cluster_token(topo: Topology) -> str:
    """Stable per cluster, so a re-render is identical; distinct per cluster, so two clusters never mix."""
    seed = ",".join(str(h.address) for h in topo.etcd) + "/" + topo.settings.cluster_name
    return f"kha-{topo.settings.cluster_name}-{hashlib.sha256(seed.encode()).hexdigest()[:10]}"


#: etcd's defaults (https://etcd.io/docs/v3.4/tuning/): fast leader failover on a LAN. The failover suite's
#: bounds read these.
HEARTBEAT_MS = 100
ELECTION_TIMEOUT_MS = 1000


def unit(topo: Topology, host: Host, *, etcd_bin: str = ETCD_BIN) -> NodeFile:
    text = render(
        _env, "etcd.service.j2",
        name=host.name, cluster=topo.settings.cluster_name, address=host.address,
        data_dir=topo.settings.etcd_data_dir, pki=PKI_DIR, etcd_bin=etcd_bin, initial_env=INITIAL_ENV_PATH,
        heartbeat_ms=HEARTBEAT_MS, election_ms=ELECTION_TIMEOUT_MS,
    )
    return NodeFile(UNIT_PATH, text)


def initial_env(topo: Topology, ms: Sequence[Member], *, state: str, token: str | None = None) -> NodeFile:
    if state not in ("new", "existing"):
        raise ValueError(f"initial cluster state must be new or existing, not {state!r}")
    text = render(_env, "etcd-initial.env.j2", initial_cluster=initial_cluster(ms),
                  token=token or cluster_token(topo), state=state)
    return NodeFile(INITIAL_ENV_PATH, text, mode=0o644)


def files(topo: Topology, host: Host) -> list[NodeFile]:
    """What a fresh install writes on an etcd node (render and review; the bootstrap phase uses the same)."""
    return [unit(topo, host), initial_env(topo, members(topo.etcd), state="new")]
