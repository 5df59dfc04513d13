"""Reading an offline Kubernetes bundle: a folder with ``manifest.json``, binaries and image archives.

The installer only reads bundles (``images.bundle`` builds them), through the one manifest schema both
sides share (``core.bundle_manifest``; the installer reads the node's part of it, ``BundleContents``). It
trusts nothing it has not checked: every file a node gets must exist with its sha256 before anything is
copied.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from core.bundle_manifest import MANIFEST, BundleContents, ManifestError, entry_problem
from installer.errors import ConfigError, Problem
from installer.kubernetes.render import Release

#: The binaries a node needs from a bundle, and where they go.
NODE_BINARIES = ("kubeadm", "kubelet", "kubectl")


@dataclass(frozen=True)
class BundleFile:
    path: Path
    sha256: str
    size: int | None = None


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
        mf = root / MANIFEST
        try:
            contents = BundleContents.load(mf)
        except ManifestError as exc:
            msg = f"not a format-1 kha bundle manifest (kha bundle build): {exc.problem}"
            raise ConfigError([Problem(str(mf), None, msg)]) from None
        files = {f.path: f for f in contents.files}
        binaries = {Path(p).name: _file(mf, p, f.sha256, f.size) for p, f in files.items() if p.startswith("bin/")}
        images = {i.ref: _file(mf, i.archive, i.sha256, i.size) for i in contents.images if i.archive is not None}
        pause = next((ref for ref in images if ref.rsplit(":", 1)[0].endswith("/pause")), None)
        if pause is None:
            raise ConfigError([Problem(str(mf), None, "bundle has no pause image")])
        repo, tag = pause.rsplit(":", 1)
        release = Release(contents.kubernetes_version.lstrip("v"), repo.rsplit("/", 1)[0], tag)
        entry = files.get(contents.crictl.path)
        crictl = _file(mf, entry.path, entry.sha256, entry.size) if entry else None
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
            problem = entry_problem(f.path, f.sha256, f.size)
            if problem is not None:
                bad.append(Problem(str(f.path), None, problem))
        if bad:
            raise ConfigError(bad)


def _file(mf: Path, rel: str, sha256: str | None, size: int | None) -> BundleFile:
    """A file a node gets; one without a sha256 (upstream artifacts, not downloaded) cannot be checked."""
    if sha256 is None:
        why = f"{rel} has no sha256: a description of upstream artifacts, not a built bundle"
        raise ConfigError([Problem(str(mf), None, why)])
    return BundleFile(mf.parent / rel, sha256, size)
