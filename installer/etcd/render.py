"""The files that make a node an etcd member: a systemd unit with TLS everywhere, and the
one-time initial-cluster settings. Certificates come from the PKI store (installer.pki) and land
under /etc/kubernetes/pki/etcd, where kubeadm's own tree keeps them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from installer import systemd
from installer.files import NodeFile
from installer.topology import Host, Topology

PKI_DIR = "/etc/kubernetes/pki/etcd"
UNIT_PATH = "/etc/systemd/system/etcd.service"
INITIAL_ENV_PATH = "/etc/kha/etcd-initial.env"
ETCD_BIN = "/usr/bin/etcd"
CLIENT_PORT, PEER_PORT = 2379, 2380


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
    """etcd member ``host`` of the cluster, TLS everywhere: clients and peers must present a certificate from
    the etcd CA, no auto-tls (https://etcd.io/docs/v3.4/op-guide/security/)."""
    data_dir = topo.settings.etcd_data_dir
    address = str(host.address)
    argv = [
        etcd_bin, f"--name={host.name}", f"--data-dir={data_dir}",
        f"--listen-client-urls=https://{address}:{CLIENT_PORT},https://127.0.0.1:{CLIENT_PORT}",
        f"--advertise-client-urls=https://{address}:{CLIENT_PORT}",
        f"--listen-peer-urls=https://{address}:{PEER_PORT}",
        f"--initial-advertise-peer-urls=https://{address}:{PEER_PORT}",
        "--listen-metrics-urls=http://127.0.0.1:2381",
        "--client-cert-auth=true", f"--trusted-ca-file={PKI_DIR}/ca.crt",
        f"--cert-file={PKI_DIR}/server.crt", f"--key-file={PKI_DIR}/server.key",
        "--peer-client-cert-auth=true", f"--peer-trusted-ca-file={PKI_DIR}/ca.crt",
        f"--peer-cert-file={PKI_DIR}/peer.crt", f"--peer-key-file={PKI_DIR}/peer.key",
        "--auto-tls=false", "--peer-auto-tls=false",
        f"--heartbeat-interval={HEARTBEAT_MS}", f"--election-timeout={ELECTION_TIMEOUT_MS}",
        "--snapshot-count=10000", "--auto-compaction-mode=periodic", "--auto-compaction-retention=1h",
    ]
    text = systemd.unit(
        [f"Written by kha: an etcd member of cluster {topo.settings.cluster_name}. Edit the inventory, not this file.",
         "TLS everywhere: clients and peers must present a certificate from the etcd CA (no auto-tls).",
         "https://etcd.io/docs/v3.4/op-guide/security/"],
        [("Unit", [("Description", systemd.specifiers(f"etcd member {host.name} (kha)")),
                   ("Documentation", "https://etcd.io/docs"),
                   ("After", "network-online.target"), ("Wants", "network-online.target")]),
         ("Service", [
             ("Type", "notify"), ("User", "etcd"), ("Group", "etcd"),
             # The initial-cluster flags are only read when the data dir is empty (a new member); kha writes
             # them once, at bootstrap or when the member is added.
             ("EnvironmentFile", systemd.path(INITIAL_ENV_PATH, optional=True)),
             ("ExecStart", systemd.command(argv, wrap=True)),
             # A member removed from the cluster exits 0 and must stay down: restart only on failure.
             ("Restart", "on-failure"), ("RestartSec", "2s"), ("LimitNOFILE", "65536"),
         ]),
         ("Install", [("WantedBy", "multi-user.target")])])
    return NodeFile(UNIT_PATH, text)


def initial_env(topo: Topology, ms: Sequence[Member], *, state: str, token: str | None = None) -> NodeFile:
    return initial_env_file(initial_cluster(ms), token or cluster_token(topo), state)


def initial_env_file(initial: str, token: str, state: str) -> NodeFile:
    """The one-time initial-cluster settings of a new member (``state`` new) or a joining one (existing)."""
    if state not in ("new", "existing"):
        raise ValueError(f"initial cluster state must be new or existing, not {state!r}")
    text = "# Written by kha for a new etcd member; read by etcd only while its data dir is empty.\n"
    text += systemd.env_file([("ETCD_INITIAL_CLUSTER", initial), ("ETCD_INITIAL_CLUSTER_TOKEN", token),
                              ("ETCD_INITIAL_CLUSTER_STATE", state)])
    return NodeFile(INITIAL_ENV_PATH, text.encode(), mode=0o644)


def files(topo: Topology, host: Host) -> list[NodeFile]:
    """What a fresh install writes on an etcd node (render and review; the bootstrap phase uses the same)."""
    return [unit(topo, host), initial_env(topo, members(topo.etcd), state="new")]
