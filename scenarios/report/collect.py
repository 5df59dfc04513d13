"""``kha report collect``: everything a maintainer needs to understand a cluster they cannot log in to, gathered
into one folder — with every secret redacted on the way in (``scenarios.report.redact``).

What lands in the folder::

    manifest.json          kha (version, commit, diff hash), host (kernel, libvirt, qemu), driver, accel, image,
                           bundle, versions found on the nodes, their container images, the topology, made_at
    missing.json           every artefact that could not be collected: node ("cluster" for cluster-level),
                           artefact, reason
    config/                the inventory, the typed settings, every file kha renders per node (in memory)
    nodes/<node>/          ``NODE_COMMANDS`` (journals, dmesg, containers, pod logs, network, firewall, units,
                           /etc/kubernetes with certificate metadata only), versions, the node's copies of
                           the rendered files (``files/``) and its serial console or libvirt log (host side)
    cluster/               kubectl (nodes, pods, events, leases, endpoints; never secrets), etcd (member
                           list, endpoint status, hashkv), haproxy's server state per [lb] node, VIP holders

Nodes are collected in parallel, each in a thread with transports of its own (an ``SSHTransport`` is not
shared between threads). A quick probe first tells the dead from the living, so a powered-off node costs one
connect timeout, not one per artefact; a node that dies half-way is probed again after its first timeout.
Whatever cannot be collected is a ``Missing`` with its reason: a broken cluster is exactly when a report
is wanted, so nothing here fails the collection but a folder it cannot write.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import functools
import hashlib
import ipaddress
import json
import logging
import platform
import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path, PurePosixPath
from typing import Any

from core import run as host
from core.bundle_manifest import MANIFEST as BUNDLE_MANIFEST
from core.bundle_manifest import file_sha256
from core.errors import KhaError
from installer import render
from installer.connect import Connector
from installer.errors import CommandError, CommandTimeout, RemoteError
from installer.etcd import ctl
from installer.kubernetes import render as k8s_render
from installer.kubernetes import source
from installer.kubernetes.bundle import Bundle
from installer.kubernetes.phases import ADMIN_CONF
from installer.loadbalancer import render as lb_render
from installer.loadbalancer import runtime, vip
from installer.remote import Transport
from installer.secrets import ClusterSecrets
from installer.settings import Settings
from installer.state import StateDir
from installer.topology import Host, Role
from scenarios.installed import Installed
from scenarios.report.redact import Redactor, for_installed

log = logging.getLogger(__name__)

FORMAT = 1
CLUSTER = "cluster"  # the ``Missing.node`` of a cluster-level artefact
#: Lines of each journal and of each pod log: enough for the minutes around a failure, bounded in size.
JOURNAL_LINES = 3000
POD_LOG_LINES = 300
#: The serial console / libvirt log is read from its end, at most this much.
CONSOLE_BYTES = 2_000_000
#: Where bundles put kubelet, kubeadm, kubectl and crictl when the topology has no bundle to say.
DEFAULT_BIN_DIR = "/usr/local/bin"
_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@dataclass(frozen=True)
class Missing:
    """An artefact that could not be collected, and why."""

    node: str  # CLUSTER for a cluster-level artefact
    artefact: str
    reason: str


@dataclass(frozen=True)
class Collected:
    folder: Path
    artefacts: int
    missing: tuple[Missing, ...]
    seconds: float


# -- what is collected from every node -----------------------------------------------------------
@dataclass(frozen=True)
class NodeCommand:
    """One artefact of a node: the file under ``nodes/<node>/`` and the command (run as root) that prints it.

    ``accept`` lists the exit codes whose output is the artefact (``systemctl status`` says 3 when a unit is
    inactive, which is news, not a failure)."""

    name: str
    argv: tuple[str, ...]
    accept: frozenset[int] = frozenset({0})
    #: asked when ``argv`` fails (kha's crictl shim knows fewer flags than cri-tools' crictl).
    fallback: tuple[str, ...] | None = None


def _journal(unit: str) -> NodeCommand:
    return NodeCommand(f"journal/{unit}.log", ("journalctl", "--no-pager", "-b", "-o", "short-iso-precise",
                                               "-n", str(JOURNAL_LINES), "-u", unit))


#: A listing of /etc/kubernetes with each certificate's metadata (subject, issuer, validity, SANs, sha256
#: fingerprint) — read on the node by openssl. Keys and kubeconfigs are listed, never read: only the
#: ``client-certificate-data`` line of a kubeconfig is decoded there.
_ETC_KUBERNETES = r"""
[ -d /etc/kubernetes ] || { echo "no /etc/kubernetes"; exit 0; }
meta() { openssl x509 -noout -subject -issuer -dates -fingerprint -sha256 -ext subjectAltName 2>&1 | sed 's/^/    /'; }
find /etc/kubernetes -xdev | sort | while IFS= read -r f; do
  stat -c '%A %U:%G %9s %y %n' -- "$f"
  case "$f" in
    *.crt) meta < "$f" ;;
    *.conf) sed -n 's/^ *client-certificate-data: *//p' "$f" | head -n 1 | base64 -d 2>/dev/null | meta ;;
  esac
