"""Restarting the control plane's static pods so they read renewed files: who reads what, the stamped
manifest, and the restart phase against a scripted control plane (a kubelet that replaces a pod whose
manifest changed, the old process lingering a little, as the real one does)."""

from __future__ import annotations

import datetime as dt
import hashlib
import itertools
from pathlib import Path

import pytest
import variants
import yaml

from installer import nodeops
from installer.context import InstallContext, open_context
from installer.errors import KubernetesError
from installer.files import NodeFile
from installer.kubernetes import hardening, staticpods
from installer.kubernetes import phases as kphases
from installer.kubernetes.staticpods import APISERVER, CONTROL_PLANE, CONTROLLER_MANAGER, SCHEDULER
from installer.phases import Context
from installer.remote import Source, Transport

NOW = dt.datetime(2026, 12, 5, 12, 0, tzinfo=dt.UTC)

#: as kubeadm 1.20 writes it (keys sorted, lists at the parent's indent)
KUBEADM_MANIFEST = """\
apiVersion: v1
kind: Pod
metadata:
  annotations:
    kubeadm.kubernetes.io/kube-apiserver.advertise-address.endpoint: 10.56.56.11:6443
  creationTimestamp: null
  labels:
    component: kube-apiserver
    tier: control-plane
  name: kube-apiserver
  namespace: kube-system
spec:
  containers:
  - command:
    - kube-apiserver
    - --advertise-address=10.56.56.11
    - --etcd-servers=https://10.56.56.11:2379,https://10.56.56.12:2379,https://10.56.56.13:2379
    image: registry.kha.test/k8s/kube-apiserver:v1.20.2
    name: kube-apiserver
    resources:
      requests:
        cpu: 250m
  hostNetwork: true
status: {}
"""


@pytest.mark.parametrize(("path", "pods"), [
    ("/etc/kubernetes/pki/apiserver.crt", (APISERVER,)),
    ("/etc/kubernetes/pki/apiserver-etcd-client.key", (APISERVER,)),
    ("/etc/kubernetes/pki/front-proxy-client.crt", (APISERVER,)),
    ("/etc/kubernetes/pki/sa.pub", (APISERVER,)),
    ("/etc/kubernetes/pki/etcd/ca.crt", (APISERVER,)),
    ("/etc/kubernetes/pki/sa.key", (CONTROLLER_MANAGER,)),
    ("/etc/kubernetes/pki/ca.key", (CONTROLLER_MANAGER,)),
    ("/etc/kubernetes/pki/ca.crt", (APISERVER, CONTROLLER_MANAGER)),
    ("/etc/kubernetes/controller-manager.conf", (CONTROLLER_MANAGER,)),
    ("/etc/kubernetes/scheduler.conf", (SCHEDULER,)),
    ("/etc/kubernetes/admin.conf", ()),
    ("/etc/kubernetes/super-admin.conf", ()),
    (hardening.ENCRYPTION_CONFIG, (APISERVER,)),
    (hardening.AUDIT_POLICY, (APISERVER,)),
])
def test_each_file_restarts_the_components_that_read_it(path: str, pods: tuple[staticpods.StaticPod, ...]) -> None:
    assert staticpods.readers(path) == pods


def test_a_renewed_admin_kubeconfig_restarts_nothing_a_renewed_serving_cert_the_apiserver_only() -> None:
    """What `kha pki renew admin.conf` and `kha pki renew apiserver` cost a live cluster."""
    assert not staticpods.readers("/etc/kubernetes/admin.conf")
    assert {p.name for p in staticpods.readers("/etc/kubernetes/pki/apiserver.crt")} == {"kube-apiserver"}


def test_the_stamp_changes_the_pod_for_the_kubelet_and_nothing_else() -> None:
    new = staticpods.stamped(KUBEADM_MANIFEST, "to read the files kha changed", NOW, APISERVER.manifest)
    before, after = yaml.safe_load(KUBEADM_MANIFEST), yaml.safe_load(new)
    stamp = after["metadata"]["annotations"].pop(staticpods.RESTARTED)
    assert stamp == "2026-12-05T12:00:00Z to read the files kha changed"
    assert after == before  # kubeadm's annotation kept, the spec untouched
    assert new != KUBEADM_MANIFEST
    # a later stamp replaces the earlier one: the manifest does not grow with every renewal
    again = yaml.safe_load(staticpods.stamped(new, "again", NOW + dt.timedelta(days=1), APISERVER.manifest))
    assert list(again["metadata"]["annotations"]).count(staticpods.RESTARTED) == 1
    assert again["metadata"]["annotations"][staticpods.RESTARTED].startswith("2026-12-06")


