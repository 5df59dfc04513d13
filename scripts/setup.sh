#!/usr/bin/env bash
# Idempotent set-up of a Debian 12 machine for kha, as root: the Debian packages kha and its tests
# use, and a Python venv (.venv) with kha installed in it. Safe to run again: it installs only what
# is missing and reinstalls the venv only when pyproject.toml changed.
#
# Daemons that Debian would start on install (haproxy, keepalived, etcd, libvirtd, sshd, nginx) are
# kept from starting on this machine with a temporary policy-rc.d: kha starts its own, where it wants.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${KHA_VENV:-$ROOT/.venv}

APT_PACKAGES=(
  # Python toolchain for the venv (libvirt-python compiles against libvirt-dev)
  python3 python3-venv python3-dev gcc pkg-config libvirt-dev
  # remote execution tests: a real sshd
  openssh-server openssh-client
  # PKI and etcd: a real etcd, openssl to cross-check certificates
  etcd-server etcd-client openssl
  # load balancer configs are checked by their own daemons
  haproxy keepalived nginx-light libnginx-mod-stream
  # base images: mmdebstrap rootfs, ext4 image without loop devices, qcow2
  mmdebstrap qemu-utils e2fsprogs
  # offline Kubernetes bundle: Debian's Go builds the kubernetes source package; a static pause;
  # containerd to check the image archives import and run
  golang-go golang-github-modern-go-reflect2-dev libc6-dev dpkg-dev xz-utils containerd runc
  # harness: private libvirtd with qemu and LXC drivers inside a network namespace
  qemu-system-x86 libvirt-daemon libvirt-daemon-system libvirt-daemon-driver-qemu libvirt-daemon-driver-lxc
  iproute2 iptables netcat-openbsd util-linux ca-certificates
  # cloud images: UEFI firmware for qemu (OVMF), the NoCloud seed and the local cloud disk's ESP (vfat
  # without mounting: dosfstools + mtools), its partition table (sfdisk), its unified kernel image
  # (systemd's EFI stub + objcopy)
  ovmf dosfstools mtools fdisk systemd-boot-efi binutils
)

log() { printf '%s\n' "setup: $*" >&2; }

if [ "$(id -u)" != 0 ]; then
  log "run as root (apt-get and the harness's network namespaces need it)"
  exit 1
fi

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  log "installing ${missing[*]}"
  made_policy=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
    chmod 755 /usr/sbin/policy-rc.d
    made_policy=1
  fi
  trap '[ $made_policy = 1 ] && rm -f /usr/sbin/policy-rc.d' EXIT
  apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
  [ $made_policy = 1 ] && rm -f /usr/sbin/policy-rc.d
  trap - EXIT
fi

stamp="$VENV/.kha-installed"
want=$(cat "$ROOT/pyproject.toml" | sha256sum | cut -d' ' -f1)
if [ ! -x "$VENV/bin/python" ]; then
  log "creating venv $VENV"
  python3 -m venv "$VENV"
fi
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  log "installing kha into $VENV (log: $VENV/pip.log)"
  if ! { "$VENV/bin/python" -m pip install -q --upgrade pip \
         && "$VENV/bin/python" -m pip install -q -e "$ROOT[dev,harness]"; } > "$VENV/pip.log" 2>&1; then
    tail -n 30 "$VENV/pip.log" >&2
    log "pip install failed (full log: $VENV/pip.log)"
    exit 1
  fi
  echo "$want" > "$stamp"
fi
