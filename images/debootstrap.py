"""Building a ``DebootstrapRecipe``: mmdebstrap rootfs → ext4 qcow2 + kernel + initrd.

The steps, in order (each reports one ✓/✗ line):

1. ``mmdebstrap --mode=root --variant=minbase`` into ``WORK/rootfs``. The recipe's files go in with
   mmdebstrap's ``tar-in`` special hook (a tarball we write, so no shell text is built from data):
   the initramfs configuration at the essential stage, so the kernel's postinst builds the small
   virtio initrd once; everything else at the customize stage, followed by ``systemctl
   enable/disable/set-default`` in the chroot. mmdebstrap keeps daemons from starting on the build
   host (policy-rc.d and a start-stop-daemon diversion inside the chroot) and empties /etc/machine-id.
2. Clean-up from Python: SSH host keys removed (the harness writes per-node keys).
3. Checks: required packages installed, ``absent_packages`` absent, the initrd carries the virtio
   modules. A build that does not pass is a ``BuildError``, never a cached image.
4. ``mkfs.ext4 -d rootfs disk.raw SIZE`` (no loop devices) → ``qemu-img convert -O qcow2``.
5. The kernel and initrd copied next to the qcow2 for direct kernel boot.

mmdebstrap hooks: https://manpages.debian.org/bookworm/mmdebstrap/mmdebstrap.1.en.html#HOOKS
"""

from __future__ import annotations

import io
import json
import logging
import os
import re
import shlex
import shutil
import tarfile
import time
from collections.abc import Iterable
from pathlib import Path

from images.cache import BUILD_LOG
from images.errors import BuildCommandFailed, BuildError, ImageError
from images.image import INITRD, KERNEL, QCOW2, ROOTFS, BuildInfo
from images.initrd import list_initrd
from images.recipes import ROOT_LABEL, DebootstrapRecipe, ImageDir, ImageFile
from images.run import Progress, capture, file_log, missing_tools, run, step
from images.sources import Mirrors, host_apt_options

log = logging.getLogger(__name__)

# The host tools a build runs (images.run.TOOL_PACKAGES names their Debian packages).
REQUIRED_TOOLS = ("mmdebstrap", "mkfs.ext4", "qemu-img", "zstd", "dpkg-query", "apt-config")

# Files whose absence means the image cannot do its job, whatever dpkg says.
REQUIRED_PATHS = (
    "usr/sbin/sshd",
    "usr/sbin/haproxy",
    "usr/sbin/keepalived",
    "usr/bin/etcd",
    "usr/bin/etcdctl",
    "usr/bin/containerd",
    "usr/sbin/runc",
    "usr/lib/cni/bridge",
    "usr/sbin/nginx",
    "usr/lib/nginx/modules/ngx_stream_module.so",
    "usr/bin/python3",
)


def preflight(r: DebootstrapRecipe) -> None:
    """Fail before any work when this machine cannot build ``r`` at all."""
    if os.geteuid() != 0:
        raise ImageError("building images needs root (mmdebstrap root mode, chroot, root-owned files for mkfs.ext4 -d)")
    missing = missing_tools(REQUIRED_TOOLS)
    if missing:
        raise ImageError("missing build tools: " + ", ".join(missing))
    if not Path(r.keyring).is_file():
        pkg = "debian-archive-keyring" if r.distro == "debian" else "ubuntu-keyring"
        raise ImageError(f"{r.name}: archive keyring {r.keyring} is missing (apt-get install {pkg})")


