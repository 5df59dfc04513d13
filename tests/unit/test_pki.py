"""The certificates kha issues, read back from the node trees as a node would get them.

Each store is built at test time from a scenario inventory (m-master and allinone, named by host
name and by IP) for Kubernetes 1.20.2 and 1.29.0. Expectations are written out here from kubeadm's
PKI (shared/FACTS.md), not read from ``installer.pki.table``, so a wrong row fails a test.
"""

from __future__ import annotations

import base64
import datetime as dt
import ipaddress
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import variants
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from installer import topology
from installer.pki.store import Store
from installer.topology import Topology

SERVER, CLIENT = ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH
CA_FILES = {"ca": "ca.crt", "front-proxy-ca": "front-proxy-ca.crt", "etcd/ca": "etcd/ca.crt"}
CA_CNS = {"ca": "kubernetes", "front-proxy-ca": "front-proxy-ca", "etcd/ca": "etcd-ca"}

#: leaf name → (signing CA, extended key usages)
LEAVES: dict[str, tuple[str, set[x509.ObjectIdentifier]]] = {
    "apiserver": ("ca", {SERVER}),
    "apiserver-kubelet-client": ("ca", {CLIENT}),
    "front-proxy-client": ("front-proxy-ca", {CLIENT}),
    "apiserver-etcd-client": ("etcd/ca", {CLIENT}),
    "etcd/server": ("etcd/ca", {SERVER, CLIENT}),
    "etcd/peer": ("etcd/ca", {SERVER, CLIENT}),
    "etcd/healthcheck-client": ("etcd/ca", {CLIENT}),
    "admin.conf": ("ca", {CLIENT}),
    "super-admin.conf": ("ca", {CLIENT}),
    "controller-manager.conf": ("ca", {CLIENT}),
    "scheduler.conf": ("ca", {CLIENT}),
}


def expected_subject(name: str, node: str, v129: bool) -> tuple[str, tuple[str, ...]]:
    masters = ("system:masters",)
    return {
        "apiserver": ("kube-apiserver", ()),
        "apiserver-kubelet-client": ("kube-apiserver-kubelet-client", ("kubeadm:cluster-admins",) if v129 else masters),
        "front-proxy-client": ("front-proxy-client", ()),
        "apiserver-etcd-client": ("kube-apiserver-etcd-client", () if v129 else masters),
        "etcd/server": (node, ()),
        "etcd/peer": (node, ()),
        "etcd/healthcheck-client": ("kube-etcd-healthcheck-client", () if v129 else masters),
        "admin.conf": ("kubernetes-admin", ("kubeadm:cluster-admins",) if v129 else masters),
        "super-admin.conf": ("kubernetes-super-admin", masters),
        "controller-manager.conf": ("system:kube-controller-manager", ()),
        "scheduler.conf": ("system:kube-scheduler", ()),
    }[name]


@dataclass(frozen=True)
class Built:
    root: Path
    topo: Topology
    base: str
    version: str

    @property
    def v129(self) -> bool:
        return self.version.startswith("1.29")

    def ca(self, name: str) -> x509.Certificate:
        return x509.load_pem_x509_certificate((self.root / "ca" / CA_FILES[name]).read_bytes())


def build(dest: Path, base: str, **variables: str) -> Built:
    dest.mkdir(parents=True, exist_ok=True)
    inv = variants.write(dest / "hosts.ini", base, **variables)
    topo = topology.load(inv)
    Store(dest / "store", topo).init(inv.read_bytes())
    return Built(dest / "store", topo, base, variables.get("kube_version", "1.20.2"))


SHAPES = [
    ("m-master.hostname", "1.20.2"),
    ("m-master.ip", "1.20.2"),
    ("allinone.hostname", "1.20.2"),
    ("allinone.ip", "1.20.2"),
    ("m-master.hostname", "1.29.0"),
    ("m-master.ip", "1.29.0"),
    ("allinone.hostname", "1.29.0"),
    ("allinone.ip", "1.29.0"),
]


