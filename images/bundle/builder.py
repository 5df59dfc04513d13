"""Building a ``DebianSourceRecipe`` into a bundle directory. Each step reports one ✓/✗ line:

1. private apt indexes (``deb`` + ``deb-src`` for the recipe's suite; images.bundle.apt);
2. the pinned source package (``apt-get source --download-only``, kept in ``bundles/.downloads``), unpacked
   with ``dpkg-source -x`` (checksums checked; Debian's quilt patches applied) into a GOPATH;
3. reflect2 1.0.2 swapped in; openapi-gen over every tagged package (images.bundle.gotree);
4. one ``go build`` of the seven components, static, stripped, version-stamped; pause with gcc -static;
5. Debian debs for kube-proxy's iptables and for the CNI plugins (``apt-get download``);
6. the image archives (images.bundle.layers), the crictl shim, the CNI plugins;
7. checks of what users see: ``kubeadm version -o short``, every component's ``--version``, and the image
   names ``kubeadm config images list`` asks for against the archives;
8. the scratch tree removed; the store then writes manifest.json and renames the directory into place.

Layout of a bundle::

    bin/        kubeadm kubelet kubectl kube-apiserver kube-controller-manager kube-scheduler kube-proxy crictl
    images/     kube-apiserver.tar … pause.tar (docker-archive; ``ctr -n k8s.io images import``)
    cni/        bridge host-local loopback portmap (Debian's containernetworking-plugins)
    build.log   every command and its output
    manifest.json
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import shutil
import time
from pathlib import Path
from typing import TextIO

from core import bundle_manifest as bm
from core.errors import CommandFailed
from images.bundle import gotree, layers
from images.bundle.apt import Deb, PrivateApt
from images.bundle.crictl import install_shim
from images.bundle.recipe import DebianSourceRecipe, bundle_hash, recipe_doc
from images.cache import remove_tree
from images.errors import BuildError, ImageError
from images.run import Progress, capture, file_log, missing_tools, run, step
from images.sources import Mirrors

log = logging.getLogger(__name__)

# The host tools a build runs (images.run.TOOL_PACKAGES names their Debian packages).
REQUIRED_TOOLS = ("go", "gcc", "dpkg-source", "dpkg-deb", "xz", "apt-get", "chroot", "env")
LIBC_STATIC = Path("/usr/lib/x86_64-linux-gnu/libc.a")  # libc6-dev: pause links statically
HOST_PACKAGES = ("golang-go", "golang-github-modern-go-reflect2-dev", "gcc", "libc6-dev", "dpkg-dev")


def preflight(r: DebianSourceRecipe) -> None:
    """Fail before any work when this machine cannot build ``r``."""
    if os.geteuid() != 0:
        raise ImageError("building the Kubernetes bundle needs root (chroot checks of the kube-proxy image tree)")
    missing = missing_tools(REQUIRED_TOOLS)
    if not LIBC_STATIC.is_file():
        missing.append(f"{LIBC_STATIC} (apt-get install libc6-dev)")
    if not (gotree.REFLECT2_DEBIAN / "reflect2.go").is_file():
        missing.append(f"{gotree.REFLECT2_DEBIAN} (apt-get install {r.patches.reflect2_package})")
    if missing:
        raise ImageError("missing build tools: " + ", ".join(missing))
    have = _package_version(r.patches.reflect2_package)
    if not have.startswith(r.patches.reflect2_version):
        raise ImageError(
            f"{r.patches.reflect2_package} is {have or 'not installed'}; the recipe needs "
            f"{r.patches.reflect2_version} (the vendored 1.0.1 panics under Go ≥ 1.18)"
        )


def _package_version(package: str) -> str:
    try:
        return capture(["dpkg-query", "-W", "-f=${Version}", package]).strip()
    except CommandFailed:
        return ""


def _jobs() -> int:
    """``go build -p``: the machine's cores (2 on ours), or ``KHA_BUNDLE_JOBS``."""
    env = os.environ.get("KHA_BUNDLE_JOBS", "").strip()
    return int(env) if env.isdigit() and int(env) > 0 else max(1, os.cpu_count() or 1)