done
"""
#: ``component<TAB>first line of its version output`` (``-`` when not installed); parsed by ``_versions``.
_VERSIONS = r"""
v() { n=$1; shift
  if command -v "$1" >/dev/null 2>&1; then printf '%s\t%s\n' "$n" "$("$@" 2>&1 | head -n 1)"
  else printf '%s\t-\n' "$n"; fi; }
v kubernetes kubelet --version
v kubeadm kubeadm version -o short
v etcd etcd --version
v containerd containerd --version
v runc runc --version
v haproxy haproxy -v
v keepalived keepalived --version
v nginx nginx -v
v kernel uname -r
"""
_POD_LOGS = f"""
for f in /var/log/pods/*/*/*.log; do
  [ -e "$f" ] || continue
  echo "==> $f <=="; tail -n {POD_LOG_LINES} -- "$f"
done
"""


def node_commands(crictl: str) -> tuple[NodeCommand, ...]:
    """What every node is asked for (a command that finds nothing, e.g. no etcd on a worker, still answers)."""
    cri = (crictl, f"--runtime-endpoint=unix://{k8s_render.CRI_SOCKET}")
    return (
        *(_journal(u) for u in ("kubelet", "containerd", "etcd", "haproxy", "keepalived", "nginx", "ssh")),
        NodeCommand("journal/warnings.log", ("journalctl", "--no-pager", "-b", "-o", "short-iso-precise", "-p",
                                             "warning", "-n", str(JOURNAL_LINES))),
        NodeCommand("dmesg.txt", ("dmesg", "--ctime")),
        NodeCommand("crictl-ps.txt", (*cri, "ps", "-a")),
        # What the CRI shim's ``ps`` leaves out (image, state, PID of each container), from containerd itself.
        NodeCommand("ctr-containers.txt", ("ctr", "-n", "k8s.io", "containers", "ls")),
        NodeCommand("ctr-tasks.txt", ("ctr", "-n", "k8s.io", "tasks", "ls")),
        NodeCommand("crictl-images.txt", (*cri, "images", "--digests"),
                    fallback=("ctr", "-n", "k8s.io", "images", "ls")),
        NodeCommand("pod-logs.txt", ("sh", "-c", _POD_LOGS)),
        NodeCommand("ip-addr.txt", ("ip", "addr")),
        NodeCommand("ip-route.txt", ("ip", "route", "show", "table", "all")),
        NodeCommand("nft-ruleset.txt", ("nft", "list", "ruleset")),
        NodeCommand("iptables-save.txt", ("iptables-save",)),
        NodeCommand("ss-listening.txt", ("ss", "-tulpn")),
        NodeCommand("systemctl-failed.txt", ("systemctl", "--failed", "--no-pager", "--no-legend")),
        NodeCommand("systemctl-status.txt", ("systemctl", "status", "--no-pager", "-l", "-n", "0", "kubelet",
                                             "containerd", "etcd", "haproxy", "keepalived", "nginx"),
                    accept=frozenset({0, 3, 4})),
        NodeCommand("processes.txt", ("ps", "-eo", "pid,ppid,stat,lstart,rss,args", "--sort", "pid")),
        NodeCommand("resources.txt", ("sh", "-c", "uptime; echo; free -m; echo; df -h -x tmpfs -x devtmpfs")),
        NodeCommand("etc-kubernetes.txt", ("sh", "-c", _ETC_KUBERNETES)),
        NodeCommand("versions.txt", ("sh", "-c", _VERSIONS)),
    )


# -- the folder, written only through the redactor -----------------------------------------------
class Folder:
    """The report folder being filled. ``write`` is the only way in, and it always redacts."""

    def __init__(self, root: Path, redactor: Redactor) -> None:
        self.root = root
        self.redactor = redactor
        self.artefacts = 0
        self.bytes = 0
        self._missing: list[Missing] = []
        self._lock = threading.Lock()

    def write(self, rel: str, content: str | bytes, *, artefact: bool = True) -> Path:
        parts = PurePosixPath(rel).parts
        if not parts or PurePosixPath(rel).is_absolute() or ".." in parts:
            raise ValueError(f"not a path inside the report: {rel!r}")
        path = self.root.joinpath(*parts)
        data = self.redactor.bytes(content) if isinstance(content, bytes) else self.redactor.text(content).encode()
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        with self._lock:
            self.bytes += len(data)
            self.artefacts += artefact
        return path

    def json(self, rel: str, doc: Any, *, artefact: bool = True) -> Path:
        return self.write(rel, json.dumps(doc, indent=2, sort_keys=True, default=str) + "\n", artefact=artefact)

    def missing(self, node: str, artefact: str, reason: str) -> None:
        log.debug("missing %s %s: %s", node, artefact, reason)
        with self._lock:
            self._missing.append(Missing(node, artefact, self.redactor.text(reason)))

    @property
    def missed(self) -> tuple[Missing, ...]:
        with self._lock:
            return tuple(sorted(self._missing, key=lambda m: (m.node, m.artefact)))


def _why(exc: BaseException) -> str:
    """A one-line reason: the error's first line, and the last line a failed command printed to stderr."""
    if isinstance(exc, CommandTimeout):
        return f"timed out after {exc.timeout or 0:.0f}s"
    if isinstance(exc, CommandError):
        said = (exc.stderr or exc.stdout or "").strip().splitlines()
        return f"exit {exc.exit_code}: {said[-1] if said else 'no output'}"
    first = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {first[0] if first else ''}"