@pytest.fixture(scope="module", params=SHAPES, ids=[f"{b}-{v}" for b, v in SHAPES])
def built(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Built:
    base, version = request.param
    return build(tmp_path_factory.mktemp(f"pki-{base}-{version}"), base, kube_version=version)


@dataclass(frozen=True)
class Shipped:
    """A leaf certificate as one node receives it."""

    node: str
    name: str  # "apiserver", "etcd/server", "admin.conf"
    path: Path
    cert: x509.Certificate
    pem: bytes


def shipped(root: Path) -> Iterator[Shipped]:
    """Every leaf certificate in every node tree: pki/**/*.crt except CA certificates, and kubeconfigs."""
    for node_dir in sorted((root / "nodes").iterdir()):
        for crt in sorted((node_dir / "pki").rglob("*.crt")):
            rel = crt.relative_to(node_dir / "pki").as_posix()
            if rel in CA_FILES.values():
                continue
            pem = crt.read_bytes()
            yield Shipped(node_dir.name, rel.removesuffix(".crt"), crt, x509.load_pem_x509_certificate(pem), pem)
        for conf in sorted(node_dir.glob("*.conf")):
            pem = kubeconfig_field(conf, "client-certificate-data")
            yield Shipped(node_dir.name, conf.name, conf, x509.load_pem_x509_certificate(pem), pem)


def kubeconfig_field(path: Path, name: str) -> bytes:
    m = re.search(rf"^\s*{name}: (\S+)$", path.read_text(), re.M)
    assert m, f"{path} has no {name}"
    return base64.b64decode(m.group(1))


def kubeconfig_text(path: Path, name: str) -> str:
    m = re.search(rf"^\s*{name}: (\S+)$", path.read_text(), re.M)
    assert m, f"{path} has no {name}"
    return m.group(1)


def sans(cert: x509.Certificate) -> tuple[set[str], set[ipaddress.IPv4Address | ipaddress.IPv6Address]]:
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return set(), set()
    ips = {i for i in ext.get_values_for_type(x509.IPAddress)
           if isinstance(i, ipaddress.IPv4Address | ipaddress.IPv6Address)}
    return set(ext.get_values_for_type(x509.DNSName)), ips


def subject(cert: x509.Certificate) -> tuple[str, tuple[str, ...]]:
    cn = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    orgs = tuple(str(a.value) for a in cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME))
    return str(cn), orgs


def spki(key: x509.Certificate | object) -> bytes:
    pub = key.public_key() if isinstance(key, x509.Certificate) else key
    assert isinstance(pub, rsa.RSAPublicKey | ec.EllipticCurvePublicKey)
    return pub.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    return ipaddress.ip_address(text)


# -- CAs -----------------------------------------------------------------------------------------
def test_three_separate_self_signed_cas_with_kubeadm_flags(built: Built) -> None:
    keys = set()
    for name, cn in CA_CNS.items():
        ca = built.ca(name)
        assert subject(ca) == (cn, ())
        ca.verify_directly_issued_by(ca)
        bc = ca.extensions.get_extension_for_class(x509.BasicConstraints)
        assert bc.critical and bc.value.ca
        ku = ca.extensions.get_extension_for_class(x509.KeyUsage)
        assert ku.critical
        assert ku.value.key_cert_sign and ku.value.digital_signature and ku.value.key_encipherment
        assert ca.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
        assert sans(ca) == ({cn}, set())  # client-go puts the CN in a DNS SAN of every CA
        keys.add(spki(ca))
    assert len(keys) == 3


# -- leaves --------------------------------------------------------------------------------------
def test_every_leaf_chains_to_its_own_ca_only(built: Built) -> None:
    seen = set()
    for s in shipped(built.root):
        signer, _ = LEAVES[s.name]
        s.cert.verify_directly_issued_by(built.ca(signer))
        for other in CA_FILES:
            if other != signer:
                with pytest.raises(ValueError):  # another issuer name: refused before the signature
                    s.cert.verify_directly_issued_by(built.ca(other))
        seen.add(s.name)
    wanted = set(LEAVES) - (set() if built.v129 else {"super-admin.conf"})
    assert seen == wanted


