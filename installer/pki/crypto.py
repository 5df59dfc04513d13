"""Keys and X.509 certificates with ``cryptography``: generate, issue, serialise, read back and judge.

This module owns the bytes and nothing else: no paths, no policy. Certificates are shaped like
kubeadm's (cmd/kubeadm/app/util/pkiutil, client-go util/cert): CAs carry BasicConstraints CA:TRUE and
KeyUsage digitalSignature+keyEncipherment+keyCertSign, both critical, and a DNS SAN equal to their
CN; leaves carry CA:FALSE, KeyUsage digitalSignature+keyEncipherment (critical) and their extended key
usages. Every certificate has a random serial, a SubjectKeyIdentifier, and (leaves) an
AuthorityKeyIdentifier; NotBefore is backdated five minutes like kubeadm's ``CertificateBackdate``, so
a node whose clock lags a little still accepts a fresh certificate. Private keys are written the way
kubeadm's keyutil writes them (PKCS#1 ``RSA PRIVATE KEY`` / SEC1 ``EC PRIVATE KEY``, unencrypted).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID, ObjectIdentifier

from installer.errors import PKIError
from installer.pki.table import SANs
from installer.settings import KeyType

__all__ = [
    "BACKDATE",
    "PrivateKey",
    "PublicKey",
    "cert_pem",
    "describe_usages",
    "extended_usages",
    "is_ca",
    "issue",
    "issued_by",
    "key_fingerprint",
    "key_pem",
    "new_key",
    "new_keys",
    "parse_cert",
    "parse_key",
    "parse_public_key",
    "public_pem",
    "same_key",
    "sans_of",
    "self_signed_ca",
    "subject_of",
]

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey

#: kubeadm's CertificateBackdate (cmd/kubeadm/app/constants): tolerate small clock skew between nodes.
BACKDATE = dt.timedelta(minutes=5)
RSA_BITS = 2048


def new_key(kind: KeyType) -> PrivateKey:
    """A fresh key: RSA 2048 (kubeadm's default) or ECDSA P-256."""
    if kind is KeyType.ECDSA:
        return ec.generate_private_key(ec.SECP256R1())
    return rsa.generate_private_key(public_exponent=65537, key_size=RSA_BITS)


def new_keys(kinds: Sequence[KeyType]) -> list[PrivateKey]:
    """Several keys at once. RSA generation is the cost of a cold store and OpenSSL releases the GIL
    while it searches for primes, so a thread pool divides the wall time by the number of cores."""
    if len(kinds) <= 1 or all(k is KeyType.ECDSA for k in kinds):
        return [new_key(k) for k in kinds]
    with ThreadPoolExecutor(max_workers=min(len(kinds), os.cpu_count() or 1)) as pool:
        return list(pool.map(new_key, kinds))


# -- serialisation -------------------------------------------------------------------------------
def key_pem(key: PrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                             serialization.NoEncryption())


def public_pem(key: PrivateKey | PublicKey) -> bytes:
    pub = key.public_key() if isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) else key
    return pub.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def parse_cert(data: bytes, where: str) -> x509.Certificate:
    """One PEM certificate, or PKIError naming ``where``."""
    try:
        return x509.load_pem_x509_certificate(data)
    except ValueError as exc:
        raise PKIError(f"{where}: not a PEM certificate ({exc})") from None


def parse_key(data: bytes, where: str, *, check: bool = True) -> PrivateKey:
    """One unencrypted PEM RSA or EC private key, or PKIError naming ``where``.

    ``check=False`` skips OpenSSL's RSA consistency check (primality of p and q, ~35 ms a key, the whole
    cost of a no-change re-run). Only for keys kha wrote itself and never signs with (leaf keys): their
    public half is still compared with the certificate. CA keys, which sign, are always checked.
    """
    try:
        key = serialization.load_pem_private_key(data, password=None, unsafe_skip_rsa_key_validation=not check)
    except (ValueError, TypeError) as exc:
        raise PKIError(f"{where}: not an unencrypted PEM private key ({exc})") from None
    if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        raise PKIError(f"{where}: {type(key).__name__} keys are not supported (RSA or ECDSA only)")
    return key


def parse_public_key(data: bytes, where: str) -> PublicKey:
    try:
        key = serialization.load_pem_public_key(data)
    except ValueError as exc:
        raise PKIError(f"{where}: not a PEM public key ({exc})") from None
    if not isinstance(key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey):
        raise PKIError(f"{where}: {type(key).__name__} keys are not supported (RSA or ECDSA only)")
    return key