# -- one node --------------------------------------------------------------------------------------
@dataclass
class Node:
    """One node's collection: its own connector, whether it answers, and what it said."""

    host: Host
    connector: Connector
    dead: str | None = None  # why it does not answer (None: it does)
    outputs: dict[str, str] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.host.name

    @property
    def transport(self) -> Transport:
        return self.connector(self.host)

    def probe(self, timeout: float) -> None:
        started = time.monotonic()
        try:
            self.transport.run(["true"], timeout=timeout)
        except RemoteError as exc:
            self.dead = f"not reachable over SSH ({_why(exc)}, after {time.monotonic() - started:.1f}s)"


class Collector:
    """One collection: the folder, the options, the living and the dead."""

    def __init__(self, inst: Installed, folder: Folder, *, jobs: int, timeout: float, probe_timeout: float) -> None:
        self.inst = inst
        self.folder = folder
        self.jobs = max(1, jobs)
        self.timeout = timeout
        self.probe_timeout = probe_timeout
        self.bundle: Bundle | None = None
        if inst.bundle is not None:
            try:
                self.bundle = Bundle.load(inst.bundle, verify=False)
            except KhaError as exc:
                folder.missing(CLUSTER, "bundle", _why(exc))
        self.bin_dir = self.bundle.release.bin_dir if self.bundle is not None else DEFAULT_BIN_DIR
        self.env = {"PATH": f"{self.bin_dir}:{_PATH}"}
        self.nodes: dict[str, Node] = {}

    # -- running things ------------------------------------------------------------------------
    def connector(self) -> Connector:
        c = self.inst.connector()
        c.connect_timeout = self.probe_timeout
        return c

    def alive(self, hosts: Sequence[Host]) -> list[Host]:
        return [h for h in hosts if self.nodes[h.name].dead is None]

    def run_on(self, node: Node, artefact: str, argv: Sequence[str], accept: frozenset[int] = frozenset({0}),
               *, timeout: float | None = None, quiet: bool = False, owner: str | None = None) -> str | None:
        """``argv``'s output as the artefact, or None (and a ``Missing`` of ``owner``, the node by default, unless
        ``quiet`` and the node answered) when the node could not give it."""
        owner = owner or node.name
        if node.dead is not None:
            self.folder.missing(owner, artefact, node.dead)
            return None
        try:
            res = node.transport.run(argv, sudo=True, check=False, timeout=timeout or self.timeout, env=self.env)
        except CommandError as exc:  # a timeout: is the node still there?
            self.folder.missing(owner, artefact, _why(exc))
            node.probe(self.probe_timeout)
            return None
        except RemoteError as exc:
            node.dead = f"lost during the collection ({_why(exc)})"
            self.folder.missing(owner, artefact, node.dead)
            return None
        if res.exit_code not in accept:
            said = (res.stderr or res.stdout).strip().splitlines()
            if not quiet:
                self.folder.missing(owner, artefact, f"exit {res.exit_code}: {said[-1] if said else 'no output'}")
            return None
        return res.stdout + (f"\n--- stderr ---\n{res.stderr}" if res.stderr.strip() and res.exit_code else "")

    def guarded(self, node: str, artefact: str, fn: Callable[[], object]) -> None:
        """Run one part of the collection; whatever it raises becomes a ``Missing`` (a report of a broken
        cluster must not stop at the first broken thing)."""
        try:
            fn()
        except Exception as exc:  # recorded as missing with its reason, never raised
            log.debug("%s %s failed", node, artefact, exc_info=True)
            self.folder.missing(node, artefact, _why(exc))

    # -- the parts -------------------------------------------------------------------------------
    def collect_node(self, node: Node, rendered: Mapping[str, Sequence[str]]) -> None:
        base = f"nodes/{node.name}"
        crictl = f"{self.bin_dir}/crictl"
        for cmd in node_commands(crictl):
            out = self.run_on(node, f"{base}/{cmd.name}", cmd.argv, cmd.accept, quiet=cmd.fallback is not None)
            if out is None and cmd.fallback is not None:
                out = self.run_on(node, f"{base}/{cmd.name}", cmd.fallback, cmd.accept)
            if out is not None:
                self.folder.write(f"{base}/{cmd.name}", out)
                node.outputs[cmd.name] = out
        paths = list(rendered.get(node.name, ()))
        if paths:
            self.guarded(node.name, f"{base}/files", lambda: self.node_files(node, paths))

    def node_files(self, node: Node, paths: Sequence[str]) -> None:
        """The node's own copies of the files kha renders for it (what is there, not what should be)."""
        base = f"nodes/{node.name}/files"
        if node.dead is not None:
            for p in paths:
                self.folder.missing(node.name, f"{base}{p}", node.dead)
            return
        # One command for all of them: head marks each file with "==> PATH <==" and goes on past a missing one.
        res = None
        try:
            res = node.transport.run(["head", "-v", "-c", "1000000", "--", *paths], sudo=True, check=False,
                                     timeout=self.timeout)
        except RemoteError as exc:
            for p in paths:
                self.folder.missing(node.name, f"{base}{p}", _why(exc))
            return
        for p, text in split_head(res.stdout, paths).items():
            if text is None:
                why = next((line for line in res.stderr.splitlines() if p in line), "not on the node")
                self.folder.missing(node.name, f"{base}{p}", why)
            else:
                self.folder.write(f"{base}{p}", text)

    def console(self, name: str) -> None:
        """The node's serial console (qemu) or libvirt container log (LXC), read on this machine: it is there
        when SSH is not."""
        state = self.inst.cluster.state
        if state.spec.driver == "qemu":
            path = Path(state.nodes[name].dir) / "console.log"
        else:
            root = Path(state.libvirt["root"]) / "log" if state.libvirt.get("isolated") else Path("/var/log/libvirt")
            path = root / "lxc" / f"{state.nodes[name].domain}.log"
        rel = f"nodes/{name}/{'console.log' if state.spec.driver == 'qemu' else 'libvirt-lxc.log'}"
        try:
            with path.open("rb") as fh:
                size = fh.seek(0, 2)
                fh.seek(max(0, size - CONSOLE_BYTES))
                self.folder.write(rel, fh.read())
        except OSError as exc:
            self.folder.missing(name, rel, f"{path}: {exc.strerror or exc}")

    def kubectl(self) -> None:
        masters = self.alive(self.inst.topo.masters)
        kinds = ("nodes", "pods", "events", "leases", "endpoints")
        wanted = [*(f"cluster/kubectl/{k}.yaml" for k in kinds), "cluster/kubectl/overview.txt"]
        if not masters:
            for rel in ["cluster/kubectl/readyz.txt", *wanted]:
                self.folder.missing(CLUSTER, rel, "no [kube-master] node answers over SSH")
            return
        node = Node(masters[0], self.connector())
        try:
            kubectl = [f"{self.bin_dir}/kubectl", f"--kubeconfig={ADMIN_CONF}", "--request-timeout=10s"]
            # One short question first: an apiserver that does not answer costs one timeout, not one per kind.
            rel = "cluster/kubectl/readyz.txt"
            ready = self.run_on(node, rel, [*kubectl, "get", "--raw=/readyz?verbose"], timeout=2 * self.probe_timeout,
                                owner=CLUSTER)
            if ready is None:
                for w in wanted:
                    self.folder.missing(CLUSTER, w, f"the apiserver did not answer {rel}")
                return
            self.folder.write(rel, ready)
            # Never ``get all`` or secrets: only these kinds, which hold no secret values.
            for k in kinds:
                rel = f"cluster/kubectl/{k}.yaml"
                out = self.run_on(node, rel, [*kubectl, "get", k, "--all-namespaces", "-o", "yaml"], owner=CLUSTER)
                if out is not None:
                    self.folder.write(rel, out)
            rel = "cluster/kubectl/overview.txt"
            wide = [*kubectl, "get", "nodes,pods", "--all-namespaces", "-o", "wide"]
            out = self.run_on(node, rel, wide, owner=CLUSTER)
            if out is not None:
                self.folder.write(rel, out)
        finally:
            node.connector.close()

    def etcd(self) -> None:
        topo = self.inst.topo
        dead = [h.name for h in topo.etcd if self.nodes[h.name].dead is not None]
        if not topo.etcd:
            return
        ectx = self.inst.etcd()
        ectx.connector.connect_timeout = self.probe_timeout
        try:
            admin = ectx.admin(avoid=dead)
            urls = ctl.client_urls(topo.etcd)
            # The raw JSON etcdctl prints: ``kha report check`` can parse it again with ``ctl``'s parsers.
            for rel, args, check in (("member-list.json", ("member", "list"), True),
                                     ("endpoint-status.json", ("endpoint", "status"), False)):
                self.guarded(CLUSTER, f"cluster/etcd/{rel}", functools.partial(
                    self.etcdctl, admin, f"cluster/etcd/{rel}", [*args, "-w", "json"],
                    urls if not check else None, check))

            def hashkv() -> None:
                rev, hashes = admin.hashkv_at_common_revision(urls)
                self.folder.json("cluster/etcd/hashkv.json", {"revision": rev, "hashes": {
                    u: {"hash": h, "revision": r} for u, (h, r) in hashes.items()}})

            self.guarded(CLUSTER, "cluster/etcd/hashkv.json", hashkv)
        except KhaError as exc:
            for a in ("member-list.json", "endpoint-status.json", "hashkv.json"):
                self.folder.missing(CLUSTER, f"cluster/etcd/{a}", _why(exc))
        finally:
            ectx.connector.close()

    def etcdctl(self, admin: ctl.Admin, rel: str, args: Sequence[str], endpoints: Sequence[str] | None,
                check: bool) -> None:
        self.folder.write(rel, admin.ctl(*args, endpoints=endpoints, check=check, timeout=self.timeout).stdout)

    def load_balancers(self) -> None:
        topo = self.inst.topo
        if not topo.lb:
            return
        connector = self.connector()
        try:
            # haproxy's runtime API (the socket the haproxy template enables), as the failover observer asks it.
            argv = runtime.servers_state_argv(None)
            for h in topo.lb:
                rel = f"cluster/haproxy/{h.name}.txt"
                out = self.run_on(Node(h, connector, self.nodes[h.name].dead), rel, argv)
                if out is not None:
                    self.folder.write(rel, out)
                    self.folder.json(f"cluster/haproxy/{h.name}.json", {"up": runtime.parse_servers_state(out)})
            if topo.vip is not None:
                asked = [h.name for h in self.alive(topo.lb)]
                self.guarded(CLUSTER, "cluster/vip.json", lambda: self.folder.json("cluster/vip.json", {
                    "vip": str(topo.vip), "asked": asked, "holders": vip.holders(topo, connector, asked)}))
        finally:
            connector.close()

    def config(self) -> dict[str, list[str]]:
        """``config/``: the inventory, the typed settings and every file kha renders; the rendered paths per node."""
        inst = self.inst
        self.folder.write(f"config/{inst.inventory.name}", inst.inventory.read_bytes())
        self.folder.json("config/settings.json", settings_json(inst.topo.settings))
        state = StateDir(inst.state)
        if state.secrets_file.exists():
            secrets = state.secrets(inst.topo, write=False)
        else:  # nothing installed yet from this state: render with throw-away secrets (and say so)
            secrets = ClusterSecrets.generate()
            self.folder.missing(CLUSTER, "config/secrets", f"no {state.secrets_file}: rendered with placeholders")
        files = render.node_files(inst.topo, secrets, release=source.release(inst.topo, self.bundle),
                                  ca_pem=k8s_render.store_ca(state.pki))
        for node, items in files.items():
            for f in items:
                self.folder.write(f"config/nodes/{node}{f.path}", f.content)
        return {node: [f.path for f in items] for node, items in files.items()}

    # -- the whole collection ----------------------------------------------------------------------
    def run(self) -> None:
        hosts = self.inst.topo.hosts
        rendered: dict[str, list[str]] = {}

        def config() -> None:
            rendered.update(self.config())

        self.guarded(CLUSTER, "config", config)
        with ThreadPoolExecutor(max_workers=self.jobs, thread_name_prefix="kha-report") as pool:
            self.nodes = {h.name: Node(h, self.connector()) for h in hosts}
            try:
                probes = [pool.submit(n.probe, self.probe_timeout) for n in self.nodes.values()]
                consoles = [pool.submit(self.console, h.name) for h in hosts if h.name in self.inst.cluster.state.nodes]
                for f in probes:
                    f.result()
                for n in self.nodes.values():
                    if n.dead is not None:
                        log.warning("%s: %s; its artefacts are listed as missing", n.name, n.dead)
                work: list[Future[None]] = [
                    *(pool.submit(self.guarded, n.name, f"nodes/{n.name}",
                                  functools.partial(self.collect_node, n, rendered)) for n in self.nodes.values()),
                    pool.submit(self.guarded, CLUSTER, "cluster/kubectl", self.kubectl),
                    pool.submit(self.guarded, CLUSTER, "cluster/etcd", self.etcd),
                    pool.submit(self.guarded, CLUSTER, "cluster/haproxy", self.load_balancers),
                    *consoles,
                ]
                for f in work:
                    f.result()
            finally:
                for n in self.nodes.values():
                    n.connector.close()
        self.guarded(CLUSTER, "manifest.json", lambda: self.folder.json(
            "manifest.json", manifest(self.inst, self.bundle, self.nodes), artefact=False))


