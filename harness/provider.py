"""The libvirt provider: boots a ``TopologySpec`` into a running ``Cluster``, and tears clusters down.

Talos' shape: request (``TopologySpec``) → result (``Cluster``, a handle with operations) → state
(``state.json`` in the cluster's state dir, from which ``Cluster.load`` rebuilds the handle). kind's
shape: one provider, node runtimes behind a small driver interface (``harness.node.NodeDriver``: LXC
or qemu), creation as an ordered list of steps each reported as one ✓/✗ line with its seconds, and a
cluster that failed to come up is deleted unless the caller asks to keep it.

``up`` order: image → (VM base disk, accelerator) → keys, known_hosts, ssh_config → libvirt (private
daemon in a new network namespace when isolated; with ``connect``, a libvirtd named by URI, checked first:
it answers, and it sees the image and the state dir at the same paths, ``harness.daemon``) → network →
node roots → define + start all domains in parallel → wait for a real SSH login on every node, reached
the way the libvirt kind says (``harness.ssh.Reach``). ``teardown`` removes exactly what carries this
cluster's kha mark (domains, network), the mounts under its state dir, its daemon and namespace, then
the state dir — and nothing else.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

import libvirt
import paramiko

from core.progress import Emit, Steps
from harness import accel, daemon, firstboot, hostcmd, image, libvirtxml, netns, paths, seed, ssh
from harness.daemon import AnyLibvirt, PrivateLibvirt, RemoteLibvirt, SystemLibvirt
from harness.errors import DaemonError, HarnessError, LibvirtError, StateError, Unsupported
from harness.keys import KeyPair, known_hosts_line, write_private
from harness.lxc import LxcDriver, cleanup_cgroups, kill_domain
from harness.node import Context, NodeDriver
from harness.qemu import QemuDriver
from harness.spec import TopologySpec
from harness.state import STATE_FILE, ClusterState, NodeState

log = logging.getLogger(__name__)

T = TypeVar("T")

# Seconds to wait for SSH on every node: LXC nodes answer in ~1.5 s; TCG VMs booting in parallel on
# two cores take ~20 s of CPU each (MACHINE.md). ``KHA_SSH_TIMEOUT`` overrides.
SSH_TIMEOUT = {"lxc": 60.0, "qemu": 600.0}

IDENTITY = "id_ed25519"
KNOWN_HOSTS = "known_hosts"
SSH_CONFIG = "ssh_config"

def _parallel(fn: Callable[[str], T], items: Sequence[str]) -> dict[str, T]:
    """Run ``fn`` on every item in threads; the first failure is raised after all have finished."""
    if not items:
        return {}
    with ThreadPoolExecutor(max_workers=len(items)) as pool:
        futures = {item: pool.submit(fn, item) for item in items}
    return {item: f.result() for item, f in futures.items()}


def _ignore_libvirt_error(_ctx: object, _err: object) -> None:
    """libvirt-python prints every error to stderr by default; ours are raised as exceptions instead."""


libvirt.registerErrorHandler(_ignore_libvirt_error, None)


def _open(uri: str) -> libvirt.virConnect:
    try:
        return libvirt.open(uri)
    except libvirt.libvirtError as exc:
        raise LibvirtError(f"connect to {uri}", str(exc)) from exc


class Provider:
    """Creates clusters. ``emit`` receives the ✓/✗ progress lines (default: the log).

    ``isolated``: a private libvirtd per cluster; ``connect``: a libvirt URI kha did not start (``kha up
    --connect``), which wins over ``isolated``; neither: the system libvirt.
    """

    def __init__(self, *, isolated: bool = True, connect: str | None = None, emit: Emit | None = None) -> None:
        self.isolated = isolated and connect is None
        self.connect = connect
        self.steps = Steps(emit) if emit is not None else Steps()

    def up(self, spec: TopologySpec, *, state_dir: Path | None = None, keep_on_failure: bool = False,
           build_image: bool = True) -> Cluster:
        state_dir = (state_dir or paths.cluster_dir(spec.cluster)).resolve()
        if (state_dir / STATE_FILE).exists():
            raise StateError(f"cluster {spec.cluster} is already up (state in {state_dir}); `kha down "
                             f"--name {spec.cluster}` first")
        if state_dir.exists() and any(state_dir.iterdir()):
            if not _ours(state_dir):
                raise StateError(f"{state_dir} is not empty and not a kha cluster state dir; choose another")
            # A previous run died before writing its state: sweep whatever it left, then start clean.
            teardown_dir(state_dir, spec.cluster, steps=self.steps)
        step = self.steps.step
        n = len(spec.nodes)
        remote: RemoteLibvirt | None = None
        if self.connect is not None:
            # Before the image (a build takes a minute): a malformed URI, LXC on another machine, a daemon
            # that does not answer are all known at once.
            with step(f"libvirt at {self.connect}"):
                remote = RemoteLibvirt.attach(self.connect, spec.driver)
        with step(f"image {spec.image}"):
            img = image.resolve(spec.image, build=build_image, progress=self.steps.emit)
            image.check(img, spec.driver)
        driver: NodeDriver
        accel_name: str | None = None
        image_paths = [Path(img.rootfs)]  # what the domain XML names outside the state dir
        if spec.driver == "qemu":
            hostcmd.need("qemu-system-x86_64", "qemu-system-x86")
            hostcmd.need("qemu-img", "qemu-utils")
            with step("VM base disk"):
                base = seed.base_disk(img)
            if not img.is_cloud_image:
                image_paths = [base, Path(img.kernel), Path(img.initrd)]
            else:  # booted by its own bootloader: the disk, and under UEFI the firmware file
                image_paths = [base] + ([image.OVMF_FIRMWARE] if img.boot == "uefi" else [])
            if remote is not None and not remote.connect.local:
                # The KVM probe boots a VM here; it says nothing about the hypervisor (harness.daemon).
                accel_name = "tcg"
            else:
                with step("accelerator"):
                    accel_name = accel.choose(Path(img.kernel))
            driver = QemuDriver(base, accel_name)
            log.info("qemu nodes use %s", accel_name.upper())
        else:
            hostcmd.need("libvirt_lxc", "libvirt-daemon-driver-lxc")
            driver = LxcDriver()

        if remote is not None:
            with step(f"image paths where libvirtd runs ({remote.connect.where})"):
                remote.check_paths(image_paths)  # before anything is written
        elif not self.isolated:
            daemon.check_uri(SystemLibvirt().uri(spec.driver))  # before anything is written
        state_dir.mkdir(parents=True, exist_ok=True)
        lv: AnyLibvirt
        try:
            with step("keys, known_hosts, ssh_config"):
                root_key = KeyPair.generate(f"kha-{spec.cluster}")
                root_key.write(state_dir / IDENTITY)
                host_keys = {node.name: KeyPair.generate(f"{node.name}@kha-{spec.cluster}") for node in spec.nodes}
            if remote is not None:
                with step(f"state dir shared with libvirtd ({remote.connect.where})"):
                    remote.check_shared(state_dir / "nodes")
                lv = remote
            elif self.isolated:
                with step("libvirtd (private, in its own network namespace)"):
                    lv = PrivateLibvirt.start(netns.name_for(spec.cluster, state_dir), state_dir / "libvirt",
                                              paths.harness_cache() / "libvirt-cache")
            else:
                lv = SystemLibvirt()
        except BaseException:
            # Only files so far (a daemon that fails to start stops itself): remove them.
            teardown(spec.cluster, state_dir, SystemLibvirt(), uris=[])
            raise
        macs = libvirtxml.macs_for(spec.cluster, [node.name for node in spec.nodes])
        state = ClusterState(
            spec=spec, state_dir=state_dir, libvirt=lv.to_json(), uri=lv.uri(spec.driver),
            network=libvirtxml.network_name(spec.cluster), bridge=libvirtxml.bridge_name(spec.cluster), image=img,
            nodes={node.name: NodeState(node.name, libvirtxml.domain_name(spec.cluster, node.name), macs[node.name],
                                        str(state_dir / "nodes" / node.name)) for node in spec.nodes},
            accel=accel_name, created=time.time())
        state.save()
        _write_ssh_files(state, host_keys, lv.reach())
        cluster = Cluster(state, lv, driver)
        try:
            with step("network"):
                cluster.create_network()
            with step(f"prepare {n} node{'s' if n != 1 else ''}"):
                _parallel(lambda name: driver.prepare(cluster.ctx, spec.node(name), host_keys[name], root_key),
                          [node.name for node in spec.nodes])
            with step(f"boot {n} node{'s' if n != 1 else ''}"):
                cluster.define_and_start()
                cluster.wait_ready()
            users = [node for node in spec.nodes if node.login_user != "root"]
            if users:
                with step(f"login user {', '.join(sorted({u.login_user for u in users}))} (ansible_user)"):
                    _parallel(cluster.add_login_user, [node.name for node in users])
        except BaseException:
            if keep_on_failure:
                log.warning("keeping the failed cluster %s for inspection (state in %s)", spec.cluster, state_dir)
            else:
                with step("clean up after failure"):
                    cluster.destroy()
            raise
        return cluster

    def down(self, cluster: str, state_dir: Path | None = None) -> list[str]:
        """Tear down ``cluster`` (from its state, or by its marks and names when the state is gone)."""
        return teardown_dir((state_dir or paths.cluster_dir(cluster)).resolve(), cluster, steps=self.steps)


class Cluster:
    """A running topology: operations on its nodes, and the files to reach them."""

    def __init__(self, state: ClusterState, lv: AnyLibvirt, driver: NodeDriver) -> None:
        self.state = state
        self.libvirt = lv
        self.driver = driver
        self._conn: libvirt.virConnect | None = None
        self._conn_lock = threading.Lock()  # nodes are handled in parallel threads: open one connection

    # -- loading -----------------------------------------------------------------------------
    @classmethod
    def load(cls, state_dir: Path) -> Cluster:
        state = ClusterState.load(state_dir)
        lv = daemon.from_json(state.libvirt)
        if isinstance(lv, PrivateLibvirt) and not lv.alive():
            raise StateError(f"the private libvirtd of cluster {state.spec.cluster} is not running (PIDs "
                             f"{lv.pids}); `kha down --name {state.spec.cluster}` cleans up what is left")
        # A VM's base disk only matters when it is created, at ``up``.
        driver: NodeDriver = (QemuDriver(Path("/nonexistent"), state.accel or "tcg") if state.spec.driver == "qemu"
                              else LxcDriver())
        return cls(state, lv, driver)

    @classmethod
    def named(cls, name: str) -> Cluster:
        return cls.load(paths.cluster_dir(name))

    # -- properties --------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.state.spec.cluster

    @property
    def spec(self) -> TopologySpec:
        return self.state.spec

    @property
    def nodes(self) -> list[str]:
        return list(self.state.nodes)

    @property
    def ssh_config(self) -> Path:
        return self.state.state_dir / SSH_CONFIG

    @property
    def scratch(self) -> Path:
        """A folder for what others keep with this cluster (state copies beside its snapshots): removed with
        the cluster by ``kha down``, like everything else ``up`` made."""
        return self.state.state_dir / SCRATCH

    @property
    def known_hosts(self) -> Path:
        return self.state.state_dir / KNOWN_HOSTS

    @property
    def identity(self) -> Path:
        return self.state.state_dir / IDENTITY

    @property
    def conn(self) -> libvirt.virConnect:
        with self._conn_lock:
            if self._conn is None:
                self._conn = _open(self.state.uri)
            return self._conn

    @property
    def ctx(self) -> Context:
        return Context(self.state, self.libvirt, self.conn)

    def close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(libvirt.libvirtError):
                self._conn.close()
            self._conn = None

    # -- creation ----------------------------------------------------------------------------
    def create_network(self) -> None:
        holders = subnet_holders(self.conn, self.spec)
        if holders:
            # A libvirtd's networks share its network namespace: one topology per subnet (libvirt would say
            # only "Network is already in use by interface khabr-…"). Isolated mode never meets this.
            raise HarnessError(
                f"create network {self.state.network}: {self.spec.network} is already used on this libvirtd by "
                f"{', '.join(holders)}; one libvirtd holds one topology per subnet, so on a shared daemon "
                "(--connect, the system libvirt) boot topologies whose subnets differ, or one at a time")
        try:
            net = self.conn.networkDefineXML(libvirtxml.network_xml(self.spec, str(self.state.state_dir)))
            net.create()
        except libvirt.libvirtError as exc:
            raise LibvirtError(f"create network {self.state.network}", str(exc)) from exc

    def define_and_start(self) -> None:
        ctx = self.ctx

        def start(name: str) -> None:
            try:
                dom = self.conn.defineXML(self.driver.domain_xml(ctx, self.spec.node(name)))
                dom.create()
            except libvirt.libvirtError as exc:
                raise LibvirtError(f"start node {name}", str(exc)) from exc

        _parallel(start, self.nodes)

    # -- readiness ---------------------------------------------------------------------------
    def wait_ready(self, nodes: Iterable[str] | None = None, timeout: float | None = None) -> dict[str, float]:
        """Wait for a real SSH login on ``nodes`` (all by default); seconds each took."""
        names = list(nodes) if nodes is not None else self.nodes
        limit = timeout or float(os.environ.get("KHA_SSH_TIMEOUT", SSH_TIMEOUT[self.spec.driver]))
        hint = self._console_hint()
        reach = self.libvirt.reach()
        times = _parallel(lambda name: ssh.wait_ready(self._target(name), self.identity, self.known_hosts,
                                                      reach, timeout=limit, hint=hint), names)
        for name, seconds in times.items():
            log.debug("%s: SSH ready after %.1fs", name, seconds)
        return times

    def add_login_user(self, name: str) -> None:
        """Create the node's ``login_user`` with the cluster key and passwordless sudo (as root, over SSH)."""
        user = self.spec.node(name).login_user
        code, out, err = self.run(name, ["sh", "-c", firstboot.login_user_script(user)])
        if code != 0:
            raise HarnessError(f"{name}: could not create the login user {user} (exit {code}): "
                               f"{(err or out).strip()}")

    def _console_hint(self) -> str:
        if self.spec.driver == "qemu":
            return f"console log: {self.state.state_dir / 'nodes' / '<node>' / 'console.log'}"
        logdir = (Path(self.state.libvirt["root"]) / "log" / "lxc") if self.state.libvirt.get("isolated") else \
            Path("/var/log/libvirt/lxc")
        where = f" of the libvirtd at {self.state.libvirt['connect']}" if self.state.libvirt.get("connect") else ""
        return f"libvirt log{where}: {logdir}/<domain>.log"

    def _target(self, name: str) -> ssh.Target:
        return ssh.Target(name, str(self.spec.node(name).address))

    # -- reaching nodes ----------------------------------------------------------------------
    def ssh(self, node: str) -> paramiko.SSHClient:
        """A logged-in paramiko client to ``node`` (host key checked against the pinned one)."""
        return ssh.client(self._target(node), self.identity, self.known_hosts, self.libvirt.reach())

    def run(self, node: str, argv: Sequence[str], timeout: float = 60.0) -> tuple[int, str, str]:
        cli = self.ssh(node)
        try:
            return ssh.run(cli, argv, timeout)
        finally:
            cli.close()

    # -- power -------------------------------------------------------------------------------
    def status(self) -> dict[str, str]:
        names = {libvirt.VIR_DOMAIN_RUNNING: "running", libvirt.VIR_DOMAIN_PAUSED: "paused",
                 libvirt.VIR_DOMAIN_SHUTOFF: "shut off", libvirt.VIR_DOMAIN_SHUTDOWN: "shutting down",
                 libvirt.VIR_DOMAIN_CRASHED: "crashed", libvirt.VIR_DOMAIN_BLOCKED: "running"}
        out = {}
        for node in self.nodes:
            try:
                out[node] = names.get(self._dom(node).state()[0], "unknown")
            except LibvirtError:
                out[node] = "missing"
        return out

    def _dom(self, node: str) -> libvirt.virDomain:
        if node not in self.state.nodes:
            raise HarnessError(f"cluster {self.name} has no node {node!r} (nodes: {', '.join(self.nodes)})")
        try:
            return self.conn.lookupByName(self.state.nodes[node].domain)
        except libvirt.libvirtError as exc:
            raise LibvirtError(f"find node {node}", str(exc)) from exc

    def power_off(self, node: str) -> None:
        """Hard power-off (``destroy``): no shutdown, peers only notice through timeouts."""
        self._dom(node)
        try:
            self.driver.power_off(self.ctx, node)
        except libvirt.libvirtError as exc:
            raise LibvirtError(f"power off {node}", str(exc)) from exc

    def power_on(self, node: str, wait: bool = True) -> None:
        dom = self._dom(node)
        if not dom.isActive():
            try:
                dom.create()
            except libvirt.libvirtError as exc:
                raise LibvirtError(f"power on {node}", str(exc)) from exc
        if wait:
            self.wait_ready([node])

    def reboot(self, node: str, wait: bool = True) -> None:
        """Hard reset: power off then on (works the same for containers and VMs)."""
        self.power_off(node)
        self.power_on(node, wait=wait)

    def pause(self, node: str) -> None:
        """Freeze the node: a VM stops entirely; a container's processes freeze (freezer cgroup) while its
        kernel network stack keeps answering ping and TCP handshakes, so only the services go silent."""
        try:
            self._dom(node).suspend()
        except libvirt.libvirtError as exc:
            raise LibvirtError(f"pause {node}", str(exc)) from exc

    def resume(self, node: str) -> None:
        try:
            self._dom(node).resume()
        except libvirt.libvirtError as exc:
            raise LibvirtError(f"resume {node}", str(exc)) from exc

    def link_down(self, node: str) -> None:
        self._dom(node)
        self.driver.set_link(self.ctx, node, up=False)

    def link_up(self, node: str) -> None:
        self._dom(node)
        self.driver.set_link(self.ctx, node, up=True)

    # -- snapshots ---------------------------------------------------------------------------
    def snapshots(self) -> list[str]:
        return list(self.state.snapshots)

    def snapshot(self, name: str) -> None:
        if not name or "/" in name or name.startswith("."):
            raise HarnessError(f"snapshot name {name!r} must be a plain name")
        self.driver.snapshot(self.ctx, name)
        if name not in self.state.snapshots:
            self.state.snapshots.append(name)
        self.state.save()

    def revert(self, name: str, wait: bool = True) -> dict[str, float]:
        if name not in self.state.snapshots:
            raise Unsupported(f"cluster {self.name} has no snapshot {name!r} (saved: "
                              f"{', '.join(self.state.snapshots) or 'none'})")
        self.driver.revert(self.ctx, name)
        return self.wait_ready() if wait else {}

    def delete_snapshot(self, name: str) -> None:
        self.driver.delete_snapshot(self.ctx, name)
        if name in self.state.snapshots:
            self.state.snapshots.remove(name)
        self.state.save()

    # -- the end -----------------------------------------------------------------------------
    def destroy(self) -> list[str]:
        """Remove everything this cluster created, then its state dir."""
        self.close()
        return teardown(self.state.spec.cluster, self.state.state_dir, self.libvirt, [self.state.uri])


