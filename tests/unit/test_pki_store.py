"""The PKI store over time: re-runs, a master added or demoted, a version bump, tampering, check and renew.

Stores are built at test time in tmp_path from the scenario inventories. Most use ECDSA keys to keep
the unit tier fast; the re-run and add-a-master tests use the default RSA 2048.
"""

from __future__ import annotations

import base64
import datetime as dt
import fcntl
import logging
import os
import re
from pathlib import Path

import pytest
import variants
from cryptography import x509
from cryptography.x509.oid import NameOID

from installer import topology
from installer.errors import ConfigError, PKIError, StateBusy
from installer.pki import crypto, kubeconfig
from installer.pki.store import Store
from installer.settings import KeyType
from kha.cli import main

Snapshot = dict[str, tuple[bytes, int, int]]


def add_master(inv: Path, name: str, address: str) -> None:
    """Put a new host in [all] and in [new-master], the way a day-2 add is written."""
    text = inv.read_text()
    text = text.replace("\n\n; two [lb] nodes", f'\n{name} ansible_host={address} ansible_port=22 ansible_user="root"'
                        "\n\n; two [lb] nodes", 1)
    text = text.replace("[new-master]\n", f"[new-master]\n{name}\n", 1)
    inv.write_text(text)


def snapshot(root: Path) -> Snapshot:
    out: Snapshot = {}
    for p in sorted(root.rglob("*")):
        if p.is_file():
            st = p.stat()
            out[p.relative_to(root).as_posix()] = (p.read_bytes(), st.st_mtime_ns, st.st_mode & 0o777)
    return out


def changed(before: Snapshot, after: Snapshot) -> set[str]:
    return {k for k in before.keys() | after.keys() if before.get(k, (b"",))[0] != after.get(k, (b"",))[0]}


def init(tmp: Path, base: str = "m-master.hostname", **variables: str) -> tuple[Path, Path]:
    inv = variants.write(tmp / "hosts.ini", base, **variables)
    root = tmp / "store"
    Store(root, topology.load(inv)).init(inv.read_bytes())
    return inv, root


def cert(path: Path) -> x509.Certificate:
    if path.suffix == ".conf":
        kc = kubeconfig.parse(path.read_bytes(), str(path))
        return x509.load_pem_x509_certificate(kc.cert_pem)
    return x509.load_pem_x509_certificate(path.read_bytes())


def identity(c: x509.Certificate) -> tuple[str, tuple[str, ...], list[str]]:
    """(CN, O…, SANs): what a renewal must keep."""
    cn = str(c.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value)
    orgs = tuple(str(a.value) for a in c.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME))
    try:
        sans = c.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names = sorted(str(n.value) for n in sans)
    except x509.ExtensionNotFound:
        names = []
    return cn, orgs, names


def leaf_files(root: Path) -> list[Path]:
    """Every leaf certificate and kubeconfig in the store (originals and copies)."""
    out = [p for p in sorted(root.rglob("*.crt")) if not p.relative_to(root).as_posix().startswith("ca/")
           and p.name not in ("ca.crt", "front-proxy-ca.crt")]
    return out + sorted(root.rglob("*.conf"))


# -- idempotency ---------------------------------------------------------------------------------
def test_rerun_on_an_unchanged_inventory_touches_no_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    inv = variants.write(tmp_path / "hosts.ini", "m-master.hostname")
    root = tmp_path / "store"
    assert main(["pki", "init", "-i", str(inv), "--dir", str(root)]) == 0
    first = capsys.readouterr().out
    assert "created ca/ca.key" in first and "created nodes/node4/pki/ca.crt: copy of ca/ca.crt" in first
    before = snapshot(root)
    assert main(["pki", "init", "-i", str(inv), "--dir", str(root)]) == 0
    assert "no changes" in capsys.readouterr().out
    assert snapshot(root) == before, "bytes, mtimes and modes must all stay"
    assert Store.open(root).init() == []
    assert snapshot(root) == before
    assert not [p for p in root.rglob("*") if p.name.endswith(".tmp")], "no temp file left behind"


