"""The installer's reading of an offline bundle manifest (format 1, as `kha bundle build` writes it)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from installer.errors import ConfigError
from installer.kubernetes.bundle import Bundle


def make_bundle(root: Path, *, drop: str | None = None) -> Path:
    files = []
    for rel, data in {"bin/kubeadm": b"kubeadm", "bin/kubelet": b"kubelet", "bin/kubectl": b"kubectl",
                      "bin/crictl": b"#!/bin/sh\n"}.items():
        if rel == drop:
            continue
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
        files.append({"path": rel, "sha256": hashlib.sha256(data).hexdigest(), "size": len(data), "mode": "0755"})
    images = []
    for ref, name in (("k8s.gcr.io/pause:3.2", "pause"), ("k8s.gcr.io/kube-proxy:v1.20.2", "kube-proxy")):
        data = name.encode()
        (root / "images").mkdir(exist_ok=True)
        (root / "images" / f"{name}.tar").write_bytes(data)
        images.append({"ref": ref, "archive": f"images/{name}.tar", "sha256": hashlib.sha256(data).hexdigest(),
                       "size": len(data)})
    manifest = {"format": 1, "kind": "kha-kubernetes-bundle", "kubernetes_version": "v1.20.2", "files": files,
                "images": images, "crictl": {"path": "bin/crictl", "kind": "shim"}}
    (root / "manifest.json").write_text(json.dumps(manifest))
    return root


def test_bundle_gives_the_release_and_its_files(tmp_path: Path) -> None:
    b = Bundle.load(make_bundle(tmp_path))
    assert b.release.version == "1.20.2"
    assert b.release.image_repository == "k8s.gcr.io" and b.release.pause_tag == "3.2"
    assert b.release.sandbox_image == "k8s.gcr.io/pause:3.2"
    assert set(b.binaries) >= {"kubeadm", "kubelet", "kubectl"}
    assert b.crictl is not None and b.crictl.path == tmp_path / "bin" / "crictl"
    assert set(b.images) == {"k8s.gcr.io/pause:3.2", "k8s.gcr.io/kube-proxy:v1.20.2"}


def test_a_tampered_file_is_refused(tmp_path: Path) -> None:
    make_bundle(tmp_path)
    (tmp_path / "bin" / "kubelet").write_bytes(b"something else")
    with pytest.raises(ConfigError, match="sha256"):
        Bundle.load(tmp_path)


def test_a_bundle_without_kubeadm_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="kubeadm"):
        Bundle.load(make_bundle(tmp_path, drop="bin/kubeadm"))


def test_not_a_manifest(tmp_path: Path) -> None:
    (tmp_path / "manifest.json").write_text('{"format": 9}')
    with pytest.raises(ConfigError, match="format-1"):
        Bundle.load(tmp_path)