# -- teardown --------------------------------------------------------------------------------


def _write_ssh_files(state: ClusterState, host_keys: dict[str, KeyPair], reach: ssh.Reach) -> None:
    lines = [known_hosts_line([name, str(state.spec.node(name).address)], key) for name, key in host_keys.items()]
    write_private(state.state_dir / KNOWN_HOSTS, "\n".join(lines) + "\n")
    targets = [ssh.Target(node.name, str(node.address)) for node in state.spec.nodes]
    text = ssh.render_ssh_config(targets, state.state_dir / IDENTITY, state.state_dir / KNOWN_HOSTS, reach,
                                 state.spec.cluster)
    (state.state_dir / SSH_CONFIG).write_text(text)


def subnet_holders(conn: libvirt.virConnect, spec: TopologySpec) -> list[str]:
    """Other kha clusters whose active network on ``conn`` overlaps ``spec``'s subnet ("cluster X (network N)")."""
    out = []
    for net in conn.listAllNetworks(libvirt.VIR_CONNECT_LIST_NETWORKS_ACTIVE):
        try:
            xml = net.XMLDesc(0)
        except libvirt.libvirtError:
            continue
        mark = libvirtxml.read_mark(xml)
        if mark is None or mark.kind != "network" or mark.cluster == spec.cluster:
            continue
        if any(subnet.overlaps(spec.network) for subnet in libvirtxml.network_subnets(xml)):
            out.append(f"cluster {mark.cluster} (network {net.name()})")
    return out


