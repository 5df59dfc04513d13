"""qemu VM nodes: a qcow2 overlay per node, direct kernel boot, first-boot files from a seed disk.

- disk: ``qemu-img create -f qcow2 -b BASE -F qcow2 node.qcow2`` (milliseconds), where BASE is the
  image's disk or the harness's derived one (``harness.seed``);
- boot: the image's kernel and initrd with ``root=/dev/vda … ip=ADDR::GW:MASK:HOST:eth0:off`` (static
  address via systemd-network-generator, no DHCP) and ``systemd.hostname=``;
- per-node files: a read-only ``kha-seed`` ext4 disk (vdb), copied in by ``kha-seed.service``;
- a cloud image instead boots its own bootloader under OVMF (UEFI; ``harness.image.OVMF_FIRMWARE``) or
  SeaBIOS, and its per-node files are a NoCloud ``cidata`` disk (vdb) that cloud-init reads
  (``harness.cloudinit``): hostname, static address by MAC, root key, pinned host key;
- accelerator: KVM only when a probe boot proved it works, else TCG with the ``qemu64`` CPU model
  (../shared/MACHINE.md, "Virtualisation": ``-cpu max`` costs ~7 s more per boot) and the vCPUs of
  all VMs capped to the host's cores (see ``QemuDriver.vcpus``);
- snapshots: libvirt internal snapshots of all VMs, taken while all are paused (create ~0.2 s, revert
  ~2.3 s; MACHINE.md "libvirt"); a revert restores memory too, so the VMs resume where they were.
"""

from __future__ import annotations

import logging
import os
import xml.etree.ElementTree as ET
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import libvirt

from harness import cloudinit, hostcmd, libvirtxml
from harness.errors import LibvirtError, Unsupported
from harness.firstboot import node_files
from harness.image import OVMF_FIRMWARE
from harness.keys import KeyPair
from harness.node import Context
from harness.seed import make_seed_disk
from harness.spec import Driver, NodeSpec

log = logging.getLogger(__name__)

EMULATOR = "/usr/bin/qemu-system-x86_64"


