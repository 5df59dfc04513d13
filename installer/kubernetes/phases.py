"""Install phases that turn prepared nodes into a Kubernetes cluster with kubeadm.

Order: node runtime (modules, sysctls, swap, containerd) → Kubernetes from the offline bundle or from
upstream's packages (binaries, images, kubelet unit; ``installer.kubernetes.source``) → the PKI store's
tree in /etc/kubernetes → ``kubeadm init`` on the first master (external etcd, our certificates, the
LB endpoint) → further control planes one at a time → workers in parallel → CNI per ``network_plugin``
(bridge + host-local with a pod range per node and persistent routes between nodes; or flannel /
calico manifests, online) → wait until every node is Ready.

Every step checks first: a node that already runs a control plane is not initialised again, a node
with a kubelet.conf has joined, an image that containerd has is not imported again.
"""

from __future__ import annotations

import json
import shlex
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from core import waiting
from installer import nodeops, systemd
from installer.context import InstallContext
from installer.errors import KubernetesError
from installer.facts import NodeFacts, OSFamily
from installer.files import NodeFile
from installer.kubernetes import cni, packages, source, staticpods
from installer.kubernetes import render as k8s
from installer.kubernetes.bundle import NODE_BINARIES, Bundle
from installer.phases import Phase
from installer.remote import Transport
from installer.settings import NetworkPlugin, ProxyMode
from installer.topology import Host, Role

ADMIN_CONF = "/etc/kubernetes/admin.conf"
KUBELET_CONF = "/etc/kubernetes/kubelet.conf"
APISERVER_MANIFEST = staticpods.APISERVER.manifest
CNI_CONFLIST = "/etc/cni/net.d/10-kha-bridge.conflist"
ROUTES_UNIT = "/etc/systemd/system/kha-pod-routes.service"
IMPORT_DIR = "/var/tmp/kha-images"
#: Files of the etcd member's own (owned by etcd, installed by the etcd phase): not ours to copy.
_ETCD_OWNED = ("pki/etcd/server.", "pki/etcd/peer.", "pki/etcd/healthcheck-client.")
#: Preflight checks kubeadm runs that do not fit an offline install from a bundle: CoreDNS has no
#: offline image (its addon phase is skipped), and nodes that are containers have no kernel config
#: for SystemVerification to read.
IGNORE_PREFLIGHT = ("ImagePull", "SystemVerification", "Swap")
WORKER_PREFLIGHT = ("FileAvailable--etc-kubernetes-pki-ca.crt",)
#: What a half-finished init leaves behind (its own manifests and the ports its static pods hold).
RESUME_PREFLIGHT = (
    "FileAvailable--etc-kubernetes-manifests-kube-apiserver.yaml",
    "FileAvailable--etc-kubernetes-manifests-kube-controller-manager.yaml",
    "FileAvailable--etc-kubernetes-manifests-kube-scheduler.yaml",
    "Port-6443", "Port-10259", "Port-10257", "Port-10250",
)
READY_TIMEOUT_S = 300.0
#: What kubelet and kube-proxy need on the node (CNI plugins land in /usr/lib/cni on Debian). The RHEL family
#: has no containerd: containerd.io comes from Docker's repository (prepare/repos) and carries runc itself
#: (its spec conflicts with the runc package); the CNI plugins are pkgs.k8s.io's kubernetes-cni (/opt/cni/bin);
#: iptables is iptables-nft there (rpm -q knows no package named iptables).
RUNTIME_PACKAGES = {
    OSFamily.DEBIAN: ["containerd", "runc", "containernetworking-plugins", "conntrack", "iptables", "socat"],
    OSFamily.REDHAT: ["containerd.io", "conntrack-tools", "iptables-nft", "socat"],
}