def test_adding_a_master_reissues_only_the_apiserver_certificates(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    inv, root = init(tmp_path)
    before = snapshot(root)
    add_master(inv, "node5", "10.56.56.15")
    with caplog.at_level(logging.WARNING, logger="installer.pki"):
        changes = Store(root, topology.load(inv)).init(inv.read_bytes())
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warned) == 6 and all("reissued" in w and "apiserver" in w and "SANs lack" in w for w in warned)

    touched = changed(before, snapshot(root))
    old_nodes_touched = {p for p in touched if not p.startswith("nodes/node5/")} - {"inventory.ini", "identity.json"}
    assert old_nodes_touched == {f"nodes/node{i}/pki/apiserver.{ext}" for i in (1, 2, 3) for ext in ("crt", "key")}
    assert not [p for p in touched if p.startswith(("ca/", "cluster/"))], "CAs and shared leaves stay"
    reissued = {c.path for c in changes if c.action == "reissued"}
    assert reissued == {f"nodes/node{i}/pki/apiserver.{ext}" for i in (1, 2, 3) for ext in ("crt", "key")}
    assert all("SANs lack" in c.reason and "10.56.56.15" in c.reason for c in changes if c.action == "reissued")

    ca = cert(root / "ca/ca.crt")
    for i in (1, 2, 3, 5):
        new = cert(root / f"nodes/node{i}/pki/apiserver.crt")
        new.verify_directly_issued_by(ca)
        names = identity(new)[2]
        assert "node5" in names and "10.56.56.15" in names and "10.56.56.11" in names
    node5 = {p.removeprefix("nodes/node5/") for p in touched if p.startswith("nodes/node5/")}
    assert {"pki/ca.key", "pki/apiserver.crt", "pki/etcd/ca.crt", "admin.conf", "scheduler.conf"} <= node5
    assert "pki/etcd/server.crt" not in node5, "node5 joins the control plane, not etcd"


def test_upgrading_to_1_29_reissues_what_changed_subject(tmp_path: Path) -> None:
    inv, root = init(tmp_path, cert_key_type="ecdsa")
    before = snapshot(root)
    variants.write(inv, "m-master.hostname", cert_key_type="ecdsa", kube_version="1.29.0")
    changes = Store(root, topology.load(inv)).init(inv.read_bytes())
    reissued = {c.path for c in changes if c.action == "reissued"}
    assert reissued == {
        "cluster/pki/apiserver-kubelet-client.crt", "cluster/pki/apiserver-kubelet-client.key",
        "cluster/pki/apiserver-etcd-client.crt", "cluster/pki/apiserver-etcd-client.key",
        "cluster/pki/etcd/healthcheck-client.crt", "cluster/pki/etcd/healthcheck-client.key",
        "cluster/admin.conf",
    }
    assert {c.path for c in changes if c.action == "created"} >= {"cluster/super-admin.conf",
                                                                   "nodes/node1/super-admin.conf"}
    assert not changed(before, snapshot(root)) & {p for p in before if p.startswith("ca/")}
    assert identity(cert(root / "nodes/node2/admin.conf"))[1] == ("kubeadm:cluster-admins",)
    assert identity(cert(root / "nodes/node1/super-admin.conf"))[1] == ("system:masters",)


