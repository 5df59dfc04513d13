"""An installed cluster works as its users expect: etcd, the API behind its endpoint, nodes, system pods,
pod networking to the API and between nodes through a Service, and a second ``kha install`` that changes
nothing.

Runs against the ``installed`` topology (conftest.py). kubectl runs on the first master over SSH with the
admin kubeconfig; pods run the busybox test image (imported by the fixture, ``imagePullPolicy: Never``).
Offline clusters have no CoreDNS (no image source here; the README says so): the system pods expected are
exactly the control plane's static pods and one kube-proxy per node.
"""

from __future__ import annotations

import io
import ipaddress
import json
import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from e2e_support import NAMESPACE, Installed, ran

from core import waiting
from installer import topology
from installer.kubernetes import cni
from installer.kubernetes.phases import ADMIN_CONF
from installer.state import StateDir

pytestmark = pytest.mark.e2e

#: What the second install may not touch (those present and active on each node are compared).
SERVICES = ("containerd", "kubelet", "etcd", "haproxy", "keepalived", "nginx")
WEB_PORT = 8080
MARKER = "kha-e2e served by"


class PollTimeout(AssertionError):
    """``_poll`` ran out of time: a test failure a caller may catch to add what it knows (``kubectl describe``)."""


def _poll(what: str, check: Callable[[], str | None], timeout: float, interval: float = 1.0) -> None:
    """Call ``check`` until it returns None (done); fail with its last answer after ``timeout`` s."""
    waiting.until(check, timeout=timeout, interval=interval,
                  error=lambda problem: PollTimeout(f"{what} after {timeout:.0f}s: {problem}"))


def _json(inst: Installed, *args: str) -> Any:
    return inst.kubectl_json(*args)


# -- the offline install's shape ------------------------------------------------------------------
# Node and cluster health (etcd, /readyz, nodes Ready, kube-system pods Running …) is ``kha check``'s:
# tests/e2e/test_checks.py runs its modules (installer/checks). What stays here is what the offline bundle makes.
def test_offline_install_runs_exactly_the_control_plane_and_kube_proxy(installed: Installed) -> None:
    static = {f"{component}-{m.name}" for m in installed.topo.masters
              for component in ("kube-apiserver", "kube-controller-manager", "kube-scheduler")}
    names = {p["metadata"]["name"] for p in _json(installed, "-n", "kube-system", "get", "pods")["items"]}
    proxies = {n for n in names if n.startswith("kube-proxy-")}
    # etcd is external (no etcd-* pods), and the offline install skips CoreDNS on purpose, so none is expected.
    assert names == static | proxies
    assert len(proxies) == len(installed.kubernetes_nodes)
    deployments = installed.kubectl("-n", "kube-system", "get", "deployments", "-o", "name").stdout.split()
    assert not [d for d in deployments if "coredns" in d], deployments


# -- pods ----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def namespace(installed: Installed) -> Iterator[str]:
    """The namespace test pods live in; deleted (with everything in it) afterwards."""
    installed.kubectl("create", "namespace", NAMESPACE)
    try:
        yield NAMESPACE
    finally:
        installed.kubectl("delete", "namespace", NAMESPACE, "--wait=true", "--timeout=120s", timeout=150)


