"""The control plane's hardening: which of it is on (``Hardening``, from the inventory), the files it
needs on each control plane (the Secrets encryption config, the audit policy), the kubeadm flags
and volumes that use them, and the table of CIS Kubernetes Benchmark items kha controls (``CIS``),
which the README shows and a unit test holds against the rendered configs.

On by default, each with a knob to opt out (or in, where the node may not allow it):

- ``kube_encryption_at_rest`` (true): Secrets are stored aescbc-encrypted in etcd, with one random
  32-byte key per cluster kept in the state folder.
- ``kubernetes_audit`` (true; kubeadm-ha's knob of the same name defaults to false): an audit log
  with rotation, metadata only (never a request or response body, so no Secret's data).
- ``kube_profiling`` (false): no /debug/pprof on apiserver, controller-manager and scheduler.
- ``lb_haproxy_chroot`` (true): haproxy runs as user haproxy in a chroot (nginx's workers already
  run as the distribution's nginx user).
- ``kubelet_protect_kernel_defaults`` (false): kubelet refuses to start when the kernel's sysctls
  differ from what it expects instead of changing them. Off by default: nodes that are containers
  cannot set kernel sysctls, and kha does not know what its nodes are (it installs onto machines it
  did not create); turn it on for VMs and bare metal.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from installer.secrets import ClusterSecrets
from installer.settings import Settings

ENCRYPTION_CONFIG = "/etc/kubernetes/pki/encryption-config.yaml"
AUDIT_POLICY = "/etc/kubernetes/audit-policy.yaml"
AUDIT_LOG_DIR = "/var/log/kubernetes/audit"
AUDIT_LOG = f"{AUDIT_LOG_DIR}/kube-apiserver-audit.log"
#: Rotation as the CIS benchmark asks (items 1.2.23–1.2.25): 30 days, 10 files, 100 MB each.
AUDIT_MAXAGE_DAYS, AUDIT_MAXBACKUP, AUDIT_MAXSIZE_MB = 30, 10, 100
#: The key's name in the EncryptionConfiguration; etcd values then start ``k8s:enc:aescbc:v1:<name>:``.
ENCRYPTION_KEY_NAME = "kha1"


@dataclass(frozen=True)
class Hardening:
    """Which hardening the inventory keeps on. Defaults: everything but ``protect_kernel_defaults``."""

    encryption_at_rest: bool = True
    audit: bool = True
    profiling: bool = False
    protect_kernel_defaults: bool = False
    #: haproxy (the apiserver LB) as user haproxy in a chroot.
    haproxy_chroot: bool = True

    @classmethod
    def of(cls, s: Settings) -> Hardening:
        # The knobs (kube_encryption_at_rest, kubernetes_audit, kube_profiling,
        # kubelet_protect_kernel_defaults) are read when settings.py has them, else these defaults.
        d = cls()
        return cls(
            encryption_at_rest=bool(getattr(s, "kube_encryption_at_rest", d.encryption_at_rest)),
            audit=bool(getattr(s, "kubernetes_audit", d.audit)),
            profiling=bool(getattr(s, "kube_profiling", d.profiling)),
            protect_kernel_defaults=bool(getattr(s, "kubelet_protect_kernel_defaults", d.protect_kernel_defaults)),
            haproxy_chroot=bool(getattr(s, "lb_haproxy_chroot", d.haproxy_chroot)),
        )


def encryption_key(secrets: ClusterSecrets) -> bytes:
    """The cluster's 32-byte Secrets encryption key.

    Derived (HKDF-SHA256, its own label) from the random 32-byte ``certificate_key`` the state folder
    already keeps per cluster and never regenerates, so the key is random per cluster, stable across
    runs, and needs no second copy to keep in step. kha does not use the certificate key for anything
    else (it distributes the PKI itself, never through kubeadm's upload-certs).
    """
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
                info=b"kha encryption-at-rest aescbc key 1").derive(bytes.fromhex(secrets.certificate_key))


def encryption_config(secrets: ClusterSecrets) -> dict[str, Any]:
    """Secrets encrypted with aescbc; ``identity`` second so Secrets written before encryption was on
    stay readable (https://kubernetes.io/docs/tasks/administer-cluster/encrypt-data/)."""
    key = base64.b64encode(encryption_key(secrets)).decode()
    return {
        "apiVersion": "apiserver.config.k8s.io/v1",
        "kind": "EncryptionConfiguration",
        "resources": [{
            "resources": ["secrets"],
            "providers": [{"aescbc": {"keys": [{"name": ENCRYPTION_KEY_NAME, "secret": key}]}}, {"identity": {}}],
        }],
    }


def audit_policy() -> dict[str, Any]:
    """Metadata (who did what to which object, when) for everything worth it; never a body, so a Secret's
    data never reaches the log (https://kubernetes.io/docs/tasks/debug/debug-cluster/audit/)."""
    return {
        "apiVersion": "audit.k8s.io/v1",
        "kind": "Policy",
        # The request arrives and then completes: log it once, at completion.
        "omitStages": ["RequestReceived"],
        "rules": [
            # Health checks: every LB asks every apiserver each second (haproxy's /readyz check).
            {"level": "None", "nonResourceURLs": ["/healthz*", "/livez*", "/readyz*", "/version"]},
            # The steady watch traffic of kube-proxy and the events stream say nothing about who changed what.
            {"level": "None", "users": ["system:kube-proxy"], "verbs": ["watch"],
             "resources": [{"group": "", "resources": ["endpoints", "services", "services/status"]},
                           {"group": "discovery.k8s.io", "resources": ["endpointslices"]}]},
            {"level": "None", "resources": [{"group": "", "resources": ["events"]},
                                            {"group": "events.k8s.io", "resources": ["events"]}]},
            # Objects that carry secrets: metadata only, stated explicitly so no later rule can log bodies.
            {"level": "Metadata", "resources": [
                {"group": "", "resources": ["secrets", "configmaps", "serviceaccounts/token"]},
                {"group": "authentication.k8s.io", "resources": ["tokenreviews"]}]},
            {"level": "Metadata"},
        ],
    }


def apiserver_args(h: Hardening) -> dict[str, str]:
    """kube-apiserver flags (kubeadm ``apiServer.extraArgs``).

    ``--anonymous-auth`` stays as kubeadm sets it (true): haproxy's health check asks each apiserver
    ``GET /readyz`` without credentials, which RBAC's system:public-info-viewer allows (and only
    /healthz, /livez, /readyz, /version). Turning it off would take every apiserver out of rotation.
    """
    out: dict[str, str] = {"profiling": str(h.profiling).lower()}
    if h.encryption_at_rest:
        out["encryption-provider-config"] = ENCRYPTION_CONFIG
    if h.audit:
        out |= {"audit-policy-file": AUDIT_POLICY, "audit-log-path": AUDIT_LOG,
                "audit-log-maxage": str(AUDIT_MAXAGE_DAYS), "audit-log-maxbackup": str(AUDIT_MAXBACKUP),
                "audit-log-maxsize": str(AUDIT_MAXSIZE_MB)}
    return out


def apiserver_volumes(h: Hardening) -> list[dict[str, Any]]:
    """Host paths the apiserver's static pod needs for the flags above. The encryption config lives under
    /etc/kubernetes/pki, which kubeadm already mounts (read-only) into the apiserver: no volume for it."""
    if not h.audit:
        return []
    return [
        {"name": "audit-policy", "hostPath": AUDIT_POLICY, "mountPath": AUDIT_POLICY, "readOnly": True,
         "pathType": "File"},
        {"name": "audit-log", "hostPath": AUDIT_LOG_DIR, "mountPath": AUDIT_LOG_DIR, "readOnly": False,
         "pathType": "DirectoryOrCreate"},
    ]


def component_args(h: Hardening) -> dict[str, str]:
    """kube-controller-manager and kube-scheduler flags."""
    return {"profiling": str(h.profiling).lower()}


def kubelet_config(h: Hardening) -> dict[str, Any]:
    """KubeletConfiguration fields. Anonymous requests to the kubelet are refused (kubeadm's default too;
    stated so the table below can check it)."""
    out: dict[str, Any] = {"authentication": {"anonymous": {"enabled": False}}}
    if h.protect_kernel_defaults:
        out["protectKernelDefaults"] = True
    return out


class Status(StrEnum):
    ON = "on"  # on by default; the knob turns it off
    OPT_IN = "opt-in"  # off by default; the knob turns it on
    NOT_APPLIED = "not applied"  # kha leaves it as it is, for the reason given


@dataclass(frozen=True)
class Item:
    """One CIS Kubernetes Benchmark item kha controls: what the rendered config holds when it applies.

    ``component``: where the setting lives (``kube-apiserver``, ``kube-controller-manager``,
    ``kube-scheduler`` flags; ``kubelet`` KubeletConfiguration field; ``etcd`` flag; ``file`` a file on
    every control plane), ``setting`` and ``value`` what it must be."""

    item: str
    title: str
    status: Status
    knob: str | None
    component: str
    setting: str
    value: str
    why: str


#: CIS Kubernetes Benchmark v1.6.0 (Kubernetes 1.16–1.18; the items kha controls read the same for 1.20),
#: numbered as kube-bench's cfg/cis-1.6.
CIS: tuple[Item, ...] = (
    Item("1.2.1", "apiserver --anonymous-auth=false", Status.NOT_APPLIED, None, "kube-apiserver",
         "anonymous-auth", "false",
         "haproxy checks GET /readyz on each apiserver without credentials; RBAC lets anonymous read only "
         "/healthz, /livez, /readyz and /version"),
    Item("1.2.21", "apiserver --profiling=false", Status.ON, "kube_profiling", "kube-apiserver", "profiling",
         "false", "no /debug/pprof on the API"),
    Item("1.2.22", "apiserver --audit-log-path", Status.ON, "kubernetes_audit", "kube-apiserver", "audit-log-path",
         AUDIT_LOG, "who did what, kept on each control plane"),
    Item("1.2.23", "apiserver --audit-log-maxage=30", Status.ON, "kubernetes_audit", "kube-apiserver",
         "audit-log-maxage", str(AUDIT_MAXAGE_DAYS), "rotation bounds the log's disk use"),
    Item("1.2.24", "apiserver --audit-log-maxbackup=10", Status.ON, "kubernetes_audit", "kube-apiserver",
         "audit-log-maxbackup", str(AUDIT_MAXBACKUP), "rotation bounds the log's disk use"),
    Item("1.2.25", "apiserver --audit-log-maxsize=100", Status.ON, "kubernetes_audit", "kube-apiserver",
         "audit-log-maxsize", str(AUDIT_MAXSIZE_MB), "rotation bounds the log's disk use"),
    Item("1.2.33", "apiserver --encryption-provider-config", Status.ON, "kube_encryption_at_rest",
         "kube-apiserver", "encryption-provider-config", ENCRYPTION_CONFIG,
         "a copy of etcd (a snapshot, a disk) does not give away the Secrets"),
    Item("1.2.34", "encryption providers appropriately configured", Status.ON, "kube_encryption_at_rest", "file",
         ENCRYPTION_CONFIG, "aescbc", "aescbc with a random 32-byte key per cluster, first in the provider list"),
    Item("1.3.2", "controller-manager --profiling=false", Status.ON, "kube_profiling", "kube-controller-manager",
         "profiling", "false", "no /debug/pprof"),
    Item("1.4.1", "scheduler --profiling=false", Status.ON, "kube_profiling", "kube-scheduler", "profiling",
         "false", "no /debug/pprof"),
    Item("2.2", "etcd --client-cert-auth=true", Status.ON, None, "etcd", "client-cert-auth", "true",
         "only holders of an etcd CA certificate talk to etcd"),
    Item("2.3", "etcd --auto-tls not true", Status.ON, None, "etcd", "auto-tls", "false",
         "certificates come from the PKI store, never self-signed"),
    Item("2.5", "etcd --peer-client-cert-auth=true", Status.ON, None, "etcd", "peer-client-cert-auth", "true",
         "only members with a peer certificate join"),
    Item("2.6", "etcd --peer-auto-tls not true", Status.ON, None, "etcd", "peer-auto-tls", "false",
         "certificates come from the PKI store, never self-signed"),
    Item("3.2.1", "a minimal audit policy", Status.ON, "kubernetes_audit", "kube-apiserver", "audit-policy-file",
         AUDIT_POLICY, "metadata for everything, never a request body (no Secret data in the log)"),
    Item("4.2.1", "kubelet --anonymous-auth=false", Status.ON, None, "kubelet", "authentication.anonymous.enabled",
         "false", "kubeadm's default, stated"),
    Item("4.2.6", "kubelet --protect-kernel-defaults=true", Status.OPT_IN, "kubelet_protect_kernel_defaults",
         "kubelet", "protectKernelDefaults", "true",
         "nodes that are containers cannot set kernel sysctls; kha does not know what its nodes are"),
)


def cis_markdown() -> str:
    """The table as the README shows it."""
    rows = ["| CIS item | setting | kha | knob | why |", "|---|---|---|---|---|"]
    rows += [f"| {i.item} | {i.title} | {i.status} | {f'`{i.knob}`' if i.knob else '—'} | {i.why} |" for i in CIS]
    return "\n".join(rows) + "\n"