def needs_apparmor(facts: NodeFacts) -> bool:
    """Whether the runtime needs the ``apparmor`` package: on Debian 11 with AppArmor on in the kernel. bullseye's
    containerd (1.4) runs ``apparmor_parser`` for every container when the kernel has AppArmor on, and without
    it every static pod fails (``CreateContainerError: ... get apparmor_parser version: exec: "apparmor_parser":
    executable file not found``), so kubeadm init times out. A container node does not count: containerd does
    not use AppArmor inside one. Debian 12 and 13's containerd does not need it (and kha's offline images of them
    carry no such package), so only 11 gets it."""
    return (facts.os_family is OSFamily.DEBIAN and facts.os_major == 11 and facts.apparmor
            and not facts.container)


def _bundle(ctx: InstallContext) -> Bundle:
    if ctx.bundle is None:
        raise KubernetesError("this step needs the offline bundle (--bundle DIR)")
    return ctx.bundle


def _nodes(ctx: InstallContext) -> tuple[Host, ...]:
    return k8s.kubernetes_nodes(ctx.topo)


def _release(ctx: InstallContext) -> k8s.Release:
    return source.release(ctx.topo, ctx.bundle)


def _each(ctx: InstallContext, hosts: Sequence[Host], fn: Callable[[Host, Transport], None]) -> None:
    for host in hosts:
        with ctx.node(host.name):
            fn(host, ctx.transport(host))


def _sync(ctx: InstallContext, t: Transport, files: Sequence[NodeFile]) -> None:
    nodeops.sync_files(ctx, t, files)


# -- runtime -------------------------------------------------------------------------------------
def _runtime(ctx: InstallContext) -> None:
    release = _release(ctx)

    def one(host: Host, t: Transport) -> None:
        facts = ctx.node_facts(host)
        ipvs = k8s.IPVS_PACKAGES if ctx.topo.settings.kube_proxy_mode is ProxyMode.IPVS else ()
        apparmor = ("apparmor",) if needs_apparmor(facts) else ()
        nodeops.ensure_packages(ctx, t, facts, [*RUNTIME_PACKAGES[facts.os_family], *ipvs, *apparmor])
        files = k8s.runtime_files(ctx.topo, release, facts.snapshotter)
        changed = nodeops.sync_files(ctx, t, files, restarts="containerd")
        for module in k8s.modules(ctx.topo):
            # Only load what is missing: built into the kernel, or a container on a host that has it,
            # the feature is there and modprobe would fail.
            if not nodeops.module_present(t, module) and not ctx.would(f"load kernel module {module}"):
                t.run(["modprobe", module], sudo=True)
        for key, want in k8s.SYSCTLS.items():
            # Set only what differs: some keys are host-global and read-only inside a container,
            # where the host already has them right (and the file above keeps them across reboots).
            # Read as root: what an unprivileged login may read of /proc/sys is not what the kernel uses.
            have = t.run(["sysctl", "-n", key], sudo=True, check=False).stdout.strip()
            if have != want and not ctx.would(f"set {key}={want}"):
                t.run(["sysctl", "-q", "-w", f"{key}={want}"], sudo=True)
        swaps = t.run(["swapon", "--show", "--noheadings"], sudo=True, check=False).stdout.strip()
        if swaps and not ctx.would("turn swap off"):
            t.run(["swapoff", "-a"], sudo=True)
            # kubelet refuses to run with swap: keep it off across reboots too.
            t.run(["sed", "-i", "-E", r"s@^([^#].*[[:space:]]swap[[:space:]].*)$@# \1  # kha: kubelet needs swap off@",
                   "/etc/fstab"], sudo=True)
        nodeops.ensure_service(ctx, t, "containerd", changed=k8s.CONTAINERD_CONFIG in changed)

    _each(ctx, _nodes(ctx), one)


# -- binaries, images, kubelet --------------------------------------------------------------------
def _binaries(ctx: InstallContext) -> None:
    if ctx.bundle is None:
        # Online: upstream's packages, pinned to kube_version and held.
        _each(ctx, _nodes(ctx), lambda h, t: packages.install(ctx, t, ctx.node_facts(h), ctx.topo))
        return
    bundle = ctx.bundle
    bin_dir = bundle.release.bin_dir
    wanted = [NodeFile(f"{bin_dir}/{name}", bundle.binaries[name].path.read_bytes(), mode=0o755)
              for name in NODE_BINARIES]
    if bundle.crictl is not None:
        wanted.append(NodeFile(f"{bin_dir}/crictl", bundle.crictl.path.read_bytes(), mode=0o755))
    _each(ctx, _nodes(ctx), lambda _h, t: _sync(ctx, t, wanted))