def marked(conn: libvirt.virConnect, cluster: str) -> tuple[list[libvirt.virDomain], list[libvirt.virNetwork]]:
    """Domains and networks whose kha mark names ``cluster``; anything unmarked is never returned."""
    doms = []
    for dom in conn.listAllDomains(0):
        try:
            mark = libvirtxml.read_mark(dom.XMLDesc(0))
        except libvirt.libvirtError:
            continue
        if mark is not None and mark.kind == "node" and mark.cluster == cluster:
            doms.append(dom)
    nets = []
    for net in conn.listAllNetworks(0):
        try:
            mark = libvirtxml.read_mark(net.XMLDesc(0))
        except libvirt.libvirtError:
            continue
        if mark is not None and mark.kind == "network" and mark.cluster == cluster:
            nets.append(net)
    return doms, nets


def remove_marked(conn: libvirt.virConnect, cluster: str, after_destroy: Callable[[str], None] | None = None,
                  ) -> list[str]:
    """Destroy and undefine this cluster's domains (with their snapshots) and network. Returns names."""
    removed: list[str] = []
    doms, nets = marked(conn, cluster)

    def remove(dom: libvirt.virDomain) -> str:
        name = dom.name()
        try:
            if conn.getType() == "LXC":
                kill_domain(dom)
            elif dom.isActive():
                dom.destroy()
            if after_destroy is not None:
                after_destroy(name)  # e.g. the LXC cgroups libvirt leaves
            try:
                dom.undefineFlags(libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA)
            except libvirt.libvirtError:
                dom.undefine()  # drivers without snapshot metadata (LXC) refuse the flag
        except libvirt.libvirtError as exc:
            raise LibvirtError(f"remove domain {name}", str(exc)) from exc
        return f"domain {name}"

    by_name = {dom.name(): dom for dom in doms}
    removed += _parallel(lambda name: remove(by_name[name]), sorted(by_name)).values()
    for net in nets:
        name = net.name()
        try:
            if net.isActive():
                net.destroy()
            net.undefine()
        except libvirt.libvirtError as exc:
            raise LibvirtError(f"remove network {name}", str(exc)) from exc
        removed.append(f"network {name}")
    return removed


