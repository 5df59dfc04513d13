"""First-boot configuration of a node: the files that turn the shared base image into one machine.

Per node: hostname, /etc/hosts, the static address (a systemd-networkd file for LXC nodes; VMs get
the kernel's ``ip=`` argument instead), its own ed25519 SSH host key with an sshd drop-in that serves
only that key, and the cluster's root key in /root/.ssh/authorized_keys. LXC nodes also get
``/sbin/kha-init``, their PID-1 wrapper. ``write_tree`` puts the files into a directory (an LXC node's
overlay upper dir, or a VM's seed-disk tree) with the directory modes of the base image, because an
upper dir's directory attributes win over the image's, and ``cp -a`` copies them onto the VM's root.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from harness.keys import KeyPair
from harness.spec import NodeSpec, TopologySpec

# The PID-1 wrapper of every LXC node (../shared/MACHINE.md, "Kubernetes inside libvirt-LXC nodes",
# point 1, and points 3 and 4 for the /proc/sys values). libvirt-lxc 9.0 gives a container no cgroup
# namespace and bind-mounts the host's whole v1 hierarchies, so systemd inside would build its slices in
# the host's root cgroups, escape the node's limits and keep running after ``virsh destroy``. This
# script (1) joins the node's cgroup (the path libvirt chose for the memory controller) in every
# hierarchy where libvirt did not put it — the v1 ones and, on a hybrid host, the unified one, which
# systemd uses to track units —, (2) opens the node's device cgroup, (3) enters a new cgroup namespace
# with ``unshare --cgroup`` (which execs, so we stay PID 1) and (4) remounts the hierarchies, now rooted
# at the node, then makes / rshared and execs systemd. kubelet 1.20 insists on three host-global sysctls
# that a container cannot set: small files bound over those /proc/sys entries show the values it wants
# without touching the host.
KHA_INIT = r"""#!/bin/sh
# kha-init: PID 1 of a kha libvirt-LXC node, written by the kha harness (harness/firstboot.py).
# Why each step: ../shared/MACHINE.md, "Kubernetes inside libvirt-LXC nodes", points 1, 3 and 4.
set -eu
PATH=/usr/sbin:/usr/bin:/sbin:/bin
export PATH

stage=1
if [ "${1:-}" = --in-cgroupns ]; then
    stage=2
    shift
fi

has_v1() { grep -qv '^0::' /proc/self/cgroup; }
has_v2() { grep -q '^0::' /proc/self/cgroup; }

if [ $stage = 1 ]; then
    # The node's cgroup: where libvirt put us for memory (v1), else in the unified hierarchy (v2).
    node=$(sed -n 's/^[0-9]*:memory:\(.*\)$/\1/p' /proc/self/cgroup)
    [ -n "$node" ] || node=$(sed -n 's/^0::\(.*\)$/\1/p' /proc/self/cgroup)
    tmp=/dev/.kha-cgroup
    mkdir -p "$tmp"
    while IFS=: read -r _id ctrls path; do
        case $ctrls in
            "") mount -t cgroup2 cgroup2 "$tmp" ;;
            name=*) mount -t cgroup -o "none,$ctrls" cgroup "$tmp" ;;
            *) mount -t cgroup -o "$ctrls" cgroup "$tmp" ;;
        esac
        if [ "$path" != "$node" ]; then
            # New v1 cpuset cgroups start empty and refuse tasks: copy cpus/mems down the path.
            parent=$tmp
            for part in $(echo "$node" | tr '/' ' '); do
                mkdir -p "$parent/$part"
                if [ -f "$parent/cpuset.cpus" ] && [ -z "$(cat "$parent/$part/cpuset.cpus")" ]; then
                    cat "$parent/cpuset.cpus" > "$parent/$part/cpuset.cpus"
                    cat "$parent/cpuset.mems" > "$parent/$part/cpuset.mems"
                fi
                parent=$parent/$part
            done
            echo 1 > "$tmp$node/cgroup.procs"
        fi
        if [ -f "$tmp$node/devices.allow" ]; then
            echo a > "$tmp$node/devices.allow"
        fi
        umount "$tmp"
    done < /proc/self/cgroup
    rmdir "$tmp"
    exec unshare --cgroup "$0" --in-cgroupns "$@"
fi

