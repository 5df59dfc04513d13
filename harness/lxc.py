"""libvirt-LXC nodes: system containers booting the image's rootfs through a per-node overlay.

A node's root is an overlayfs: lower = the image's rootfs (shared, read-only), upper/work = the
node's own directories in the state dir. First-boot files (identity, SSH, static address,
``/sbin/kha-init``) are written into the upper dir before the first start. The overlay is mounted
where libvirt_lxc looks for it: inside the private libvirtd's mount namespace in isolated mode, on the
host otherwise. Snapshots are copies of every node's upper dir; a revert destroys the nodes, puts the
copies back, remounts and starts them (the "fresh overlay" reset, ~1.5 s per boot).

Domain settings and why (../shared/MACHINE.md, "Kubernetes inside libvirt-LXC nodes"):
``<features><privnet/><capabilities policy='allow'/></features>`` and no ``<idmap>`` (nodes are
effectively privileged: kubelet, containerd and keepalived need it), ``/dev/kmsg`` as a hostdev
(kubelet reads it), ``/sbin/kha-init`` as init (cgroup namespace wrapper, see ``harness.firstboot``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import xml.etree.ElementTree as ET
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import libvirt

from core import waiting
from harness import hostcmd, libvirtxml
from harness.errors import CommandFailed, LibvirtError, Unsupported
from harness.firstboot import lxc_files, write_tree
from harness.keys import KeyPair
from harness.node import Context
from harness.spec import Driver, NodeSpec

log = logging.getLogger(__name__)

EMULATOR = "/usr/lib/libvirt/libvirt_lxc"

# Removes the cgroups a destroyed node leaves in hierarchies libvirt does not manage (pids,
# name=systemd, hugetlb: kha-init and systemd created them, libvirt only removes its own), deepest
# first. rmdir refuses a cgroup that still has tasks, so this can never disturb a running node.
# Removes the cgroups a destroyed node leaves in hierarchies libvirt does not manage (pids,
# name=systemd, hugetlb, the unified one: kha-init and systemd created them, libvirt only removes its
# own), deepest first. rmdir refuses a cgroup that still has tasks, so this can never disturb a running
# node. The unified hierarchy is not mounted for libvirtd (MACHINE.md: libvirt_lxc fails if it is), so
# it is mounted on a temporary directory for the duration. Exit 1 while something is left.
_CGROUP_CLEANUP = r"""
pattern=$1
v2=$(mktemp -d /tmp/.kha-cgroup2-XXXXXX)
mount -t cgroup2 cgroup2 "$v2" 2>/dev/null || true
left=0
for d in /sys/fs/cgroup/*/machine/$pattern "$v2"/machine/$pattern; do
    [ -d "$d" ] || continue
    find "$d" -depth -type d -exec rmdir {} + 2>/dev/null || true
    [ -d "$d" ] && left=1
done
rmdir "$v2/machine" 2>/dev/null || true
umount "$v2" 2>/dev/null || true
rmdir "$v2"
exit $left
"""


class LxcDriver:
    kind: Driver = "lxc"

    # -- preparing a node --------------------------------------------------------------------
    def prepare(self, ctx: Context, node: NodeSpec, host_key: KeyPair, root_key: KeyPair) -> None:
        base = ctx.node_dir(node.name)
        upper, work, merged = base / "upper", base / "work", base / "merged"
        for d in (upper, work, merged):
            d.mkdir(parents=True, exist_ok=True)
        rootfs = Path(ctx.state.image.rootfs)
        write_tree(upper, lxc_files(ctx.state.spec, node, host_key, root_key), like=rootfs)
        self._mount(ctx, node.name)

    def _mount(self, ctx: Context, node: str) -> None:
        base = ctx.node_dir(node)
        merged = base / "merged"
        if _is_mounted(ctx, merged):
            return
        opts = f"lowerdir={ctx.state.image.rootfs},upperdir={base / 'upper'},workdir={base / 'work'}"
        hostcmd.run([*ctx.daemon.mount_prefix(), "mount", "-t", "overlay", "-o", opts,
                     f"kha-{ctx.state.spec.cluster}-{node}", str(merged)])

    def _umount(self, ctx: Context, node: str) -> None:
        merged = ctx.node_dir(node) / "merged"

        def unmounted() -> str | None:
            if not _is_mounted(ctx, merged):
                return None
            try:
                hostcmd.run([*ctx.daemon.mount_prefix(), "umount", str(merged)])
            except CommandFailed as exc:
                # libvirt_lxc may still be exiting after a destroy and hold the mount for a moment.
                return str(exc)
            return "still mounted" if _is_mounted(ctx, merged) else None

        waiting.until(unmounted, timeout=10, interval=0.1, error=lambda last: LibvirtError(
            f"unmount the overlay of {node}", f"{merged} still mounted after 10 s: {last}"))

    def domain_xml(self, ctx: Context, node: NodeSpec) -> str:
        st = ctx.state
        dom = ET.Element("domain", {"type": "lxc"})
        ET.SubElement(dom, "name").text = st.nodes[node.name].domain
        dom.append(libvirtxml.metadata(libvirtxml.Mark("node", st.spec.cluster, node.name, str(st.state_dir))))
        ET.SubElement(dom, "memory", {"unit": "MiB"}).text = str(node.memory_mib)
        ET.SubElement(dom, "vcpu").text = str(node.vcpus)
        os_el = ET.SubElement(dom, "os")
        ET.SubElement(os_el, "type").text = "exe"
        ET.SubElement(os_el, "init").text = "/sbin/kha-init"
        features = ET.SubElement(dom, "features")
        ET.SubElement(features, "privnet")
        ET.SubElement(features, "capabilities", {"policy": "allow"})
        ET.SubElement(dom, "clock", {"offset": "utc"})
        for event, action in (("on_poweroff", "destroy"), ("on_reboot", "restart"), ("on_crash", "destroy")):
            ET.SubElement(dom, event).text = action
        devices = ET.SubElement(dom, "devices")
        ET.SubElement(devices, "emulator").text = EMULATOR
        fs = ET.SubElement(devices, "filesystem", {"type": "mount", "accessmode": "passthrough"})
        ET.SubElement(fs, "source", {"dir": str(ctx.node_dir(node.name) / "merged")})
        ET.SubElement(fs, "target", {"dir": "/"})
        iface = ET.SubElement(devices, "interface", {"type": "network"})
        ET.SubElement(iface, "source", {"network": st.network})
        ET.SubElement(iface, "mac", {"address": st.nodes[node.name].mac})
        ET.SubElement(devices, "console", {"type": "pty"})
        kmsg = ET.SubElement(devices, "hostdev", {"mode": "capabilities", "type": "misc"})
        ET.SubElement(ET.SubElement(kmsg, "source"), "char").text = "/dev/kmsg"
        return libvirtxml.to_string(dom)

    # -- operations --------------------------------------------------------------------------
    def power_off(self, ctx: Context, node: str) -> None:
        domain = ctx.state.nodes[node].domain
        controller = kill_domain(ctx.domain(node))
        if controller is not None:
            cleanup_cgroups(ctx.daemon.mount_prefix(), domain, controller, wait=5.0)

    def set_link(self, ctx: Context, node: str, up: bool) -> None:
        """Take the host side of the node's veth down/up: the node sees NO-CARRIER, like a pulled cable.

        (libvirt's LXC driver cannot change an interface's link state live.)
        """
        dom = ctx.domain(node)
        if not dom.isActive():
            raise Unsupported(f"node {node} is powered off: its link cannot change")
        dev = libvirtxml.interface_target(dom.XMLDesc(0), ctx.state.nodes[node].mac)
        if dev is None:
            raise LibvirtError(f"link {'up' if up else 'down'} {node}", "the running domain has no host-side device")
        ns = ctx.state.netns
        argv = (["ip", "-n", ns] if ns else ["ip"]) + ["link", "set", "dev", dev, "up" if up else "down"]
        hostcmd.run(argv)

    def snapshot(self, ctx: Context, name: str) -> None:
        """Freeze every node, copy its upper dir, thaw: a consistent point across the topology."""
        target = _snapshot_dir(ctx, name)
        if target.exists():
            shutil.rmtree(target)
        doms = [ctx.domain(n) for n in ctx.state.nodes]
        frozen = []
        try:
            for dom in doms:
                if dom.isActive():
                    dom.suspend()
                    frozen.append(dom)
            for node in ctx.state.nodes:
                (target / node).mkdir(parents=True)
                hostcmd.run(["cp", "-a", "--reflink=auto", str(ctx.node_dir(node) / "upper"), str(target / node)],
                            timeout=600)
        finally:
            for dom in frozen:
                dom.resume()

    def revert(self, ctx: Context, name: str) -> None:
        source = _snapshot_dir(ctx, name)
        if not source.is_dir():
            raise Unsupported(f"no snapshot {name!r} (saved: {', '.join(ctx.state.snapshots) or 'none'})")
        nodes = list(ctx.state.nodes)

        def restore(node: str) -> None:
            self._umount(ctx, node)
            base = ctx.node_dir(node)
            for d in ("upper", "work"):
                if (base / d).exists():
                    shutil.rmtree(base / d)
            hostcmd.run(["cp", "-a", "--reflink=auto", str(source / node / "upper"), str(base / "upper")], timeout=600)
            (base / "work").mkdir()
            self._mount(ctx, node)

        # All nodes go down before any comes back, so no node talks to a half-reverted topology.
        _each(nodes, lambda node: self.power_off(ctx, node))
        _each(nodes, restore)
        _each(nodes, lambda node: ctx.domain(node).create())

    def delete_snapshot(self, ctx: Context, name: str) -> None:
        shutil.rmtree(_snapshot_dir(ctx, name), ignore_errors=True)


def cleanup_cgroups(mount_prefix: list[str], domain: str, controller: int | None, wait: float) -> None:
    """Remove the cgroups a destroyed LXC domain leaves (retrying while its processes exit).

    libvirt names a container's cgroup ``lxc-<controller PID>-<domain>.libvirt-lxc``. With the PID only
    that run's cgroups are touched (a restarted node has a new PID); without it, every run's — only for
    a domain that is gone for good. Domain names hold no glob characters (spec validation).
    """
    pattern = f"lxc-{controller if controller is not None else '*'}-{domain}.libvirt-lxc"
    argv = [*mount_prefix, "/bin/sh", "-c", _CGROUP_CLEANUP, "kha-cgroup-cleanup", pattern]
    def removed() -> str | None:
        try:
            hostcmd.run(argv)
        except CommandFailed as exc:
            return str(exc)
        return None

    try:
        waiting.until(removed, timeout=wait, interval=0.1, error=TimeoutError)
    except TimeoutError:
        log.warning("cgroups of %s still busy after destroy; leaving them", domain)


def kill_domain(dom: libvirt.virDomain) -> int | None:
    """Hard power-off of an LXC domain in milliseconds: SIGKILL its init, then let libvirt tidy up.

    Killing a PID namespace's init makes the kernel SIGKILL everything in it (pid_namespaces(7)).
    ``virDomainDestroy`` alone first sends SIGTERM to every task in the node's cgroups and waits ~2 s
    before SIGKILL, because systemd ignores SIGTERM: that is not a power cut. Returns the PID of the
    domain's libvirt_lxc controller (its ID, part of its cgroup names), or None if it was not running.
    """
    if not dom.isActive():
        return None
    controller = int(dom.ID())
    if dom.info()[0] == libvirt.VIR_DOMAIN_PAUSED:
        dom.resume()  # a frozen init cannot take the SIGKILL until the freezer thaws it
    init = _init_pid(controller, dom.name())
    if init is not None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(init, signal.SIGKILL)
        # The kernel takes the namespace down in a moment; libvirt's destroy below is the fallback.
        with contextlib.suppress(TimeoutError):
            waiting.until(lambda: "running" if dom.isActive() else None, timeout=2.0, interval=0.02,
                          error=TimeoutError)
    if dom.isActive():
        dom.destroy()
    return controller


def _each(nodes: list[str], fn: Callable[[str], object]) -> None:
    """``fn`` on every node in parallel threads; the first exception is raised once all are done."""
    with ThreadPoolExecutor(max_workers=max(1, len(nodes))) as pool:
        futures = [pool.submit(fn, node) for node in nodes]
    for f in futures:
        f.result()


def _init_pid(controller: int, domain: str) -> int | None:
    """The node's init: the child of its libvirt_lxc controller (PID = the domain's ID), checked by name."""
    try:
        argv = Path(f"/proc/{controller}/cmdline").read_bytes().split(b"\0")
        if b"--name" not in argv or argv[argv.index(b"--name") + 1].decode() != domain:
            return None
        children: list[int] = []
        for task in Path(f"/proc/{controller}/task").iterdir():
            children += [int(p) for p in (task / "children").read_text().split()]
    except (OSError, IndexError, ValueError):
        return None
    return children[0] if len(children) == 1 else None


def _snapshot_dir(ctx: Context, name: str) -> Path:
    return ctx.state.state_dir / "snapshots" / name


def _is_mounted(ctx: Context, path: Path) -> bool:
    """Is ``path`` a mount point where libvirt sees it (its daemon's mount namespace, or here)?"""
    mountinfo = ctx.daemon.mountinfo()
    if mountinfo is None:
        return False
    try:
        text = mountinfo.read_text()
    except OSError:
        return False
    target = str(path)
    return any(line.split()[4] == target for line in text.splitlines() if len(line.split()) > 4)