def _images_for(ctx: InstallContext, host: Host) -> list[str]:
    names = list(_bundle(ctx).images)
    if k8s._is_control_plane(ctx.topo, host):
        return names
    # Workers run kube-proxy and pod sandboxes only.
    return [n for n in names if "/kube-proxy:" in n or "/pause:" in n]


def _images(ctx: InstallContext) -> None:
    if ctx.bundle is None:
        _pull_images(ctx)
        return
    bundle = ctx.bundle

    release = _release(ctx)

    def one(host: Host, t: Transport) -> None:
        have = set(t.run(["ctr", "-n", "k8s.io", "images", "ls", "-q"], sudo=True).stdout.split())
        for name in _images_for(ctx, host):
            # kube_image_repository: kubeadm and containerd ask for <repository>/<image>:<tag>; the bundle's
            # archive carries its own name, which the node keeps beside the one they ask for.
            wanted = k8s.renamed(name, bundle.release.image_repository, release.image_repository)
            if wanted in have:
                continue
            if name not in have and not ctx.would(f"import image {name}"):
                archive = bundle.images[name]
                remote = f"{IMPORT_DIR}/{archive.path.name}"
                t.run(["mkdir", "-p", IMPORT_DIR], sudo=True)
                t.put(archive.path, remote, mode=0o600, sudo=True)
                try:
                    t.run(["ctr", "-n", "k8s.io", "images", "import", "--no-unpack", remote], sudo=True,
                          timeout=600)
                finally:
                    t.run(["rm", "-f", remote], sudo=True)
            if wanted != name and not ctx.would(f"tag image {name} as {wanted}"):
                t.run(["ctr", "-n", "k8s.io", "images", "tag", name, wanted], sudo=True)

    _each(ctx, _nodes(ctx), one)


def _pull_images(ctx: InstallContext) -> None:
    """Online: control planes pull kubeadm's images up front (one clear step instead of inside init's
    preflight); workers' kubelets pull kube-proxy and pause themselves."""
    release = _release(ctx)
    v = ctx.topo.settings.kube_version
    argv = ["kubeadm", "config", "images", "pull", f"--kubernetes-version=v{release.version}",
            f"--image-repository={release.image_repository}", f"--cri-socket={k8s.cri_socket(v)}"]

    def one(host: Host, t: Transport) -> None:
        if k8s._is_control_plane(ctx.topo, host) and not ctx.would(shlex.join(argv)):
            t.run([f"{release.bin_dir}/kubeadm", *argv[1:]], sudo=True, timeout=1200)

    _each(ctx, _nodes(ctx), one)


def _kubelet(ctx: InstallContext) -> None:
    files = k8s.kubelet_files(_release(ctx))

    def one(_host: Host, t: Transport) -> None:
        if nodeops.sync_files(ctx, t, files) and not ctx.would("systemctl daemon-reload"):
            nodeops.systemctl(t, "daemon-reload")
        if not nodeops.systemctl(t, "is-enabled", "--quiet", "kubelet", check=False) and not ctx.would(
                "enable kubelet"):
            nodeops.systemctl(t, "enable", "kubelet")

    _each(ctx, _nodes(ctx), one)


# -- PKI -----------------------------------------------------------------------------------------
def pki_files(ctx: InstallContext, host: Host) -> list[NodeFile]:
    """The node's tree from the PKI store, as /etc/kubernetes files (the etcd member's own certs excluded)."""
    ctx.ensure_same_ca(host)
    tree = ctx.pki_tree(host)
    out = []
    for path in sorted(p for p in tree.rglob("*") if p.is_file()):
        rel = path.relative_to(tree).as_posix()
        if rel.startswith(_ETCD_OWNED):
            continue
        secret = rel.endswith((".key", ".conf"))
        out.append(NodeFile(f"/etc/kubernetes/{rel}", path.read_bytes(), mode=0o600 if secret else 0o644))
    return out