# Stage 2, in the node's own cgroup namespace: mount the hierarchies again, now rooted at the node.
umount -R /sys/fs/cgroup 2>/dev/null || true
if has_v1; then
    mount -t tmpfs -o mode=755,nosuid,nodev,noexec cgroup /sys/fs/cgroup
    grep -v '^0::' /proc/self/cgroup | while IFS=: read -r _id ctrls _path; do
        opts=$ctrls dir=$ctrls
        case $ctrls in name=*) opts="none,$ctrls" dir=${ctrls#name=} ;; esac
        mkdir -p "/sys/fs/cgroup/$dir"
        mount -t cgroup -o "$opts" cgroup "/sys/fs/cgroup/$dir"
        case $dir in *,*)
            for c in $(echo "$dir" | tr ',' ' '); do ln -sfn "$dir" "/sys/fs/cgroup/$c"; done ;;
        esac
    done
    if has_v2; then
        # Hybrid host: systemd tracks units in the unified hierarchy. Unmounted, it would mount the
        # host's *root* there itself and every node would share (and fight over) /system.slice.
        mkdir -p /sys/fs/cgroup/unified
        mount -t cgroup2 -o nosuid,nodev,noexec cgroup2 /sys/fs/cgroup/unified
    fi
else
    mount -t cgroup2 -o nosuid,nodev,noexec cgroup2 /sys/fs/cgroup
fi

for entry in vm/overcommit_memory kernel/panic kernel/panic_on_oops; do
    value=/etc/kha/proc-sys/$entry
    if [ -f "$value" ] && [ -f "/proc/sys/$entry" ]; then
        mount --bind "$value" "/proc/sys/$entry"
    fi
done

mount --make-rshared /
exec /sbin/init "$@"
"""

# runc in front of Debian's runc on LXC nodes. This host refuses a negative oom_score_adj (and a raised
# hard NOFILE limit) even to root, and runc then fails every pod sandbox with "can't get final child's
# PID from pipe: EOF" (shared/MACHINE.md). containerd's shim finds runc on PATH, and /usr/local/sbin
# comes first, so this clamps the bundle's config.json (create/run) or the exec process file, then execs
# the real runc. The installer stays the same for VMs, LXC nodes and real machines.
RUNC_WRAPPER = """#!/usr/bin/python3
# kha harness (LXC nodes only): clamp process.oomScoreAdj >= 0 and RLIMIT_NOFILE <= our hard limit.
import json, os, resource, sys

REAL = os.environ.get("KHA_RUNC_REAL", "/usr/sbin/runc")


def clamp(proc):
    if proc.get("oomScoreAdj", 0) < 0:
        proc["oomScoreAdj"] = 0
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    for r in proc.get("rlimits") or []:
        if r.get("type") == "RLIMIT_NOFILE" and hard != resource.RLIM_INFINITY:
            r["hard"] = min(r.get("hard", hard), hard)
            r["soft"] = min(r.get("soft", hard), r["hard"])


def edit(path, process_of):
    try:
        with open(path) as fh:
            doc = json.load(fh)
    except (OSError, ValueError):
        return
    clamp(process_of(doc))
    with open(path + ".kha", "w") as fh:
        json.dump(doc, fh)
    os.replace(path + ".kha", path)


args = sys.argv[1:]
for i, arg in enumerate(args):
    value = args[i + 1] if i + 1 < len(args) else None
    if arg.startswith("--bundle="):
        arg, value = "--bundle", arg.split("=", 1)[1]
    if arg.startswith("--process="):
        arg, value = "--process", arg.split("=", 1)[1]
    if arg in ("--bundle", "-b") and value:
        edit(os.path.join(value, "config.json"), lambda d: d.setdefault("process", {}))
    elif arg in ("--process", "-p") and value:
        edit(value, lambda d: d)