def _mounts_under(lv: AnyLibvirt, root: Path) -> list[str]:
    mountinfo = lv.mountinfo()
    if mountinfo is None:
        return []
    try:
        lines = mountinfo.read_text().splitlines()
    except OSError:
        return []
    prefix = str(root).rstrip("/") + "/"
    points = [ln.split()[4] for ln in lines if len(ln.split()) > 4]
    return sorted({p for p in points if p.startswith(prefix)}, key=len, reverse=True)


def teardown(cluster: str, state_dir: Path, lv: AnyLibvirt, uris: Sequence[str]) -> list[str]:
    """Everything ``up`` made for ``cluster``: marked libvirt objects, mounts, daemon, netns, state dir.

    A libvirtd named by ``--connect`` is never stopped; when it cannot be reached, nothing is removed and
    the state stays, so ``kha down`` can try again (its domains would otherwise be lost track of).
    """
    removed: list[str] = []
    # The LXC cgroups libvirt leaves are only ours to clean on this machine.
    local = lv.mountinfo() is not None
    if not isinstance(lv, PrivateLibvirt) or lv.alive():
        for uri in uris:
            try:
                conn = libvirt.open(uri)
            except libvirt.libvirtError as exc:
                if isinstance(lv, RemoteLibvirt):
                    raise DaemonError(f"cannot reach {uri} to remove cluster {cluster}: {exc}; nothing was "
                                      f"removed, the state in {state_dir} is kept for the next `kha down`") from exc
                log.warning("cannot reach %s: %s", uri, exc)
                continue
            try:
                removed += remove_marked(conn, cluster, after_destroy=(
                    (lambda dom: cleanup_cgroups(lv.mount_prefix(), dom, None, wait=5.0)) if local else None))
            finally:
                conn.close()
    for point in _mounts_under(lv, state_dir):
        hostcmd.run([*lv.mount_prefix(), "umount", point])
        removed.append(f"mount {point}")
    if isinstance(lv, PrivateLibvirt) and (lv.alive() or netns.exists(lv.netns)):
        lv.stop()
        removed.append(f"libvirtd {lv.pids.get('libvirtd')}, virtlogd {lv.pids.get('virtlogd')}")
        removed.append(f"netns {lv.netns}")
    if state_dir.exists():
        # Only what ``up`` writes there: a state dir given by mistake loses nothing else.
        for name in STATE_ENTRIES:
            path = state_dir / name
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            elif path.exists() or path.is_symlink():
                path.unlink()
        with contextlib.suppress(OSError):
            state_dir.rmdir()
        removed.append(f"state {state_dir}")
    return removed