def test_leaf_key_usages_and_identifiers(built: Built) -> None:
    for s in shipped(built.root):
        _, ekus = LEAVES[s.name]
        ku = s.cert.extensions.get_extension_for_class(x509.KeyUsage)
        assert ku.critical, s.path
        assert ku.value.digital_signature and ku.value.key_encipherment, s.path
        assert not ku.value.key_cert_sign, s.path
        assert set(s.cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == ekus, s.path
        bc = s.cert.extensions.get_extension_for_class(x509.BasicConstraints)
        assert bc.critical and not bc.value.ca
        aki = s.cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
        ca_ski = built.ca(LEAVES[s.name][0]).extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        assert aki.key_identifier == ca_ski.digest, s.path
        assert s.cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
        assert s.cert.serial_number > 2**64, "serials are random (160 bits)"


def test_subjects_follow_the_kubernetes_version(built: Built) -> None:
    for s in shipped(built.root):
        assert subject(s.cert) == expected_subject(s.name, s.node, built.v129), s.path


def test_serials_are_unique(built: Built) -> None:
    by_serial: dict[int, bytes] = {}
    for s in shipped(built.root):
        assert by_serial.setdefault(s.cert.serial_number, s.pem) == s.pem, f"{s.path}: serial reused"


def test_apiserver_sans_cover_every_way_to_reach_it(built: Built) -> None:
    topo = built.topo
    masters = topo.masters
    for s in shipped(built.root):
        if s.name != "apiserver":
            continue
        dns, ips = sans(s.cert)
        me = topo.host(s.node)
        assert {"kubernetes", "kubernetes.default", "kubernetes.default.svc",
                "kubernetes.default.svc.cluster.local"} <= dns
        assert ip("10.244.64.1") in ips, "first service IP"
        assert me.address in ips
        for m in masters:
            assert m.address in ips, f"{s.path} lacks master {m.name}"
            if m.name.replace(".", "").isdigit():
                assert ip(m.name) in ips and m.name not in dns, "a node named by IP is an IP SAN, not DNS"
            else:
                assert m.name in dns
        if built.base.startswith("m-master"):
            assert ip("10.56.56.10") in ips, "the VIP"
            assert ip("127.0.0.1") not in ips
        else:
            assert ip("127.0.0.1") in ips and "localhost" in dns, "node-local load balancer"
        assert all(not d.replace(".", "").isdigit() for d in dns), f"IP in a DNS SAN: {dns}"


def test_external_load_balancer_and_extra_sans(tmp_path: Path) -> None:
    b = build(tmp_path, "m-master.hostname", cert_key_type="ecdsa", lb_mode="slb", lb_kube_apiserver_ip="10.56.56.100",
              kube_master_external_ip="203.0.113.7", kube_master_external_domain="k8s.example.com,api.example.com",
              kube_dns_domain="corp.internal", kube_service_subnet="10.96.0.0/12")
    for s in shipped(b.root):
        if s.name == "apiserver":
            dns, ips = sans(s.cert)
            assert {ip("10.56.56.100"), ip("203.0.113.7"), ip("10.96.0.1")} <= ips
            assert {"k8s.example.com", "api.example.com", "kubernetes.default.svc.corp.internal"} <= dns
    assert kubeconfig_text(b.root / "nodes/node2/admin.conf", "server") == "https://10.56.56.100:8443"


def test_etcd_server_and_peer_name_their_node(built: Built) -> None:
    names = {s.name for s in shipped(built.root)}
    assert {"etcd/server", "etcd/peer"} <= names
    for s in shipped(built.root):
        if s.name not in ("etcd/server", "etcd/peer"):
            continue
        host = built.topo.host(s.node)
        dns, ips = sans(s.cert)
        assert subject(s.cert)[0] == host.name
        assert {ip("127.0.0.1"), ip("::1"), host.address} <= ips
        assert "localhost" in dns
        assert (ip(host.name) in ips) if host.name[0].isdigit() else (host.name in dns)


def test_client_certificates_have_no_sans(built: Built) -> None:
    for s in shipped(built.root):
        if LEAVES[s.name][1] == {CLIENT}:
            assert sans(s.cert) == (set(), set()), s.path


def test_validity_is_the_configured_lifetime(built: Built) -> None:
    backdate = dt.timedelta(minutes=5)
    for name in CA_FILES:
        ca = built.ca(name)
        assert ca.not_valid_after_utc - ca.not_valid_before_utc == dt.timedelta(days=3650) + backdate
    for s in shipped(built.root):
        assert s.cert.not_valid_after_utc - s.cert.not_valid_before_utc == dt.timedelta(days=365) + backdate
        assert s.cert.not_valid_before_utc < dt.datetime.now(dt.UTC) - dt.timedelta(minutes=4), "backdated"


def test_lifetime_knobs_reach_the_right_certificates(tmp_path: Path) -> None:
    b = build(tmp_path, "m-master.hostname", cert_key_type="ecdsa", kube_ca_certs_expired="1000",
              etcd_ca_certs_expired="2000", kube_certs_expired="100", etcd_certs_expired="200")
    days = {"ca": 1000, "front-proxy-ca": 1000, "etcd/ca": 2000}
    for name, want in days.items():
        ca = b.ca(name)
        assert (ca.not_valid_after_utc - ca.not_valid_before_utc).days == want, name
    for s in shipped(b.root):
        want = 200 if LEAVES[s.name][0] == "etcd/ca" else 100
        assert (s.cert.not_valid_after_utc - s.cert.not_valid_before_utc).days == want, s.path


def test_keys_match_their_certificates(built: Built) -> None:
    for i, s in enumerate(shipped(built.root)):
        if s.path.suffix == ".conf":
            key_pem = kubeconfig_field(s.path, "client-key-data")
        else:
            key_pem = s.path.with_suffix(".key").read_bytes()
        assert key_pem.startswith(b"-----BEGIN RSA PRIVATE KEY-----"), "PKCS#1, as kubeadm writes keys"
        # OpenSSL's full RSA consistency check costs ~35 ms a key: run it on the first key only.
        key = serialization.load_pem_private_key(key_pem, None, unsafe_skip_rsa_key_validation=i > 0)
        assert spki(key.public_key()) == spki(s.cert.public_key()), s.path
        assert isinstance(key, rsa.RSAPrivateKey) and key.key_size == 2048


# -- openssl agrees ------------------------------------------------------------------------------
def openssl_verify(ca: Path, certs: list[Path], purpose: str) -> None:
    openssl = shutil.which("openssl")
    assert openssl, "openssl is needed to cross-check the certificates"
    argv = [openssl, "verify", "-x509_strict", "-purpose", purpose, "-CAfile", str(ca), *map(str, certs)]
    out = subprocess.run(argv, capture_output=True, text=True, check=False)
    assert out.returncode == 0, f"{' '.join(argv)}\n{out.stdout}{out.stderr}"
    assert out.stdout.count(": OK") == len(certs), out.stdout


def test_openssl_verify_accepts_every_leaf(built: Built, tmp_path: Path) -> None:
    groups: dict[tuple[str, str], list[Path]] = {}
    for i, s in enumerate(shipped(built.root)):
        path: Path = s.path
        if path.suffix == ".conf":
            path = tmp_path / f"{i}.crt"
            path.write_bytes(s.pem)
        signer, ekus = LEAVES[s.name]
        purpose = "sslserver" if SERVER in ekus else "sslclient"
        groups.setdefault((signer, purpose), []).append(path)
    for (signer, purpose), certs in groups.items():
        openssl_verify(built.root / "ca" / CA_FILES[signer], certs, purpose)
    # and the other way round: a certificate from one CA is refused by another
    apiserver = next(s.path for s in shipped(built.root) if s.name == "apiserver")
    out = subprocess.run(["openssl", "verify", "-CAfile", str(built.root / "ca" / "etcd/ca.crt"), str(apiserver)],
                         capture_output=True, text=True, check=False)
    assert out.returncode != 0


# -- kubeconfigs ---------------------------------------------------------------------------------
def test_kubeconfigs_point_where_kubeadm_points_them(built: Built) -> None:
    topo = built.topo
    ca_pem = (built.root / "ca" / "ca.crt").read_bytes()
    endpoint = "https://10.56.56.10:8443" if built.base.startswith("m-master") else "https://127.0.0.1:8443"
    for m in topo.masters:
        node = built.root / "nodes" / m.name
        assert kubeconfig_text(node / "admin.conf", "server") == endpoint
        for local in ("controller-manager.conf", "scheduler.conf"):
            assert kubeconfig_text(node / local, "server") == f"https://{m.address}:6443", "local apiserver"
        for conf in node.glob("*.conf"):
            assert kubeconfig_field(conf, "certificate-authority-data") == ca_pem
            text = conf.read_text()
            user = subject(x509.load_pem_x509_certificate(kubeconfig_field(conf, "client-certificate-data")))[0]
            assert f"current-context: {user}@kubernetes\n" in text
            assert "\n  name: kubernetes\n" in text
            assert text.startswith("apiVersion: v1\nclusters:\n") and "kind: Config\n" in text
    first = built.root / "nodes" / topo.masters[0].name / "super-admin.conf"
    assert first.exists() == built.v129
    assert endpoint == topo.apiserver_endpoint.url
    for m in topo.masters[1:]:
        assert not (built.root / "nodes" / m.name / "super-admin.conf").exists(), "init node only"


def test_kubeconfigs_parse_as_yaml_with_the_kubectl_shape(built: Built) -> None:
    # Parsed by a real YAML parser (kubectl itself is exercised by the e2e tier with the bundle's kubectl).
    node = built.root / "nodes" / built.topo.masters[0].name
    for conf in sorted(node.glob("*.conf")):
        doc = yaml.safe_load(conf.read_text())
        assert doc["apiVersion"] == "v1" and doc["kind"] == "Config"
        (cluster,) = doc["clusters"]
        (user,) = doc["users"]
        (context,) = doc["contexts"]
        assert doc["current-context"] == context["name"] == f"{user['name']}@{cluster['name']}"
        assert cluster["name"] == "kubernetes"
        assert cluster["cluster"]["server"] == kubeconfig_text(conf, "server")
        assert context["context"] == {"cluster": cluster["name"], "user": user["name"]}
        cert = x509.load_pem_x509_certificate(base64.b64decode(user["user"]["client-certificate-data"]))
        assert user["name"] == subject(cert)[0]
        assert base64.b64decode(cluster["cluster"]["certificate-authority-data"]).startswith(b"-----BEGIN CERT")


# -- node trees ----------------------------------------------------------------------------------
MASTER_FILES = {
    "pki/ca.crt", "pki/ca.key", "pki/front-proxy-ca.crt", "pki/front-proxy-ca.key", "pki/sa.key", "pki/sa.pub",
    "pki/apiserver.crt", "pki/apiserver.key", "pki/apiserver-kubelet-client.crt", "pki/apiserver-kubelet-client.key",
    "pki/front-proxy-client.crt", "pki/front-proxy-client.key", "pki/etcd/ca.crt",
    "pki/apiserver-etcd-client.crt", "pki/apiserver-etcd-client.key",
    "admin.conf", "controller-manager.conf", "scheduler.conf",
}
ETCD_FILES = {
    "pki/etcd/ca.crt", "pki/etcd/server.crt", "pki/etcd/server.key", "pki/etcd/peer.crt", "pki/etcd/peer.key",
    "pki/etcd/healthcheck-client.crt", "pki/etcd/healthcheck-client.key",
}
WORKER_FILES = {"pki/ca.crt"}


def tree(node_dir: Path) -> set[str]:
    return {p.relative_to(node_dir).as_posix() for p in node_dir.rglob("*") if p.is_file()}


def test_node_trees_hold_exactly_what_each_role_needs(built: Built) -> None:
    topo = built.topo
    nodes = built.root / "nodes"
    assert {p.name for p in nodes.iterdir()} == {h.name for h in topo.hosts}
    for h in topo.hosts:
        roles = topo.roles(h.name)
        want: set[str] = set()
        if topology.Role.MASTER in roles:
            want |= MASTER_FILES
            if built.v129 and h == topo.masters[0]:
                want.add("super-admin.conf")
        if topology.Role.ETCD in roles:
            want |= ETCD_FILES
        if topology.Role.WORKER in roles:
            want |= WORKER_FILES
        assert tree(nodes / h.name) == want, h.name
        assert not (nodes / h.name / "pki/etcd/ca.key").exists(), "external etcd: no etcd CA key on any node"


def test_shared_files_are_identical_on_every_node(built: Built) -> None:
    nodes = built.root / "nodes"
    for rel in ("pki/ca.crt", "pki/sa.key", "pki/apiserver-kubelet-client.crt", "pki/etcd/healthcheck-client.key",
                "admin.conf"):
        copies = {(n / rel).read_bytes() for n in nodes.iterdir() if (n / rel).exists()}
        assert len(copies) == 1, rel
    assert (nodes / built.topo.masters[0].name / "pki/ca.crt").read_bytes() == (built.root / "ca/ca.crt").read_bytes()


def test_file_modes(built: Built) -> None:
    for p in built.root.rglob("*"):
        mode = p.stat().st_mode & 0o777
        rel = p.relative_to(built.root).as_posix()
        if p.is_dir():
            assert mode == (0o700 if rel == "ca" or rel.startswith("ca/") else 0o755), rel
        elif p.suffix in (".key", ".conf") or p.name in ("inventory.ini", ".lock"):
            assert mode == 0o600, rel
        else:
            assert p.suffix in (".crt", ".pub") or p.name == "identity.json", rel
            assert mode == 0o644, rel


# -- key types -----------------------------------------------------------------------------------
def test_ecdsa_option(tmp_path: Path) -> None:
    b = build(tmp_path, "m-master.ip", cert_key_type="ecdsa", kube_version="1.29.0")
    for name in CA_FILES:
        key = b.ca(name).public_key()
        assert isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name == "secp256r1"
    certs = list(shipped(b.root))
    assert certs
    for s in certs:
        key = s.cert.public_key()
        assert isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name == "secp256r1", s.path
        if s.path.suffix == ".crt":
            assert s.path.with_suffix(".key").read_bytes().startswith(b"-----BEGIN EC PRIVATE KEY-----")
    sa = (b.root / "ca/sa.key").read_bytes()
    assert sa.startswith(b"-----BEGIN RSA PRIVATE KEY-----"), "the service-account key stays RSA, like kubeadm's"
    server = [s.path for s in certs if s.name in ("etcd/server", "etcd/peer")]
    openssl_verify(b.root / "ca/etcd/ca.crt", server, "sslserver")