def test_a_manifest_without_annotations_gets_them() -> None:
    text = KUBEADM_MANIFEST.replace(
        "  annotations:\n    kubeadm.kubernetes.io/kube-apiserver.advertise-address.endpoint: 10.56.56.11:6443\n", "")
    meta = yaml.safe_load(staticpods.stamped(text, "why", NOW, "m"))["metadata"]
    assert list(meta["annotations"]) == [staticpods.RESTARTED]


def test_what_is_not_a_pod_manifest_is_refused_by_path() -> None:
    with pytest.raises(KubernetesError, match=r"/etc/kubernetes/manifests/kube-scheduler\.yaml: not a pod manifest"):
        staticpods.stamped("- a list\n", "why", NOW, SCHEDULER.manifest)


# -- a scripted control plane ---------------------------------------------------------------------
class ControlPlaneNode(Transport):
    """Files, one process per static pod, and a kubelet: a changed manifest starts a new process while the
    old one keeps running for ``linger`` more looks (``pgrep`` calls), then stops."""

    node = "node1"
    _pids = itertools.count(100)

    def __init__(self, manifests: dict[staticpods.StaticPod, str], *, linger: int = 2, healthy: bool = True) -> None:
        self.files: dict[str, bytes] = {p.manifest: text.encode() for p, text in manifests.items()}
        self.running: dict[str, list[int]] = {p.name: [next(self._pids)] for p in manifests}
        self.stopping: dict[str, int] = {}
        self.modes: dict[str, str] = {}
        self.linger, self.healthy = linger, healthy
        self.log: list[str] = []

    @property
    def as_root(self) -> bool:
        return True

    def _exec(self, argv: tuple[str, ...], stdin: bytes | None, timeout: float | None
              ) -> tuple[int | None, bytes, bytes]:
        code, out = self._answer(list(argv))
        return code, out.encode(), b""

    def _answer(self, argv: list[str]) -> tuple[int, str]:
        match argv:
            case ["cat", path]:
                return (0, self.files[path].decode()) if path in self.files else (1, "")
            case ["sha256sum", "--", path]:
                return (0, hashlib.sha256(self.files[path]).hexdigest() + "  " + path) if path in self.files \
                    else (1, "")
            case ["stat", "-c", _, "--", path]:
                return (0, self.modes.get(path, "600 root root")) if path in self.files else (1, "")
            case ["test", "-e", path]:
                return (0 if path in self.files else 1), ""
            case ["mkdir", "-p", "--", _]:
                return 0, ""
            case ["sh", "-c", _, "mark", folder, unit]:
                self.files[f"{folder}/{unit}"] = b""
                self.log.append(f"mark {unit}")
                return 0, ""
            case ["rm", "-f", path]:
                self.files.pop(path, None)
                self.log.append(f"clear {path.rsplit('/', 1)[-1]}")
                return 0, ""
            case ["pgrep", "-a", "-f", pattern]:
                name = pattern[1:].split("(", 1)[0].replace("\\-", "-")
                pids = self.running.get(name, [])
                if name in self.stopping:
                    self.stopping[name] -= 1
                    if self.stopping[name] < 0:
                        del self.stopping[name]
                        self.running[name] = pids[-1:]
                return 0, "".join(f"{pid} {name} --flag\n" for pid in self.running.get(name, []))
            case ["curl", *_]:
                return (0, "ok") if self.healthy else (7, "")
        raise AssertionError(f"unexpected command {argv}")

    def put(self, src: Source, remote_path: str, *, mode: int | None = None, owner: str | None = None,
            group: str | None = None, sudo: bool = False) -> None:
        assert isinstance(src, bytes)
        self.files[remote_path] = src
        self.modes[remote_path] = f"{mode or 0o644:o} {owner or 'root'} {group or 'root'}"
        pod = next((p for p in CONTROL_PLANE if p.manifest == remote_path), None)
        if pod is None:
            self.log.append(f"write {remote_path}")
        else:  # the kubelet: a new pod beside the old one, which takes a while to stop
            self.log.append(f"restart {pod.name}")
            self.running[pod.name] = [*self.running[pod.name], next(self._pids)]
            self.stopping[pod.name] = self.linger

    def get(self, remote_path: str, local_path: object = None, *, sudo: bool = False) -> bytes:
        return self.files[remote_path]

    def close(self) -> None:
        pass