SCRATCH = "scratch"
# Everything ``up`` creates in a cluster's state dir (and ``Cluster.scratch``, which others fill).
STATE_ENTRIES = (STATE_FILE, f".{STATE_FILE}.tmp", IDENTITY, f"{IDENTITY}.pub", KNOWN_HOSTS, SSH_CONFIG, "libvirt",
                 "nodes", "snapshots", SCRATCH)


def _ours(state_dir: Path) -> bool:
    return all(p.name in STATE_ENTRIES for p in state_dir.iterdir())


def teardown_dir(state_dir: Path, cluster: str, steps: Steps | None = None) -> list[str]:
    """``teardown`` from a state dir; without a usable state file, find the pieces by name and mark."""
    steps = steps or Steps()
    with steps.step(f"down {cluster}"):
        uris: list[str]
        lv: AnyLibvirt
        try:
            state = ClusterState.load(state_dir)
            lv = daemon.from_json(state.libvirt)
            uris = [state.uri]
        except StateError:
            # No state: the cluster's private daemon if its namespace or PID files are there, else the
            # system libvirt; look through both drivers for objects carrying this cluster's mark.
            lv = _recover_private(cluster, state_dir) or SystemLibvirt()
            if isinstance(lv, SystemLibvirt) and not state_dir.exists():
                uris = [lv.uri("lxc"), lv.uri("qemu")]
                found = _any_marked(uris, cluster)
                if not found:
                    raise StateError(f"no cluster {cluster}: no state in {state_dir} and no libvirt object "
                                     "carries its mark") from None
            uris = [lv.uri("lxc"), lv.uri("qemu")]
        return teardown(cluster, state_dir, lv, uris)


def _any_marked(uris: Sequence[str], cluster: str) -> bool:
    for uri in uris:
        try:
            conn = libvirt.open(uri)
        except libvirt.libvirtError:
            continue
        try:
            doms, nets = marked(conn, cluster)
        finally:
            conn.close()
        if doms or nets:
            return True
    return False


def _recover_private(cluster: str, state_dir: Path) -> PrivateLibvirt | None:
    """The private daemon of a cluster whose state file is gone, from the names ``up`` derives."""
    ns = netns.name_for(cluster, state_dir)
    root = state_dir / "libvirt"
    if not (netns.exists(ns) or (root / "libvirtd.pid").exists()):
        return None
    pids: dict[str, int] = {}
    for name in ("libvirtd", "virtlogd"):
        try:
            pid = int((root / f"{name}.pid").read_text().strip())
        except (OSError, ValueError):
            continue
        # Only PIDs that still are those daemons count (PIDs are reused); stop() checks again.
        if daemon.is_running(pid, name):
            pids[name] = pid
    return PrivateLibvirt(ns, root, paths.harness_cache() / "libvirt-cache", pids)


def clusters() -> list[Path]:
    """State dirs of the clusters this user has up (or half up)."""
    root = paths.clusters_root()
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.is_dir())