def _readers(path: str) -> list[str]:
    return [pod.name for pod in staticpods.readers(path)]


def _sync_control_plane(ctx: InstallContext, host: Host, t: Transport, files: Sequence[NodeFile]) -> None:
    """Sync files on a node; on a control plane, the static pods that read a changed file are marked to
    restart (on the node first: a run stopped before the restart phase still restarts them)."""
    if not k8s._is_control_plane(ctx.topo, host):
        _sync(ctx, t, files)
        return
    for path in nodeops.sync_files(ctx, t, files, restarts=_readers):
        ctx.static_pods_changed.setdefault(host.name, set()).update(_readers(path))


def _pki(ctx: InstallContext) -> None:
    _each(ctx, _nodes(ctx), lambda h, t: _sync_control_plane(ctx, h, t, pki_files(ctx, h)))


def _control_plane_files(ctx: InstallContext) -> None:
    """The files kubeadm's apiserver flags name (Secrets encryption config, audit policy), on every control
    plane before its apiserver starts. kubeadm writes the static pod manifests once (init, join): a knob
    changed on an installed cluster changes these files (and the restart phase makes the apiserver read
    them), not the flags."""
    files = k8s.control_plane_files(ctx.topo, ctx.secrets)
    masters = [h for h in _nodes(ctx) if k8s._is_control_plane(ctx.topo, h)]
    _each(ctx, masters, lambda h, t: _sync_control_plane(ctx, h, t, files))


def _restart(ctx: InstallContext) -> None:
    """Control planes whose files changed (in this run, or in one that stopped before getting here), one
    node at a time; on each, the apiserver, then the controller-manager and the scheduler, each back
    before the next. A node not initialised or joined yet has no manifest: it starts with the new files."""
    masters = [h for h in _nodes(ctx) if k8s._is_control_plane(ctx.topo, h)]
    for host in masters:
        with ctx.node(host.name):
            t = ctx.transport(host)
            changed = ctx.static_pods_changed.get(host.name, set())
            for pod in staticpods.CONTROL_PLANE:
                if pod.name not in changed and not nodeops.is_pending(t, pod.name):
                    continue
                staticpods.restart_stamped(ctx, t, pod, str(host.address), ctx.topo.apiserver_port,
                                           why="to read the files kha changed")
                nodeops.clear_pending(ctx, t, pod.name)


# -- kubeadm -------------------------------------------------------------------------------------
def _kubeadm(ctx: InstallContext, t: Transport, config: NodeFile, verb: str, ignore: Sequence[str] = ()) -> None:
    nodeops.sync_file(ctx, t, config)
    ignored = ",".join([*IGNORE_PREFLIGHT, *ignore])
    argv = ["kubeadm", verb, "--config", config.path, f"--ignore-preflight-errors={ignored}"]
    if verb == "init" and source.offline(ctx.bundle):
        # CoreDNS has no offline image here; clusters installed from a bundle go without it (README).
        argv.append("--skip-phases=addon/coredns")
    if ctx.would(shlex.join(argv)):
        return
    t.run([binary(ctx, t, argv[0]), *argv[1:]], sudo=True, timeout=1200)


def initialised(ctx: InstallContext) -> bool:
    """kubeadm init got through: its configuration is stored in the cluster (upload-config phase)."""
    return bool(kubectl(ctx, "-n", "kube-system", "get", "configmap", "kubeadm-config", "-o", "name",
                        check=False).strip())


def _init(ctx: InstallContext) -> None:
    host = ctx.topo.first_master
    with ctx.node(host.name):
        t = ctx.transport(host)
        if (nodeops.exists(t, APISERVER_MANIFEST) and nodeops.exists(t, f"{_release(ctx).bin_dir}/kubectl")
                and initialised(ctx)):
            return  # initialised before: kubeadm init must not run twice
        # An init that stopped half-way left its manifests, and its static pods hold their ports: the
        # next init would fail those preflight checks. kubeadm rewrites all of it, so let it. (Not
        # `kubeadm reset`: it waits minutes for an API server that never came up.)
        resume = RESUME_PREFLIGHT if nodeops.exists(t, APISERVER_MANIFEST) else ()
        _kubeadm(ctx, t, k8s.init_config(ctx.topo, host, ctx.secrets, _release(ctx)), "init", ignore=resume)