def test_a_demoted_master_loses_its_control_plane_secrets(tmp_path: Path) -> None:
    inv, root = init(tmp_path, cert_key_type="ecdsa")
    text = inv.read_text().replace("[kube-master]\nnode1\nnode2\nnode3\n", "[kube-master]\nnode1\nnode2\n")
    inv.write_text(text)
    changes = Store(root, topology.load(inv)).init(inv.read_bytes())
    node3 = {p.relative_to(root / "nodes/node3").as_posix() for p in (root / "nodes/node3").rglob("*")
             if p.is_file()}
    assert node3 == {"pki/etcd/ca.crt", "pki/etcd/server.crt", "pki/etcd/server.key", "pki/etcd/peer.crt",
                     "pki/etcd/peer.key", "pki/etcd/healthcheck-client.crt", "pki/etcd/healthcheck-client.key"}
    removed = {c.path for c in changes if c.action == "removed"}
    assert "nodes/node3/pki/ca.key" in removed and "nodes/node3/pki/sa.key" in removed
    assert not [c for c in changes if c.action == "reissued"], "fewer masters: existing SANs still cover them"


def test_missing_files_are_recreated_and_nothing_else_moves(tmp_path: Path) -> None:
    _, root = init(tmp_path, cert_key_type="ecdsa")
    (root / "nodes/node2/pki/etcd/server.key").unlink()
    (root / "nodes/node4/pki/ca.crt").unlink()
    (root / "nodes/node1/pki/sa.pub").chmod(0o666)
    before = snapshot(root)
    changes = Store.open(root).init()
    by_path = {c.path: c for c in changes}
    assert by_path["nodes/node2/pki/etcd/server.crt"].action == "reissued"
    assert "key is missing" in by_path["nodes/node2/pki/etcd/server.crt"].reason
    assert by_path["nodes/node4/pki/ca.crt"].action == "created"
    assert by_path["nodes/node1/pki/sa.pub"].action == "chmod"
    assert changed(before, snapshot(root)) == {"nodes/node2/pki/etcd/server.crt", "nodes/node2/pki/etcd/server.key",
                                               "nodes/node4/pki/ca.crt"}
    assert (root / "nodes/node1/pki/sa.pub").stat().st_mode & 0o777 == 0o644


# -- refusing to paper over a broken store -------------------------------------------------------
def foreign_leaf(like: x509.Certificate) -> tuple[bytes, bytes]:
    """A certificate with the same subject and SANs as ``like``, signed by a CA that is not ours."""
    ca_key = crypto.new_key(KeyType.ECDSA)
    now = dt.datetime.now(dt.UTC)
    ca = crypto.self_signed_ca(ca_key, "kubernetes", 10, now)  # even the same CA name
    key = crypto.new_key(KeyType.ECDSA)
    cn, orgs, _ = identity(like)
    leaf = crypto.issue(ca, ca_key, key, cn=cn, organization=orgs,
                        usages=crypto.extended_usages(like), sans=crypto.sans_of(like),
                        valid_for=dt.timedelta(days=10), now=now)
    return crypto.cert_pem(leaf), crypto.key_pem(key)


def test_a_leaf_signed_by_another_ca_stops_init_naming_the_file(tmp_path: Path) -> None:
    _, root = init(tmp_path, cert_key_type="ecdsa")
    target = root / "nodes/node1/pki/apiserver.crt"
    crt, key = foreign_leaf(cert(target))
    target.write_bytes(crt)
    target.with_suffix(".key").write_bytes(key)
    before = snapshot(root)
    with pytest.raises(PKIError, match=re.escape(str(target))) as err:
        Store.open(root).init()
    assert "not signed by the ca CA" in str(err.value)
    assert snapshot(root) == before, "nothing is written when the store is inconsistent"


def test_a_leaf_from_the_wrong_ca_of_the_same_store_is_refused(tmp_path: Path) -> None:
    _, root = init(tmp_path, cert_key_type="ecdsa")
    etcd_server = root / "nodes/node2/pki/etcd/server.crt"
    etcd_server.write_bytes((root / "cluster/pki/apiserver-kubelet-client.crt").read_bytes())
    etcd_server.with_suffix(".key").write_bytes((root / "cluster/pki/apiserver-kubelet-client.key").read_bytes())
    with pytest.raises(PKIError, match=re.escape(str(etcd_server))):
        Store.open(root).init()