def collect(inst: Installed, into: Path, *, jobs: int = 8, timeout: float = 20.0,
            probe_timeout: float = 5.0, redactor: Redactor | None = None) -> Collected:
    """Fill ``into`` (an empty folder) with what ``inst``'s nodes, cluster, configuration and provenance say,
    every file redacted. ``timeout`` bounds each command, ``probe_timeout`` the first login to each node."""
    started = time.monotonic()
    folder = Folder(into, redactor or for_installed(inst))
    Collector(inst, folder, jobs=jobs, timeout=timeout, probe_timeout=probe_timeout).run()
    missing = folder.missed
    folder.json("missing.json", [dataclasses.asdict(m) for m in missing], artefact=False)
    seconds = time.monotonic() - started
    log.info("collected %d artefacts (%d missing) in %.1fs", folder.artefacts, len(missing), seconds)
    return Collected(into, folder.artefacts, missing, seconds)


# -- helpers ---------------------------------------------------------------------------------------
def split_head(out: str, paths: Sequence[str]) -> dict[str, str | None]:
    """``head -v`` output of ``paths`` → each path's text (None: head could not open it)."""
    marks = [(m.start(), m.end(), m.group(1)) for m in re.finditer(r"^==> (.*) <==\n", out, re.MULTILINE)
             if m.group(1) in paths]
    found: dict[str, str | None] = dict.fromkeys(paths)
    for i, (_, end, p) in enumerate(marks):
        stop = marks[i + 1][0] if i + 1 < len(marks) else len(out)
        text = out[end:stop]
        # head puts an empty line between files.
        found[p] = text[:-1] if i + 1 < len(marks) and text.endswith("\n\n") else text
    return found


