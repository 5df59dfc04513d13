"""Secrets never leave the nodes: each form a secret takes in what a report collects is redacted, the values a
cluster's state folder knows are redacted whatever surrounds them, what is not a secret is left alone, and
every file ``collect`` writes goes through the redactor (with the parsers of what it collects, which need
no node either)."""

from __future__ import annotations

import base64
import dataclasses
import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from installer import files
from installer.kubernetes import hardening
from installer.secrets import ClusterSecrets
from installer.settings import Settings
from scenarios.report.collect import Folder, parse_crictl_images, parse_versions, settings_json, split_head
from scenarios.report.redact import MASK, PATTERNS, Redactor, redact_tree, state_secrets, variants

CANARY = "canary0secret0value"


def _pem(kind: str) -> str:
    if kind == "rsa":
        key = rsa.generate_private_key(public_exponent=65537, key_size=1024)
        fmt = serialization.PrivateFormat.TraditionalOpenSSL
    elif kind == "ec":
        key = ec.generate_private_key(ec.SECP256R1())  # type: ignore[assignment]
        fmt = serialization.PrivateFormat.TraditionalOpenSSL
    elif kind == "pkcs8":
        key = ec.generate_private_key(ec.SECP256R1())  # type: ignore[assignment]
        fmt = serialization.PrivateFormat.PKCS8
    else:
        key = ed25519.Ed25519PrivateKey.generate()  # type: ignore[assignment]
        fmt = serialization.PrivateFormat.OpenSSH
    return key.private_bytes(serialization.Encoding.PEM, fmt, serialization.NoEncryption()).decode()


def _body(pem: str) -> str:
    return "".join(line for line in pem.splitlines() if not line.startswith("-----"))


forms = Redactor()  # the first net alone


@pytest.mark.parametrize("kind", ["rsa", "ec", "pkcs8", "openssh"])
def test_pem_private_keys_whole_cut_short_and_json_escaped(kind: str) -> None:
    pem = _pem(kind)
    body = _body(pem)
    for text in (f"before\n{pem}after\n", f"tail of a log:\n{pem[: len(pem) // 2]}",
                 json.dumps({"key": pem}), f"{pem}{pem}"):
        out = forms.text(text)
        assert body[10:40] not in out, text
        assert "PRIVATE KEY-----" in out and MASK in out


def test_json_stays_json() -> None:
    doc = {"kubeadm_token": CANARY, "lb_keepalived_password": None, "nested": {"client-key-data": CANARY}}
    out = json.loads(forms.text(json.dumps(doc, indent=2)))
    assert out == {"kubeadm_token": MASK, "lb_keepalived_password": None, "nested": {"client-key-data": MASK}}


def test_a_certificate_is_not_a_secret() -> None:
    cert = "-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIUb2s=\n-----END CERTIFICATE-----\n"
    assert forms.text(cert) == cert


@pytest.mark.parametrize("text", [
    f"    client-key-data: {base64.b64encode(CANARY.encode()).decode()}\n",
    f'{{"users": [{{"user": {{"client-key-data": "{CANARY}"}}}}]}}',
    f"token: {CANARY}\n",
    f"- token: {CANARY}\n",
    f'  token: "{CANARY}"\n',
    f"bootstrapToken: '{CANARY}'",
    f"certificateKey: {CANARY}\n",
    f"  certificate-key: {CANARY}",
    f"kubeadm join 10.0.0.1:8443 --token {CANARY} --control-plane --certificate-key {CANARY}",
    f"kubeadm join --token={CANARY} --certificate-key={CANARY}",
    f"    auth_pass {CANARY}\n",
    f"\tauth_pass\t{CANARY}",
    f"node1 ansible_host=10.0.0.1 ansible_ssh_pass={CANARY} ansible_user=root",
    f'node1 ansible_password="{CANARY}"',
    f"node1 ansible_become_pass='{CANARY}'",
    f"ansible_become_password={CANARY}",
    f"lb_keepalived_password={CANARY}",
    f'lb_keepalived_password="{CANARY}"',
    f"kubeadm_token={CANARY}",
    f"        - name: key1\n          secret: {CANARY}\n",
    f'msg="config" \\"token\\":\\"{CANARY}\\"',
    f"[upload-certs] Using certificate key:\n{'ab' * 32}\n",
])
def test_each_form_of_a_secret_value(text: str) -> None:
    out = forms.text(text)
    assert CANARY not in out and "ab" * 32 not in out, out
    assert MASK in out


