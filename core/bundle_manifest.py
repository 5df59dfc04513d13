"""The offline Kubernetes bundle's ``manifest.json``: one schema for the builder (``images.bundle`` writes it)
and the installer (``installer.kubernetes.bundle`` reads it). It lives here, on the ground floor, because
neither side may import the other.

A built bundle's manifest lists every file and image archive with its sha256 and size (paths relative to
the bundle directory); upstream artifacts are the same entries with a ``url`` (and the ``sha256_url`` to
check them against) and no digest until someone downloads them. ``format`` is bumped on any incompatible
change; a reader refuses other formats (``ManifestError``) rather than guess.

    {"format": 1, "kind": "kha-kubernetes-bundle", "name": …, "hash": …, "kubernetes_version": "v1.20.2",
     "created": …, "source": {"type": "debian-source", "name": "kubernetes", "version": …, "origin": …,
     "files": [{"path": …, "sha256": …, "size": …}]},
     "files": [{"path": "bin/kubeadm", "sha256": …, "size": …, "mode": "0755"}, …],
     "images": [{"ref": "k8s.gcr.io/pause:3.2", "archive": "images/pause.tar", "sha256": …, "size": …}, …],
     "cni": {…}, "crictl": {…}, "not_built": {"coredns": "why", …}, "build": {…} | null, "recipe": {…}}

Two readings of one document, field by field the same rules: ``BundleManifest`` is the whole record (what
the builder wrote, provenance included); ``BundleContents`` is what a node gets from it (the Kubernetes
version, the files, the image archives, crictl), which is all the installer reads.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from core.errors import KhaError

MANIFEST = "manifest.json"
MANIFEST_FORMAT = 1
MANIFEST_KIND = "kha-kubernetes-bundle"


class ManifestError(KhaError):
    """``path`` is not a bundle manifest this code can read: ``problem`` says which field and why."""

    def __init__(self, path: str, problem: str) -> None:
        self.path = path
        self.problem = problem
        super().__init__(f"{path}: {problem}")


@dataclass(frozen=True)
class FileEntry:
    """A file of the bundle (``path`` relative to its directory), or an upstream file to download."""

    path: str
    sha256: str | None
    size: int | None
    mode: str | None = None  # octal, "0755"
    url: str | None = None
    sha256_url: str | None = None


@dataclass(frozen=True)
class ImageEntry:
    """A container image: ``ref`` (repository:tag) and its docker-archive tarball.

    ``archive`` is ``None`` for an image only a registry serves (upstream's pause).
    """

    ref: str
    archive: str | None
    sha256: str | None
    size: int | None
    url: str | None = None
    sha256_url: str | None = None


@dataclass(frozen=True)
class Source:
    """Where the bundle's bytes came from: a Debian source package, or an upstream release."""

    type: Literal["debian-source", "upstream"]
    name: str
    version: str
    origin: str
    files: tuple[FileEntry, ...] = ()


@dataclass(frozen=True)
class Cni:
    """CNI plugin binaries in ``dir`` (the node image also has Debian's in /usr/lib/cni)."""

    dir: str
    plugins: tuple[str, ...]
    source: str


@dataclass(frozen=True)
class Crictl:
    """What answers kubeadm's ``crictl`` calls: ``shim`` (a script onto ``ctr``) or upstream's cri-tools."""

    path: str
    kind: Literal["shim", "cri-tools"]
    note: str = ""


@dataclass(frozen=True)
class BuildFacts:
    """What the build found out, for people and tests (absent for an upstream description)."""

    seconds: float
    go_build_seconds: float
    go_cache_warm: bool  # GOCACHE had entries when the build started: a recipe change, not a cold build
    go_version: str
    openapi_bytes: int
    openapi_schemas: int
    host_packages: tuple[tuple[str, str], ...]  # Debian packages of the build host the build used
    debs: tuple[tuple[str, str], ...]  # Debian binary packages unpacked into images/ and cni/


@dataclass(frozen=True)
class BundleContents:
    """What a node gets from a bundle: the Kubernetes version, the files, the image archives, crictl."""

    kubernetes_version: str
    files: tuple[FileEntry, ...]
    images: tuple[ImageEntry, ...]
    crictl: Crictl

    @classmethod
    def from_dict(cls, doc: object, where: str = MANIFEST) -> BundleContents:
        """Check the format and read the node's part of ``doc``; ``ManifestError`` naming the first bad field."""
        r = _Reader(where)
        d = r.document(doc)
        return cls(
            kubernetes_version=r.text(d.get("kubernetes_version"), "kubernetes_version"),
            files=r.files(d.get("files"), "files"),
            images=tuple(r.image(i, f"images[{n}]") for n, i in enumerate(r.items(d.get("images"), "images"))),
            crictl=r.crictl(d.get("crictl")),
        )

    @classmethod
    def load(cls, path: Path) -> BundleContents:
        """Read ``path``; ``ManifestError`` when it is missing, not JSON or not this schema."""
        return cls.from_dict(read_json(path), str(path))


@dataclass(frozen=True)
class BundleManifest:
    """The whole record: the contents, and where they came from and how they were built."""

    name: str
    hash: str
    kubernetes_version: str
    created: str
    source: Source
    files: tuple[FileEntry, ...]
    images: tuple[ImageEntry, ...]
    cni: Cni
    crictl: Crictl
    not_built: tuple[tuple[str, str], ...] = ()
    build: BuildFacts | None = None
    recipe: Mapping[str, Any] = field(default_factory=dict)
    format: int = MANIFEST_FORMAT

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": self.format,
            "kind": MANIFEST_KIND,
            "name": self.name,
            "hash": self.hash,
            "kubernetes_version": self.kubernetes_version,
            "created": self.created,
            "source": {
                "type": self.source.type,
                "name": self.source.name,
                "version": self.source.version,
                "origin": self.source.origin,
                "files": [_file_dict(f) for f in self.source.files],
            },
            "files": [_file_dict(f) for f in self.files],
            "images": [
                _drop_none(
                    {
                        "ref": i.ref,
                        "archive": i.archive,
                        "sha256": i.sha256,
                        "size": i.size,
                        "url": i.url,
                        "sha256_url": i.sha256_url,
                    },
                    keep=("archive", "sha256", "size"),
                )
                for i in self.images
            ],
            "cni": {"dir": self.cni.dir, "plugins": list(self.cni.plugins), "source": self.cni.source},
            "crictl": {"path": self.crictl.path, "kind": self.crictl.kind, "note": self.crictl.note},
            "not_built": dict(self.not_built),
            "build": None
            if self.build is None
            else {
                "seconds": self.build.seconds,
                "go_build_seconds": self.build.go_build_seconds,
                "go_cache_warm": self.build.go_cache_warm,
                "go_version": self.build.go_version,
                "openapi_bytes": self.build.openapi_bytes,
                "openapi_schemas": self.build.openapi_schemas,
                "host_packages": dict(self.build.host_packages),
                "debs": dict(self.build.debs),
            },
            "recipe": dict(self.recipe),
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2) + "\n"

    @classmethod
    def from_dict(cls, doc: object, where: str = MANIFEST) -> BundleManifest:
        """Parse and check ``doc``; ``ManifestError`` naming the first field that is wrong."""
        contents = BundleContents.from_dict(doc, where)
        r = _Reader(where)
        d = r.obj(doc, "")
        src = r.obj(d.get("source"), "source")
        src_type = r.text(src.get("type"), "source.type")
        if src_type not in ("debian-source", "upstream"):
            raise ManifestError(where, f"source.type {src_type!r} is not debian-source or upstream")
        cni = r.obj(d.get("cni"), "cni")
        build_doc = d.get("build")
        build = None
        if build_doc is not None:
            b = r.obj(build_doc, "build")
            build = BuildFacts(
                seconds=float(r.number(b.get("seconds"), "build.seconds")),
                go_build_seconds=float(r.number(b.get("go_build_seconds"), "build.go_build_seconds")),
                go_cache_warm=r.boolean(b.get("go_cache_warm"), "build.go_cache_warm"),
                go_version=r.text(b.get("go_version"), "build.go_version"),
                openapi_bytes=r.integer(b.get("openapi_bytes"), "build.openapi_bytes"),
                openapi_schemas=r.integer(b.get("openapi_schemas"), "build.openapi_schemas"),
                host_packages=r.pairs(b.get("host_packages"), "build.host_packages"),
                debs=r.pairs(b.get("debs"), "build.debs"),
            )
        return cls(
            format=MANIFEST_FORMAT,
            name=r.text(d.get("name"), "name"),
            hash=r.text(d.get("hash"), "hash"),
            kubernetes_version=contents.kubernetes_version,
            created=r.text(d.get("created"), "created"),
            source=Source(
                type="debian-source" if src_type == "debian-source" else "upstream",
                name=r.text(src.get("name"), "source.name"),
                version=r.text(src.get("version"), "source.version"),
                origin=r.text(src.get("origin"), "source.origin"),
                files=r.files(src.get("files"), "source.files"),
            ),
            files=contents.files,
            images=contents.images,
            cni=Cni(
                dir=r.text(cni.get("dir"), "cni.dir"),
                plugins=tuple(r.text(p, "cni.plugins[]") for p in r.items(cni.get("plugins"), "cni.plugins")),
                source=r.text(cni.get("source"), "cni.source"),
            ),
            crictl=contents.crictl,
            not_built=r.pairs(d.get("not_built", {}), "not_built"),
            build=build,
            recipe=r.obj(d.get("recipe", {}), "recipe"),
        )

    @classmethod
    def load(cls, path: Path) -> BundleManifest:
        """Read ``path``; ``ManifestError`` when it is missing, not JSON or not this schema."""
        return cls.from_dict(read_json(path), str(path))

    def problems(self, directory: Path) -> list[str]:
        """Every file or archive of a built bundle that is missing or differs from its entry."""
        entries: list[tuple[str, str | None, int | None]] = [(f.path, f.sha256, f.size) for f in self.files]
        entries += [(i.archive, i.sha256, i.size) for i in self.images if i.archive is not None]
        found = []
        for rel, sha, size in entries:
            problem = entry_problem(directory / rel, sha, size)
            if problem is not None:
                found.append(f"{rel}: {problem}")
        return found