def _plain(value: Any) -> Any:
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    if isinstance(value, ipaddress.IPv4Address | ipaddress.IPv4Network) or dataclasses.is_dataclass(value):
        return str(value)
    return value


def settings_json(s: Settings) -> dict[str, Any]:
    """The typed settings as JSON (defaults included): what kha made of ``[all:vars]``."""
    out = {f.name: _plain(getattr(s, f.name)) for f in dataclasses.fields(s) if f.name not in ("lines", "unknown")}
    out["unknown"] = {k: v.text for k, v in s.unknown.items()}
    return out


_VERSION = re.compile(r"v?(\d+\.\d+(?:\.\d+)?[0-9A-Za-z.~+-]*)")


def parse_versions(text: str) -> dict[str, str]:
    """``versions.txt`` → {component: version}; components not installed are left out."""
    out = {}
    for line in text.splitlines():
        name, _, said = line.partition("\t")
        m = _VERSION.search(said) if said.strip() != "-" else None
        if m:
            out[name] = m.group(1)
    return out


def parse_crictl_images(text: str) -> list[dict[str, str]]:
    """``crictl images --digests`` → rows keyed by its (lower-cased) column headers."""
    lines = [line for line in text.splitlines() if line.strip() and not line.startswith("---")]
    if not lines:
        return []
    head = lines[0]
    starts = [m.start() for m in re.finditer(r"\S+(?: \S+)*", head)]
    names = [head[s:e].strip().lower() for s, e in zip(starts, [*starts[1:], None], strict=True)]
    return [{n: line[s:e].strip() for n, s, e in zip(names, starts, [*starts[1:], None], strict=True)}
            for line in lines[1:]]


