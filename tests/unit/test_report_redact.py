"""Secrets never leave the nodes: each form a secret takes in what a report collects is redacted, the values a
cluster's state folder knows are redacted whatever surrounds them, and what is not a secret is left alone."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

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


def test_redact_tree_rewrites_only_what_holds_secrets(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "leak.txt").write_text(f"token: {CANARY}\n")
    (tmp_path / "clean.txt").write_text("nothing here\n")
    assert redact_tree(tmp_path, Redactor()) == 1
    assert CANARY not in (tmp_path / "a" / "leak.txt").read_text()
    assert (tmp_path / "clean.txt").read_text() == "nothing here\n"