def _join_config(ctx: InstallContext, host: Host) -> NodeFile:
    ca = (ctx.pki / "ca" / "ca.crt").read_bytes()
    return k8s.join_config(ctx.topo, host, ctx.secrets, _release(ctx), ca)


#: How long the bootstrap token a join uses stays valid: a join takes minutes. kubeadm init makes it with
#: 24 h, and nothing renews it, so a node joining a day after the install would be refused.
JOIN_TOKEN_TTL = "1h"


def token_commands(kubeadm: str, token: str) -> tuple[list[str], list[str]]:
    """(delete, create): the cluster's bootstrap token (the state's own, the one the join configurations
    name) made valid for ``JOIN_TOKEN_TTL`` from now. The delete may find nothing (expired and cleaned up)."""
    admin = f"--kubeconfig={ADMIN_CONF}"
    return ([kubeadm, "token", "delete", token.split(".", 1)[0], admin],
            [kubeadm, "token", "create", token, f"--ttl={JOIN_TOKEN_TTL}",
             "--description=kha bootstrap token, re-made for a join", admin])


#: How long re-making the token may wait for the API. Right after ``kubeadm init`` a request through the
#: load balancer can fail while the LB still admits the new apiserver (seen once with nginx behind the VIP:
#: the delete failed, and the create then found the token still there).
TOKEN_TIMEOUT_S = 120.0


def remake_token(t: Transport, delete: Sequence[str], create: Sequence[str]) -> str | None:
    """One try at re-making the bootstrap token: None when made, else what went wrong (tried again by the
    caller). A delete that finds no token is fine; any other failed delete is not swallowed: it is why the
    create would fail. The token is a secret, so the answers name the commands, never their argv."""
    gone = t.run(list(delete), sudo=True, check=False)
    said = (gone.stderr or gone.stdout).strip()
    if not gone.ok and "not found" not in said:
        return f"kubeadm token delete: {said or f'exit {gone.exit_code}'}"
    made = t.run(list(create), sudo=True, check=False)
    return None if made.ok else f"kubeadm token create: {(made.stderr or made.stdout).strip() or made.exit_code}"


def _fresh_token(ctx: InstallContext) -> None:
    """Right before nodes join (and only then: a re-run with nothing to join changes nothing)."""
    host = ctx.topo.first_master
    with ctx.node(host.name):
        if ctx.would("re-make the bootstrap token for the joins (kubeadm token delete, then create)"):
            return
        t = ctx.transport(host)
        delete, create = token_commands(binary(ctx, t, "kubeadm"), ctx.secrets.kubeadm_token)
        waiting.until(lambda: remake_token(t, delete, create), timeout=TOKEN_TIMEOUT_S, interval=2,
                      error=lambda why: KubernetesError(
                          f"{host.name}: the bootstrap token for the joins could not be re-made within "
                          f"{TOKEN_TIMEOUT_S:.0f} s: {why}"))


def _join_masters(ctx: InstallContext) -> None:
    masters = [h for h in _nodes(ctx) if k8s._is_control_plane(ctx.topo, h) and h != ctx.topo.first_master]
    todo = [h for h in masters if not nodeops.exists(ctx.transport(h), KUBELET_CONF)]
    if todo:
        _fresh_token(ctx)
    for host in todo:  # one at a time: each join changes the etcd-backed control plane
        with ctx.node(host.name):
            _kubeadm(ctx, ctx.transport(host), _join_config(ctx, host), "join")


