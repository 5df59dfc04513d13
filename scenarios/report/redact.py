"""What keeps secrets on the nodes: every file a report holds passes through one ``Redactor`` first.

Two nets, both applied to every file:

1. Forms (``PATTERNS``): what a secret looks like wherever kha's components write one — a PEM
   ``PRIVATE KEY`` block (whole, cut short by a log tail, or JSON-escaped on one line), a value under a
   secret-sounding key (``client-key-data``, ``token``, ``auth_pass``, ``certificateKey`` /
   ``--certificate-key``, an encryption-at-rest ``secret:``, ``ansible_ssh_pass``/``ansible_password``/
   ``ansible_become_pass``, ``*password``) in YAML, JSON, INI and flag form, kubeadm's "Using
   certificate key:" line, and a bootstrap token anywhere (``[a-z0-9]{6}.[a-z0-9]{16}``, kubeadm's
   format: https://kubernetes.io/docs/reference/access-authn-authz/bootstrap-tokens/).
2. Literals (``Redactor.literals``): every secret value the cluster's state folder knows — the values of
   ``secrets.json`` (``installer.secrets``), the private keys of the PKI store, the harness's SSH
   identity, the inventory's passwords — and the base64 of each, replaced wherever they appear, whatever
   the form around them. A form the first net misses is caught here when the value is one kha knows.

What neither net catches: a private key kha does not know (planted by hand) that a log prints line by line
*and* cuts before its END line — each body line then stands after a timestamp, and the cut block's body is
only redacted up to the first "-" (a date). Collect never reads key files, so such a key can only come from
a component logging it.

Values shorter than ``MIN_LITERAL`` are left to the first net: replacing a three-letter password
everywhere would shred every log without protecting anything the forms do not already cover.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from installer.kubernetes import hardening
from installer.secrets import ClusterSecrets
from scenarios.installed import Installed

#: What a redacted value reads as.
MASK = "[REDACTED]"
#: Literal values shorter than this are only redacted by their form.
MIN_LITERAL = 6

# -- the forms -----------------------------------------------------------------------------------
#: A PEM private-key block (PKCS#1 "RSA", SEC1 "EC", PKCS#8, "ENCRYPTED", "OPENSSH"): whole, or cut short
#: (a log tail, ``head -c``) where the body runs to the end of what we have. Base64 never holds "-".
_PEM = re.compile(
    r"-----BEGIN (?P<kind>[A-Z0-9 ]*PRIVATE KEY)-----(?:.*?-----END (?P=kind)-----|[^-]*)", re.DOTALL)

#: Keys whose value is a secret: the whole key, or its last word (``bootstrap-token``, ``vrrp_password``).
_SECRET_KEY = (r"[A-Za-z0-9_.-]*?(?:client-key-data|token|auth_pass|certificate[-_ ]?key|secret|"
               r"ansible_ssh_pass|ansible_password|ansible_become_pass(?:word)?|password|passwd)")
#: ``key: value``, ``key=value``, ``"key": "value"`` (also with escaped quotes inside a logged string),
#: ``- token: value`` (a YAML list item). The key must not run on into a longer word (``tokenTTL``).
_KEY_VALUE = re.compile(
    rf"""(?P<key>(?<![A-Za-z0-9_-])\\?["']?{_SECRET_KEY}\\?["']?[ \t]*[:=][ \t]*\\?["']?)"""
    r"""(?P<value>[^\s"'\\,;}\]]+)""",
    re.IGNORECASE)
#: Whitespace-separated forms: keepalived's ``auth_pass VALUE`` (keepalived.conf(5)) and command-line
#: flags (``kubeadm join … --token T --certificate-key K``, ``sshpass -p``-style ``--password P``).
_SPACED = re.compile(
    r"(?P<key>(?<![A-Za-z0-9_-])(?:auth_pass|--(?:[a-z-]*-)?(?:token|certificate-key|password|secret))[ \t]+)"
    r"(?P<value>[^\s\"'\\]+)",
    re.IGNORECASE)
#: kubeadm init --upload-certs prints the key on the line after "Using certificate key:".
_CERT_KEY_LINE = re.compile(r"(?P<key>certificate key:\s*)(?P<value>[0-9a-f]{64})", re.IGNORECASE)
#: A bootstrap token, wherever it stands (``kubeadm token create`` output, a join command, a URL).
_BOOTSTRAP_TOKEN = re.compile(r"(?<![a-z0-9])[a-z0-9]{6}\.[a-z0-9]{16}(?![a-z0-9])")


def _pem(m: re.Match[str]) -> str:
    kind = m.group("kind")
    return f"-----BEGIN {kind}-----{MASK}-----END {kind}-----"


#: Values that say a secret is not set (JSON ``null``, YAML ``~``): kept, so a JSON file stays JSON.
_NOT_SET = frozenset({"null", "none", "~", "true", "false"})
#: Keys that sound secret and are not: etcd's initial cluster token only tells clusters apart (etcd docs,
#: "Clustering Guide": "unique initial cluster token"), and a mismatch is a classic failure to debug.
_NOT_SECRET_KEYS = ("initial-cluster-token", "initial_cluster_token")


def _keep_key(m: re.Match[str]) -> str:
    key, value = m.group("key"), m.group("value")
    if value.startswith("[REDACTED") or value.lower() in _NOT_SET or any(k in key.lower() for k in _NOT_SECRET_KEYS):
        return m.group(0)
    return key + MASK


@dataclass(frozen=True)
class Form:
    """One form a secret takes; ``name`` is what a test names when it checks the form is caught."""

    name: str
    pattern: re.Pattern[str]
    replace: str | Callable[[re.Match[str]], str]  # a replacement string, or a function of the match

    def apply(self, text: str) -> str:
        return self.pattern.sub(self.replace, text)


#: Applied in order: PEM blocks first (their bodies must not be half-eaten by the key forms).
PATTERNS: tuple[Form, ...] = (
    Form("pem-private-key", _PEM, _pem),
    Form("certificate-key-line", _CERT_KEY_LINE, _keep_key),
    Form("key-value", _KEY_VALUE, _keep_key),
    Form("spaced", _SPACED, _keep_key),
    Form("bootstrap-token", _BOOTSTRAP_TOKEN, MASK),
)


# -- the literal net -----------------------------------------------------------------------------
def variants(value: str) -> set[str]:
    """``value`` and the forms it is stored in elsewhere: base64 (Kubernetes Secrets, kubeconfig ``*-data``)
    with and without padding; for a PEM, also its body on one line (the DER in base64)."""
    out = {value, value.strip()}
    b64 = base64.b64encode(value.encode()).decode()
    out |= {b64, b64.rstrip("=")}
    if "-----BEGIN" in value:
        body = "".join(line.strip() for line in value.splitlines() if line.strip() and not line.startswith("-----"))
        out |= {body}
        # Base64 of the PEM as kubeconfigs carry it, whatever the final newline.
        for v in (value.strip(), value.strip() + "\n"):
            enc = base64.b64encode(v.encode()).decode()
            out |= {enc, enc.rstrip("=")}
    return {v for v in out if len(v) >= MIN_LITERAL}


def _kubeconfig_keys(text: str) -> list[str]:
    """The decoded ``client-key-data`` values of a kubeconfig (YAML or JSON as kha writes it)."""
    found = []
    for m in re.finditer(r"client-key-data\"?\s*:\s*\"?([A-Za-z0-9+/=]+)", text):
        try:
            found.append(base64.b64decode(m.group(1)).decode())
        except ValueError:
            continue
    return found


def state_secrets(state: Path, *, extra_files: Iterable[Path] = ()) -> list[str]:
    """Every secret value a cluster's state folder (``installer.state.StateDir``) holds: the values of
    ``secrets.json``, every private key (``*.key``) and kubeconfig key under ``pki/``, and ``extra_files``
    (e.g. the harness's SSH identity), read as text. Missing files are simply not there to redact."""
    values: list[str] = []
    secrets_file = state / "secrets.json"
    if secrets_file.is_file():
        values += _secrets_file_values(secrets_file.read_text(errors="replace"))
    pki = state / "pki"
    if pki.is_dir():
        for path in sorted(pki.rglob("*")):
            if not path.is_file():
                continue
            if path.suffix == ".key":
                values.append(path.read_text(errors="replace"))
            elif path.suffix == ".conf":
                values += _kubeconfig_keys(path.read_text(errors="replace"))
    for path in extra_files:
        if path.is_file():
            values.append(path.read_text(errors="replace"))
    return values


class Redactor:
    """Redacts text: the forms, then every known literal (and its variants)."""

    def __init__(self, literals: Iterable[str] = (), forms: Iterable[Form] = PATTERNS) -> None:
        self.forms = tuple(forms)
        found: set[str] = set()
        for value in literals:
            if value:
                found |= variants(value)
        # Longest first: a PEM must go before a line of it, a value before a prefix of it.
        self.literals = tuple(sorted(found, key=lambda v: (-len(v), v)))
        self._literal = re.compile("|".join(re.escape(v) for v in self.literals)) if self.literals else None

    def text(self, text: str) -> str:
        for form in self.forms:
            text = form.apply(text)
        if self._literal is not None:
            text = self._literal.sub(MASK, text)
        return text

    def bytes(self, data: bytes) -> bytes:
        """Bytes as they are (latin-1 maps each byte to one character and back): a console log's control
        characters survive, every secret (ASCII) is redacted."""
        return self.text(data.decode("latin-1")).encode("latin-1")


def _secrets_file_values(text: str) -> list[str]:
    """The values of ``secrets.json``, and the Secrets encryption key kha derives from its certificate key
    (base64, as it stands in encryption-config.yaml). A file that is not the JSON kha writes: every word of
    it (redacting too much costs a reader a little; too little leaks a secret)."""
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    if not isinstance(data, dict):
        return re.findall(r"[^\s\"',:{}\[\]]{8,}", text)
    values = [str(v) for v in data.values() if isinstance(v, str | int)]
    try:
        derived = hardening.encryption_key(ClusterSecrets(**{k: str(data[k]) for k in
                                                             ("kubeadm_token", "vrrp_password", "certificate_key")}))
    except (KeyError, ValueError):
        return values  # no certificate key (an older state): no encryption key derives from it
    return [*values, base64.b64encode(derived).decode()]


def for_installed(inst: Installed) -> Redactor:
    """The redactor for what comes from ``inst``: the forms, and every secret its state folder, its inventory
    (passwords) and its harness (the SSH identity) know."""
    literals = state_secrets(inst.state, extra_files=[inst.cluster.identity])
    literals += [h.password for h in inst.topo.hosts if h.password]
    literals += [v for v in (inst.topo.settings.lb_keepalived_password, inst.topo.settings.kubeadm_token) if v]
    return Redactor(literals)


def redact_tree(folder: Path, inst: Installed | Redactor) -> int:
    """Redact every file under ``folder`` in place (what others added to a report after ``collect``); the
    number of files that changed."""
    redactor = inst if isinstance(inst, Redactor) else for_installed(inst)
    changed = 0
    for path in sorted(folder.rglob("*")):
        if path.is_file() and not path.is_symlink():
            data = path.read_bytes()
            clean = redactor.bytes(data)
            if clean != data:
                path.write_bytes(clean)
                changed += 1
    return changed