@pytest.mark.parametrize("token", ["abcdef.0123456789abcdef", "x7k2p9.q8w3e4r5t6y7u8i9"])
def test_bootstrap_tokens_anywhere(token: str) -> None:
    for text in (token, f"kubeadm token list\n{token}   23h   2026-12-05", f"https://x/?t={token}&y=1"):
        assert token not in forms.text(text)


@pytest.mark.parametrize("text", [
    "discovery-token-ca-cert-hash: sha256:8a2c0f\n",
    "--discovery-token-ca-cert-hash sha256:8a2c0f",
    "tokenTTL: 24h0m0s\n",
    "secretName: default-token-abcde\n",
    "kind: Secret\n",
    "Dec 04 20:00:01 node1 sshd[1]: Failed password for root from 10.0.0.1\n",
    "apiVersion: v1\nkind: Config\nclusters:\n- cluster:\n    server: https://10.56.56.10:8443\n",
    "image: k8s.gcr.io/kube-apiserver:v1.20.2\n",
    '{"kubeadm_token": null, "lb_keepalived_password": null}',
    'ETCD_INITIAL_CLUSTER_TOKEN="kha-cluster-1"\n',
    "recognized and used environment variable ETCD_INITIAL_CLUSTER_TOKEN=kha-cluster-1",
])
def test_what_is_not_a_secret_stays(text: str) -> None:
    assert forms.text(text) == text


def test_each_form_is_needed() -> None:
    """Every form catches something no other form does (a form nobody needs is one nobody tests)."""
    samples = {"pem-private-key": _pem("ec"), "certificate-key-line": f"Using certificate key:\n{'cd' * 32}",
               "key-value": f"token: {CANARY}", "spaced": f"auth_pass {CANARY}",
               "bootstrap-token": "abcdef.0123456789abcdef"}
    assert {f.name for f in PATTERNS} == set(samples)
    for form in PATTERNS:
        without = Redactor(forms=[f for f in PATTERNS if f is not form])
        assert without.text(samples[form.name]) == samples[form.name], form.name
        assert Redactor().text(samples[form.name]) != samples[form.name], form.name


def test_literals_and_their_base64_anywhere() -> None:
    r = Redactor([CANARY])
    b64 = base64.b64encode(CANARY.encode()).decode()
    for text in (f"x{CANARY}y", f"weird form |{CANARY}|", f"data {b64}", f"data {b64.rstrip('=')}"):
        out = r.text(text)
        assert CANARY not in out and b64.rstrip("=") not in out, out
    assert forms.text(f"weird form |{CANARY}|") == f"weird form |{CANARY}|"  # only the literal net knows it


def test_pem_literal_variants_cover_kubeconfig_and_one_line_forms() -> None:
    pem = _pem("rsa")
    r = Redactor([pem], forms=())
    seen = variants(pem)
    for v in (base64.b64encode(pem.encode()).decode(), _body(pem)):
        assert v in seen
        assert v[:40] not in r.text(f"odd: {v} end")


def test_short_literals_are_left_to_the_forms() -> None:
    assert Redactor(["abc"]).text("abc abcdef") == "abc abcdef"


def test_bytes_survive_apart_from_secrets() -> None:
    r = Redactor([CANARY])
    data = b"\x1b[0m\xff\xfe console " + CANARY.encode() + b" \x00end"
    out = r.bytes(data)
    assert CANARY.encode() not in out and out.startswith(b"\x1b[0m\xff\xfe console ") and out.endswith(b" \x00end")


def test_state_secrets_reads_secrets_json_keys_and_kubeconfigs(tmp_path: Path) -> None:
    pem = _pem("ec")
    (tmp_path / "secrets.json").write_text(json.dumps({"kubeadm_token": "abcdef.0123456789abcdef",
                                                       "vrrp_password": "a1b2c3d4", "certificate_key": "ef" * 32}))
    (tmp_path / "pki" / "ca").mkdir(parents=True)
    (tmp_path / "pki" / "ca" / "ca.key").write_text(pem)
    conf_key = _pem("pkcs8")
    encoded = base64.b64encode(conf_key.encode()).decode()
    (tmp_path / "pki" / "admin.conf").write_text(f"users:\n- user:\n    client-key-data: {encoded}\n")
    ident = tmp_path / "id_ed25519"
    ident.write_text(_pem("openssh"))
    values = state_secrets(tmp_path, extra_files=[ident, tmp_path / "absent"])
    assert {"abcdef.0123456789abcdef", "a1b2c3d4", "ef" * 32, pem, conf_key, ident.read_text()} <= set(values)
    r = Redactor(values, forms=())
    assert "a1b2c3d4" not in r.text("vrrp a1b2c3d4") and encoded[:30] not in r.text(encoded)