def _join_workers(ctx: InstallContext) -> None:
    workers = [h for h in _nodes(ctx) if not k8s._is_control_plane(ctx.topo, h)]
    todo = [h for h in workers if not nodeops.exists(ctx.transport(h), KUBELET_CONF)]
    if not todo:
        return
    _fresh_token(ctx)
    if ctx.dry_run:
        for host in todo:
            with ctx.node(host.name):
                _kubeadm(ctx, ctx.transport(host), _join_config(ctx, host), "join", ignore=WORKER_PREFLIGHT)
        return

    def join(host: Host) -> None:
        # The PKI phase already placed the cluster CA kubeadm would write from discovery (the same one).
        _kubeadm(ctx, ctx.transport(host), _join_config(ctx, host), "join", ignore=WORKER_PREFLIGHT)

    # Workers join in parallel: each has its own transport (one per node, as the transports require).
    with ThreadPoolExecutor(max_workers=min(4, len(todo))) as pool:
        futures = {host.name: pool.submit(join, host) for host in todo}
        for name, fut in futures.items():
            with ctx.node(name):
                fut.result()


# -- kubectl and kubeadm by their full path ------------------------------------------------------
def binary(ctx: InstallContext, t: Transport, name: str) -> str:
    """Kubernetes' ``name`` (kubectl, kubeadm) on the node ``t``, by its full path: sudo's ``secure_path`` on the
    RHEL family lacks /usr/local/bin, where an offline bundle puts them (sudoers(5) ``secure_path``). With a
    bundle the place is its ``bin_dir``. Without one it is upstream's packages' (/usr/bin) during an install,
    but a day-2 command (``kha reset``, ``kha node remove``, ``kha etcd``) takes no ``--bundle`` and may meet a
    cluster installed from one: the node says which of the two places has it (the packages' first, and theirs
    when neither has: the command then fails naming the path)."""
    release = _release(ctx)
    if ctx.bundle is not None:
        return f"{release.bin_dir}/{name}"
    return locate(t, name, (release.bin_dir, *BIN_DIRS))


#: Where Kubernetes' binaries are on a node: upstream's packages' place, then an offline bundle's.
BIN_DIRS = ("/usr/bin", k8s.Release.bin_dir)


def locate(t: Transport, name: str, dirs: Sequence[str] = BIN_DIRS) -> str:
    """``name``'s full path on the node ``t``: in the first of ``dirs`` that has it, else in the first."""
    paths = [f"{d}/{name}" for d in dict.fromkeys(dirs)]
    return next((p for p in paths if nodeops.exists(t, p)), paths[0])


def kubectl_argv(ctx: InstallContext, t: Transport, *args: str) -> list[str]:
    """kubectl on the node ``t`` with the admin kubeconfig, by its full path (``binary``)."""
    return [binary(ctx, t, "kubectl"), f"--kubeconfig={ADMIN_CONF}", *args]


def kubectl(ctx: InstallContext, *args: str, check: bool = True, timeout: float = 60) -> str:
    t = ctx.transport(ctx.topo.first_master)
    return t.run(kubectl_argv(ctx, t, *args), sudo=True, check=check, timeout=timeout).stdout


# -- CNI -----------------------------------------------------------------------------------------
#: ``kubectl get nodes -o`` this: one ``name=podCIDR`` line per node (``pod_ranges`` reads it)
POD_CIDRS_OUTPUT = "jsonpath={range .items[*]}{.metadata.name}={.spec.podCIDR}{'\\n'}{end}"


def pod_ranges(out: str) -> dict[str, str]:
    """Node name → pod range, from ``kubectl get nodes -o POD_CIDRS_OUTPUT`` (nodes without one left out)."""
    pairs = (line.split("=", 1) for line in out.splitlines() if "=" in line)
    return {name: cidr for name, cidr in pairs if cidr}


def pod_cidrs(ctx: InstallContext) -> dict[str, str]:
    return pod_ranges(kubectl(ctx, "get", "nodes", "-o", POD_CIDRS_OUTPUT))


def conflist(cidr: str) -> bytes:
    doc = {
        "cniVersion": "0.4.0",
        "name": "kha",
        "plugins": [
            {"type": "bridge", "bridge": "cni0", "isGateway": True, "ipMasq": False, "hairpinMode": True,
             "ipam": {"type": "host-local", "ranges": [[{"subnet": cidr}]], "routes": [{"dst": "0.0.0.0/0"}]}},
            {"type": "portmap", "capabilities": {"portMappings": True}},
        ],
    }
    return (json.dumps(doc, indent=2) + "\n").encode()


