"""Compiling Kubernetes from the Debian source tree: the two source fixes, openapi-gen, go build, pause.

GOPATH mode (``GO111MODULE=off``): the tree is unpacked straight into ``GOPATH/src/k8s.io/kubernetes``, so
``k8s.io/kubernetes/vendor/…`` resolves with no symlink to follow. ``-trimpath`` keeps file system paths out
of the binaries and out of Go's cache keys, so the shared ``GOCACHE`` (``CACHE/bundles/.go-cache``) serves
a rebuild from a fresh build directory: a warm rebuild compiles almost nothing. ``GOROOT`` is set
explicitly because a tool built with ``-trimpath`` (openapi-gen) has no GOROOT of its own, and gengo then
cannot import the standard library ("could not import fmt") and writes an incomplete file.

The fixes (../shared/MACHINE.md, measured on this machine):

1. ``vendor/github.com/modern-go/reflect2`` 1.0.1 panics on JSON maps under Go ≥ 1.18 (every component;
   kubeadm dies at kubelet-start): replaced by 1.0.2 from Debian's golang-github-modern-go-reflect2-dev.
   https://github.com/modern-go/reflect2/issues/23
2. ``pkg/generated/openapi/zz_generated.openapi.go`` is not in the tarball. openapi-gen must see every
   ``+k8s:openapi-gen=`` package, the staging ones under their ``k8s.io/kubernetes/vendor/…`` names, as
   Makefile.generated_files does (its ``kfind`` reads staging/src as vendor/ and prunes the real vendor/).
   A correct file is ~2.4 MB with 971 schemas; its API-rule report must equal the tree's
   api/api-rules/violation_exceptions.list (upstream's build fails otherwise, and so do we).
"""

from __future__ import annotations

import logging
import os
import re
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from images.bundle.argv import in_dir
from images.errors import BuildError
from images.run import capture, run

log = logging.getLogger(__name__)

KUBE_PKG = "k8s.io/kubernetes"
REFLECT2_VENDOR = "vendor/github.com/modern-go/reflect2"
REFLECT2_DEBIAN = Path("/usr/share/gocode/src/github.com/modern-go/reflect2")
OPENAPI_PKG = "pkg/generated/openapi"
OPENAPI_FILE = f"{OPENAPI_PKG}/zz_generated.openapi.go"
OPENAPI_TOOL = "vendor/k8s.io/kube-openapi/cmd/openapi-gen"
OPENAPI_BOILERPLATE = "vendor/k8s.io/code-generator/hack/boilerplate.go.txt"
OPENAPI_KNOWN_VIOLATIONS = "api/api-rules/violation_exceptions.list"
# Makefile.generated_files: KUBE_OPENAPI_TAG_FILES leaves these two out (they have their own outputs).
OPENAPI_EXCLUDED = ("vendor/k8s.io/code-generator/", "vendor/k8s.io/sample-apiserver/")
_TAG_LINE = re.compile(rb"^// *\+k8s:", re.MULTILINE)


@dataclass(frozen=True)
class OpenAPIResult:
    packages: int
    bytes: int
    schemas: int