os.execv(REAL, [REAL, *args])
"""

# Values kubelet 1.20 checks (pkg/kubelet/cm/container_manager_linux.go, setupKernelTunables).
_PROC_SYS = {"vm/overcommit_memory": "1\n", "kernel/panic": "10\n", "kernel/panic_on_oops": "1\n"}


@dataclass(frozen=True)
class File:
    """A file to place in a node, by its absolute path inside the node."""

    path: str
    content: bytes
    mode: int = 0o644


def node_files(spec: TopologySpec, node: NodeSpec, host_key: KeyPair, root_key: KeyPair) -> list[File]:
    """The per-node files every driver writes (identity, names, SSH)."""
    hosts = ["127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback"]
    hosts += [f"{n.address}\t{n.name}" for n in spec.nodes if n.name != str(n.address)]
    return [
        File("/etc/hostname", f"{node.name}\n".encode()),
        File("/etc/hosts", ("\n".join(hosts) + "\n").encode()),
        File("/etc/ssh/ssh_host_ed25519_key", host_key.private.encode(), 0o600),
        File("/etc/ssh/ssh_host_ed25519_key.pub", f"{host_key.public}\n".encode()),
        # Serve only the pinned key: the image ships without host keys, and a stray generated RSA or
        # ECDSA key could be offered first to a client that does not know our pins.
        File("/etc/ssh/sshd_config.d/20-kha-harness.conf",
             b"# kha harness: this node's pinned host key only\nHostKey /etc/ssh/ssh_host_ed25519_key\n"),
        File("/root/.ssh/authorized_keys", f"{root_key.public}\n".encode(), 0o600),
    ]


def login_user_script(user: str) -> str:
    """The shell script that makes ``user`` what an inventory's ``ansible_user`` is on a real machine: a
    login with the cluster key (root's authorized_keys) and sudo without a password (``sudo -n``).
    Run as root over SSH once the node is up (any driver); running it again changes nothing."""
    return f"""set -eu
u={user}
id -u "$u" >/dev/null 2>&1 || useradd --create-home --shell /bin/bash "$u"
home=$(getent passwd "$u" | cut -d: -f6)
install -d -m 0700 -o "$u" -g "$u" "$home/.ssh"
install -m 0600 -o "$u" -g "$u" /root/.ssh/authorized_keys "$home/.ssh/authorized_keys"
printf '%s ALL=(ALL:ALL) NOPASSWD: ALL\\n' "$u" > /etc/sudoers.d/kha-login-user
chmod 0440 /etc/sudoers.d/kha-login-user
visudo -c -q -f /etc/sudoers.d/kha-login-user
"""


def network_file(spec: TopologySpec, node: NodeSpec) -> File:
    """systemd-networkd configuration for eth0 (LXC nodes: there is no kernel command line)."""
    text = (
        "# kha harness: this node's static address on the topology network\n"
        "[Match]\nName=eth0\n\n"
        "[Network]\n"
        f"Address={node.address}/{spec.network.prefixlen}\n"
        f"Gateway={spec.gateway}\n"
        "LinkLocalAddressing=no\nIPv6AcceptRA=no\n"
    )
    return File("/etc/systemd/network/10-kha-eth0.network", text.encode())


def lxc_files(spec: TopologySpec, node: NodeSpec, host_key: KeyPair, root_key: KeyPair) -> list[File]:
    files = [*node_files(spec, node, host_key, root_key), network_file(spec, node),
             File("/sbin/kha-init", KHA_INIT.encode(), 0o755),
             File("/usr/local/sbin/runc", RUNC_WRAPPER.encode(), 0o755)]
    files += [File(f"/etc/kha/proc-sys/{entry}", value.encode()) for entry, value in _PROC_SYS.items()]
    return files


def write_tree(root: Path, files: Iterable[File], like: Path | None = None) -> None:
    """Write ``files`` under ``root``; missing directories copy mode and owner from ``like`` (the image)."""
    for f in files:
        rel = Path(f.path.lstrip("/"))
        if like is not None:
            # /sbin is a symlink to usr/sbin in a merged-/usr image: a real /sbin directory in an
            # overlay upper dir would hide the image's whole /usr/sbin.
            rel = resolve_in(like, rel.parent) / rel.name
        target = root / rel
        _make_parents(root, rel.parent, like)
        tmp = target.with_name(f".{target.name}.kha-tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, f.mode)
        with os.fdopen(fd, "wb") as fh:
            fh.write(f.content)
        os.chmod(tmp, f.mode)
        os.replace(tmp, target)


def resolve_in(image: Path, rel: Path) -> Path:
    """``rel`` with every symlink inside ``image`` followed, as a path relative to ``image``."""
    parts = list(rel.parts)
    resolved: list[str] = []
    hops = 0
    while parts:
        part = parts.pop(0)
        if part in ("", "."):
            continue
        if part == "..":
            if resolved:
                resolved.pop()
            continue
        candidate = image.joinpath(*resolved, part)
        if candidate.is_symlink():
            hops += 1
            if hops > 40:
                raise OSError(f"too many symlinks resolving {rel} in {image}")
            target = Path(os.readlink(candidate))
            if target.is_absolute():
                resolved = []
            parts = list(target.parts[1:] if target.is_absolute() else target.parts) + parts
            continue
        resolved.append(part)
    return Path(*resolved) if resolved else Path()


def _make_parents(root: Path, rel_dir: Path, like: Path | None) -> None:
    current = root
    for part in rel_dir.parts:
        current = current / part
        if current.is_dir():
            continue
        model = (like / current.relative_to(root)) if like is not None else None
        if model is not None and model.is_dir():
            st = model.stat()
            current.mkdir(mode=0o700)
            os.chown(current, st.st_uid, st.st_gid)
            os.chmod(current, st.st_mode & 0o7777)
        else:
            current.mkdir(mode=0o755)
            os.chmod(current, 0o755)
