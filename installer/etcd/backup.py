"""Scheduled etcd snapshots on every member (kubeadm-ha's ``etcd_backup_hour`` / ``etcd_backup_expiry``), and
what tells a snapshot's restore that it is whole and of this cluster.

Install phase ``etcd/backup`` writes on each [etcd] node a script, a oneshot service and a timer
(``OnCalendar`` at ``etcd_backup_hour``:00, ``Persistent=true``: a node that was off at that hour takes the
snapshot when it comes back). The script saves the member's own snapshot through its local client URL,
checks it (``snapshot status``), and keeps it in ``BACKUP_DIR`` (root only, 0700) beside two files:

- ``NAME.sha256``: ``sha256sum -c`` reads it, and ``kha etcd snapshot restore`` refuses a file that does not
  match it (corrupt or truncated);
- ``NAME.json``: which cluster it came from: the cluster name and the etcd CA's key fingerprint (the same
  across restores, unlike etcd's cluster ID). A restore refuses a snapshot of another cluster.

Snapshots older than ``etcd_backup_expiry`` days are deleted after each successful snapshot, so a timer
that keeps failing never deletes the last good one. ``kha etcd snapshot save`` writes the same two files.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import shlex
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509

from installer import nodeops, systemd
from installer.context import InstallContext
from installer.errors import Problem
from installer.etcd import ctl, render
from installer.files import NodeFile
from installer.phases import Phase
from installer.pki.crypto import key_fingerprint
from installer.topology import Host, Topology

log = logging.getLogger(__name__)

BACKUP_DIR = "/var/backups/kha-etcd"
SCRIPT_PATH = "/usr/local/sbin/kha-etcd-backup"
SERVICE = "kha-etcd-backup.service"
TIMER = "kha-etcd-backup.timer"
UNIT_DIR = "/etc/systemd/system"
SERVICE_PATH, TIMER_PATH = f"{UNIT_DIR}/{SERVICE}", f"{UNIT_DIR}/{TIMER}"
#: what the script names its snapshots: PREFIX + member + "-" + UTC time + ".db"
PREFIX = "etcd-snapshot-"


# -- which cluster a snapshot belongs to ---------------------------------------------------------
@dataclass(frozen=True)
class Identity:
    """A cluster as its snapshots name it: its name and its etcd CA's public key (``sha256:…``)."""

    cluster: str
    etcd_ca: str


def identity(topo: Topology, etcd_ca_pem: bytes) -> Identity:
    return Identity(topo.settings.cluster_name, key_fingerprint(x509.load_pem_x509_certificate(etcd_ca_pem)))


def store_identity(ctx: InstallContext) -> Identity:
    """The inventory's cluster, from the PKI store's etcd CA (every etcd node's tree holds the same one)."""
    return identity(ctx.topo, (ctx.pki_tree(ctx.topo.etcd[0]) / "pki" / "etcd" / "ca.crt").read_bytes())


@dataclass(frozen=True)
class Sidecar:
    """What ``NAME.json`` says about snapshot NAME."""

    identity: Identity
    member: str
    taken_at: str
    sha256: str

    def text(self) -> str:
        return json.dumps({"cluster": self.identity.cluster, "etcd_ca": self.identity.etcd_ca, "member": self.member,
                           "taken_at": self.taken_at, "sha256": self.sha256}, indent=2) + "\n"


def sidecars(snapshot: Path) -> tuple[Path, Path]:
    """``NAME.sha256`` and ``NAME.json`` beside ``snapshot``."""
    return snapshot.with_name(snapshot.name + ".sha256"), snapshot.with_name(snapshot.name + ".json")


def write_sidecars(snapshot: Path, data: bytes, ident: Identity, member: str, now: dt.datetime) -> None:
    """The two files a snapshot saved here (``data``, its bytes) keeps beside it, as the timer's script writes
    them on the nodes."""
    digest = hashlib.sha256(data).hexdigest()
    sums, meta = sidecars(snapshot)
    sums.write_text(f"{digest}  {snapshot.name}\n")
    meta.write_text(Sidecar(ident, member, f"{now.astimezone(dt.UTC):%Y-%m-%dT%H:%M:%SZ}", digest).text())
    for f in (sums, meta):
        f.chmod(0o600)