def _git(repo: Path, *args: str) -> str | None:
    try:
        res = host.run(["git", "-C", str(repo), *args], check=False, timeout=20)
    except KhaError:
        return None
    return res.stdout if res.ok else None


def kha_info(repo: Path | None = None) -> dict[str, Any]:
    """kha's version, and the commit and uncommitted diff of the checkout it runs from (None outside git)."""
    repo = repo or Path(__file__).resolve().parents[2]
    try:
        version = metadata.version("kha")
    except metadata.PackageNotFoundError:
        version = None
    commit = _git(repo, "rev-parse", "HEAD")
    diff = _git(repo, "diff", "HEAD") if commit else None
    return {"version": version, "commit": commit.strip() if commit else None,
            "dirty_diff_sha256": hashlib.sha256(diff.encode()).hexdigest() if diff else None}


def host_info(inst: Installed) -> dict[str, Any]:
    libvirt_version = None
    try:
        v = inst.cluster.conn.getLibVersion()
        libvirt_version = f"{v // 1_000_000}.{v // 1000 % 1000}.{v % 1000}"
    except Exception as exc:  # noqa: BLE001 - provenance is best effort: the daemon may be gone
        log.debug("libvirt version: %s", exc)
    qemu = None
    res = host.run(["qemu-system-x86_64", "--version"], check=False, timeout=20)
    if res.ok and res.stdout.strip():
        qemu = res.stdout.splitlines()[0].strip()
    return {"kernel": platform.release(), "libvirt": libvirt_version, "qemu": qemu}