def build_image(r: DebootstrapRecipe, work: Path, progress: Progress | None, *, mirrors: Mirrors) -> BuildInfo:
    """Build ``r`` into the empty directory ``work`` (see the module docstring for the layout)."""
    preflight(r)
    rootfs = work / ROOTFS
    with file_log(work / BUILD_LOG) as logfile:
        staging = work / ".staging"
        staging.mkdir()
        essential_tar = staging / "essential.tar"
        customize_tar = staging / "customize.tar"
        _write_tar(essential_tar, [f for f in r.files if f.stage == "essential"], ())
        _write_tar(customize_tar, [f for f in r.files if f.stage == "customize"], r.dirs)

        sources = mirrors.apt_lines(r)
        log.info("%s: %s from %s (%s)", r.name, r.suite, mirrors.archive, mirrors.origin)
        with step(progress, f"mmdebstrap {r.suite} ({len(r.packages)} packages)"):
            try:
                run(
                    _mmdebstrap_argv(r, rootfs, sources, essential_tar, customize_tar),
                    logfile=logfile,
                    what="mmdebstrap",
                )
            except BuildCommandFailed as exc:
                raise _explain_mmdebstrap(exc, mirrors) from None
        shutil.rmtree(staging)

        with step(progress, "clean and check the rootfs"):
            _clean(rootfs)
            packages = _packages(rootfs)
            _check(r, rootfs, packages)
            kernel_version = _kernel_version(rootfs)
            modules = _check_initrd(r, rootfs, kernel_version)

        with step(progress, f"qcow2 ({r.disk_size} ext4)"):
            raw = work / "disk.raw"
            try:
                run(
                    ["mkfs.ext4", "-q", "-t", "ext4", "-L", ROOT_LABEL, "-d", str(rootfs), str(raw), r.disk_size],
                    logfile=logfile,
                    what="mkfs.ext4",
                )
                run(
                    ["qemu-img", "convert", "-f", "raw", "-O", "qcow2", str(raw), str(work / QCOW2)],
                    logfile=logfile,
                    what="qemu-img convert",
                )
            finally:
                raw.unlink(missing_ok=True)
            info = json.loads(capture(["qemu-img", "info", "--output=json", str(work / QCOW2)]))
            if info.get("format") != "qcow2":
                raise BuildError(f"{work / QCOW2} is {info.get('format')!r}, not qcow2")

        shutil.copy2(rootfs / "boot" / f"vmlinuz-{kernel_version}", work / KERNEL)
        shutil.copy2(rootfs / "boot" / f"initrd.img-{kernel_version}", work / INITRD)

    return BuildInfo(
        kernel_version=kernel_version,
        kernel_cmdline=r.kernel_cmdline,
        sources=sources,
        mirror_origin=mirrors.origin,
        packages=tuple(sorted(packages.items())),
        initrd_modules=modules,
        qcow2_virtual_bytes=int(info["virtual-size"]),
    )


def _mmdebstrap_argv(
    r: DebootstrapRecipe, rootfs: Path, sources: Iterable[str], essential_tar: Path, customize_tar: Path
) -> list[str]:
    def in_chroot(*argv: str) -> str:
        # A customize hook is shell text run as `sh -c HOOK exec ROOTFS`: "$1" is the rootfs. The
        # command itself is quoted once, here; its words are recipe constants.
        return '--customize-hook=chroot "$1" ' + shlex.join(argv)

    return [
        "mmdebstrap",
        "--mode=root",
        f"--variant={r.variant}",
        "--format=directory",
        f"--include={','.join(r.packages)}",
        *(f"--aptopt={o}" for o in host_apt_options()),
        '--aptopt=Acquire::Languages "none";',
        *(f"--dpkgopt={o}" for o in r.dpkg_options),
        # Special hooks are split like a shell would (Text::ParseWords), hence the quoting.
        f"--essential-hook=tar-in {shlex.quote(str(essential_tar))} /",
        f"--customize-hook=tar-in {shlex.quote(str(customize_tar))} /",
        in_chroot("systemctl", "enable", *r.enable_units),
        in_chroot("systemctl", "disable", *r.disable_units),
        in_chroot("systemctl", "set-default", r.default_target),
        r.suite,
        str(rootfs),
        *sources,
    ]


def _explain_mmdebstrap(exc: BuildCommandFailed, mirrors: Mirrors) -> BuildCommandFailed:
    """The same failed command, saying what usually went wrong."""
    missing = re.findall(r"Failed to fetch (\S+)\s+404", exc.output)
    if missing:
        hint = (
            f"mmdebstrap failed: the mirror ({mirrors.origin}) lists packages in its index that it does not "
            f"serve (404): {', '.join(missing)}. Retry later, point KHA_DEBIAN_MIRROR at another mirror, "
            "or change the recipe's package"
        )
    elif "Unable to locate package" in exc.output or "has no installation candidate" in exc.output:
        hint = "mmdebstrap failed: a package of the recipe does not exist in this suite"
    else:
        hint = "mmdebstrap failed"
    return BuildCommandFailed.of(exc, hint)


