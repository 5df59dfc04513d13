"""Reading an offline Kubernetes bundle: a folder with ``manifest.json``, binaries and image archives.

The installer only reads bundles (``images.bundle`` builds them); it trusts nothing it has not
checked: every file the manifest names must exist with its sha256 before anything is copied.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from installer.errors import ConfigError, Problem
from installer.kubernetes.render import Release

#: The binaries a node needs from a bundle, and where they go.
NODE_BINARIES = ("kubeadm", "kubelet", "kubectl")


@dataclass(frozen=True)
class BundleFile:
    path: Path
    sha256: str


@dataclass(frozen=True)
class Bundle:
    root: Path
    release: Release
    binaries: dict[str, BundleFile]
    images: dict[str, BundleFile]  # image reference (repo/name:tag) → docker-archive tarball
    crictl: BundleFile | None

    @classmethod
    def load(cls, root: str | Path, *, verify: bool = True) -> Bundle:
        root = Path(root)
        mf = root / "manifest.json"
        try:
            data: dict[str, Any] = json.loads(mf.read_text())
        except (OSError, ValueError) as exc:
            raise ConfigError([Problem(str(mf), None, f"not a kha bundle manifest: {exc}")]) from None
        if data.get("kind") != "kha-kubernetes-bundle" or data.get("format") != 1:
            raise ConfigError([Problem(str(mf), None, "not a format-1 kha bundle manifest (kha bundle build)")])
        try:
            version = str(data["kubernetes_version"]).lstrip("v")
            files = {str(f["path"]): f for f in data["files"]}
            binaries = {Path(p).name: BundleFile(root / p, str(f["sha256"])) for p, f in files.items()
                        if p.startswith("bin/")}
            images = {str(i["ref"]): BundleFile(root / str(i["archive"]), str(i["sha256"]))
                      for i in data["images"] if i.get("archive")}
            crictl_path = str(data["crictl"]["path"]) if data.get("crictl") else None
            crictl_entry = files.get(crictl_path) if crictl_path else None
        except (KeyError, TypeError) as exc:
            raise ConfigError([Problem(str(mf), None, f"manifest lacks {exc}")]) from None
        pause = next((ref for ref in images if ref.rsplit(":", 1)[0].endswith("/pause")), None)
        if pause is None:
            raise ConfigError([Problem(str(mf), None, "bundle has no pause image")])
        repo, tag = pause.rsplit(":", 1)
        release = Release(version, repo.rsplit("/", 1)[0], tag)
        crictl = BundleFile(root / str(crictl_entry["path"]), str(crictl_entry["sha256"])) if crictl_entry else None
        missing = [n for n in NODE_BINARIES if n not in binaries]
        if missing:
            raise ConfigError([Problem(str(mf), None, f"bundle has no {', '.join(missing)}")])
        bundle = cls(root, release, binaries, images, crictl)
        if verify:
            bundle.verify()
        return bundle

    def verify(self) -> None:
        bad = []
        for f in [*self.binaries.values(), *self.images.values(), *([self.crictl] if self.crictl else [])]:
            if not f.path.is_file() or _sha256(f.path) != f.sha256:
                bad.append(Problem(str(f.path), None, "missing or its sha256 differs from the manifest"))
        if bad:
            raise ConfigError(bad)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