# -- issuing -------------------------------------------------------------------------------------
def _name(cn: str, organization: Sequence[str] = ()) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in organization]
    return x509.Name([*attrs, x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _san_ext(sans: SANs) -> x509.SubjectAlternativeName:
    entries: list[x509.GeneralName] = [x509.DNSName(d) for d in sans.dns]
    entries += [x509.IPAddress(i) for i in sans.ips]
    return x509.SubjectAlternativeName(entries)


def _key_usage(*, ca: bool) -> x509.KeyUsage:
    return x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=True,
                         data_encipherment=False, key_agreement=False, key_cert_sign=ca, crl_sign=False,
                         encipher_only=False, decipher_only=False)


def _validity(now: dt.datetime, valid_for: dt.timedelta) -> tuple[dt.datetime, dt.datetime]:
    now = now.astimezone(dt.UTC).replace(microsecond=0)
    return now - BACKDATE, now + valid_for


def self_signed_ca(key: PrivateKey, cn: str, days: int, now: dt.datetime) -> x509.Certificate:
    """A root CA like client-go's NewSelfSignedCACert: CN, a DNS SAN equal to the CN, CA:TRUE."""
    not_before, not_after = _validity(now, dt.timedelta(days=days))
    name = _name(cn)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(_key_usage(ca=True), critical=True)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(_san_ext(SANs.of(cn)), critical=False)
    )
    return builder.sign(key, hashes.SHA256())


def issue(
    ca_cert: x509.Certificate,
    ca_key: PrivateKey,
    key: PrivateKey,
    *,
    cn: str,
    organization: Sequence[str],
    usages: Sequence[ObjectIdentifier],
    sans: SANs,
    valid_for: dt.timedelta,
    now: dt.datetime,
) -> x509.Certificate:
    """A leaf signed by ``ca_cert``/``ca_key`` for ``key``, like kubeadm's NewSignedCert."""
    not_before, not_after = _validity(now, valid_for)
    # Past its CA's NotAfter a leaf no longer verifies anyway; say so in the certificate itself.
    not_after = min(not_after, ca_cert.not_valid_after_utc)
    try:
        ca_ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        aki = x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski)
    except x509.ExtensionNotFound:
        aki = x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key())
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(cn, organization))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(_key_usage(ca=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage(list(usages)), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(aki, critical=False)
    )
    if sans:
        builder = builder.add_extension(_san_ext(sans), critical=False)
    return builder.sign(ca_key, hashes.SHA256())


# -- judging -------------------------------------------------------------------------------------
def same_key(cert_or_public: x509.Certificate | PublicKey, key: PrivateKey) -> bool:
    """Whether ``key`` is the private half of the certificate's (or public key's) public key."""
    pub = cert_or_public.public_key() if isinstance(cert_or_public, x509.Certificate) else cert_or_public
    der = serialization.Encoding.DER
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    return pub.public_bytes(der, spki) == key.public_key().public_bytes(der, spki)


def key_fingerprint(cert_or_key: x509.Certificate | PublicKey | PrivateKey) -> str:
    """``sha256:<hex>`` of the public key (SubjectPublicKeyInfo, DER): the form of kubeadm's
    ``--discovery-token-ca-cert-hash``. A CA certificate re-signed with the same key keeps it."""
    if isinstance(cert_or_key, x509.Certificate):
        pub: PublicKey = cert_or_key.public_key()  # type: ignore[assignment]
    elif isinstance(cert_or_key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        pub = cert_or_key.public_key()
    else:
        pub = cert_or_key
    der = pub.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return "sha256:" + hashlib.sha256(der).hexdigest()


def is_ca(cert: x509.Certificate) -> bool:
    try:
        bc = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        return False
    if not bc.ca:
        return False
    try:
        ku = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        return True
    return ku.key_cert_sign


def issued_by(cert: x509.Certificate, ca: x509.Certificate) -> bool:
    """Whether ``ca`` signed ``cert`` (issuer name and signature both match)."""
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def sans_of(cert: x509.Certificate) -> SANs:
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return SANs()
    ips = [i for i in ext.get_values_for_type(x509.IPAddress)
           if isinstance(i, ipaddress.IPv4Address | ipaddress.IPv6Address)]
    return SANs.of(*ext.get_values_for_type(x509.DNSName), *ips)


def subject_of(cert: x509.Certificate) -> tuple[str, tuple[str, ...]]:
    """(CN, O…) of a certificate's subject."""
    cns = [str(a.value) for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    orgs = tuple(str(a.value) for a in cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME))
    return (cns[0] if cns else ""), orgs


def extended_usages(cert: x509.Certificate) -> tuple[ObjectIdentifier, ...]:
    try:
        return tuple(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)
    except x509.ExtensionNotFound:
        return ()


_USAGE_NAMES = {ExtendedKeyUsageOID.SERVER_AUTH: "serverAuth", ExtendedKeyUsageOID.CLIENT_AUTH: "clientAuth"}


def describe_usages(usages: Sequence[ObjectIdentifier]) -> str:
    return "+".join(_USAGE_NAMES.get(u, u.dotted_string) for u in usages) or "none"