def _write_tar(path: Path, files: Iterable[ImageFile], dirs: Iterable[ImageDir]) -> None:
    """A tarball of exactly these entries, owned by root. No entries for parent directories: tar
    creates missing ones 0755 and leaves existing ones (/, /etc, /root) as they are."""
    now = int(time.time())
    with tarfile.open(path, "w", format=tarfile.GNU_FORMAT) as tar:
        for d in dirs:
            info = tarfile.TarInfo(d.path.lstrip("/"))
            info.type, info.mode, info.uid, info.gid, info.mtime = tarfile.DIRTYPE, d.mode, 0, 0, now
            tar.addfile(info)
        for f in files:
            data = f.content.encode()
            info = tarfile.TarInfo(f.path.lstrip("/"))
            info.size, info.mode, info.uid, info.gid, info.mtime = len(data), f.mode, 0, 0, now
            tar.addfile(info, io.BytesIO(data))


def _clean(rootfs: Path) -> None:
    # Cloned images must not share host keys (MACHINE.md); the harness writes per-node ones.
    for key in (rootfs / "etc" / "ssh").glob("ssh_host_*"):
        key.unlink()
    machine_id = rootfs / "etc" / "machine-id"
    if machine_id.read_bytes():
        # machine-id(5): an empty file in an image means "first boot, generate one".
        machine_id.write_bytes(b"")


def _packages(rootfs: Path) -> dict[str, str]:
    out = capture(
        [
            "dpkg-query",
            f"--admindir={rootfs / 'var/lib/dpkg'}",
            "-W",
            "-f=${Package}\t${Version}\t${db:Status-Abbrev}\n",
        ],
        what="dpkg-query",
    )
    packages = {}
    for line in out.splitlines():
        name, version, status = line.split("\t")
        if status.startswith("ii"):
            packages[name] = version
    return packages


def _check(r: DebootstrapRecipe, rootfs: Path, packages: dict[str, str]) -> None:
    problems = [f"package {p} is not installed" for p in r.packages if p not in packages]
    problems += [f"package {p} is installed but must not be" for p in r.absent_packages if p in packages]
    problems += [f"/{p} is missing" for p in REQUIRED_PATHS if not _exists(rootfs, p)]
    if list((rootfs / "etc" / "ssh").glob("ssh_host_*")):
        problems.append("SSH host keys are still in /etc/ssh")
    ssh_dir = rootfs / "root" / ".ssh"
    if not ssh_dir.is_dir() or (ssh_dir.stat().st_mode & 0o777) != 0o700:
        problems.append("/root/.ssh is not a 0700 directory")
    if problems:
        raise BuildError(f"{r.name}: the built rootfs is not usable:\n  " + "\n  ".join(problems))


def _exists(rootfs: Path, rel: str) -> bool:
    # /usr is merged from bookworm on (/sbin → usr/sbin); bullseye trees may have either.
    # lexists: an absolute symlink in the tree must not be resolved against the build host.
    alt = re.sub(r"^usr/", "", rel)
    return os.path.lexists(rootfs / rel) or os.path.lexists(rootfs / alt)


def _kernel_version(rootfs: Path) -> str:
    kernels = sorted((rootfs / "boot").glob("vmlinuz-*"))
    if len(kernels) != 1:
        raise BuildError(f"expected one kernel in {rootfs / 'boot'}, found {[k.name for k in kernels]}")
    version = kernels[0].name.removeprefix("vmlinuz-")
    if not (rootfs / "boot" / f"initrd.img-{version}").is_file():
        raise BuildError(f"no initrd for kernel {version} in {rootfs / 'boot'}")
    return version


def _modules_dir(rootfs: Path, version: str) -> Path:
    # Never follow the tree's absolute symlinks from the host: prefer the real /usr/lib path.
    usr = rootfs / "usr" / "lib" / "modules" / version
    return usr if usr.is_dir() or (rootfs / "lib").is_symlink() else rootfs / "lib" / "modules" / version


def _module_name(path: str) -> str:
    base = path.rsplit("/", 1)[-1]
    return base.split(".ko", 1)[0].replace("-", "_")


def _check_initrd(r: DebootstrapRecipe, rootfs: Path, version: str) -> tuple[str, ...]:
    initrd = rootfs / "boot" / f"initrd.img-{version}"
    in_initrd = {_module_name(p) for p in list_initrd(initrd) if ".ko" in p.rsplit("/", 1)[-1]}
    builtin_file = _modules_dir(rootfs, version) / "modules.builtin"
    builtin = {_module_name(p) for p in builtin_file.read_text().split()} if builtin_file.is_file() else set()
    missing = [m for m in r.initramfs_modules if m not in in_initrd and m not in builtin]
    if missing:
        raise BuildError(f"{initrd} lacks modules {missing} (and the kernel does not have them built in)")
    return tuple(sorted(in_initrd))
