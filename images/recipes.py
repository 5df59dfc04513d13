"""Image recipes: what goes into each base image, as frozen data, and the hash that names a build.

A recipe says everything that decides an image's content (suite, packages, files written into the
tree, units enabled and disabled, disk size). Its hash (with ``BUILDER_VERSION``) names the cache
directory, so changing any of it builds a new image and never reuses a stale one. Where the bytes come
from (which mirror) is not part of the recipe: that is machine configuration (see ``images.sources``).

Two kinds:
- ``DebootstrapRecipe``: built here with mmdebstrap from a Debian mirror (``images.debootstrap``);
- ``CloudImageRecipe``: a vendor cloud image (Ubuntu, Rocky, CentOS Stream) downloaded from a pinned URL
  and checked against a pinned sha256 (``images.cloudimage``). The vendor disk boots with its own
  bootloader and is configured by cloud-init from a NoCloud seed (``harness.cloudinit``); it has no
  rootfs directory, so it runs on qemu only.

Package names were checked against each Debian suite's index on the configured mirror
(``apt-cache policy``, 2026-11-21). The Ubuntu lists could not be checked here (no Ubuntu mirror).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, TypeVar
from urllib.parse import urlsplit

from images.cache import digest
from images.errors import RecipeError, UnknownRecipe

# Bump when the builder changes what lands in an image without a recipe field changing (a new step,
# a different disk layout): every cached image is then rebuilt once.
BUILDER_VERSION = "1"

DEBIAN_KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"
UBUNTU_KEYRING = "/usr/share/keyrings/ubuntu-archive-keyring.gpg"

# The kernel command line the VM side of the harness should boot the qcow2 with. ``console=ttyS0``
# is what gives the VM its serial getty: systemd-getty-generator adds serial-getty@ttyS0 for the
# console named there. Enabling that unit statically would make every libvirt-LXC node (same rootfs,
# no /dev/ttyS0 device unit) wait 90 s for the device and boot "degraded". ``net.ifnames=0`` keeps the
# NIC called eth0 so ``ip=…:eth0:off`` works (systemd-network-generator turns it into a .network).
DEFAULT_KERNEL_CMDLINE = "root=/dev/vda rw console=ttyS0 net.ifnames=0"

# The label of the root ext4 in every disk kha makes: the whole-disk qcow2 (images.debootstrap) and a
# cloud disk's root partition (images.clouddisk), so one /etc/fstab line fits both.
ROOT_LABEL = "kha-root"

T = TypeVar("T")


@dataclass(frozen=True)
class ImageFile:
    """A file written into the image tree (owner root). ``stage`` says when:

    - ``essential``: after the Essential set, before ``packages`` are installed (the initramfs
      configuration must be in place before the kernel's postinst builds the initrd);
    - ``customize``: after every package is installed (overrides what packages or mmdebstrap wrote).
    """

    path: str
    content: str
    mode: int = 0o644
    stage: Literal["essential", "customize"] = "customize"


@dataclass(frozen=True)
class ImageDir:
    """A directory created in the image tree (owner root), at the customize stage."""

    path: str
    mode: int = 0o755


# Modules the VM's initrd must carry to mount /dev/vda (ext4 on virtio-blk) and bring up eth0.
# initramfs-tools with MODULES=list takes exactly these (plus their dependencies), which keeps the
# initrd small: https://manpages.debian.org/bookworm/initramfs-tools-core/initramfs.conf.5.en.html
VIRTIO_MODULES: tuple[str, ...] = ("virtio_pci", "virtio_blk", "virtio_net", "ext4")

COMMON_FILES: tuple[ImageFile, ...] = (
    # /etc/initramfs-tools/modules is not a conffile (the postinst only creates it when missing),
    # so writing it before initramfs-tools is installed is safe.
    ImageFile(
        "/etc/initramfs-tools/modules",
        "# kha: virtio disk and NIC for qemu VMs (MODULES=list in conf.d/kha.conf)\n"
        + "".join(f"{m}\n" for m in VIRTIO_MODULES),
        stage="essential",
    ),
    ImageFile(
        "/etc/initramfs-tools/conf.d/kha.conf",
        "# kha: only the modules listed in /etc/initramfs-tools/modules; no resume device to wait for\n"
        "MODULES=list\nRESUME=none\n",
        stage="essential",
    ),
    ImageFile(
        "/etc/fstab",
        "# kha: the VM disk. libvirt-LXC nodes ignore it: systemd-fstab-generator skips device\n"
        "# entries in a container.\n"
        "/dev/vda / ext4 rw,errors=remount-ro 0 1\n",
    ),
    # mmdebstrap copies the build host's hostname and resolv.conf into the tree: replace both.
    ImageFile("/etc/hostname", "localhost\n"),
    ImageFile("/etc/hosts", "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"),
    ImageFile("/etc/resolv.conf", "# kha: no resolver in the base image; the installer writes one if needed\n"),
    ImageFile(
        "/etc/ssh/sshd_config.d/10-kha.conf",
        "# kha: root logs in with a key only. Host keys are not in the image: the harness writes per-node\n"
        "# keys (cloned images must not share them); kha-ssh-hostkeys.service covers a node without any.\n"
        "PermitRootLogin prohibit-password\nPasswordAuthentication no\n",
    ),
    ImageFile(
        "/etc/systemd/system/kha-ssh-hostkeys.service",
        "[Unit]\n"
        "Description=Generate SSH host keys when none were provided (kha images ship without them)\n"
        "Before=ssh.service\n"
        "ConditionPathExistsGlob=!/etc/ssh/ssh_host_*_key\n"
        "\n[Service]\nType=oneshot\nExecStart=/usr/bin/ssh-keygen -A\n"
        "\n[Install]\nWantedBy=multi-user.target\n",
    ),
    ImageFile(
        "/etc/systemd/network/99-kha-dhcp.network",
        "# kha fallback: DHCP on any Ethernet link nothing else configured. It sorts after the\n"
        "# .network files systemd-network-generator writes from the kernel's ip= argument (and after\n"
        "# whatever the harness writes), so static addresses win.\n"
        "[Match]\nName=eth* en*\n\n[Network]\nDHCP=yes\n",
    ),
    ImageFile(
        "/etc/systemd/system/chrony.service.d/kha-vm-only.conf",
        "# kha: a container shares the host's clock, and libvirt-LXC nodes keep CAP_SYS_TIME: chronyd\n"
        "# there would step the host's time. Run it in VMs only.\n"
        "[Unit]\nConditionVirtualization=!container\n",
    ),
)

COMMON_DIRS: tuple[ImageDir, ...] = (ImageDir("/root/.ssh", 0o700),)

COMMON_ENABLE: tuple[str, ...] = (
    "systemd-networkd.service",
    "systemd-network-generator.service",
    "ssh.service",
    "chrony.service",
    "kha-ssh-hostkeys.service",
)

# Debian enables these on install; the installer enables what each role needs. The apt timers would
# try to reach a mirror from every node.
COMMON_DISABLE: tuple[str, ...] = (
    "haproxy.service",
    "keepalived.service",
    "etcd.service",
    "nginx.service",
    "apt-daily.timer",
    "apt-daily-upgrade.timer",
)

# Documentation and translations are dead weight in a node image (the rootfs is copied per LXC node).
DPKG_OPTIONS: tuple[str, ...] = (
    "path-exclude=/usr/share/man/*",
    "path-exclude=/usr/share/info/*",
    "path-exclude=/usr/share/doc/*",
    "path-include=/usr/share/doc/*/copyright",
    "path-exclude=/usr/share/locale/*",
    "path-include=/usr/share/locale/locale.alias",
)

# What every role needs, under names that are the same in bullseye, bookworm and trixie.
COMMON_PACKAGES: tuple[str, ...] = (
    "systemd-sysv",
    "udev",
    "dbus",
    "kmod",
    "openssh-server",
    "openssh-sftp-server",  # only a Recommends of openssh-server; paramiko's SFTP needs it
    "chrony",  # satisfies time-daemon, so systemd-timesyncd stays out
    "iproute2",
    "iptables",
    "nftables",
    "conntrack",
    "socat",
    "haproxy",
    "keepalived",
    "libnginx-mod-stream",
    "etcd-server",
    "etcd-client",
    "containerd",
    "runc",
    "containernetworking-plugins",  # /usr/lib/cni/*
    "initramfs-tools",
    "zstd",  # initramfs-tools compresses with zstd since bookworm
    "e2fsprogs",  # resize2fs for a grown overlay; fsck.ext4
    "sudo",
    "ca-certificates",
    "python3",
    "curl",
    "procps",
    "iputils-ping",
    "netcat-openbsd",
)


@dataclass(frozen=True)
class DebootstrapRecipe:
    """An image built here with mmdebstrap from an apt mirror."""

    name: str
    description: str
    distro: Literal["debian", "ubuntu"]
    suite: str
    packages: tuple[str, ...]
    components: tuple[str, ...] = ("main",)
    keyring: str = DEBIAN_KEYRING
    # Where the packages come from when neither this machine's apt configuration nor an environment
    # override names a mirror. ``None``: only ever from the machine's configuration (Debian).
    default_mirror: str | None = None
    default_security_mirror: str | None = None
    variant: str = "minbase"
    absent_packages: tuple[str, ...] = ("systemd-timesyncd",)
    files: tuple[ImageFile, ...] = COMMON_FILES
    dirs: tuple[ImageDir, ...] = COMMON_DIRS
    enable_units: tuple[str, ...] = COMMON_ENABLE
    disable_units: tuple[str, ...] = COMMON_DISABLE
    dpkg_options: tuple[str, ...] = DPKG_OPTIONS
    default_target: str = "multi-user.target"
    initramfs_modules: tuple[str, ...] = VIRTIO_MODULES
    disk_size: str = "8G"
    kernel_cmdline: str = DEFAULT_KERNEL_CMDLINE
    kind: Literal["debootstrap"] = field(default="debootstrap")


_SHA256 = re.compile(r"[0-9a-f]{64}")

#: How a cloud image's disk starts: UEFI (OVMF) or legacy BIOS (SeaBIOS). kha boots vendor images with UEFI.
Boot = Literal["uefi", "bios"]


@dataclass(frozen=True)
class CloudImageRecipe:
    """A vendor cloud image: the disk at ``url``, which must hash to ``sha256``.

    ``sha256`` is ``None`` while nobody has pinned it: the builder then refuses before any download
    (``UnpinnedDigest``), never trusting whatever the URL serves on first use. ``checksum_url`` is
    where the vendor publishes the digest (for the person who pins it; never read by the builder).
    ``format`` is what the file at ``url`` is (``qcow2``, or ``raw`` to be converted); ``login_user``
    is the image's default cloud-init user; ``boot`` the firmware its disk boots with.
    """

    name: str
    description: str
    url: str
    sha256: str | None
    login_user: str
    checksum_url: str | None = None
    format: Literal["qcow2", "raw"] = "qcow2"
    boot: Boot = "uefi"
    kind: Literal["cloud-image"] = field(default="cloud-image")

    def __post_init__(self) -> None:
        problems = []
        if urlsplit(self.url).scheme not in ("http", "https"):
            problems.append(f"url {self.url!r} is not http(s)")
        if self.sha256 is not None and not _SHA256.fullmatch(self.sha256):
            problems.append(f"sha256 {self.sha256!r} is not 64 lowercase hex digits")
        if problems:
            raise RecipeError(f"cloud-image recipe {self.name!r}: " + "; ".join(problems))


Recipe = DebootstrapRecipe | CloudImageRecipe


def _debian(
    name: str, suite: str, nginx: str, description: str, *, kernel: str = "linux-image-cloud-amd64",
    extra: tuple[str, ...] = (),
) -> DebootstrapRecipe:
    return DebootstrapRecipe(
        name=name,
        description=description,
        distro="debian",
        suite=suite,
        # The cloud kernel has virtio as modules: the initrd carries them (VIRTIO_MODULES).
        packages=(*COMMON_PACKAGES, nginx, kernel, *extra),
    )


def _debian_cloudinit() -> DebootstrapRecipe:
    """Debian 12 with cloud-init: the source of the locally made cloud image (``images.clouddisk``) that
    proves the cloud-image path offline. Its root is a partition found by label, not the whole /dev/vda."""
    base = _debian("debian-12-cloudinit", "bookworm", "nginx",
                   "Debian 12 with cloud-init: the local cloud image of the offline proof (images.clouddisk)")
    fstab = ImageFile(
        "/etc/fstab",
        "# kha: the root ext4 by label: the whole /dev/vda (kernel boot) or the cloud disk's root partition\n"
        f"LABEL={ROOT_LABEL} / ext4 rw,errors=remount-ro 0 1\n",
    )
    # minbase has no locales package: cloud-init's locale module would fail the first boot (update-locale
    # exits 255, `cloud-init status` says error). Vendor images ship locales; this one keeps C.UTF-8.
    no_locale = ImageFile(
        "/etc/cloud/cloud.cfg.d/90-kha-locale.cfg",
        "# kha: no locales package in this image (mmdebstrap minbase): leave the locale alone\nlocale: false\n",
    )
    files = (*(f for f in base.files if f.path != "/etc/fstab"), fstab, no_locale)
    # cloud-init, not the kernel command line, configures this image's network, hostname and keys; the
    # image's DHCP fallback .network stays (cloud-init's own file sorts before it).
    return dataclasses.replace(base, packages=(*base.packages, "cloud-init"), files=files)


# Vendor cloud images. None of these was ever downloaded on our machines (no internet but the package
# registries), so none has a pinned digest: each is refused (UnpinnedDigest) until someone with internet
# reads ``checksum_url`` and pins ``sha256`` here. Pin a dated release with its digest (Ubuntu's
# ``release-YYYYMMDD/`` folders, Rocky's ``Rocky-9.N-GenericCloud-Base-9.N-DATE.0.x86_64.qcow2``): the
# ``release``/``latest`` URLs below move when the vendor publishes a new build, and the pinned digest then
# refuses the download (DigestMismatch), as it must. All of them boot under UEFI (and BIOS).
_CLOUD_IMAGES: tuple[CloudImageRecipe, ...] = (
    CloudImageRecipe(
        name="ubuntu-22.04",
        description="Ubuntu 22.04 (jammy) server cloud image; no pinned digest yet (needs internet)",
        url="https://cloud-images.ubuntu.com/releases/22.04/release/ubuntu-22.04-server-cloudimg-amd64.img",
        checksum_url="https://cloud-images.ubuntu.com/releases/22.04/release/SHA256SUMS",
        sha256=None,
        login_user="ubuntu",
    ),
    CloudImageRecipe(
        name="ubuntu-24.04",
        description="Ubuntu 24.04 (noble) server cloud image; no pinned digest yet (needs internet)",
        url="https://cloud-images.ubuntu.com/releases/24.04/release/ubuntu-24.04-server-cloudimg-amd64.img",
        checksum_url="https://cloud-images.ubuntu.com/releases/24.04/release/SHA256SUMS",
        sha256=None,
        login_user="ubuntu",
    ),
    CloudImageRecipe(
        name="rocky-9",
        description="Rocky Linux 9 GenericCloud image; no pinned digest yet (needs internet)",
        url="https://dl.rockylinux.org/pub/rocky/9/images/x86_64/Rocky-9-GenericCloud-Base.latest.x86_64.qcow2",
        checksum_url="https://dl.rockylinux.org/pub/rocky/9/images/x86_64/Rocky-9-GenericCloud-Base.latest.x86_64.qcow2.CHECKSUM",
        sha256=None,
        login_user="rocky",
    ),
    CloudImageRecipe(
        name="centos-stream-9",
        description="CentOS Stream 9 GenericCloud image; no pinned digest yet (needs internet)",
        url="https://cloud.centos.org/centos/9-stream/x86_64/images/CentOS-Stream-GenericCloud-9-latest.x86_64.qcow2",
        checksum_url="https://cloud.centos.org/centos/9-stream/x86_64/images/CentOS-Stream-GenericCloud-9-latest.x86_64.qcow2.SHA256SUM",
        sha256=None,
        login_user="cloud-user",
    ),
)


# nginx with the stream module: bullseye's nginx-light is the server binary itself; from bookworm on
# "nginx" is the binary and nginx-light became a metapackage. libnginx-mod-stream is separate in all.
# etcd-server exists in all three suites (3.3.25, 3.4.23, 3.5.16); containernetworking-plugins too.
_ALL: tuple[Recipe, ...] = (
    _debian("debian-12", "bookworm", "nginx", "Debian 12 (bookworm), the default"),
    # bullseye is past its LTS end: bullseye-security still lists linux-image-cloud-amd64
    # 5.10.262-1 but the mirror answers 404 for that metapackage's .deb (measured 2026-11-21),
    # while the versioned image package it depends on is served. Its index no longer changes.
    _debian(
        "debian-11",
        "bullseye",
        "nginx-light",
        "Debian 11 (bullseye): etcd 3.3, containerd 1.4",
        kernel="linux-image-5.10.0-46-cloud-amd64",
        # containerd 1.4 runs apparmor_parser for every container when the kernel has AppArmor on (a VM's
        # does; an LXC node does not see it), and fails each one without it: "get apparmor_parser version:
        # exec: apparmor_parser: executable file not found" (seen on a TCG VM, 2026-12-06). 1.6+ do not.
        extra=("apparmor",),
    ),
    _debian("debian-13", "trixie", "nginx", "Debian 13 (trixie): etcd 3.5, containerd 1.7"),
    _debian_cloudinit(),
    *_CLOUD_IMAGES,
)
RECIPES: dict[str, Recipe] = {r.name: r for r in _ALL}

DEFAULT_RECIPE = "debian-12"


def recipe(name: str) -> Recipe:
    """The recipe called ``name``; ``UnknownRecipe`` (listing the valid names) otherwise."""
    return named(RECIPES, name, UnknownRecipe)


def named(table: Mapping[str, T], name: str, unknown: Callable[[str, Sequence[str]], UnknownRecipe]) -> T:
    """``table[name]``, or the ``unknown`` error listing the valid names (base images and bundles alike)."""
    if name not in table:
        raise unknown(name, sorted(table))
    return table[name]


def recipe_hash(r: Recipe) -> str:
    """12 hex digits over everything that decides the image's content, and the builder version."""
    return digest("builder_version", BUILDER_VERSION, r)