def test_a_kubeconfig_with_a_foreign_certificate_is_refused(tmp_path: Path) -> None:
    _, root = init(tmp_path, cert_key_type="ecdsa")
    admin = root / "cluster/admin.conf"
    text = admin.read_text()
    crt, key = foreign_leaf(cert(admin))
    text = re.sub(r"client-certificate-data: \S+", f"client-certificate-data: {base64.b64encode(crt).decode()}", text)
    text = re.sub(r"client-key-data: \S+", f"client-key-data: {base64.b64encode(key).decode()}", text)
    admin.write_text(text)
    with pytest.raises(PKIError, match=re.escape(str(admin))):
        Store.open(root).init()


def test_a_ca_is_validated_and_never_overwritten(tmp_path: Path) -> None:
    _, root = init(tmp_path, cert_key_type="ecdsa")
    ca_key = root / "ca/ca.key"
    original = ca_key.read_bytes()

    ca_key.write_bytes((root / "ca/front-proxy-ca.key").read_bytes())
    with pytest.raises(PKIError, match=re.escape(f"{ca_key} is not the key of")):
        Store.open(root).init()

    ca_key.write_bytes((root / "cluster/pki/front-proxy-client.key").read_bytes())
    (root / "ca/ca.crt").rename(root / "ca/ca.crt.real")
    (root / "ca/ca.crt").write_bytes((root / "cluster/pki/front-proxy-client.crt").read_bytes())
    with pytest.raises(PKIError, match="is not a CA certificate"):
        Store.open(root).init()
    (root / "ca/ca.crt.real").replace(root / "ca/ca.crt")

    ca_key.write_bytes(original)  # written with the umask's mode: init only puts 0600 back
    ca_key.chmod(0o644)
    assert [(c.path, c.action) for c in Store.open(root).init()] == [("ca/ca.key", "chmod")]


def test_half_a_ca_is_completed_from_the_node_copies_or_its_own_key(tmp_path: Path) -> None:
    _, root = init(tmp_path, cert_key_type="ecdsa")
    before = snapshot(root)
    (root / "ca/ca.key").unlink()  # masters hold a copy of the key
    (root / "ca/etcd/ca.crt").unlink()  # etcd members and masters hold a copy of the certificate
    changes = Store.open(root).init()
    assert sorted((c.path, c.action) for c in changes) == [("ca/ca.key", "restored"), ("ca/etcd/ca.crt", "restored")]
    assert changed(before, snapshot(root)) == set()

    (root / "ca/front-proxy-ca.crt").unlink()
    for copy in root.glob("nodes/*/pki/front-proxy-ca.crt"):
        copy.unlink()
    old_key = (root / "ca/front-proxy-ca.key").read_bytes()
    changes = Store.open(root).init()
    assert ("ca/front-proxy-ca.crt", "reissued") in [(c.path, c.action) for c in changes]
    assert not [c for c in changes if c.action == "reissued" and c.path != "ca/front-proxy-ca.crt"], \
        "same key: nothing it signed is re-issued"
    assert (root / "ca/front-proxy-ca.key").read_bytes() == old_key
    assert Store.open(root).check().ok


def test_a_ca_key_with_no_copy_anywhere_is_refused_naming_replace_ca(tmp_path: Path) -> None:
    _, root = init(tmp_path, cert_key_type="ecdsa")
    (root / "ca/etcd/ca.key").unlink()  # no node gets the etcd CA key: nothing to restore it from
    with pytest.raises(PKIError, match=r"etcd/ca.key is missing \(no node tree holds a copy of the key\)"):
        Store.open(root).init()
    report = Store.open(root).check()
    assert any("--replace-ca" in p for r in report.rows for p in r.problems)