def check(snapshot: Path, data: bytes, ours: Identity) -> tuple[list[Problem], bool]:
    """What is wrong with restoring ``snapshot`` (``data``, its bytes) into the cluster ``ours``, read from the
    file and its sidecars only (nothing on a node); and whether a sidecar vouched for it. A snapshot without
    sidecars (taken with etcdctl) is not refused here: the restore's own trial run still checks it is whole."""
    sums, meta = sidecars(snapshot)
    digest = hashlib.sha256(data).hexdigest()
    problems: list[Problem] = []
    if sums.is_file():
        words = sums.read_text(errors="replace").split()
        if not words or words[0] != digest:
            problems.append(Problem(str(sums), 1, f"{snapshot.name} has sha256 {digest}, this file says "
                                    f"{words[0] if words else 'nothing'}: the snapshot is corrupt or truncated",
                                    "FILE"))
    if meta.is_file():
        try:
            said = json.loads(meta.read_text())
            theirs = Identity(str(said["cluster"]), str(said["etcd_ca"]))
        except (ValueError, KeyError, TypeError) as exc:
            return [*problems, Problem(str(meta), None, f"not a kha snapshot description ({exc})", "FILE")], True
        if theirs.etcd_ca != ours.etcd_ca:
            problems.append(Problem(str(meta), None, f"the snapshot is of another cluster ({theirs.cluster}, etcd CA "
                                    f"{theirs.etcd_ca}); this inventory's is {ours.cluster}, etcd CA {ours.etcd_ca}",
                                    "FILE"))
    return problems, sums.is_file() or meta.is_file()


# -- the timer on the nodes ----------------------------------------------------------------------
def script(topo: Topology, host: Host, ident: Identity) -> NodeFile:
    """The snapshot script: save through the member's own client URL, check, keep with its hash and identity,
    then expire old ones. POSIX sh; every value is quoted for the shell."""
    s = topo.settings
    q = shlex.quote
    save = shlex.join(ctl.argv("snapshot", "save", "PART", endpoints=[f"https://127.0.0.1:{render.CLIENT_PORT}"],
                               command_timeout="300s")).replace("PART", '"$part"')
    status = shlex.join(ctl.offline("etcdctl", "snapshot", "status", "PART", "-w", "json")).replace("PART", '"$part"')
    minutes = s.etcd_backup_expiry * 24 * 60
    text = f"""#!/bin/sh
# Written by kha: a snapshot of etcd member {host.name}, run by {TIMER}. Edit the inventory, not this file.
# Restore a cluster from one with `kha etcd snapshot restore FILE -i INVENTORY` (it checks NAME.sha256 and NAME.json).
set -eu
dir={q(BACKUP_DIR)}
name={q(PREFIX + host.name)}-$(date -u +%Y%m%dT%H%M%SZ).db
umask 077
mkdir -p "$dir"
part="$dir/.$name.part"
trap 'rm -f "$part"' EXIT
{save}
{status} >/dev/null
sum=$(sha256sum "$part" | cut -d' ' -f1)
printf '%s  %s\\n' "$sum" "$name" >"$dir/$name.sha256"
printf '{{"cluster": "%s", "etcd_ca": "%s", "member": "%s", "taken_at": "%s", "sha256": "%s"}}\\n' \\
  {q(ident.cluster)} {q(ident.etcd_ca)} {q(host.name)} "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$sum" >"$dir/$name.json"
mv -f "$part" "$dir/$name"
echo "saved $dir/$name (sha256 $sum)"
# Older than etcd_backup_expiry ({s.etcd_backup_expiry} days), only now that a new one is kept.
find "$dir" -maxdepth 1 -type f -name {q(PREFIX + '*')} -mmin +{minutes} -print -delete
"""
    return NodeFile(SCRIPT_PATH, text.encode(), mode=0o700)


def units(topo: Topology, host: Host) -> list[NodeFile]:
    hour = topo.settings.etcd_backup_hour
    service = systemd.unit(
        ["Written by kha: one etcd snapshot now (the timer runs it daily). Edit the inventory, not this file."],
        [("Unit", [("Description", systemd.specifiers(f"etcd snapshot of member {host.name} (kha)")),
                   ("After", "etcd.service"), ("Requires", "etcd.service")]),
         ("Service", [("Type", "oneshot"), ("ExecStart", systemd.command([SCRIPT_PATH]))])])
    timer = systemd.unit(
        [f"Written by kha: etcd_backup_hour={hour}, etcd_backup_expiry={topo.settings.etcd_backup_expiry} "
         "(days). Edit the inventory, not this file."],
        [("Unit", [("Description", "daily etcd snapshot (kha)")]),
         # Persistent: a node that was off at that hour takes the snapshot once it is back.
         ("Timer", [("OnCalendar", f"*-*-* {hour:02d}:00:00"), ("Persistent", "true"),
                    ("RandomizedDelaySec", "10min")]),
         ("Install", [("WantedBy", "timers.target")])])
    return [NodeFile(SERVICE_PATH, service), NodeFile(TIMER_PATH, timer)]


def files(topo: Topology, host: Host, ident: Identity) -> list[NodeFile]:
    return [script(topo, host, ident), *units(topo, host)]


def _install(ctx: InstallContext) -> None:
    ident = store_identity(ctx)
    for host in ctx.topo.etcd:
        with ctx.node(host.name):
            t = ctx.transport(host)
            changed = bool(nodeops.sync_files(ctx, t, files(ctx.topo, host, ident), restarts=TIMER))
            nodeops.ensure_service(ctx, t, TIMER, changed=changed)


PHASE: Phase[InstallContext] = Phase(
    "backup", _install,
    description=f"a daily snapshot on every member ({TIMER}), kept in {BACKUP_DIR} with its hash")