def _manifests() -> dict[staticpods.StaticPod, str]:
    return {p: KUBEADM_MANIFEST.replace("kube-apiserver", p.name) for p in CONTROL_PLANE}


def _context(tmp_path: Path, nodes: dict[str, ControlPlaneNode]) -> InstallContext:
    inv = variants.inventory(tmp_path, "m-master")
    ctx = open_context(InstallContext, inv, state=tmp_path / "state", known_hosts=tmp_path / "kh",
                       write_secrets=False)
    ctx.connector = lambda host: nodes[host.name]  # type: ignore[assignment]
    return ctx


def test_restart_waits_until_the_old_process_is_gone_and_the_new_one_answers() -> None:
    t = ControlPlaneNode(_manifests(), linger=3)
    old = t.running["kube-apiserver"][0]
    took = staticpods.restart(Context(), t, APISERVER, "changed\n", "https://10.56.56.11:6443/readyz",
                              timeout=30)
    assert t.running["kube-apiserver"] != [old] and len(t.running["kube-apiserver"]) == 1
    assert took >= 3  # one look a second: it waited through the lingering old process


def test_a_restart_that_never_answers_names_the_node_the_pod_and_what_it_saw() -> None:
    t = ControlPlaneNode(_manifests(), linger=0, healthy=False)
    with pytest.raises(KubernetesError, match=r"node1: kube-scheduler not back 0s after its manifest changed "
                                              r"\(/healthz: no answer\)"):
        staticpods.restart(Context(), t, SCHEDULER, "changed\n", "https://127.0.0.1:10259/healthz", timeout=0)


def test_the_restart_phase_restarts_only_what_read_a_changed_file_one_node_at_a_time(tmp_path: Path) -> None:
    nodes = {name: ControlPlaneNode(_manifests(), linger=0) for name in ("node1", "node2", "node3")}
    ctx = _context(tmp_path, nodes)
    # a run that stopped after copying a renewed scheduler.conf onto node2: only the mark on the node says so
    nodes["node2"].files[f"{nodeops.PENDING_DIR}/kube-scheduler"] = b""
    # this run copied a renewed apiserver certificate onto node3
    ctx.static_pods_changed["node3"] = {"kube-apiserver", "kube-controller-manager"}
    kphases._restart(ctx)
    assert nodes["node1"].log == []
    assert nodes["node2"].log == ["restart kube-scheduler", "clear kube-scheduler"]
    assert nodes["node3"].log == ["restart kube-apiserver", "clear kube-apiserver",
                                  "restart kube-controller-manager", "clear kube-controller-manager"]
    stamp = yaml.safe_load(nodes["node3"].files[APISERVER.manifest])["metadata"]["annotations"]
    assert "to read the files kha changed" in stamp[staticpods.RESTARTED]
    # a second run: nothing pending, nothing restarted
    for n in nodes.values():
        n.log.clear()
    ctx.static_pods_changed.clear()
    kphases._restart(ctx)
    assert all(n.log == [] for n in nodes.values())


def test_a_control_plane_not_joined_yet_only_loses_its_mark(tmp_path: Path) -> None:
    nodes = {name: ControlPlaneNode({}, linger=0) for name in ("node1", "node2", "node3")}
    ctx = _context(tmp_path, nodes)
    ctx.static_pods_changed["node1"] = {"kube-apiserver"}
    kphases._restart(ctx)
    assert nodes["node1"].log == ["clear kube-apiserver"]


def test_files_mark_their_readers_before_they_are_written(tmp_path: Path) -> None:
    t = ControlPlaneNode(_manifests())
    files = [NodeFile("/etc/kubernetes/admin.conf", b"a"), NodeFile("/etc/kubernetes/pki/apiserver.crt", b"b"),
             NodeFile("/etc/kubernetes/pki/ca.crt", b"c")]
    changed = nodeops.sync_files(Context(), t, files, restarts=lambda p: [r.name for r in staticpods.readers(p)])
    assert changed == [f.path for f in files]
    # each reader marked once, before the first file it reads was written
    assert t.log == ["write /etc/kubernetes/admin.conf",
                     "mark kube-apiserver", "write /etc/kubernetes/pki/apiserver.crt",
                     "mark kube-controller-manager", "write /etc/kubernetes/pki/ca.crt"]
    # nothing changed: nothing marked
    t.log.clear()
    assert nodeops.sync_files(Context(), t, files, restarts=lambda p: [r.name for r in staticpods.readers(p)]) == []
    assert t.log == []
