"""The state file: everything needed to rebuild a ``Cluster`` handle from its state directory.

``<state dir>/state.json`` is written as soon as there is something to clean up (right after the
daemon starts) and rewritten after every change, atomically (write + rename). It records the spec,
how to reach libvirt (URI, network namespace, daemon PIDs), the libvirt objects and per-node paths,
the image used and the saved snapshots. ``load`` is strict: a missing or unreadable file is a
``StateError`` that says what to do.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from harness.errors import StateError
from harness.spec import TopologySpec

STATE_FILE = "state.json"
FORMAT = 1


@dataclass
class NodeState:
    name: str
    domain: str
    mac: str
    dir: str  # the node's own directory in the state dir (overlay upper/work or disk + seed)


#: How a node boots from its image: the image's kernel and initrd given to qemu (``kernel``, the images kha
#: builds), or the disk's own bootloader under UEFI or BIOS firmware (a cloud image: images.cloudimage).
Boot = Literal["kernel", "uefi", "bios"]


@dataclass
class ImageRef:
    """The base image the nodes were made from (paths are the image cache's, read-only to us).

    A cloud image (``boot`` uefi/bios) has only ``qcow2``: its ``rootfs``, ``kernel``, ``initrd`` and
    ``kernel_cmdline`` are empty. State files written before ``boot`` existed load as ``kernel``.
    """

    name: str
    digest: str
    rootfs: str
    qcow2: str
    kernel: str
    initrd: str
    kernel_cmdline: str
    boot: Boot = "kernel"

    @property
    def is_cloud_image(self) -> bool:
        return self.boot != "kernel"

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class ClusterState:
    spec: TopologySpec
    state_dir: Path
    libvirt: dict[str, Any]  # daemon.SystemLibvirt / PrivateLibvirt .to_json()
    uri: str
    network: str
    bridge: str
    image: ImageRef
    nodes: dict[str, NodeState]
    snapshots: list[str] = field(default_factory=list)
    accel: str | None = None  # qemu: "kvm" or "tcg"
    created: float = 0.0

    @property
    def netns(self) -> str | None:
        value = self.libvirt.get("netns")
        return str(value) if value else None

    @property
    def path(self) -> Path:
        return self.state_dir / STATE_FILE

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "cluster": self.spec.cluster,
            "driver": self.spec.driver,
            "spec": self.spec.to_json(),
            "state_dir": str(self.state_dir),
            "libvirt": self.libvirt,
            "uri": self.uri,
            "netns": self.netns,
            "network": self.network,
            "bridge": self.bridge,
            "image": self.image.to_json(),
            "nodes": {n: dict(s.__dict__) for n, s in self.nodes.items()},
            "snapshots": list(self.snapshots),
            "accel": self.accel,
            "created": self.created,
            "paths": {
                "ssh_config": str(self.state_dir / "ssh_config"),
                "known_hosts": str(self.state_dir / "known_hosts"),
                "identity": str(self.state_dir / "id_ed25519"),
            },
        }

    def save(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{STATE_FILE}.tmp")
        tmp.write_text(json.dumps(self.to_json(), indent=2, sort_keys=True) + "\n")
        os.replace(tmp, self.path)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ClusterState:
        if data.get("format") != FORMAT:
            raise StateError(f"state format {data.get('format')!r} is not {FORMAT}")
        return cls(
            spec=TopologySpec.from_json(data["spec"]),
            state_dir=Path(data["state_dir"]),
            libvirt=dict(data["libvirt"]),
            uri=str(data["uri"]),
            network=str(data["network"]),
            bridge=str(data["bridge"]),
            image=ImageRef(**data["image"]),
            nodes={n: NodeState(**s) for n, s in data["nodes"].items()},
            snapshots=[str(s) for s in data.get("snapshots", [])],
            accel=data.get("accel"),
            created=float(data.get("created", 0.0)),
        )

    @classmethod
    def load(cls, state_dir: Path) -> ClusterState:
        path = state_dir / STATE_FILE
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError as exc:
            raise StateError(f"no cluster state in {state_dir} (no {STATE_FILE}): is the cluster up? "
                             "(kha status lists clusters)") from exc
        except (OSError, ValueError) as exc:
            raise StateError(f"cannot read {path}: {exc}") from exc
        try:
            return cls.from_json(data)
        except (KeyError, TypeError, ValueError) as exc:
            raise StateError(f"{path} is not a kha cluster state file: {exc}") from exc
