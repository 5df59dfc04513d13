"""The installed control plane is hardened as kha says (installer/kubernetes/hardening.py): Secrets are
encrypted in etcd, the audit log records requests without their bodies, profiling is off. (The load balancer's
unprivileged workers, haproxy's chroot and its runtime API are ``kha check``'s ``loadbalancer/backends``.)

Runs against the session's ``installed`` topology (conftest.py), like test_kubernetes.py.
"""

from __future__ import annotations

import base64
import json
import secrets
from collections.abc import Iterator

import pytest
from e2e_support import Installed

from installer.etcd import ctl
from installer.kubernetes import hardening

pytestmark = pytest.mark.e2e

NAME = "kha-e2e-at-rest"


def _etcd_value(inst: Installed, key: str) -> bytes:
    """The raw value etcd stores under ``key``, read on an etcd node with etcdctl (JSON: base64 values)."""
    etcd = inst.topo.etcd[0]
    res = inst.run(etcd, ctl.argv("get", key, "-w", "json", endpoints=ctl.client_urls([etcd])), timeout=30)
    kvs = json.loads(res.stdout).get("kvs", [])
    assert len(kvs) == 1, f"{key}: {res.stdout}"
    return base64.b64decode(kvs[0]["value"])


@pytest.fixture
def canary(installed: Installed) -> Iterator[str]:
    """A Secret and a ConfigMap in ``default`` holding the same random value; deleted afterwards."""
    value = f"kha-canary-{secrets.token_hex(8)}"
    for kind in ("secret generic", "configmap"):
        installed.kubectl("-n", "default", "create", *kind.split(), NAME, f"--from-literal=canary={value}")
    try:
        yield value
    finally:
        installed.kubectl("-n", "default", "delete", "secret,configmap", NAME, "--ignore-not-found", check=False)


def test_a_secret_is_encrypted_in_etcd(installed: Installed, canary: str) -> None:
    # The API gives it back in clear: encryption is transparent to clients.
    data = installed.kubectl_json("-n", "default", "get", "secret", NAME)["data"]
    assert base64.b64decode(data["canary"]).decode() == canary
    stored = _etcd_value(installed, f"/registry/secrets/default/{NAME}")
    assert stored.startswith(f"k8s:enc:aescbc:v1:{hardening.ENCRYPTION_KEY_NAME}:".encode()), stored[:40]
    assert canary.encode() not in stored
    # The same read of a ConfigMap (not encrypted) does find the value: the check above can see plaintext.
    plain = _etcd_value(installed, f"/registry/configmaps/default/{NAME}")
    assert not plain.startswith(b"k8s:enc:") and canary.encode() in plain


def test_the_audit_log_records_requests_without_bodies(installed: Installed, canary: str) -> None:
    installed.kubectl("-n", "default", "get", "secret", NAME, "-o", "name")
    # Requests reach any apiserver through the LB: gather every control plane's log (written as each completes).
    out = "".join(installed.run(m, ["grep", "-F", NAME, hardening.AUDIT_LOG], check=False).stdout
                  for m in installed.topo.masters)
    events = [json.loads(line) for line in out.splitlines()]
    ours = [e for e in events if e.get("objectRef", {}).get("resource") == "secrets"]
    assert {"create", "get"} <= {e["verb"] for e in ours}, events
    assert {e["level"] for e in ours} == {"Metadata"}
    # No request or response body: neither the value nor its base64 form (a Secret's data) is logged.
    assert canary not in out and base64.b64encode(canary.encode()).decode() not in out


def test_profiling_is_off_on_every_control_plane(installed: Installed) -> None:
    pods = installed.kubectl_json("-n", "kube-system", "get", "pods")["items"]
    components = ("kube-apiserver", "kube-controller-manager", "kube-scheduler")
    seen = 0
    for pod in pods:
        name = pod["metadata"]["name"]
        if name.startswith(components):
            assert "--profiling=false" in pod["spec"]["containers"][0]["command"], name
            seen += 1
    assert seen == len(components) * len(installed.topo.masters)