def image_info(inst: Installed) -> dict[str, Any]:
    img = inst.cluster.state.image
    out: dict[str, Any] = {"name": img.name, "digest": img.digest}
    mf = Path(img.rootfs).parent / "manifest.json"
    try:
        doc = json.loads(mf.read_text())
    except (OSError, ValueError):
        return out
    out |= {k: doc[k] for k in ("builder_version", "kernel_version", "qcow2_sha256", "created") if k in doc}
    recipe = doc.get("recipe") or {}
    if recipe.get("sha256"):
        out["recipe_sha256"] = recipe["sha256"]
    return out


def bundle_info(inst: Installed) -> dict[str, Any] | None:
    if inst.bundle is None:
        return None
    mf = inst.bundle / BUNDLE_MANIFEST
    out: dict[str, Any] = {"path": str(inst.bundle)}
    try:
        out["manifest_sha256"] = file_sha256(mf)
        doc = json.loads(mf.read_text())
    except (OSError, ValueError) as exc:
        out["error"] = str(exc)
        return out
    out |= {"kubernetes": doc.get("kubernetes_version"), "name": doc.get("name"), "hash": doc.get("hash"),
            "created": doc.get("created"), "source": {k: (doc.get("source") or {}).get(k)
                                                      for k in ("type", "name", "version")}}
    return out