def test_a_lost_ca_is_never_silently_made_anew(tmp_path: Path) -> None:
    _, root = init(tmp_path, cert_key_type="ecdsa")
    (root / "ca/etcd/ca.crt").unlink()
    (root / "ca/etcd/ca.key").unlink()
    for copy in root.glob("nodes/*/pki/etcd/ca.crt"):
        copy.unlink()
    before = snapshot(root)
    with pytest.raises(PKIError) as caught:
        Store.open(root).init()
    said = str(caught.value)
    assert "are both missing, but the etcd/ca CA existed" in said
    assert "identity.json records it (sha256:" in said and "certificates it signed" in said
    assert f"kha pki init -i {root / 'inventory.ini'} --dir {root} --replace-ca" in said
    assert snapshot(root) == before, "a refusal changes nothing"

    # Without identity.json the leaves it signed still show it existed.
    (root / "identity.json").unlink()
    with pytest.raises(PKIError, match="certificates it signed"):
        Store.open(root).init()


def test_replace_ca_makes_a_new_ca_on_purpose_and_reissues_what_it_signs(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    inv, root = init(tmp_path, cert_key_type="ecdsa")
    old = crypto.key_fingerprint(cert(root / "ca/etcd/ca.crt"))
    (root / "ca/etcd/ca.crt").unlink()
    (root / "ca/etcd/ca.key").unlink()
    before = snapshot(root)
    assert main(["pki", "init", "-i", str(inv), "--dir", str(root)]) == 1
    assert "--replace-ca" in capsys.readouterr().err
    assert main(["pki", "init", "-i", str(inv), "--dir", str(root), "--replace-ca"]) == 0
    touched = changed(before, snapshot(root))
    assert {"ca/etcd/ca.crt", "ca/etcd/ca.key", "identity.json"} <= touched
    assert not [p for p in touched if "etcd" not in p and p != "identity.json"], "only the etcd CA and what it signs"
    assert crypto.key_fingerprint(cert(root / "ca/etcd/ca.crt")) != old
    out = capsys.readouterr().out.splitlines()
    reissued = {ln.split()[1].rstrip(":") for ln in out if ln.strip().startswith("reissued")}
    assert {p for p in reissued if p.endswith(".crt")} == {
        "cluster/pki/apiserver-etcd-client.crt", "cluster/pki/etcd/healthcheck-client.crt",
        *(f"nodes/node{i}/pki/etcd/{k}.crt" for i in (1, 2, 3) for k in ("server", "peer"))}
    assert Store.open(root).check().ok


def test_a_swapped_ca_is_refused_against_the_recorded_identity(tmp_path: Path) -> None:
    _, root = init(tmp_path, cert_key_type="ecdsa")
    other = tmp_path / "other"
    other.mkdir()
    init(other, cert_key_type="ecdsa")
    for f in ("ca/front-proxy-ca.crt", "ca/front-proxy-ca.key"):
        (root / f).write_bytes((other / "store" / f).read_bytes())
    with pytest.raises(PKIError, match=r"front-proxy-ca.crt has key sha256:\w+, but this store recorded sha256:"):
        Store.open(root).init()
    assert any("the CA was swapped" in p for p in Store.open(root).check().problems)


def test_a_store_of_another_cluster_is_refused_and_nothing_deleted(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _, prod = init(tmp_path, cert_key_type="ecdsa")
    before = snapshot(prod)
    # Staging names its nodes as production does (node1 …), at other addresses.
    staging = variants.write(tmp_path / "staging.ini", "allinone.hostname", cert_key_type="ecdsa")
    staging.write_text(staging.read_text().replace("10.56.56.", "10.57.56."))
    assert main(["pki", "init", "-i", str(staging), "--dir", str(prod)]) == 2
    err = capsys.readouterr().err
    assert f"{prod}: is the PKI store of another cluster: its nodes (node1 (10.56.56.11), node2 (10.56.56.12), " \
           "node3 (10.56.56.13) and 1 more) share none with the inventory's (node1 (10.57.56.11))" in err
    assert "nothing was changed" in err
    assert snapshot(prod) == before
    renamed = variants.write(tmp_path / "renamed.ini", "m-master.hostname", cert_key_type="ecdsa",
                             cluster_name="staging")
    assert main(["pki", "init", "-i", str(renamed), "--dir", str(prod)]) == 2
    assert "it belongs to cluster 'kubernetes'" in capsys.readouterr().err
    assert snapshot(prod) == before


def test_the_stores_inventory_copy_keeps_no_password(tmp_path: Path) -> None:
    text = variants.write(tmp_path / "src.ini", "m-master.hostname", cert_key_type="ecdsa").read_text()
    text = text.replace("node1 ansible_host=10.56.56.11", 'node1 ansible_ssh_pass="s3cr3t 1" ansible_host=10.56.56.11')
    text = text.replace("[all:vars]\n", "[all:vars]\nansible_ssh_pass=hunter2\n")
    inv = tmp_path / "hosts.ini"
    inv.write_text(text)
    assert topology.load(inv).host("node1").password == "s3cr3t 1"
    root = tmp_path / "store"
    Store(root, topology.load(inv)).init(inv.read_bytes())
    copy = (root / "inventory.ini").read_text()
    assert "s3cr3t" not in copy and "hunter2" not in copy and "ansible_ssh_pass" not in copy
    assert len(copy.splitlines()) == len(text.splitlines()), "line numbers stay those of the original"
    kept = topology.load(root / "inventory.ini")
    assert kept.host("node1").password is None
    assert kept.host("node1").address == topology.load(inv).host("node1").address
    assert Store.open(root).check().ok


# -- check ---------------------------------------------------------------------------------------
def test_check_passes_on_a_fresh_store(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _, root = init(tmp_path, "allinone.ip", cert_key_type="ecdsa", kube_version="1.29.0")
    assert main(["pki", "check", "--dir", str(root)]) == 0
    out = capsys.readouterr().out
    assert re.search(r"(?m)^CERTIFICATE\s+NODE\s+CN\s+EXPIRES\s+RESIDUAL\s+CA\s+SAN\s+CHAIN\s+STATUS$", out)
    assert re.search(r"(?m)^apiserver\s+10\.56\.56\.11\s+kube-apiserver\s+.*\s364d\s+ca\s+ok\s+ok\s+ok$", out)
    assert "super-admin.conf" in out
    assert "✓ pki check" in out


def test_check_fails_when_a_certificate_expires_within_the_threshold(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, root = init(tmp_path, cert_key_type="ecdsa", kube_certs_expired="10")
    assert main(["pki", "check", "--dir", str(root), "--warn-days", "30"]) == 1
    out = capsys.readouterr().out
    assert "expires in 9 days (within --warn-days 30)" in out
    assert re.search(r"(?m)^✗ nodes/node1/pki/apiserver\.crt: expires in 9 days", out)
    assert "etcd/server.crt: expires" not in out, "etcd leaves use etcd_certs_expired (365)"
    assert main(["pki", "check", "--dir", str(root), "--warn-days", "5"]) == 0


def test_check_reports_tampering_and_stale_copies_without_raising(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, root = init(tmp_path, cert_key_type="ecdsa")
    target = root / "nodes/node2/pki/apiserver.crt"
    crt, key = foreign_leaf(cert(target))
    target.write_bytes(crt)
    target.with_suffix(".key").write_bytes(key)
    (root / "nodes/node4/pki/ca.crt").write_bytes((root / "ca/etcd/ca.crt").read_bytes())
    (root / "nodes/node4/pki/stray.key").write_bytes(b"x")
    report = Store.open(root).check()
    bad = [r for r in report.rows if not r.ok]
    assert [(r.name, r.node, r.chain_ok) for r in bad] == [("apiserver", "node2", False)]
    assert any("nodes/node4/pki/ca.crt differs from ca/ca.crt" in p for p in report.problems)
    assert any("nodes/node4/pki/stray.key should not be there" in p for p in report.problems)
    assert main(["pki", "check", "--dir", str(root)]) == 1
    assert re.search(r"(?m)^apiserver\s+node2\s.*FAIL\s+FAIL$", capsys.readouterr().out)


def test_check_without_a_store_is_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["pki", "check", "--dir", str(tmp_path / "nothing")]) == 2
    assert "kha pki init" in capsys.readouterr().err


# -- renew ---------------------------------------------------------------------------------------
def test_renew_keeps_identity_and_changes_serial_and_expiry(tmp_path: Path) -> None:
    _, root = init(tmp_path, cert_key_type="ecdsa", kube_version="1.29.0")
    old = {p: cert(p) for p in leaf_files(root)}
    old_keys = {p: p.with_suffix(".key").read_bytes() for p in old if p.suffix == ".crt"}
    cas = {p: p.read_bytes() for p in (root / "ca").rglob("*") if p.is_file()}
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=2)
    changes = Store.open(root, now=later).renew()
    assert changes
    for p, before in old.items():
        after = cert(p)
        assert identity(after) == identity(before), p
        assert after.serial_number != before.serial_number, p
        assert after.not_valid_after_utc - before.not_valid_after_utc >= dt.timedelta(days=1, hours=23), p
        if p in old_keys:
            assert p.with_suffix(".key").read_bytes() != old_keys[p], f"{p}: a renewal rotates the key, as kubeadm's"
    assert {p: p.read_bytes() for p in (root / "ca").rglob("*") if p.is_file()} == cas
    assert Store.open(root).check().ok, "copies follow their originals"


def test_renew_by_name(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _, root = init(tmp_path, cert_key_type="ecdsa")
    before = snapshot(root)
    assert main(["pki", "renew", "--dir", str(root), "apiserver"]) == 0
    assert "3 certificates re-issued" in capsys.readouterr().out
    assert changed(before, snapshot(root)) == {f"nodes/node{i}/pki/apiserver.{e}" for i in (1, 2, 3)
                                               for e in ("crt", "key")}
    before = snapshot(root)
    assert main(["pki", "renew", "--dir", str(root), "nodes/node2/etcd/server", "admin.conf"]) == 0
    assert changed(before, snapshot(root)) == {
        "nodes/node2/pki/etcd/server.crt", "nodes/node2/pki/etcd/server.key", "cluster/admin.conf",
        "nodes/node1/admin.conf", "nodes/node2/admin.conf", "nodes/node3/admin.conf",
    }
    capsys.readouterr()
    assert main(["pki", "renew", "--dir", str(root), "bogus"]) == 2
    assert "'bogus' is not a certificate of this cluster" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="is a CA"):
        Store.open(root).renew(["etcd/ca"])


def test_short_lived_renewal_for_a_test_and_the_configured_lifetime_after_it(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`--valid-for 10m`: renewal tested end to end without moving a clock; then a plain renew gives the
    configured lifetime again, never silently shorter."""
    _, root = init(tmp_path, cert_key_type="ecdsa", kube_certs_expired="365")
    assert main(["pki", "renew", "--dir", str(root), "--valid-for", "10m", "apiserver", "etcd/server"]) == 0
    out = capsys.readouterr().out
    assert "valid for 0:10:00 on request, not the configured 365 days" in out
    for p in (root / "nodes/node1/pki/apiserver.crt", root / "nodes/node1/pki/etcd/server.crt"):
        c = cert(p)
        assert c.not_valid_after_utc - c.not_valid_before_utc == dt.timedelta(minutes=10) + crypto.BACKDATE, p
    assert cert(root / "nodes/node1/pki/apiserver-kubelet-client.crt").not_valid_after_utc > \
        dt.datetime.now(dt.UTC) + dt.timedelta(days=300), "what was not named keeps its lifetime"
    # an install's pki phase keeps them while they are valid, and re-issues them once expired
    before = snapshot(root)
    Store.open(root).init()
    assert changed(before, snapshot(root)) == set()
    Store.open(root, now=dt.datetime.now(dt.UTC) + dt.timedelta(minutes=11)).init()
    assert "nodes/node1/pki/apiserver.crt" in changed(before, snapshot(root))
    # a plain renew: the configured lifetime
    assert main(["pki", "renew", "--dir", str(root), "apiserver"]) == 0
    c = cert(root / "nodes/node1/pki/apiserver.crt")
    assert c.not_valid_after_utc - c.not_valid_before_utc == dt.timedelta(days=365) + crypto.BACKDATE
    capsys.readouterr()
    with pytest.raises(SystemExit) as bad:
        main(["pki", "renew", "--dir", str(root), "--valid-for", "0m"])
    assert bad.value.code == 2
    assert "'0m' is not a duration such as 30s, 10m, 2h or 7d" in capsys.readouterr().err


def test_a_leaf_cut_short_by_its_ca_says_so(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    _, root = init(tmp_path, cert_key_type="ecdsa", kube_certs_expired="365")
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=365 * 10 - 100)  # the CA has 100 days left
    changes = Store.open(root, now=later).renew(["apiserver"])
    notes = {c.reason for c in changes if c.path.endswith("apiserver.crt")}
    assert notes and all("valid only until its CA expires on" in n and "shorter than" in n for n in notes), notes
    assert "valid only until its CA expires" in caplog.text


def test_check_names_the_command_that_repairs_a_half_pair(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _, root = init(tmp_path, cert_key_type="ecdsa")
    (root / "nodes/node2/pki/apiserver.crt").unlink()
    assert main(["pki", "check", "--dir", str(root)]) == 1
    out = capsys.readouterr().out
    command = f"kha pki renew --dir {root} nodes/node2/apiserver"
    assert f"its certificate is missing; `{command}` issues a new pair" in out
    assert main(command.split()[1:]) == 0
    assert main(["pki", "check", "--dir", str(root)]) == 0


def test_the_etcd_cluster_id_is_recorded_once_and_a_different_one_refused(tmp_path: Path) -> None:
    _, root = init(tmp_path, cert_key_type="ecdsa")
    assert [c.path for c in Store.open(root).record_etcd_cluster_id(0x8E9E05C52164694D)] == ["identity.json"]
    assert '"etcd_cluster_id": "8e9e05c52164694d"' in (root / "identity.json").read_text()
    assert Store.open(root).record_etcd_cluster_id(0x8E9E05C52164694D) == []
    assert Store.open(root).init() == [], "init keeps the recorded ID"
    with pytest.raises(PKIError, match=r"etcd reports cluster ID 1f, but .*identity.json recorded 8e9e05c52164694d"):
        Store.open(root).record_etcd_cluster_id(0x1F)
    # A snapshot restore makes a new cluster on purpose (fresh token): its ID replaces the recorded one.
    assert [c.path for c in Store.open(root).record_etcd_cluster_id(0x1F, restored=True)] == ["identity.json"]
    assert '"etcd_cluster_id": "1f"' in (root / "identity.json").read_text()
    assert Store.open(root).record_etcd_cluster_id(0x1F) == []


def test_one_writer_at_a_time(tmp_path: Path) -> None:
    _, root = init(tmp_path, cert_key_type="ecdsa")
    (root / "nodes/node1/pki/apiserver.crt").unlink()
    fd = os.open(root / ".lock", os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # another kha, half-way through its run
        with pytest.raises(StateBusy, match=re.escape(f"{root} is being written by another kha process right now")):
            Store.open(root).init()
        assert not (root / "nodes/node1/pki/apiserver.crt").exists()
    finally:
        os.close(fd)
    assert Store.open(root).init(), "the lock went with its holder"