def test_the_encryption_key_derived_from_the_state_is_redacted(tmp_path: Path) -> None:
    secrets = ClusterSecrets("abcdef.0123456789abcdef", "a1b2c3d4", "ef" * 32)
    (tmp_path / "secrets.json").write_text(json.dumps(dataclasses.asdict(secrets)))
    config = files.dump_yaml([hardening.encryption_config(secrets)]).decode()  # what a control plane holds
    key = base64.b64encode(hardening.encryption_key(secrets)).decode()
    assert key in config
    assert key not in Redactor(state_secrets(tmp_path), forms=()).text(config)


def test_a_secrets_file_that_is_not_kha_json_is_redacted_word_by_word(tmp_path: Path) -> None:
    (tmp_path / "secrets.json").write_text('{"kubeadm_token": "abcdef.0123456789abcdef", "vrrp_pass')
    assert "abcdef.0123456789abcdef" in state_secrets(tmp_path)


def test_redact_tree_rewrites_only_what_holds_secrets(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "leak.txt").write_text(f"token: {CANARY}\n")
    (tmp_path / "clean.txt").write_text("nothing here\n")
    assert redact_tree(tmp_path, Redactor()) == 1
    assert CANARY not in (tmp_path / "a" / "leak.txt").read_text()
    assert (tmp_path / "clean.txt").read_text() == "nothing here\n"


# -- the report folder and collect's parsers (no node needed) ------------------------------------
def test_every_file_written_into_a_report_is_redacted(tmp_path: Path) -> None:
    folder = Folder(tmp_path, Redactor([CANARY]))
    folder.write("nodes/n1/a.txt", f"odd |{CANARY}|")
    folder.write("nodes/n1/b.bin", b"\x00" + CANARY.encode())
    folder.json("cluster/c.json", {"token": "abcdef.0123456789abcdef", "x": CANARY})
    assert [p for p in tmp_path.rglob("*") if p.is_file() and CANARY.encode() in p.read_bytes()] == []
    assert "abcdef.0123456789abcdef" not in (tmp_path / "cluster" / "c.json").read_text()
    assert folder.artefacts == 3
    for bad in ("../escape", "/etc/passwd", ""):
        with pytest.raises(ValueError, match="not a path inside the report"):
            folder.write(bad, "x")
    folder.missing("n1", "x", f"exit 1: {CANARY}")
    assert CANARY not in folder.missed[0].reason


def test_head_output_is_split_per_file() -> None:
    out = "==> /etc/a <==\nline a\n\n==> /etc/b <==\nline b\n"
    assert split_head(out, ["/etc/a", "/etc/missing", "/etc/b"]) == {
        "/etc/a": "line a\n", "/etc/missing": None, "/etc/b": "line b\n"}


def test_versions_and_image_tables_are_parsed() -> None:
    said = ("kubernetes\tKubernetes v1.20.2\netcd\tetcd Version: 3.4.23\nhaproxy\tHAProxy version 2.6.12-1+deb12u4 "
            "2026/10/17\nkeepalived\tKeepalived v2.2.7 (01/16,2022)\ncontainerd\tcontainerd github.com/containerd/"
            "containerd 1.6.20~ds1 1.6.20~ds1-1\nnginx\t-\n")
    assert parse_versions(said) == {"kubernetes": "1.20.2", "etcd": "3.4.23", "haproxy": "2.6.12-1+deb12u4",
                                    "keepalived": "2.2.7", "containerd": "1.6.20~ds1"}
    crictl = ("IMAGE                      TAG     DIGEST         IMAGE ID       SIZE\n"
              "k8s.gcr.io/pause           3.2     sha256:80d28   80d28bedfe5d   301kB\n")
    assert parse_crictl_images(crictl) == [{"image": "k8s.gcr.io/pause", "tag": "3.2", "digest": "sha256:80d28",
                                            "image id": "80d28bedfe5d", "size": "301kB"}]
    ctr = ("REF                TYPE     DIGEST        SIZE      PLATFORMS   LABELS\n"
           "k8s.gcr.io/p:3.2   app/x    sha256:61     105.0 MiB linux/amd64 io.cri-containerd.image=managed\n")
    assert parse_crictl_images(ctr)[0]["digest"] == "sha256:61"
    assert parse_crictl_images("") == []


def test_settings_are_plain_json() -> None:
    doc = settings_json(Settings(kubeadm_token="abcdef.0123456789abcdef"))
    assert json.loads(json.dumps(doc))["kube_version"] == "1.20.2"
    assert doc["kube_pod_subnet"] == "10.244.0.0/18" and doc["lb_mode"] == "nginx"