def build_bundle(
    r: DebianSourceRecipe,
    work: Path,
    progress: Progress | None,
    *,
    mirrors: Mirrors,
    apt_dir: Path,
    downloads: Path,
    go_cache: Path,
) -> bm.BundleManifest:
    """Build ``r`` into the empty directory ``work`` (layout in the module docstring)."""
    preflight(r)
    go_cache_warm = go_cache.is_dir() and any(go_cache.iterdir())
    scratch = work / ".scratch"
    gopath = scratch / "gopath"
    tree = gopath / "src" / "k8s.io" / "kubernetes"
    bin_dir, images_dir, cni_dir = work / "bin", work / "images", work / "cni"
    apt = PrivateApt(apt_dir, mirrors, r.source.suite, r.source.component)
    jobs = _jobs()

    with file_log(work / "build.log") as logfile:
        logfile.write(f"# {r.name} {bundle_hash(r)}: {r.description}\n# mirror {mirrors.archive} ({mirrors.origin})\n")
        with step(progress, f"apt indexes for {r.source.suite} (deb + deb-src, private lists)"):
            apt.update(logfile)

        src = r.source
        with step(progress, f"source package {src.package} {src.version}"):
            dsc = apt.source(src.package, src.version, downloads, logfile)
            source_files = _dsc_files(dsc)
            tree.parent.mkdir(parents=True)
            run(["dpkg-source", "-x", str(dsc), str(tree)], logfile=logfile, what="dpkg-source -x")

        with step(progress, f"reflect2 → {r.patches.reflect2_version} ({r.patches.reflect2_package})"):
            gotree.swap_reflect2(tree, logfile)

        env = gotree.go_env(gopath, go_cache)
        with step(progress, "openapi-gen"):
            openapi = gotree.generate_openapi(
                tree,
                scratch / "tools",
                env,
                logfile,
                min_bytes=r.patches.openapi_min_bytes,
                min_schemas=r.patches.openapi_min_schemas,
            )
        if progress is not None:
            progress(
                f"  openapi: {openapi.packages} packages → {openapi.bytes / 1e6:.2f} MB, {openapi.schemas} schemas"
            )

        go_start = time.monotonic()
        with step(progress, f"go build {len(r.components)} components (-p {jobs})"):
            gotree.build_components(
                tree, r.components, bin_dir, env, logfile, ldflags=(*r.go_ldflags, *r.stamp.ldflags()), jobs=jobs
            )

        go_seconds = round(time.monotonic() - go_start, 1)
        pause = scratch / "pause"
        with step(progress, "pause (static, gcc)"):
            gotree.build_pause(tree, pause, r.pause_cflags, logfile)

        deb_names = sorted({d for i in r.images for d in i.debs} | {r.cni_package})
        with step(progress, f"Debian packages for the images and CNI ({len(deb_names)})"):
            debs = apt.download(deb_names, scratch / "debs", logfile)

        with step(progress, f"CNI plugins ({', '.join(r.cni_plugins)})"):
            _cni(r, debs[r.cni_package], scratch / "cni-deb", cni_dir, logfile)

        install_shim(bin_dir / "crictl")
        for p in bin_dir.iterdir():
            p.chmod(0o755)

        archives: list[bm.ImageEntry] = []
        images_dir.mkdir()
        for image in r.images:
            ref = r.image_ref(image)
            with step(progress, f"image {ref}"):
                root = scratch / "roots" / image.name
                binary = pause if image.binary == "pause" else bin_dir / image.binary
                layers.image_root(
                    image, root, binary=binary, debs=debs, nsswitch=tree / "build" / "nsswitch.conf", logfile=logfile
                )
                layers.check_root(image, root, logfile)
                archive = layers.write_image(r, image, root, images_dir / f"{image.name}.tar")
                logfile.write(f"# {ref}: {archive.path.name} {archive.size} bytes sha256 {archive.sha256}\n")
                entry = bm.ImageEntry(
                    ref=ref, archive=f"images/{archive.path.name}", sha256=archive.sha256, size=archive.size
                )
                archives.append(entry)

        with step(progress, "check versions and kubeadm's image list"):
            _check(r, bin_dir, logfile)

        go_version = capture(["go", "version"]).strip()
        host_packages = tuple((p, _package_version(p)) for p in HOST_PACKAGES)
        with step(progress, "remove the scratch tree"):
            remove_tree(scratch)

    files = tuple(
        bm.file_entry(work, p.relative_to(work).as_posix()) for d in (bin_dir, cni_dir) for p in sorted(d.iterdir())
    )
    return bm.BundleManifest(
        name=r.name,
        hash=bundle_hash(r),
        kubernetes_version=r.kubernetes_version,
        created=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        source=bm.Source(
            type="debian-source",
            name=src.package,
            version=src.version,
            origin=f"{mirrors.archive} {src.suite} {src.component}",
            files=source_files,
        ),
        files=files,
        images=tuple(archives),
        cni=bm.Cni(
            dir="cni", plugins=r.cni_plugins, source=f"{r.cni_package} {debs[r.cni_package].version} (Debian)"
        ),
        crictl=bm.Crictl(
            path="bin/crictl",
            kind="shim",
            note="a shell script onto containerd's ctr: info, inspecti, pull, pods, stopp, rmp (what kubeadm 1.20 "
            "calls), ps, images",
        ),
        not_built=tuple((f"{r.image_repository}/{name}", why) for name, why in r.not_built),
        build=bm.BuildFacts(
            seconds=0.0,
            go_build_seconds=go_seconds,
            go_cache_warm=go_cache_warm,
            go_version=go_version,
            openapi_bytes=openapi.bytes,
            openapi_schemas=openapi.schemas,
            host_packages=host_packages,
            debs=tuple((name, debs[name].version) for name in deb_names),
        ),
        recipe=recipe_doc(r),
    )