def topology_info(inst: Installed) -> dict[str, Any]:
    topo = inst.topo
    router = None
    if topo.vip is not None:
        router = lb_render.router_id(topo)
    return {
        "cluster": inst.cluster.name,
        "cluster_name": topo.settings.cluster_name,
        "inventory": str(inst.inventory),
        "nodes": [{"name": h.name, "address": str(h.address), "roles": [r.value for r in topo.roles(h.name)]}
                  for h in topo.hosts],
        "vip": str(topo.vip) if topo.vip is not None else None,
        "lb_mode": topo.settings.lb_mode.value,
        "router_id": router,
        "sizes": {"nodes": len(topo.hosts), **{r.value: len(topo.group(r)) for r in
                                                (Role.LB, Role.ETCD, Role.MASTER, Role.WORKER)}},
    }


def manifest(inst: Installed, bundle: Bundle | None, nodes: Mapping[str, Node]) -> dict[str, Any]:
    versions: dict[str, dict[str, str]] = {}
    images: dict[str, list[dict[str, str]]] = {}
    for name, n in nodes.items():
        for comp, v in parse_versions(n.outputs.get("versions.txt", "")).items():
            versions.setdefault(comp, {})[name] = v
        if "crictl-images.txt" in n.outputs:
            images[name] = parse_crictl_images(n.outputs["crictl-images.txt"])
    state = inst.cluster.state
    return {
        "format": FORMAT,
        "kha": kha_info(),
        "host": host_info(inst),
        "driver": state.spec.driver,
        "accel": state.accel,
        "image": image_info(inst),
        "bundle": bundle_info(inst),
        "versions": versions,
        "images": images,
        "topology": topology_info(inst),
        "dead_nodes": {name: n.dead for name, n in nodes.items() if n.dead is not None},
        "made_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