def read_json(path: Path) -> object:
    """The JSON document at ``path``; ``ManifestError`` when it is missing or not JSON."""
    try:
        doc: object = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ManifestError(str(path), f"cannot read: {exc}") from exc
    return doc


def entry_problem(path: Path, sha256: str | None, size: int | None) -> str | None:
    """What is wrong with the file at ``path`` against its entry (``None``: nothing); the size is checked
    first, as it is cheap, and a file of another size cannot have the entry's sha256."""
    if not path.is_file():
        return "missing"
    actual = path.stat().st_size
    if size is not None and actual != size:
        return f"sha256 differs from the manifest ({actual} bytes, the manifest says {size})"
    if sha256 is not None and file_sha256(path) != sha256:
        return "sha256 differs from the manifest"
    return None


def file_sha256(path: Path) -> str:
    with path.open("rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def file_entry(directory: Path, rel: str) -> FileEntry:
    """The entry for the file ``directory/rel`` as it is now."""
    p = directory / rel
    st = p.stat()
    return FileEntry(path=rel, sha256=file_sha256(p), size=st.st_size, mode=f"{st.st_mode & 0o7777:04o}")


def _drop_none(d: dict[str, Any], keep: Sequence[str] = ()) -> dict[str, Any]:
    return {k: v for k, v in d.items() if v is not None or k in keep}


def _file_dict(f: FileEntry) -> dict[str, Any]:
    return _drop_none(
        {"path": f.path, "sha256": f.sha256, "size": f.size, "mode": f.mode, "url": f.url, "sha256_url": f.sha256_url},
        keep=("sha256", "size"),
    )


class _Reader:
    """Typed access to untrusted JSON, each failure a ``ManifestError`` naming the field."""

    def __init__(self, where: str) -> None:
        self.where = where

    def _bad(self, what: str, expected: str, value: object) -> ManifestError:
        return ManifestError(self.where, f"{what or 'document'}: expected {expected}, got {value!r}")

    def document(self, v: object) -> dict[str, Any]:
        """The top-level object, once its format and kind say it is ours."""
        d = self.obj(v, "")
        if d.get("format") != MANIFEST_FORMAT:
            raise ManifestError(self.where, f"format {d.get('format')!r} is not {MANIFEST_FORMAT}")
        if d.get("kind") != MANIFEST_KIND:
            raise ManifestError(self.where, f"kind {d.get('kind')!r} is not {MANIFEST_KIND!r}")
        return d

    def obj(self, v: object, what: str) -> dict[str, Any]:
        if not isinstance(v, dict):
            raise self._bad(what, "an object", v)
        return v

    def items(self, v: object, what: str) -> list[Any]:
        if not isinstance(v, list):
            raise self._bad(what, "a list", v)
        return v

    def text(self, v: object, what: str) -> str:
        if not isinstance(v, str):
            raise self._bad(what, "a string", v)
        return v

    def opt_str(self, v: object, what: str) -> str | None:
        return None if v is None else self.text(v, what)

    def integer(self, v: object, what: str) -> int:
        if not isinstance(v, int) or isinstance(v, bool):
            raise self._bad(what, "an integer", v)
        return v

    def opt_int(self, v: object, what: str) -> int | None:
        return None if v is None else self.integer(v, what)

    def boolean(self, v: object, what: str) -> bool:
        if not isinstance(v, bool):
            raise self._bad(what, "true or false", v)
        return v

    def number(self, v: object, what: str) -> float:
        if not isinstance(v, int | float) or isinstance(v, bool):
            raise self._bad(what, "a number", v)
        return float(v)

    def sha(self, v: object, what: str) -> str | None:
        s = self.opt_str(v, what)
        if s is not None and (len(s) != 64 or any(c not in "0123456789abcdef" for c in s)):
            raise self._bad(what, "64 lowercase hex digits", s)
        return s

    def pairs(self, v: object, what: str) -> tuple[tuple[str, str], ...]:
        d = self.obj(v, what)
        return tuple((k, self.text(val, f"{what}.{k}")) for k, val in d.items())

    def rel_path(self, v: object, what: str) -> str:
        s = self.text(v, what)
        if s.startswith("/") or ".." in Path(s).parts:
            raise self._bad(what, "a path inside the bundle", s)
        return s

    def files(self, v: object, what: str) -> tuple[FileEntry, ...]:
        return tuple(self.file(f, f"{what}[{n}]") for n, f in enumerate(self.items(v, what)))

    def file(self, v: object, what: str) -> FileEntry:
        d = self.obj(v, what)
        return FileEntry(
            path=self.rel_path(d.get("path"), f"{what}.path"),
            sha256=self.sha(d.get("sha256"), f"{what}.sha256"),
            size=self.opt_int(d.get("size"), f"{what}.size"),
            mode=self.opt_str(d.get("mode"), f"{what}.mode"),
            url=self.opt_str(d.get("url"), f"{what}.url"),
            sha256_url=self.opt_str(d.get("sha256_url"), f"{what}.sha256_url"),
        )

    def image(self, v: object, what: str) -> ImageEntry:
        d = self.obj(v, what)
        archive = d.get("archive")
        return ImageEntry(
            ref=self.text(d.get("ref"), f"{what}.ref"),
            archive=None if archive is None else self.rel_path(archive, f"{what}.archive"),
            sha256=self.sha(d.get("sha256"), f"{what}.sha256"),
            size=self.opt_int(d.get("size"), f"{what}.size"),
            url=self.opt_str(d.get("url"), f"{what}.url"),
            sha256_url=self.opt_str(d.get("sha256_url"), f"{what}.sha256_url"),
        )

    def crictl(self, v: object) -> Crictl:
        d = self.obj(v, "crictl")
        kind = self.text(d.get("kind"), "crictl.kind")
        if kind not in ("shim", "cri-tools"):
            raise ManifestError(self.where, f"crictl.kind {kind!r} is not shim or cri-tools")
        return Crictl(
            path=self.text(d.get("path"), "crictl.path"),
            kind="shim" if kind == "shim" else "cri-tools",
            note=self.text(d.get("note", ""), "crictl.note"),
        )