def _pod(inst: Installed, name: str, node: str, command: list[str], *, labels: dict[str, str] | None = None,
         container: dict[str, Any] | None = None) -> dict[str, Any]:
    """A busybox pod pinned to ``node``. Masters carry the control-plane taint: tolerate every taint."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": NAMESPACE, "labels": labels or {}},
        "spec": {
            "nodeSelector": {"kubernetes.io/hostname": _hostname_label(inst, node)},
            "tolerations": [{"operator": "Exists"}],
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 1,
            "containers": [{"name": "main", "image": inst.image.ref, "imagePullPolicy": "Never",
                            "command": command, **(container or {})}],
        },
    }


def _hostname_label(inst: Installed, node: str) -> str:
    labels = _json(inst, "get", "node", node)["metadata"]["labels"]
    return str(labels["kubernetes.io/hostname"])


def _create(inst: Installed, *objects: dict[str, Any]) -> None:
    inst.kubectl("create", "-f", "-", stdin=json.dumps({"apiVersion": "v1", "kind": "List", "items": list(objects)}))


def _wait_finished(inst: Installed, pod: str, timeout: float = 120) -> dict[str, Any]:
    """Until the pod ran to the end; returns it. Fails with ``kubectl describe`` when it did not."""
    state: dict[str, Any] = {}

    def finished() -> str | None:
        state["pod"] = _json(inst, "-n", NAMESPACE, "get", "pod", pod)
        phase = state["pod"]["status"].get("phase")
        return None if phase in ("Succeeded", "Failed") else f"phase {phase}"

    try:
        _poll(f"pod {pod} did not finish", finished, timeout)
    except PollTimeout as exc:  # only the timeout: an error from kubectl itself goes up as it is
        describe = inst.kubectl("-n", NAMESPACE, "describe", "pod", pod, check=False).stdout
        pytest.fail(f"{exc}\n{describe}")
    return state["pod"]


def _logs(inst: Installed, pod: str) -> str:
    return inst.kubectl("-n", NAMESPACE, "logs", pod, check=False).stdout


def test_pod_reaches_the_apiserver_service_ip(installed: Installed, namespace: str) -> None:
    service_ip = str(next(installed.topo.settings.kube_service_subnet.hosts()))
    kubernetes = _json(installed, "-n", "default", "get", "service", "kubernetes")
    assert kubernetes["spec"]["clusterIP"] == service_ip
    # A worker when there is one: its pod reaches the API through kube-proxy's rules and the pod routes.
    node = (installed.topo.workers or installed.topo.masters)[-1].name
    # Debian's busybox nc has no -z: send a plain-HTTP request to the TLS port instead; Go's server
    # answers "400 … HTTP request to an HTTPS server" — proof the apiserver itself answered.
    probe = f"printf 'GET /readyz HTTP/1.0\\r\\n\\r\\n' | nc -w 3 {service_ip} 443"
    _create(installed, _pod(installed, "api-probe", node, ["sh", "-c", probe]))
    pod = _wait_finished(installed, "api-probe")
    logs = _logs(installed, "api-probe")
    assert pod["spec"]["nodeName"] == node
    assert pod["status"]["phase"] == "Succeeded", logs
    assert "HTTP request to an HTTPS server" in logs, logs


def _placement(inst: Installed) -> tuple[str, str]:
    """(server node, client node): the server on a worker, the client on another node — a master, which
    needs the toleration. allinone has one node: both run there (pod → ClusterIP → pod on one bridge)."""
    topo = inst.topo
    master_names = {m.name for m in topo.masters}
    pure_workers = [w for w in topo.workers if w.name not in master_names]
    server = (pure_workers or list(topo.workers) or list(topo.masters))[0].name
    others = [m.name for m in topo.masters if m.name != server]
    return server, (others[0] if others else server)


def test_pod_reaches_pod_on_another_node_through_a_service(installed: Installed, namespace: str) -> None:
    server_node, client_node = _placement(installed)
    if len(installed.kubernetes_nodes) > 1:
        assert server_node != client_node
    web = "mkdir -p /www && echo \"kha-e2e served by $NODE_NAME\" > /www/index.html && " \
          f"exec httpd -f -p {WEB_PORT} -h /www"
    server = _pod(installed, "web", server_node, ["sh", "-c", web], labels={"app": "kha-e2e-web"}, container={
        "env": [{"name": "NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}],
        "ports": [{"containerPort": WEB_PORT}],
        "readinessProbe": {"tcpSocket": {"port": WEB_PORT}, "periodSeconds": 1},
    })
    service = {
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "web", "namespace": NAMESPACE},
        "spec": {"selector": {"app": "kha-e2e-web"}, "ports": [{"port": 80, "targetPort": WEB_PORT}]},
    }
    _create(installed, server, service)
    installed.kubectl("-n", NAMESPACE, "wait", "--for=condition=Ready", "pod/web", "--timeout=120s", timeout=150)
    cluster_ip = _json(installed, "-n", NAMESPACE, "get", "service", "web")["spec"]["clusterIP"]
    assert ipaddress.ip_address(cluster_ip) in installed.topo.settings.kube_service_subnet

    # kube-proxy programs the Service's rules on each node a moment after the endpoint appears: retry.
    get = f"printf 'GET / HTTP/1.0\\r\\nHost: web\\r\\n\\r\\n' | nc -w 3 {cluster_ip} 80"
    client_script = (f"i=0; while [ $i -lt 30 ]; do out=$({get}); "
                     f"case \"$out\" in *'{MARKER}'*) echo \"$out\"; exit 0;; esac; i=$((i+1)); sleep 1; done; "
                     "echo \"no answer: $out\"; exit 1")
    _create(installed, _pod(installed, "client", client_node, ["sh", "-c", client_script]))
    client = _wait_finished(installed, "client")
    logs = _logs(installed, "client")
    web_pod = _json(installed, "-n", NAMESPACE, "get", "pod", "web")
    assert (web_pod["spec"]["nodeName"], client["spec"]["nodeName"]) == (server_node, client_node)
    assert client["status"]["phase"] == "Succeeded", logs
    assert "200 OK" in logs, logs
    assert f"{MARKER} {server_node}" in logs, logs


# -- idempotence ---------------------------------------------------------------------------------
def _service_starts(inst: Installed) -> dict[tuple[str, str], tuple[str, str, str]]:
    """(node, unit) → (ActiveEnterTimestampMonotonic, MainPID, NRestarts) of every active unit we installed."""
    found = {}
    for host in inst.topo.hosts:
        for unit in SERVICES:
            out = inst.run(host, ["systemctl", "show", "--property=LoadState,ActiveState,"
                                  "ActiveEnterTimestampMonotonic,MainPID,NRestarts", unit]).stdout
            props = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
            if props.get("LoadState") == "loaded" and props.get("ActiveState") == "active":
                found[host.name, unit] = (props["ActiveEnterTimestampMonotonic"], props["MainPID"],
                                          props.get("NRestarts", ""))
    return found


def _control_plane_containers(inst: Installed) -> dict[str, tuple[str, str]]:
    """kube-system pod → (uid, first container's id): a restarted or re-created static pod changes them."""
    pods = _json(inst, "-n", "kube-system", "get", "pods")["items"]
    return {p["metadata"]["name"]: (p["metadata"]["uid"], p["status"]["containerStatuses"][0].get("containerID", ""))
            for p in pods}


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(f"{record.name}: {record.getMessage()}")


def test_online_flannel_manifest_is_accepted_by_the_apiserver(installed: Installed, tmp_path: Path) -> None:
    """The flannel manifest an online install applies, validated by this cluster's API server
    (server-side dry run: schema, defaults, admission) — images cannot be pulled here, so it is not run."""
    inv = tmp_path / "flannel.ini"
    inv.write_text(installed.inventory.read_text().replace('network_plugin="bridge"', 'network_plugin="flannel"'))
    [manifest] = cni.manifests(topology.load(inv))
    assert manifest.content is not None
    # A server-side dry run does not create the namespace the other objects go into: create it for real.
    installed.kubectl("create", "namespace", "kube-flannel")
    try:
        res = installed.kubectl("apply", "--dry-run=server", "-f", "-", stdin=manifest.content.decode(), check=False)
    finally:
        installed.kubectl("delete", "namespace", "kube-flannel", "--wait=false")
    assert res.ok, res.stdout + res.stderr
    applied = {line.split(" ")[0] for line in res.stdout.splitlines()}
    assert {"namespace/kube-flannel", "daemonset.apps/kube-flannel-ds", "configmap/kube-flannel-cfg",
            "clusterrole.rbac.authorization.k8s.io/flannel"} <= applied, res.stdout


def _ttl_s(ttl: str) -> float:
    """kubeadm token list's TTL column (``23h``, ``59m``, ``45s``) in seconds."""
    return float(ttl[:-1]) * {"h": 3600, "m": 60, "s": 1}[ttl[-1]]


def test_joins_remade_the_bootstrap_token_for_an_hour(installed: Installed) -> None:
    """kubeadm init makes the bootstrap token for 24 h and nothing renews it, so a node joining a day later
    was refused: kha re-makes the state's token for JOIN_TOKEN_TTL right before nodes join (only then)."""
    token = StateDir(installed.state).secrets(installed.topo, write=False).kubeadm_token
    listed = installed.run(installed.topo.first_master, ["kubeadm", "token", "list", f"--kubeconfig={ADMIN_CONF}"])
    rows = [line.split() for line in listed.stdout.splitlines() if line.startswith(f"{token} ")]
    assert len(rows) == 1, listed.stdout
    ttl = _ttl_s(rows[0][1])
    joined = len(installed.kubernetes_nodes) > 1
    if joined:  # m-master: made again before the joins, an hour at most
        assert ttl <= 3600, listed.stdout
        assert "re-made for a join" in listed.stdout, listed.stdout
    else:  # allinone: nothing joined, the token kubeadm init made is untouched
        assert ttl > 3600, listed.stdout


def test_second_install_changes_and_restarts_nothing(installed: Installed) -> None:
    services = _service_starts(installed)
    expected = {(h.name, "containerd") for h in installed.kubernetes_nodes} | {
        (h.name, "kubelet") for h in installed.kubernetes_nodes} | {(h.name, "etcd") for h in installed.topo.etcd}
    assert expected <= set(services), sorted(expected - set(services))
    pods = _control_plane_containers(installed)

    # The installer logs each file it writes and each PKI change at INFO ("…: wrote /etc/…").
    records = _Records()
    logger = logging.getLogger("installer")
    level = logger.level
    logger.addHandler(records)
    logger.setLevel(logging.INFO)
    out = io.StringIO()
    try:
        result = installed.install(out)
    finally:
        logger.removeHandler(records)
        logger.setLevel(level)
    installed.timings.rerun = ran(result)

    assert [r for r in records.lines if "wrote" in r or r.startswith("installer.install: pki:")] == []
    assert "kubernetes/ready" in result.paths(), out.getvalue()
    assert _service_starts(installed) == services
    assert _control_plane_containers(installed) == pods