def _dsc_files(dsc: Path) -> tuple[bm.FileEntry, ...]:
    """The .dsc and the files it lists, with their sha256 (they sit next to it)."""
    names = [dsc.name]
    in_section = False
    for line in dsc.read_text(errors="replace").splitlines():
        if line.startswith("Checksums-Sha256:"):
            in_section = True
            continue
        if in_section:
            if not line.startswith(" "):
                break
            names.append(line.split()[-1])
    out = []
    for name in names:
        p = dsc.parent / name
        out.append(bm.FileEntry(path=name, sha256=bm.file_sha256(p), size=p.stat().st_size))
    return tuple(out)


def _cni(r: DebianSourceRecipe, deb: Deb, unpack: Path, dest: Path, logfile: TextIO) -> None:
    run(["dpkg-deb", "-x", str(deb.path), str(unpack)], logfile=logfile, what=f"dpkg-deb -x {deb.package}")
    dest.mkdir()
    for plugin in r.cni_plugins:
        src = unpack / "usr" / "lib" / "cni" / plugin
        if not src.is_file():
            raise BuildError(f"{deb.package} {deb.version} has no usr/lib/cni/{plugin}")
        shutil.copyfile(src, dest / plugin)
        (dest / plugin).chmod(0o755)


def _check(r: DebianSourceRecipe, bin_dir: Path, logfile: TextIO) -> None:
    """What a user sees first: versions, and the image names kubeadm will ask the runtime for."""
    want = r.kubernetes_version
    short = capture([str(bin_dir / "kubeadm"), "version", "-o", "short"]).strip()
    logfile.write(f"# kubeadm version -o short: {short}\n")
    if short != want:
        raise BuildError(f"kubeadm version -o short says {short!r}, not {want!r}: the version stamps did not apply")
    for c in r.components:
        if c == "kubeadm":
            continue
        argv = [str(bin_dir / c), *(["version", "--client"] if c == "kubectl" else ["--version"])]
        out = capture(argv)
        logfile.write(f"# {c} {' '.join(argv[1:])}: {out.strip()}\n")
        if want not in out:
            raise BuildError(f"{c} does not report {want}: {out.strip()[:200]}")
    listed = capture(
        [
            str(bin_dir / "kubeadm"),
            "config",
            "images",
            "list",
            "--kubernetes-version",
            want,
            "--image-repository",
            r.image_repository,
        ]
    ).split()
    logfile.write("# kubeadm config images list:\n" + "".join(f"#   {i}\n" for i in listed))
    built = {r.image_ref(i) for i in r.images}
    skipped = {f"{r.image_repository}/{name}" for name, _ in r.not_built}
    unexpected = [i for i in listed if i not in built and i.rsplit(":", 1)[0] not in skipped]
    unused = sorted(built - set(listed))
    if unexpected or unused:
        raise BuildError(
            f"kubeadm {want} asks for {', '.join(unexpected) or 'nothing else'} and not for "
            f"{', '.join(unused) or 'nothing we built'}: fix the recipe's image names and tags"
        )
