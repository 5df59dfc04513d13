"""The NoCloud seed of a cloud-image node: what cloud-init reads on first boot instead of the kha-seed disk.

A vendor cloud image (``images.cloudimage``) cannot carry the harness's ``kha-seed.service``, but it runs
cloud-init, whose NoCloud datasource reads three files from a small disk labelled ``cidata`` (vfat or
ISO9660): https://cloudinit.readthedocs.io/en/latest/reference/datasources/nocloud.html

- ``meta-data``: the instance id (new per cluster and node, so cloud-init runs its first boot once) and the
  hostname;
- ``user-data`` (``#cloud-config``): the cluster's root key (``disable_root: false``, or cloud-init would
  prefix it with a "log in as the default user" command), the node's pinned SSH host key (``ssh_keys``,
  so the harness's known_hosts pinning holds), no password login, and the rest of what every node gets
  (``harness.firstboot.node_files``: /etc/hosts, the sshd drop-in that serves only the pinned key) as
  ``write_files``;
- ``network-config`` (version 2): the node's static address and gateway on the NIC with the node's MAC,
  whatever the image names it (ens3, enp1s0, eth0). No DHCP: the topology network has none.

The documents are JSON, which is YAML too: produced by a dumper from data, never by formatting text.
``seed_files`` is a pure function (unit-tested); ``make_seed_disk`` packs its result with mtools into a
vfat image without mounting anything.
"""

from __future__ import annotations

import base64
import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness import hostcmd
from harness.firstboot import File, node_files
from harness.keys import KeyPair
from harness.spec import NodeSpec, TopologySpec

#: The volume label NoCloud looks for (it accepts ``cidata`` and ``CIDATA``; vfat labels are upper case).
LABEL = "CIDATA"
SEED_KIB = 1024

HOST_KEY = "/etc/ssh/ssh_host_ed25519_key"
AUTHORIZED_KEYS = "/root/.ssh/authorized_keys"
HOSTNAME = "/etc/hostname"
# Files of ``node_files`` that cloud-init writes itself from its own keys; writing them as files as well
# would race its modules (cc_ssh deletes host keys after write_files ran, cc_set_hostname owns /etc/hostname).
BY_CLOUD_INIT = frozenset({HOSTNAME, HOST_KEY, f"{HOST_KEY}.pub", AUTHORIZED_KEYS})


@dataclass(frozen=True)
class SeedFiles:
    """The three NoCloud documents, as the bytes that go onto the ``cidata`` disk."""

    meta_data: bytes
    user_data: bytes
    network_config: bytes

    def as_dict(self) -> dict[str, bytes]:
        return {"meta-data": self.meta_data, "user-data": self.user_data, "network-config": self.network_config}


def instance_id(spec: TopologySpec, node: NodeSpec) -> str:
    """Unique per cluster and node: a new cluster's node is a new instance, so cloud-init configures it."""
    return f"kha-{spec.cluster}-{node.name}"


def seed_files(spec: TopologySpec, node: NodeSpec, mac: str, host_key: KeyPair, root_key: KeyPair) -> SeedFiles:
    """The NoCloud documents for ``node`` (MAC ``mac``) of ``spec``; a pure function of its arguments."""
    meta = {"instance-id": instance_id(spec, node), "local-hostname": node.name}
    extra = [f for f in node_files(spec, node, host_key, root_key) if f.path not in BY_CLOUD_INIT]
    user: dict[str, Any] = {
        "hostname": node.name,
        "preserve_hostname": False,
        # /etc/hosts comes from write_files (every node's names); cloud-init must not regenerate it.
        "manage_etc_hosts": False,
        # Root logs in with the cluster key like on every kha node (installers log in as root or as the
        # inventory's user, which the harness creates afterwards over SSH).
        "disable_root": False,
        "ssh_pwauth": False,
        "ssh_authorized_keys": [root_key.public],
        # Only the pinned host key: the image's own (if any) are deleted and no other type is generated.
        "ssh_deletekeys": True,
        "ssh_genkeytypes": [],
        "ssh_keys": {"ed25519_private": host_key.private, "ed25519_public": host_key.public},
        "write_files": [_write_file(f) for f in extra],
    }
    network = {
        "version": 2,
        "ethernets": {
            "kha0": {
                "match": {"macaddress": mac},
                "addresses": [f"{node.address}/{spec.network.prefixlen}"],
                "routes": [{"to": "0.0.0.0/0", "via": str(spec.gateway)}],
                "dhcp4": False,
                "dhcp6": False,
            }
        },
    }
    return SeedFiles(
        meta_data=_dump(meta),
        user_data=b"#cloud-config\n" + _dump(user),
        network_config=_dump(network),
    )


def _write_file(f: File) -> dict[str, Any]:
    # base64: any byte content survives; permissions as the octal string cloud-init expects.
    return {"path": f.path, "encoding": "b64", "content": base64.b64encode(f.content).decode(),
            "permissions": f"0{f.mode:o}", "owner": "root:root"}


def _dump(doc: dict[str, Any]) -> bytes:
    return (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode()


def make_seed_disk(files: SeedFiles, out: Path) -> None:
    """A raw vfat image labelled ``CIDATA`` holding the NoCloud files (mkfs.vfat + mcopy: nothing mounted)."""
    hostcmd.need("mkfs.vfat", "dosfstools")
    hostcmd.need("mcopy", "mtools")
    out.unlink(missing_ok=True)
    hostcmd.run(["mkfs.vfat", "-n", LABEL, "-C", str(out), str(SEED_KIB)])
    tmp = Path(tempfile.mkdtemp(prefix=".cidata-", dir=out.parent))
    try:
        for name, content in files.as_dict().items():
            (tmp / name).write_bytes(content)
            hostcmd.run(["mcopy", "-o", "-i", str(out), str(tmp / name), f"::{name}"])
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