def routes_unit(host: Host, cidrs: dict[str, str], addresses: dict[str, str]) -> bytes:
    # A oneshot unit needs one ExecStart at least (a single-node cluster has no other node to route to).
    others = [(cidr, addresses[name]) for name, cidr in sorted(cidrs.items())
              if name != host.name and name in addresses]
    starts = [("ExecStart", systemd.command(["/bin/true"])),
              *(("ExecStart", systemd.command(["/sbin/ip", "route", "replace", cidr, "via", via]))
                for cidr, via in others)]
    return systemd.unit(["Written by kha: routes to the other nodes' pod ranges (bridge CNI has no overlay)."], [
        ("Unit", [("Description", "kha pod routes"), ("After", "network-online.target"),
                  ("Wants", "network-online.target")]),
        ("Service", [("Type", "oneshot"), ("RemainAfterExit", "yes"), *starts]),
        ("Install", [("WantedBy", "multi-user.target")]),
    ])


#: kube-controller-manager gives a node its pod range within seconds of running; it has this long from when it
#: first answers its /healthz. Its start does not count: on a slow machine (a TCG VM on a loaded CI host: kubeadm
#: init took 205 s there) it takes minutes to come up, and a fixed 120 s from the end of init ran out before it did.
POD_RANGE_GRACE_S = 120.0
#: the most the bridge CNI phase waits in all, for a controller-manager that never answers
POD_RANGE_TIMEOUT_S = 900.0


@dataclass
class PodRangeWait:
    """The wait for pod ranges, against the health of the controller-manager that allocates them: it fails
    ``grace`` s after the controller-manager first answered healthy (a restart in between starts that over),
    saying so; while the controller-manager is not up, the answer says what its health endpoint said (the
    caller's overall timeout, ``POD_RANGE_TIMEOUT_S``, ends that)."""

    who: str
    grace: float = POD_RANGE_GRACE_S
    healthy_since: float | None = None

    def problem(self, missing: str, unwell: str | None, now: float) -> str:
        """What is still wrong, for ``missing`` (the nodes without a range) and the controller-manager's health
        (``unwell``: None when it answers ok) at ``now``; raise once it has been healthy ``grace`` s."""
        if unwell is not None:
            self.healthy_since = None
            return f"{missing} ({self.who} not up: {unwell})"
        if self.healthy_since is None:
            self.healthy_since = now
        healthy = now - self.healthy_since
        if healthy > self.grace:
            raise KubernetesError(
                f"no pod range allocated to {missing}: {self.who} has answered healthy for {healthy:.0f} s and "
                "allocated none (it allocates from kube_pod_subnet, with --allocate-node-cidrs; see its log: "
                "crictl logs on the node, or kha report collect)")
        return f"{missing} ({self.who} healthy for {healthy:.0f} s)"


def _cni(ctx: InstallContext) -> None:
    if ctx.topo.settings.network_plugin is NetworkPlugin.BRIDGE:
        _bridge(ctx)
    else:
        _apply_manifests(ctx)


def _apply_manifests(ctx: InstallContext) -> None:
    """flannel or calico: manifests applied once from the first master (online only: their images come
    from public registries). A resource of each (``marker``) existing means it was applied before."""
    host = ctx.topo.first_master
    with ctx.node(host.name):
        t = ctx.transport(host)
        for m in cni.manifests(ctx.topo, cni_bin_dir=_release(ctx).cni_bin_dir):
            kind, name, namespace = m.marker
            where = ["-n", namespace] if namespace else []
            if kubectl(ctx, *where, "get", kind, name, "-o", "name", check=False).strip():
                continue
            if m.content is not None:
                f = NodeFile(f"{cni.MANIFEST_DIR}/{m.name}", m.content, mode=0o600)
                nodeops.sync_file(ctx, t, f)
                target = f.path
            else:
                assert m.url is not None
                target = m.url
            argv = ["apply", *(["--server-side"] if m.server_side else []), "-f", target]
            if ctx.would("kubectl " + shlex.join(argv)):
                continue
            for crd in m.crds:  # the previous manifest's types must be served before this one uses them
                kubectl(ctx, "wait", "--for=condition=established", "--timeout=120s", f"crd/{crd}", timeout=150)
            kubectl(ctx, *argv, timeout=300)