def go_env(gopath: Path, gocache: Path, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for every go and Go-tool call of a build."""
    env = dict(os.environ if base is None else base)
    goroot = capture(["go", "env", "GOROOT"], what="go env GOROOT").strip()
    env.update(
        {
            "GOPATH": str(gopath),
            "GOCACHE": str(gocache),
            "GOROOT": goroot,
            "GO111MODULE": "off",
            "CGO_ENABLED": "0",  # static binaries, as debian/rules builds them
            "GOFLAGS": "",  # nothing from the caller's environment changes what we build
            "GOPROXY": "off",  # GOPATH mode never downloads; say so anyway
        }
    )
    return env


def swap_reflect2(tree: Path, logfile: TextIO) -> None:
    """Replace the vendored reflect2 1.0.1 with Debian's 1.0.2 (see the module docstring)."""
    if not (REFLECT2_DEBIAN / "reflect2.go").is_file():
        raise BuildError(f"{REFLECT2_DEBIAN} is missing (apt-get install golang-github-modern-go-reflect2-dev)")
    vendored = tree / REFLECT2_VENDOR
    license_text = (vendored / "LICENSE").read_bytes() if (vendored / "LICENSE").is_file() else None
    shutil.rmtree(vendored)
    # Debian's copy has a go.mod (ignored in GOPATH mode, dropped to keep vendor/ module-free) and
    # its LICENSE under /usr/share/doc: keep the vendored one, the same MIT text.
    shutil.copytree(REFLECT2_DEBIAN, vendored, ignore=shutil.ignore_patterns("go.mod", "go.sum", "*_test.go"))
    if license_text is not None:
        (vendored / "LICENSE").write_bytes(license_text)
    logfile.write(f"# replaced {REFLECT2_VENDOR} with {REFLECT2_DEBIAN}\n")


def openapi_packages(tree: Path) -> list[str]:
    """Import paths of every package with a ``+k8s:openapi-gen=`` tag, as Makefile.generated_files finds them.

    Walks the tree without ``vendor/``, ``_*`` and ``.*`` at the top, reading ``staging/src/X`` as
    ``vendor/X`` (vendor/k8s.io/* are symlinks into staging/); only files with a ``// +k8s:`` line count.
    """
    found: set[str] = set()
    for dirpath, dirnames, filenames in os.walk(tree):
        rel = Path(dirpath).relative_to(tree).as_posix()
        if rel == ".":
            dirnames[:] = [d for d in dirnames if not d.startswith(("_", ".")) and d != "vendor"]
            continue
        for name in filenames:
            if not name.endswith(".go"):
                continue
            data = (Path(dirpath) / name).read_bytes()
            if b"+k8s:openapi-gen=" in data and _TAG_LINE.search(data):
                pkg = "vendor/" + rel.removeprefix("staging/src/") if rel.startswith("staging/src/") else rel
                found.add(pkg)
                break
    return sorted(f"{KUBE_PKG}/{p}" for p in found if not p.startswith(OPENAPI_EXCLUDED))


def generate_openapi(
    tree: Path, tools: Path, env: Mapping[str, str], logfile: TextIO, *, min_bytes: int, min_schemas: int
) -> OpenAPIResult:
    """Build openapi-gen from vendor/, run it over every tagged package, check the result."""
    tools.mkdir(parents=True, exist_ok=True)
    tool = tools / "openapi-gen"
    run(
        in_dir(tree, ["go", "build", "-trimpath", "-o", str(tool), f"{KUBE_PKG}/{OPENAPI_TOOL}"]),
        logfile=logfile,
        env=env,
        what="go build openapi-gen",
    )
    packages = openapi_packages(tree)
    logfile.write(f"# openapi-gen input packages ({len(packages)}):\n" + "".join(f"#   {p}\n" for p in packages))
    report = tools / "openapi-violations.report"
    run(
        in_dir(
            tree,
            [
                str(tool),
                "--logtostderr",
                "--input-dirs",
                ",".join(packages),
                "--output-package",
                f"{KUBE_PKG}/{OPENAPI_PKG}",
                "--output-file-base",
                "zz_generated.openapi",
                "--go-header-file",
                str(tree / OPENAPI_BOILERPLATE),
                "--report-filename",
                str(report),
            ],
        ),
        logfile=logfile,
        env=env,
        what="openapi-gen",
    )
    out = tree / OPENAPI_FILE
    if not out.is_file():
        raise BuildError(f"openapi-gen exited 0 but wrote no {OPENAPI_FILE}")
    text = out.read_text()
    result = OpenAPIResult(len(packages), len(text.encode()), len(re.findall(r"^func schema_", text, re.MULTILINE)))
    logfile.write(f"# {OPENAPI_FILE}: {result.bytes} bytes, {result.schemas} schemas\n")
    if result.bytes < min_bytes or result.schemas < min_schemas:
        raise BuildError(
            f"{OPENAPI_FILE} is {result.bytes} bytes with {result.schemas} schemas (expected ≥ {min_bytes} bytes, "
            f"≥ {min_schemas} schemas): openapi-gen missed packages, and kube-apiserver would crash-loop "
            '("cannot find model definition")'
        )
    known = tree / OPENAPI_KNOWN_VIOLATIONS
    if known.is_file() and report.read_text() != known.read_text():
        raise BuildError(
            f"openapi-gen's API rule report {report} differs from {OPENAPI_KNOWN_VIOLATIONS}: it saw a different "
            "set of types than upstream's build does"
        )
    return result


def build_components(
    tree: Path,
    components: Sequence[str],
    out: Path,
    env: Mapping[str, str],
    logfile: TextIO,
    *,
    ldflags: Sequence[str],
    jobs: int,
) -> None:
    """One ``go build`` for every component (shared dependencies compile once) into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    run(
        in_dir(
            tree,
            [
                "go",
                "build",
                "-p",
                str(jobs),
                "-trimpath",
                "-ldflags",
                " ".join(ldflags),
                "-o",
                f"{out}/",
                *(f"{KUBE_PKG}/cmd/{c}" for c in components),
            ],
        ),
        logfile=logfile,
        env=env,
        what=f"go build {' '.join(components)}",
    )
    missing = [c for c in components if not (out / c).is_file()]
    if missing:
        raise BuildError(f"go build finished without {', '.join(missing)} in {out}")


def build_pause(tree: Path, out: Path, cflags: Sequence[str], logfile: TextIO) -> None:
    """build/pause/linux/pause.c, statically linked (glibc's libc.a from libc6-dev)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    run(["gcc", *cflags, "-o", str(out), str(tree / "build/pause/linux/pause.c")], logfile=logfile, what="gcc pause.c")