class QemuDriver:
    kind: Driver = "qemu"

    def __init__(self, base_disk: Path, accel: str) -> None:
        self.base_disk = base_disk
        self.accel = accel

    def prepare(self, ctx: Context, node: NodeSpec, host_key: KeyPair, root_key: KeyPair) -> None:
        base = ctx.node_dir(node.name)
        base.mkdir(parents=True, exist_ok=True)
        disk = base / "disk.qcow2"
        disk.unlink(missing_ok=True)
        hostcmd.run(["qemu-img", "create", "-q", "-f", "qcow2", "-b", str(self.base_disk), "-F", "qcow2", str(disk)])
        if ctx.state.image.is_cloud_image:
            mac = ctx.state.nodes[node.name].mac
            cloudinit.make_seed_disk(cloudinit.seed_files(ctx.state.spec, node, mac, host_key, root_key),
                                     base / "seed.img")
            return
        make_seed_disk(node_files(ctx.state.spec, node, host_key, root_key), base / "seed.img",
                       like=Path(ctx.state.image.rootfs))

    def cmdline(self, ctx: Context, node: NodeSpec) -> str:
        spec = ctx.state.spec
        ip = f"ip={node.address}::{spec.gateway}:{spec.network.netmask}:{node.name}:eth0:off"
        # quiet: every console character is an emulated UART write; under TCG that is ~2 s of a 20 s boot.
        # Errors still reach console.log. KHA_QEMU_CMDLINE_EXTRA adds words (e.g. for debugging).
        extra = [ip, f"systemd.hostname={node.name}", "quiet",
                 *os.environ.get("KHA_QEMU_CMDLINE_EXTRA", "").split()]
        base = ctx.state.image.kernel_cmdline.split()
        for required in ("root=/dev/vda", "console=ttyS0", "net.ifnames=0"):
            if not any(w.split("=")[0] == required.split("=")[0] for w in base):
                base.append(required)
        return " ".join([*base, *extra])

    def vcpus(self, ctx: Context, node: NodeSpec) -> int:
        """The node's vCPUs; under TCG capped so all VMs together fit the host's cores.

        TCG vCPUs are host threads: with more of them than cores, a guest spinning on a lock waits for a
        descheduled sibling vCPU. Measured here (2 cores, m-master = 4 VMs × 2 vCPUs): SSH-ready after
        96 s; with 1 vCPU each: 52 s. ``KHA_TCG_MAX_VCPUS`` sets the cap explicitly. KVM keeps the spec.
        """
        if self.accel != "tcg":
            return node.vcpus
        explicit = os.environ.get("KHA_TCG_MAX_VCPUS")
        if explicit:
            cap = int(explicit)
        else:
            cores = len(os.sched_getaffinity(0))
            cap = cores // max(1, len(ctx.state.spec.nodes))
        return max(1, min(node.vcpus, cap))

    def domain_xml(self, ctx: Context, node: NodeSpec) -> str:
        st = ctx.state
        base = ctx.node_dir(node.name)
        dom = ET.Element("domain", {"type": "kvm" if self.accel == "kvm" else "qemu"})
        ET.SubElement(dom, "name").text = st.nodes[node.name].domain
        dom.append(libvirtxml.metadata(libvirtxml.Mark("node", st.spec.cluster, node.name, str(st.state_dir))))
        ET.SubElement(dom, "memory", {"unit": "MiB"}).text = str(node.memory_mib)
        ET.SubElement(dom, "vcpu").text = str(self.vcpus(ctx, node))
        os_el = ET.SubElement(dom, "os")
        ET.SubElement(os_el, "type", {"arch": "x86_64", "machine": "pc"}).text = "hvm"
        # A cloud image boots its disk's own bootloader: type="rom" is qemu's -bios, OVMF without an NVRAM
        # file (see harness.image.OVMF_FIRMWARE); a BIOS image boots with qemu's default SeaBIOS.
        if st.image.boot == "kernel":
            ET.SubElement(os_el, "kernel").text = st.image.kernel
            ET.SubElement(os_el, "initrd").text = st.image.initrd
            ET.SubElement(os_el, "cmdline").text = self.cmdline(ctx, node)
        elif st.image.boot == "uefi":
            ET.SubElement(os_el, "loader", {"readonly": "yes", "type": "rom"}).text = str(OVMF_FIRMWARE)
        features = ET.SubElement(dom, "features")
        ET.SubElement(features, "acpi")  # graceful shutdown/reboot need it (MACHINE.md, "libvirt")
        if self.accel == "kvm":
            ET.SubElement(dom, "cpu", {"mode": "host-passthrough"})
        else:
            cpu = ET.SubElement(dom, "cpu", {"mode": "custom", "match": "exact", "check": "none"})
            ET.SubElement(cpu, "model", {"fallback": "forbid"}).text = "qemu64"
        ET.SubElement(dom, "clock", {"offset": "utc"})
        for event, action in (("on_poweroff", "destroy"), ("on_reboot", "restart"), ("on_crash", "destroy")):
            ET.SubElement(dom, event).text = action
        devices = ET.SubElement(dom, "devices")
        ET.SubElement(devices, "emulator").text = EMULATOR
        # cache=unsafe: throwaway test disks, and TCG guests are slow enough without flushes.
        root = ET.SubElement(devices, "disk", {"type": "file", "device": "disk"})
        ET.SubElement(root, "driver", {"name": "qemu", "type": "qcow2", "cache": "unsafe", "discard": "unmap"})
        ET.SubElement(root, "source", {"file": str(base / "disk.qcow2")})
        ET.SubElement(root, "target", {"dev": "vda", "bus": "virtio"})
        if st.image.is_cloud_image:
            ET.SubElement(root, "boot", {"order": "1"})  # the firmware boots this disk, never the seed
        seed = ET.SubElement(devices, "disk", {"type": "file", "device": "disk", "snapshot": "no"})
        ET.SubElement(seed, "driver", {"name": "qemu", "type": "raw"})
        ET.SubElement(seed, "source", {"file": str(base / "seed.img")})
        ET.SubElement(seed, "target", {"dev": "vdb", "bus": "virtio"})
        ET.SubElement(seed, "readonly")
        iface = ET.SubElement(devices, "interface", {"type": "network"})
        ET.SubElement(iface, "source", {"network": st.network})
        ET.SubElement(iface, "mac", {"address": st.nodes[node.name].mac})
        ET.SubElement(iface, "model", {"type": "virtio"})
        serial = ET.SubElement(devices, "serial", {"type": "pty"})
        ET.SubElement(serial, "log", {"file": str(base / "console.log"), "append": "on"})
        ET.SubElement(serial, "target", {"port": "0"})
        console = ET.SubElement(devices, "console", {"type": "pty"})
        ET.SubElement(console, "target", {"type": "serial", "port": "0"})
        ET.SubElement(devices, "memballoon", {"model": "none"})
        return libvirtxml.to_string(dom)

    def power_off(self, ctx: Context, node: str) -> None:
        dom = ctx.domain(node)
        if dom.isActive():
            try:
                dom.destroy()  # qemu is killed at once: a power cut for the guest
            except libvirt.libvirtError as exc:
                raise LibvirtError(f"power off {node}", str(exc)) from exc

    def set_link(self, ctx: Context, node: str, up: bool) -> None:
        """virtio link state via the monitor (``set_link``): the guest sees the carrier drop."""
        st = ctx.state
        iface = ET.Element("interface", {"type": "network"})
        ET.SubElement(iface, "mac", {"address": st.nodes[node].mac})
        ET.SubElement(iface, "source", {"network": st.network})
        ET.SubElement(iface, "model", {"type": "virtio"})
        ET.SubElement(iface, "link", {"state": "up" if up else "down"})
        try:
            ctx.domain(node).updateDeviceFlags(libvirtxml.to_string(iface), libvirt.VIR_DOMAIN_AFFECT_LIVE)
        except libvirt.libvirtError as exc:
            raise LibvirtError(f"link {'up' if up else 'down'} {node}", str(exc)) from exc

    def snapshot(self, ctx: Context, name: str) -> None:
        """Pause all VMs, take an internal snapshot of each (memory included), resume all."""
        doms = [ctx.domain(n) for n in ctx.state.nodes]
        for dom in doms:
            _delete_snapshot(dom, name)
        paused = []
        try:
            for dom in doms:
                if dom.isActive():
                    dom.suspend()
                    paused.append(dom)
            xml = ET.Element("domainsnapshot")
            ET.SubElement(xml, "name").text = name
            ET.SubElement(xml, "description").text = f"kha harness snapshot of cluster {ctx.state.spec.cluster}"
            text = libvirtxml.to_string(xml)
            with ThreadPoolExecutor(max_workers=len(doms) or 1) as pool:
                list(pool.map(lambda d: d.snapshotCreateXML(text, 0), doms))
        except libvirt.libvirtError as exc:
            raise LibvirtError(f"snapshot {name}", str(exc)) from exc
        finally:
            for dom in paused:
                dom.resume()

    def revert(self, ctx: Context, name: str) -> None:
        doms = [ctx.domain(n) for n in ctx.state.nodes]
        snaps = []
        for dom in doms:
            try:
                snaps.append(dom.snapshotLookupByName(name, 0))
            except libvirt.libvirtError as exc:
                raise Unsupported(f"no snapshot {name!r} on {dom.name()}") from exc
        # Pause everything first, so no VM runs against peers that are already reverted.
        for dom in doms:
            if dom.isActive() and dom.info()[0] == libvirt.VIR_DOMAIN_RUNNING:
                dom.suspend()
        try:
            with ThreadPoolExecutor(max_workers=len(doms) or 1) as pool:
                list(pool.map(lambda ds: ds[0].revertToSnapshot(ds[1], libvirt.VIR_DOMAIN_SNAPSHOT_REVERT_PAUSED),
                              zip(doms, snaps, strict=True)))
            for dom in doms:
                dom.resume()
        except libvirt.libvirtError as exc:
            raise LibvirtError(f"revert {name}", str(exc)) from exc

    def delete_snapshot(self, ctx: Context, name: str) -> None:
        for node in ctx.state.nodes:
            _delete_snapshot(ctx.domain(node), name)


def _delete_snapshot(dom: libvirt.virDomain, name: str) -> None:
    try:
        snap = dom.snapshotLookupByName(name, 0)
    except libvirt.libvirtError:
        return
    snap.delete(0)