def _bridge(ctx: InstallContext) -> None:
    if ctx.would("write a bridge CNI config per node from its pod range, and routes between nodes"):
        return
    nodes = _nodes(ctx)
    cidrs: dict[str, str] = {}
    first = ctx.topo.first_master
    t = ctx.transport(first)
    url = staticpods.CONTROLLER_MANAGER.health_url(str(first.address), ctx.topo.apiserver_port)
    wait = PodRangeWait(f"kube-controller-manager on {first.name}")

    def allocated() -> str | None:
        cidrs.update(pod_cidrs(ctx))
        missing = ", ".join(h.name for h in nodes if h.name not in cidrs)
        if not missing:
            return None
        return wait.problem(missing, staticpods.unhealthy(t, staticpods.CONTROLLER_MANAGER, url), time.monotonic())

    waiting.until(allocated, timeout=POD_RANGE_TIMEOUT_S, interval=2, error=lambda problem: KubernetesError(
        f"no pod range allocated to {problem} after {POD_RANGE_TIMEOUT_S:.0f} s"))
    addresses = {h.name: str(h.address) for h in nodes}

    def one(host: Host, t: Transport) -> None:
        files = [NodeFile(CNI_CONFLIST, conflist(cidrs[host.name])),
                 NodeFile(ROUTES_UNIT, routes_unit(host, cidrs, addresses))]
        changed = nodeops.sync_files(ctx, t, files, restarts="kha-pod-routes")
        nodeops.ensure_service(ctx, t, "kha-pod-routes", changed=ROUTES_UNIT in changed)

    _each(ctx, nodes, one)


def _ready(ctx: InstallContext) -> None:
    want = {h.name for h in _nodes(ctx)}
    if ctx.would(f"wait until {len(want)} nodes are Ready"):
        return
    jsonpath = ("jsonpath={range .items[*]}{.metadata.name}="
                "{.status.conditions[?(@.type=='Ready')].status}{'\\n'}{end}")

    def all_ready() -> str | None:
        out = kubectl(ctx, "get", "nodes", "-o", jsonpath, check=False)
        ready = {line.split("=")[0] for line in out.splitlines() if line.endswith("=True")}
        return ", ".join(sorted(want - ready)) or None

    waiting.until(all_ready, timeout=READY_TIMEOUT_S, interval=2, error=lambda missing: KubernetesError(
        f"nodes not Ready after {READY_TIMEOUT_S:.0f}s: {missing}"))


def _has_kubernetes(ctx: InstallContext) -> bool:
    return bool(ctx.topo.groups[Role.MASTER])


PHASE: Phase[InstallContext] = Phase(
    "kubernetes",
    children=(
        Phase("runtime", _runtime, description="kernel modules, sysctls, swap off, containerd"),
        Phase("binaries", _binaries, description="kubeadm, kubelet, kubectl, crictl: from the bundle, or packages"),
        Phase("images", _images, description="control-plane, kube-proxy and pause images: imported, or pulled"),
        Phase("kubelet", _kubelet, description="kubelet unit and kubeadm's drop-in"),
        Phase("pki", _pki, description="the PKI store's tree into /etc/kubernetes"),
        Phase("control-plane-files", _control_plane_files,
              description="Secrets encryption config and audit policy on each control plane"),
        Phase("restart", _restart, description="control planes whose files changed: their static pods restarted, "
                                               "one node at a time"),
        Phase("init", _init, description="kubeadm init on the first master"),
        Phase("join-masters", _join_masters, description="further control planes, one at a time"),
        Phase("join-workers", _join_workers, description="workers, in parallel"),
        Phase("cni", _cni, description="network_plugin: bridge (per-node ranges, routes) or flannel/calico"),
        Phase("ready", _ready, description="every node Ready"),
    ),
    description="Kubernetes with kubeadm",
    run_if=_has_kubernetes,
)
