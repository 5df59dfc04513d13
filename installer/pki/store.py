"""The PKI store on disk: where every key, certificate and kubeconfig lives, and keeping it right.

Layout of a store ``DIR`` (paths below ``nodes/<node>/`` are exactly those under ``/etc/kubernetes``)::

    DIR/inventory.ini                 the inventory the store was last built from (check/renew read it);
                                      passwords (ansible_ssh_pass …) are not kept
    DIR/identity.json                 the cluster this store belongs to: its name, its nodes (name → address),
                                      each CA's key fingerprint (sha256 of the public key, as kubeadm's
                                      ca-cert-hash) and etcd's cluster ID once known
    DIR/ca/                           0700: the three CAs and the service-account key pair
        ca.crt ca.key  front-proxy-ca.crt front-proxy-ca.key  etcd/ca.crt etcd/ca.key  sa.key sa.pub
    DIR/cluster/                      cluster-wide leaves, issued once, copied to every node that gets them
        pki/apiserver-kubelet-client.{crt,key}  pki/front-proxy-client.{crt,key}
        pki/apiserver-etcd-client.{crt,key}     pki/etcd/healthcheck-client.{crt,key}
        admin.conf  super-admin.conf (≥ 1.29)
    DIR/nodes/<node>/                 what <node> gets, ready to copy to /etc/kubernetes
        control plane: pki/{ca,front-proxy-ca}.{crt,key} pki/sa.{key,pub} pki/apiserver.{crt,key}
                       pki/apiserver-kubelet-client.* pki/front-proxy-client.* pki/etcd/ca.crt (no key)
                       pki/apiserver-etcd-client.* admin.conf controller-manager.conf scheduler.conf
                       (+ super-admin.conf on the first master, ≥ 1.29)
        etcd:          pki/etcd/ca.crt pki/etcd/server.* pki/etcd/peer.* pki/etcd/healthcheck-client.*
        worker:        pki/ca.crt

Per-node certificates (``apiserver``, ``etcd/server``, ``etcd/peer``, ``controller-manager.conf``,
``scheduler.conf``) live only in their node's tree; everything else under ``nodes/`` is a copy.

What ``init`` promises: a CA that exists is loaded and validated (it is a CA, its key matches, its key is
the one ``identity.json`` recorded) and is never overwritten; missing files are created; a leaf whose
subject, usages or SANs no longer match the table (a master was added, the Kubernetes version moved to
1.29) or that has expired is re-issued from the same CA and reported; a leaf that does not chain to its
CA, or whose key is not its own, stops everything with a ``PKIError`` naming the file.

A CA is never made anew behind anyone's back. Half a CA is repaired from the node trees' copies (the
same bytes) or, for a lost certificate, re-signed from its own key (same key and CN: everything it
signed stays valid). When both halves are gone but the store shows one existed (identity.json, leaves
it signed, node copies), init refuses and names ``--replace-ca``, the explicit way to start over. A
store built for another cluster (another ``cluster_name``, or no node in common by name and address)
is refused before anything is touched: init would otherwise delete the other cluster's node trees.

Writes are crash-safe (``installer.pki.durable``): everything one run changes becomes visible at once,
after a crash the next run finishes or drops the interrupted write, and no key is left in a
temporary file. Only files whose bytes change are written, so a re-run on an unchanged inventory
touches nothing. Modes: keys and kubeconfigs 0600, certificates 0644, directories 0755, ``ca/`` 0700.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import os
import re
import shlex
import stat
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from cryptography import x509

from installer import topology
from installer.errors import ConfigError, PKIError, Problem
from installer.pki import crypto, durable, kubeconfig
from installer.pki.table import CAS, CERTS, SA, CASpec, CertSpec, Kind, Scope, ca_spec, role_map
from installer.settings import KeyType
from installer.topology import Host, Topology

__all__ = [
    "CA_DIR",
    "CERT_MODE",
    "CLUSTER_DIR",
    "DIR_MODE",
    "IDENTITY",
    "INVENTORY",
    "KEY_MODE",
    "NODES_DIR",
    "Change",
    "CheckReport",
    "CheckRow",
    "Leaf",
    "NodeFile",
    "Plan",
    "Store",
    "plan",
    "redact_inventory",
]

log = logging.getLogger(__name__)

INVENTORY = "inventory.ini"
IDENTITY = "identity.json"
CA_DIR = "ca"
CLUSTER_DIR = "cluster"
NODES_DIR = "nodes"

KEY_MODE = 0o600
CERT_MODE = 0o644
DIR_MODE = 0o755
CA_DIR_MODE = 0o700

_DAY = dt.timedelta(days=1)
T = TypeVar("T")


@dataclass(frozen=True)
class Change:
    """One file the store created, re-issued, updated, re-moded or removed, and why."""

    path: str  # relative to the store
    action: str  # created | reissued | updated | restored | chmod | removed | recovered
    reason: str

    def __str__(self) -> str:
        return f"{self.action} {self.path}: {self.reason}"


# -- the plan: which files a topology needs ------------------------------------------------------
@dataclass(frozen=True)
class Leaf:
    """One issued leaf: a table row for the whole cluster (``host`` None) or for one node."""

    spec: CertSpec
    host: Host | None

    @property
    def node(self) -> str | None:
        return None if self.host is None else self.host.name

    @property
    def home(self) -> str:
        """The store directory that holds the original."""
        return CLUSTER_DIR if self.host is None else f"{NODES_DIR}/{self.host.name}"

    @property
    def label(self) -> str:
        """``cluster/admin.conf``, ``nodes/node1/apiserver``: what ``kha pki renew`` accepts besides the name."""
        return f"{self.home}/{self.spec.name}"

    @property
    def node_paths(self) -> tuple[tuple[str, int], ...]:
        """(path under /etc/kubernetes, mode) of each file the leaf is shipped as."""
        if self.spec.kind is Kind.KUBECONFIG:
            return ((self.spec.name, KEY_MODE),)
        return ((f"pki/{self.spec.name}.crt", CERT_MODE), (f"pki/{self.spec.name}.key", KEY_MODE))

    @property
    def files(self) -> tuple[str, ...]:
        return tuple(f"{self.home}/{p}" for p, _ in self.node_paths)

    @property
    def main(self) -> str:
        """The file named in messages: the certificate or the kubeconfig."""
        return self.files[0]


@dataclass(frozen=True)
class NodeFile:
    """A file of one node's tree: ``target`` is a copy of ``source`` (the same path for per-node leaves)."""

    node: str
    target: str
    source: str
    mode: int


@dataclass(frozen=True)
class Plan:
    leaves: tuple[Leaf, ...]
    node_files: tuple[NodeFile, ...]


def _ca_files(spec: CASpec) -> tuple[str, str]:
    return f"{CA_DIR}/{spec.name}.crt", f"{CA_DIR}/{spec.name}.key"


_SA_KEY, _SA_PUB = f"{CA_DIR}/{SA.name}.key", f"{CA_DIR}/{SA.name}.pub"


def plan(topo: Topology) -> Plan:
    """Every leaf the topology needs and every file of every node's tree, in a stable order.

    Linear in the number of hosts: roles and receivers are computed once, by name.
    """
    roles = role_map(topo)
    leaves: list[Leaf] = []
    mine: dict[str, list[Leaf]] = {h.name: [] for h in topo.hosts}  # each host's leaves, in table order
    for spec in CERTS:
        hosts = spec.receivers(topo, roles)
        if not hosts:
            continue
        if spec.scope is Scope.CLUSTER:
            leaf = Leaf(spec, None)
            leaves.append(leaf)
            for h in hosts:
                mine[h.name].append(leaf)
        else:
            for h in hosts:
                leaves.append(Leaf(spec, h))
                mine[h.name].append(leaves[-1])
    order = {leaf: i for i, leaf in enumerate(leaves)}
    files: list[NodeFile] = []
    for host in topo.hosts:
        held = roles.get(host.name, frozenset())
        base = f"{NODES_DIR}/{host.name}"
        for ca in CAS:
            crt, key = _ca_files(ca)
            if held & ca.cert_roles:
                files.append(NodeFile(host.name, f"{base}/pki/{ca.name}.crt", crt, CERT_MODE))
            if held & ca.key_roles:
                files.append(NodeFile(host.name, f"{base}/pki/{ca.name}.key", key, KEY_MODE))
        if held & SA.roles:
            files.append(NodeFile(host.name, f"{base}/pki/{SA.name}.key", _SA_KEY, KEY_MODE))
            files.append(NodeFile(host.name, f"{base}/pki/{SA.name}.pub", _SA_PUB, CERT_MODE))
        for leaf in sorted(mine[host.name], key=order.__getitem__):
            for path, mode in leaf.node_paths:
                files.append(NodeFile(host.name, f"{base}/{path}", f"{leaf.home}/{path}", mode))
    return Plan(tuple(leaves), tuple(files))


#: Inventory variables that hold a password: the store's copy of the inventory never keeps them.
_PASSWORDS = ("ansible_ssh_pass", "ansible_password", "ansible_become_pass", "ansible_become_password",
              "ansible_sudo_pass")
_VALUE = r"""("(?:[^"\\\n]|\\.)*"|'[^'\n]*'|[^ \t\n]*)"""  # "double", 'single' or bare, as shlex reads them
_PASSWORD_VAR = re.compile(r"(^|[ \t]+)(" + "|".join(_PASSWORDS) + r")[ \t]*=[ \t]*" + _VALUE, re.MULTILINE)


def redact_inventory(text: bytes) -> bytes:
    """The inventory without its passwords: ``ansible_ssh_pass=…`` (and the like) dropped from host
    lines, a ``[*:vars]`` line that only held one becomes a comment (line numbers stay as they were)."""
    out: list[str] = []
    for line in text.decode("utf-8", errors="surrogateescape").split("\n"):
        kept = _PASSWORD_VAR.sub("", line)
        if kept != line and not kept.strip():
            kept = "; (a password was here: kha keeps no password in its PKI store)"
        out.append(kept)
    return "\n".join(out).encode("utf-8", errors="surrogateescape")


# -- check results -------------------------------------------------------------------------------
@dataclass(frozen=True)
class CheckRow:
    """One certificate as ``kha pki check`` shows it (like a line of ``kubeadm certs check-expiration``)."""

    name: str
    node: str  # "-" for CAs and cluster-wide leaves
    path: str
    cn: str
    not_after: dt.datetime | None
    days_left: int | None
    ca: str  # "-" for a CA
    san_ok: bool | None  # None: the row has no required SANs
    chain_ok: bool | None  # None: could not be judged (its CA is unreadable, or not self-signed)
    problems: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass(frozen=True)
class CheckReport:
    rows: tuple[CheckRow, ...]
    problems: tuple[str, ...]  # about the store rather than one certificate (sa keys, node copies)
    warn_days: int

    @property
    def ok(self) -> bool:
        return not self.problems and all(r.ok for r in self.rows)


@dataclass(frozen=True)
class _Authority:
    spec: CASpec
    cert: x509.Certificate
    key: crypto.PrivateKey


@dataclass(frozen=True)
class _CAFix:
    """What to do about a CA whose certificate or key (or both) is missing from ``ca/``."""

    how: str  # new | restore | resign | refuse
    crt: bytes | None = None  # restore: the bytes to put back
    key: bytes | None = None
    source: str = ""  # restore: the copies they come from; refuse: why a CA must have existed


@dataclass(frozen=True)
class _Issued:
    cert: x509.Certificate
    key: crypto.PrivateKey
    cert_pem: bytes
    key_pem: bytes


class Store:
    """A PKI store rooted at ``root`` for one topology. ``init``, ``check`` and ``renew`` are its verbs."""

    def __init__(self, root: str | Path, topo: Topology, *, now: dt.datetime | None = None,
                 replace_ca: bool = False) -> None:
        self.root = Path(root)
        self.topo = topo
        self.now = (now or dt.datetime.now(dt.UTC)).astimezone(dt.UTC)
        #: ``--replace-ca``: a missing or swapped CA may be replaced by a new one (on purpose, never by default).
        self.replace_ca = replace_ca
        self.plan = plan(topo)
        self.changes: list[Change] = []
        self._cas: dict[str, _Authority] = {}
        self._new_cas: set[str] = set()  # CAs created by this run: what they "signed" before was another CA
        self._pending: dict[str, tuple[bytes, int]] = {}  # this run's writes, committed together
        self._valid_for: dt.timedelta | None = None  # renew's override of the table's lifetimes

    @classmethod
    def open(cls, root: str | Path, inventory: str | Path | None = None, *, now: dt.datetime | None = None) -> Store:
        """The store at ``root``, with the topology of ``inventory`` or else of the copy ``init`` kept."""
        inv = Path(inventory) if inventory is not None else Path(root) / INVENTORY
        if not inv.is_file():
            raise ConfigError([Problem(str(inv), None, "no such inventory; build the store first with "
                                       "`kha pki init -i INVENTORY --dir DIR`, or pass -i INVENTORY")])
        return cls(root, topology.load(inv), now=now)

    # -- verbs -----------------------------------------------------------------------------------
    def init(self, inventory_text: bytes | None = None) -> list[Change]:
        """Bring the store to what the topology needs; returns every change made (none on a re-run)."""
        with self._writing():
            if inventory_text is not None:
                self._put(INVENTORY, redact_inventory(inventory_text), KEY_MODE, "the inventory this store was "
                          "built from (without passwords)")
            self._load_authorities(create=True)
            self._sync_leaves(force=frozenset())
            self._finish()
        return list(self.changes)

    def renew(self, names: Sequence[str] = (), *, valid_for: dt.timedelta | None = None) -> list[Change]:
        """Re-issue the named leaves (all when none are named) from the same CAs with the same CN/O/SANs,
        valid for the table's lifetime, or for ``valid_for`` (short-lived certificates, to test a renewal
        end to end without moving a clock: the kubeadm maintainers' advice)."""
        chosen = self.select(names)
        if valid_for is not None and valid_for <= dt.timedelta(0):
            raise ValueError(f"valid_for must be positive, not {valid_for}")
        self._valid_for = valid_for
        with self._writing():
            self._load_authorities(create=False)
            self._sync_leaves(force=chosen)
            self._finish()
        return list(self.changes)

    @contextlib.contextmanager
    def _writing(self) -> Iterator[None]:
        """The store to this run alone; what a crash interrupted finished or dropped; a store of another
        cluster refused before anything changed."""
        self.changes = []
        self._pending = {}
        self._mkdir(self.root)
        with durable.exclusive(self.root):
            said = durable.recover(self.root, self._mkdir)
            if said:
                self._record(durable.STAGING, "recovered", said, logging.WARNING)
            self._refuse_another_cluster()
            yield

    def _finish(self) -> None:
        """Node trees, identity, then every write of this run at once; prune what no node needs after that."""
        wanted = self._sync_nodes()
        self._sync_identity()
        durable.commit(self.root, self._pending, self._mkdir)
        self._pending = {}
        self._prune(wanted)

    def init_command(self) -> str:
        """The ``kha pki init`` that repairs this store (named in check's messages)."""
        return f"kha pki init -i {shlex.quote(self.topo.source)} --dir {shlex.quote(str(self.root))}"

    def renew_command(self, leaf: Leaf) -> str:
        return f"kha pki renew --dir {shlex.quote(str(self.root))} {shlex.quote(leaf.label)}"

    def record_etcd_cluster_id(self, cluster_id: int, *, restored: bool = False) -> list[Change]:
        """Record etcd's cluster ID once etcd runs; a different one than recorded is refused (``PKIError``):
        the members this store's certificates went to form another etcd cluster than the one it was built for.
        ``restored``: the cluster was restored from a snapshot (a new ID on purpose), recorded in place of the old."""
        have = f"{cluster_id:x}"
        with self._writing():
            identity = self._identity()
            recorded = identity.get("etcd_cluster_id")
            if restored and recorded not in (None, have):
                recorded = None
            if recorded not in (None, have):
                raise PKIError(f"etcd reports cluster ID {have}, but {self.where(IDENTITY)} recorded {recorded}: "
                               "these etcd members are another cluster than the one this store was built for")
            if recorded is None:
                data = json.dumps({**identity, "etcd_cluster_id": have}, indent=2, sort_keys=True).encode() + b"\n"
                self._put(IDENTITY, data, CERT_MODE, f"etcd cluster ID {have}")
                durable.commit(self.root, self._pending, self._mkdir)
                self._pending = {}
        return list(self.changes)

    def select(self, names: Sequence[str]) -> frozenset[Leaf]:
        """The leaves ``names`` designate: a table name (on every node), ``nodes/<node>/<name>``, ``cluster/<name>``."""
        if not names or list(names) == ["all"]:
            return frozenset(self.plan.leaves)
        chosen: set[Leaf] = set()
        problems: list[Problem] = []
        for name in names:
            hits = [lf for lf in self.plan.leaves if name in (lf.spec.name, lf.label)]
            if hits:
                chosen.update(hits)
                continue
            if any(name in (ca.name, f"{CA_DIR}/{ca.name}") for ca in CAS):
                msg = "is a CA: kha never renews a CA in place (every node trusts it); only leaves are renewed"
            else:
                known = sorted({lf.spec.name for lf in self.plan.leaves})
                msg = f"is not a certificate of this cluster; known: {', '.join(known)} (or nodes/<node>/<name>)"
            problems.append(Problem("<command line>", None, f"{name!r} {msg}", "NAME"))
        if problems:
            raise ConfigError(problems)
        return frozenset(chosen)

    def check(self, warn_days: int = 30) -> CheckReport:
        """Judge every certificate and every node file without changing anything."""
        rows: list[CheckRow] = []
        ca_certs: dict[str, x509.Certificate] = {}
        for spec in CAS:
            row, cert = self._check_ca(spec, warn_days)
            rows.append(row)
            if cert is not None:
                ca_certs[spec.name] = cert
        rows += [self._check_leaf(leaf, ca_certs, warn_days) for leaf in self.plan.leaves]
        problems = self._check_interrupted() + self._check_identity(ca_certs) + self._check_sa() + self._check_nodes()
        return CheckReport(tuple(rows), tuple(problems), warn_days)

    # -- files -----------------------------------------------------------------------------------
    def where(self, rel: str) -> str:
        return str(self.root / rel)

    def _record(self, rel: str, action: str, reason: str, level: int = logging.INFO) -> None:
        self.changes.append(Change(rel, action, reason))
        log.log(level, "%s %s: %s", action, self.where(rel), reason)

    def _mkdir(self, path: Path) -> None:
        missing: list[Path] = []
        p = path
        while not p.exists():
            missing.append(p)
            if p.parent == p:
                break
            p = p.parent
        for d in reversed(missing):
            mode = CA_DIR_MODE if self._under_ca(d) else DIR_MODE
            d.mkdir(mode=mode)
            os.chmod(d, mode)  # mkdir's mode is filtered by the umask

    def _under_ca(self, path: Path) -> bool:
        try:
            rel = path.relative_to(self.root)
        except ValueError:
            return False
        return bool(rel.parts) and rel.parts[0] == CA_DIR

    def _read(self, rel: str) -> bytes | None:
        """A file as this run sees it: what it is about to write, else what is on disk."""
        if rel in self._pending:
            return self._pending[rel][0]
        try:
            return (self.root / rel).read_bytes()
        except FileNotFoundError:
            return None

    def _ensure_mode(self, rel: str, mode: int) -> None:
        if rel in self._pending:
            return  # written with ``mode`` when the run commits
        p = self.root / rel
        have = stat.S_IMODE(p.stat().st_mode)
        if have != mode:
            os.chmod(p, mode)
            self._record(rel, "chmod", f"mode {have:o} → {mode:o}")

    def _put(self, rel: str, data: bytes, mode: int, reason: str, action: str | None = None, *,
             level: int = logging.INFO) -> None:
        """Write ``data`` when this run commits, unless the file already holds exactly it (then only fix the mode)."""
        old = self._read(rel)
        if old == data:
            self._ensure_mode(rel, mode)
            return
        self._pending[rel] = (data, mode)
        self._record(rel, action or ("created" if old is None else "updated"), reason, level)

    # -- which cluster this store belongs to -----------------------------------------------------
    def _identity(self) -> dict[str, object]:
        data = self._read(IDENTITY)
        if data is None:
            return {}
        try:
            found = json.loads(data)
            if not isinstance(found, dict):
                raise ValueError("not a JSON object")
        except ValueError as exc:
            raise PKIError(f"{self.where(IDENTITY)} is unreadable ({exc}); restore it from a backup, or remove it "
                           "to have kha record the cluster's identity from the CAs in the store") from None
        return found

    def _recorded_ca(self, name: str) -> str | None:
        cas = self._identity().get("cas")
        found = cas.get(name) if isinstance(cas, dict) else None
        return str(found) if found else None

    def _refuse_another_cluster(self) -> None:
        """A store of another cluster is refused before anything is written or deleted."""
        name = self.topo.settings.cluster_name
        recorded = self._identity().get("cluster_name")
        why = ""
        if recorded is not None and recorded != name:
            why = (f"it belongs to cluster {recorded!r} ({self.where(IDENTITY)}), the inventory is cluster {name!r} "
                   f"(the same cluster renamed? then remove {IDENTITY} and run again)")
        else:
            # The same machine is the same name at the same address; staging and production often share
            # names (node1, node2 …), never addresses. A store from before identity.json: its node trees.
            recorded_nodes = self._identity().get("nodes")
            if isinstance(recorded_nodes, dict):
                have = {f"{n} ({a})" for n, a in recorded_nodes.items()}
                mine = {f"{n} ({a})" for n, a in self._nodes().items()}
            else:
                nodes_dir = self.root / NODES_DIR
                have = {p.name for p in nodes_dir.iterdir() if p.is_dir()} if nodes_dir.is_dir() else set()
                mine = set(self._nodes())
            if have and mine and not have & mine:
                why = f"its nodes ({_some(have)}) share none with the inventory's ({_some(mine)})"
        if why:
            raise ConfigError([Problem(str(self.root), None, f"is the PKI store of another cluster: {why}. "
                                       f"Building {self.topo.source}'s PKI here would delete that cluster's node "
                                       "trees; nothing was changed. Use another --dir (kha install: another --state) "
                                       "for this inventory")])

    def _nodes(self) -> dict[str, str]:
        """Name → address of every node that holds a part of the PKI."""
        names = {nf.node for nf in self.plan.node_files}
        return {h.name: str(h.address) for h in self.topo.hosts if h.name in names}

    def _sync_identity(self) -> None:
        before = self._identity()
        want = {
            "cluster_name": self.topo.settings.cluster_name,
            "nodes": self._nodes(),
            "cas": {name: crypto.key_fingerprint(a.cert) for name, a in sorted(self._cas.items())},
            "etcd_cluster_id": before.get("etcd_cluster_id"),
        }
        data = json.dumps(want, indent=2, sort_keys=True).encode() + b"\n"
        self._put(IDENTITY, data, CERT_MODE, "the cluster this store belongs to: name and CA key fingerprints")

    # -- CAs and the service-account key ---------------------------------------------------------
    def _ca_problems(self, spec: CASpec, cert: x509.Certificate, key: crypto.PrivateKey | None) -> list[str]:
        crt_rel, key_rel = _ca_files(spec)
        out: list[str] = []
        if not crypto.is_ca(cert):
            out.append(f"{self.where(crt_rel)} is not a CA certificate (needs BasicConstraints CA:TRUE and "
                       "keyCertSign); kha never overwrites a CA: move it away to have a new one made")
        if key is not None and not crypto.same_key(cert, key):
            out.append(f"{self.where(key_rel)} is not the key of {self.where(crt_rel)}; restore the matching pair")
        if cert.not_valid_after_utc <= self.now:
            out.append(f"{self.where(crt_rel)} expired on {_date(cert.not_valid_after_utc)}; every certificate "
                       "it signed is invalid: a new CA (and a re-issue of everything) is needed")
        return out

    def _load_authorities(self, *, create: bool) -> None:
        """Load and validate the three CAs and the service-account key; create what is missing if asked.

        A missing CA file is put back from a node tree's copy, or a lost certificate re-signed from its
        key; a CA is made anew only when nothing shows one existed, or with ``replace_ca``.
        """
        self._cas = {}
        self._new_cas = set()
        missing: list[tuple[CASpec, str]] = []
        for spec in CAS:
            crt_rel, key_rel = _ca_files(spec)
            crt, key = self._read(crt_rel), self._read(key_rel)
            if crt is None or key is None:
                fix = self._ca_fix(spec, crt, key)
                if fix.how == "refuse" and not self.replace_ca:
                    raise PKIError(self._ca_refusal(spec, crt, key, fix))
                if fix.how == "new" and not create:
                    raise PKIError(f"{self.where(crt_rel)} does not exist: build the store with `kha pki init` first")
                if fix.how in ("new", "refuse"):
                    why = "replaced on request (--replace-ca)" if fix.how == "refuse" else "new"
                    missing.append((spec, why))
                    continue
                if fix.how == "restore":
                    for rel, data, mode in ((crt_rel, fix.crt, CERT_MODE), (key_rel, fix.key, KEY_MODE)):
                        if data is not None and self._read(rel) is None:
                            self._put(rel, data, mode, f"restored from {fix.source} (the store's own copy was "
                                      "lost; same bytes)", "restored", level=logging.WARNING)
                else:  # resign: the certificate is lost, its key is not
                    assert key is not None
                    days = spec.lifetime(self.topo.settings)
                    pkey = crypto.parse_key(key, self.where(key_rel))
                    new_crt = crypto.cert_pem(crypto.self_signed_ca(pkey, spec.cn, days, self.now))
                    self._put(crt_rel, new_crt, CERT_MODE, f"it was missing and no node tree had a copy: re-signed "
                              f"from {key_rel} (same key, CN={spec.cn}: everything the CA signed stays valid)",
                              "reissued", level=logging.WARNING)
                crt, key = self._read(crt_rel), self._read(key_rel)
            assert crt is not None and key is not None
            cert = crypto.parse_cert(crt, self.where(crt_rel))
            pkey = crypto.parse_key(key, self.where(key_rel))
            problems = self._ca_problems(spec, cert, pkey)
            recorded = self._recorded_ca(spec.name)
            if recorded and recorded != crypto.key_fingerprint(cert) and not self.replace_ca:
                problems.append(f"{self.where(crt_rel)} has key {crypto.key_fingerprint(cert)}, but this store "
                                f"recorded {recorded} for the {spec.name} CA ({self.where(IDENTITY)}): the CA was "
                                "swapped, and every node still trusts the recorded one. Restore it, or keep this "
                                "one on purpose with --replace-ca")
            if problems:
                raise PKIError(problems[0])
            self._ensure_mode(crt_rel, CERT_MODE)
            self._ensure_mode(key_rel, KEY_MODE)
            self._cas[spec.name] = _Authority(spec, cert, pkey)
        sa_key = self._read(_SA_KEY)
        if sa_key is None and (copy := self._sa_copy()) is not None:
            sa_key = copy[1]
            self._put(_SA_KEY, sa_key, KEY_MODE, f"restored from {copy[0]} (the store's own copy was lost; same "
                      "bytes)", "restored", level=logging.WARNING)
        sa_missing = sa_key is None
        if sa_missing and self._read(_SA_PUB) is not None:
            raise PKIError(f"{self.where(_SA_PUB)} exists but {self.where(_SA_KEY)} does not, and no node tree holds "
                           "a copy; service-account tokens already issued are verified with it: restore sa.key "
                           "(or remove both)")
        if sa_missing and not create:
            raise PKIError(f"{self.where(_SA_KEY)} does not exist: build the store with `kha pki init` first")
        kind = self.topo.settings.cert_key_type
        # The service-account key is RSA like kubeadm's, whatever cert_key_type says.
        keys = crypto.new_keys([kind] * len(missing) + ([KeyType.RSA] if sa_missing else []))
        for (spec, why), pkey in zip(missing, keys, strict=False):
            crt_rel, key_rel = _ca_files(spec)
            days = spec.lifetime(self.topo.settings)
            cert = crypto.self_signed_ca(pkey, spec.cn, days, self.now)
            level = logging.INFO if why == "new" else logging.WARNING
            self._put(key_rel, crypto.key_pem(pkey), KEY_MODE, f"{why} {spec.name} CA key ({kind})", level=level)
            self._put(crt_rel, crypto.cert_pem(cert), CERT_MODE, f"{why} {spec.name} CA, CN={spec.cn}, {days} days",
                      level=level)
            self._cas[spec.name] = _Authority(spec, cert, pkey)
            self._new_cas.add(spec.name)
        if sa_missing:
            sa = keys[-1]
            self._put(_SA_KEY, crypto.key_pem(sa), KEY_MODE, "new service-account signing key (RSA)")
            self._put(_SA_PUB, crypto.public_pem(sa), CERT_MODE, "public half of sa.key")
        else:
            assert sa_key is not None
            self._sync_sa_pub(crypto.parse_key(sa_key, self.where(_SA_KEY), check=False))

    def _sa_copy(self) -> tuple[str, bytes] | None:
        """A node tree's copy of sa.key that is the private half of sa.pub (or any, when sa.pub is lost too)."""
        pub_pem = self._read(_SA_PUB)
        pub = _try(lambda: crypto.parse_public_key(pub_pem, "-")) if pub_pem is not None else None
        for rel, data in self._copies(f"{SA.name}.key"):
            key = _try_key(data)
            if key is not None and (pub is None or crypto.same_key(pub, key)):
                return rel, data
        return None

    def _copies(self, name: str) -> list[tuple[str, bytes]]:
        """Every node tree's copy of ``pki/<name>`` (a CA's .crt or .key), as (path in the store, bytes)."""
        nodes_dir = self.root / NODES_DIR
        if not nodes_dir.is_dir():
            return []
        out: list[tuple[str, bytes]] = []
        for node in sorted(nodes_dir.iterdir()):
            rel = f"{NODES_DIR}/{node.name}/pki/{name}"
            data = self._read(rel)
            if data is not None:
                out.append((rel, data))
        return out

    def _ca_fix(self, spec: CASpec, crt: bytes | None, key: bytes | None) -> _CAFix:
        """How to complete a CA with a missing half (or two): from copies, by re-signing, anew, or not at all."""
        recorded = self._recorded_ca(spec.name)
        certs = [(rel, c) for rel, data in self._copies(f"{spec.name}.crt") if (c := _try_cert(data)) is not None]
        keys = [(rel, k) for rel, data in self._copies(f"{spec.name}.key") if (k := _try_key(data)) is not None]
        if crt is None and key is None:
            for (crt_rel, c), (key_rel, k) in ((c, k) for c in certs for k in keys):
                if crypto.same_key(c, k) and recorded in (None, crypto.key_fingerprint(c)):
                    return _CAFix("restore", crypto.cert_pem(c), crypto.key_pem(k), f"{crt_rel} and {key_rel}")
            evidence: list[str] = []
            if recorded:
                evidence.append(f"{IDENTITY} records it ({recorded})")
            signed = [lf.main for lf in self.plan.leaves if lf.spec.ca == spec.name and self._read(lf.main) is not None]
            evidence += [f"{len(signed)} certificates it signed ({_some(signed)})"] if signed else []
            evidence += [f"node trees hold its certificate ({_some([r for r, _ in certs])})"] if certs else []
            return _CAFix("refuse", source="; ".join(evidence)) if evidence else _CAFix("new")
        if crt is None:
            assert key is not None
            mine = crypto.parse_key(key, self.where(_ca_files(spec)[1]))
            for rel, c in certs:
                if crypto.same_key(c, mine):
                    return _CAFix("restore", crt=crypto.cert_pem(c), source=rel)
            return _CAFix("resign")
        have = crypto.parse_cert(crt, self.where(_ca_files(spec)[0]))
        for rel, k in keys:
            if crypto.same_key(have, k):
                return _CAFix("restore", key=crypto.key_pem(k), source=rel)
        return _CAFix("refuse", source="no node tree holds a copy of the key")

    def _ca_refusal(self, spec: CASpec, crt: bytes | None, key: bytes | None, fix: _CAFix) -> str:
        crt_rel, key_rel = _ca_files(spec)
        if crt is None and key is None:
            lost = f"{self.where(crt_rel)} and {self.where(key_rel)} are both missing, but the {spec.name} CA existed"
        else:
            lost = f"{self.where(key_rel)} is missing ({fix.source})"
        return (f"{lost}: {fix.source if crt is None and key is None else 'a CA cannot be completed without its key'}. "
                "kha never makes a new CA silently: every node of the cluster trusts the old one. Restore "
                f"{self.where(CA_DIR)} from a backup, or start a new CA on purpose with "
                f"`{self.init_command()} --replace-ca` (everything it signed is then re-issued, and `kha install "
                "--replace-ca` pushes it over the nodes' old one)")

    def _sync_sa_pub(self, sa: crypto.PrivateKey) -> None:
        self._ensure_mode(_SA_KEY, KEY_MODE)
        pub = self._read(_SA_PUB)
        if pub is None:
            self._put(_SA_PUB, crypto.public_pem(sa), CERT_MODE, "public half of sa.key")
            return
        if not crypto.same_key(crypto.parse_public_key(pub, self.where(_SA_PUB)), sa):
            raise PKIError(f"{self.where(_SA_PUB)} is not the public half of {self.where(_SA_KEY)}; restore the pair")
        self._ensure_mode(_SA_PUB, CERT_MODE)

    # -- leaves ----------------------------------------------------------------------------------
    def _read_leaf(self, leaf: Leaf) -> _Issued | str:
        """The leaf on disk, or why there is nothing usable to keep (then it is issued)."""
        if leaf.spec.kind is Kind.KUBECONFIG:
            data = self._read(leaf.main)
            if data is None:
                return "new"
            kc = kubeconfig.parse(data, self.where(leaf.main))
            cert_pem, key_pem = kc.cert_pem, kc.key_pem
        else:
            crt_rel, key_rel = leaf.files
            crt, key = self._read(crt_rel), self._read(key_rel)
            if crt is None and key is None:
                return "new"
            if crt is None:
                return "its certificate is missing"
            if key is None:
                return "its key is missing"
            cert_pem, key_pem = crt, key
        where_key = self.where(leaf.files[-1])
        return _Issued(crypto.parse_cert(cert_pem, self.where(leaf.main)),
                       crypto.parse_key(key_pem, where_key, check=False), cert_pem, key_pem)

    def _broken(self, leaf: Leaf, issued: _Issued, ca_cert: x509.Certificate) -> list[str]:
        """What makes a leaf unusable in a way kha must not paper over by re-issuing it."""
        ca_rel, _ = _ca_files(ca_spec(leaf.spec.ca))
        out: list[str] = []
        if not crypto.issued_by(issued.cert, ca_cert):
            out.append(f"is not signed by the {leaf.spec.ca} CA ({self.where(ca_rel)}); it was issued by "
                       f"{issued.cert.issuer.rfc4514_string()!r}. Restore the right CA, or have kha issue a new "
                       f"one: `{self.renew_command(leaf)}`")
        if not crypto.same_key(issued.cert, issued.key):
            out.append(f"its private key does not belong to the certificate; `{self.renew_command(leaf)}` issues a "
                       "new pair")
        return out

    def _stale(self, leaf: Leaf, cert: x509.Certificate) -> list[str]:
        """Why a sound leaf no longer fits the table (then it is re-issued from the same CA)."""
        spec = leaf.spec
        out: list[str] = []
        want = (spec.common_name(leaf.host), spec.organization(self.topo.settings.kube_version))
        have = crypto.subject_of(cert)
        if have != want:
            out.append(f"subject is {_subject(*have)}, the table wants {_subject(*want)} "
                       f"(kube_version {self.topo.settings.kube_version})")
        if set(crypto.extended_usages(cert)) != set(spec.usages):
            out.append(f"usages are {crypto.describe_usages(crypto.extended_usages(cert))}, "
                       f"the table wants {crypto.describe_usages(spec.usages)}")
        lacking = spec.required_sans(self.topo, leaf.host).missing_from(crypto.sans_of(cert))
        if lacking:
            out.append(f"SANs lack {lacking} (a node was added or the load balancer changed)")
        if cert.not_valid_after_utc <= self.now:
            out.append(f"expired on {_date(cert.not_valid_after_utc)}")
        return out

    def _issue(self, leaf: Leaf, key: crypto.PrivateKey, old: x509.Certificate | None,
               valid_for: dt.timedelta) -> _Issued:
        spec = leaf.spec
        ca = self._cas[spec.ca]
        sans = spec.required_sans(self.topo, leaf.host)
        if old is not None:
            sans = sans | crypto.sans_of(old)  # keep names an earlier topology (or a person) put there
        cert = crypto.issue(ca.cert, ca.key, key, cn=spec.common_name(leaf.host),
                            organization=spec.organization(self.topo.settings.kube_version), usages=spec.usages,
                            sans=sans, valid_for=valid_for, now=self.now)
        return _Issued(cert, key, crypto.cert_pem(cert), crypto.key_pem(key))

    def _lifetime(self, leaf: Leaf, forced: bool) -> tuple[dt.timedelta, str]:
        """How long a leaf issued now is valid, and what to say about it when that is not the table's."""
        days = leaf.spec.lifetime(self.topo.settings)
        if forced and self._valid_for is not None:
            return self._valid_for, f"valid for {self._valid_for} on request, not the configured {days} days"
        return dt.timedelta(days=days), ""

    def _sync_leaves(self, force: frozenset[Leaf]) -> None:
        have: dict[Leaf, _Issued] = {}
        todo: list[tuple[Leaf, x509.Certificate | None, str]] = []
        for leaf in self.plan.leaves:
            found = self._read_leaf(leaf)
            if isinstance(found, str):
                todo.append((leaf, None, found))
                continue
            broken = self._broken(leaf, found, self._cas[leaf.spec.ca].cert)
            if broken and leaf.spec.ca in self._new_cas:
                # Someone moved the old CA away on purpose and this run made a new one: re-issue, loudly.
                todo.append((leaf, found.cert, f"the {leaf.spec.ca} CA was replaced by a new one in this run"))
                continue
            if broken:
                raise PKIError(f"{self.where(leaf.main)}: {broken[0]}")
            stale = self._stale(leaf, found.cert)
            if leaf in force:
                todo.append((leaf, found.cert, "renewed on request" + (f" ({'; '.join(stale)})" if stale else "")))
            elif stale:
                todo.append((leaf, found.cert, "; ".join(stale)))
            else:
                have[leaf] = found
        keys = crypto.new_keys([self.topo.settings.cert_key_type] * len(todo))
        reasons: dict[Leaf, tuple[str, str]] = {}
        for (leaf, old, why), key in zip(todo, keys, strict=True):
            valid_for, note = self._lifetime(leaf, leaf in force)
            have[leaf] = issued = self._issue(leaf, key, old, valid_for)
            ca_end = self._cas[leaf.spec.ca].cert.not_valid_after_utc
            if issued.cert.not_valid_after_utc == ca_end and ca_end < self.now + valid_for:
                # Never silently shorter than configured: a leaf cannot outlive the CA that signed it.
                note = f"valid only until its CA expires on {_date(ca_end)}, shorter than the {valid_for} asked for"
                log.warning("pki: %s: %s", self.where(leaf.main), note)
            action = "created" if why == "new" else "reissued"
            reasons[leaf] = (action, f"{why} ({note})" if note else why)
        for leaf in self.plan.leaves:
            action, why = reasons.get(leaf, ("updated", ""))
            # A re-issue nobody asked for (SANs, subject, a lost key) is news: say it loudly.
            level = logging.WARNING if action == "reissued" and leaf not in force else logging.INFO
            self._write_leaf(leaf, have[leaf], action if leaf in reasons else None, why, level)

    def _write_leaf(self, leaf: Leaf, issued: _Issued, action: str | None, why: str, level: int) -> None:
        spec = leaf.spec
        if spec.kind is Kind.KUBECONFIG:
            kc = kubeconfig.Kubeconfig(
                cluster=self.topo.settings.cluster_name,
                server=kubeconfig.server_for(spec, self.topo, leaf.host),
                user=spec.common_name(leaf.host),
                ca_pem=crypto.cert_pem(self._cas[spec.ca].cert),
                cert_pem=issued.cert_pem,
                key_pem=issued.key_pem,
            )
            reason = why if action else "server or CA changed"
            self._put(leaf.main, kubeconfig.render(kc), KEY_MODE, reason, action, level=level)
            return
        crt_rel, key_rel = leaf.files
        if action is None:  # kept as it is: never rewrite a sound certificate, only fix modes
            self._ensure_mode(crt_rel, CERT_MODE)
            self._ensure_mode(key_rel, KEY_MODE)
            return
        self._put(key_rel, issued.key_pem, KEY_MODE, why, action, level=level)
        self._put(crt_rel, issued.cert_pem, CERT_MODE, why, action, level=level)

    # -- node trees ------------------------------------------------------------------------------
    def _sync_nodes(self) -> set[str]:
        """Every node tree's copies; returns the paths the node trees must hold."""
        wanted: set[str] = set()
        cache: dict[str, bytes] = {}
        for nf in self.plan.node_files:
            wanted.add(nf.target)
            if nf.source == nf.target:
                continue  # a per-node leaf: written in place by _sync_leaves
            if nf.source not in cache:
                data = self._read(nf.source)
                assert data is not None, f"{nf.source} was just written"
                cache[nf.source] = data
            self._put(nf.target, cache[nf.source], nf.mode, f"copy of {nf.source}")
        return wanted

    def _prune(self, wanted: set[str]) -> None:
        """Remove what a node must no longer hold (it lost a role, or left the inventory)."""
        nodes_dir = self.root / NODES_DIR
        if not nodes_dir.is_dir():
            return
        known = {nf.node for nf in self.plan.node_files}
        emptied: set[Path] = set()
        for dirpath, dirs, names in os.walk(nodes_dir):
            if not dirs and not names:
                emptied.add(Path(dirpath))  # left empty by an earlier run
            for name in names:
                path = Path(dirpath) / name
                rel = path.relative_to(self.root).as_posix()
                if rel in wanted:
                    continue
                node = path.relative_to(nodes_dir).parts[0]
                why = f"not part of {node}'s tree for its roles" if node in known else f"{node} has no role any more"
                path.unlink()
                self._record(rel, "removed", why, logging.WARNING)
                emptied.add(path.parent)
        # Folders that may have become empty, deepest first (rmdir only removes an empty one).
        for folder in sorted({p for d in emptied for p in (d, *d.parents) if nodes_dir in p.parents},
                             key=lambda p: len(p.parts), reverse=True):
            with contextlib.suppress(OSError):
                folder.rmdir()
        if emptied:
            durable.fsync_dir(nodes_dir)

    # -- check -----------------------------------------------------------------------------------
    def _expiry(self, cert: x509.Certificate, warn_days: int) -> tuple[int, list[str]]:
        left = cert.not_valid_after_utc - self.now
        days = left // _DAY
        if left <= dt.timedelta(0):
            return days, [f"expired on {_date(cert.not_valid_after_utc)}"]
        if left < dt.timedelta(days=warn_days):
            return days, [f"expires in {days} days (within --warn-days {warn_days})"]
        return days, []

    def _check_ca(self, spec: CASpec, warn_days: int) -> tuple[CheckRow, x509.Certificate | None]:
        crt_rel, key_rel = _ca_files(spec)
        try:
            crt, key = self._read(crt_rel), self._read(key_rel)
            if crt is None or key is None:
                raise PKIError(self._ca_missing(spec, crt, key))
            cert = crypto.parse_cert(crt, self.where(crt_rel))
            pkey = crypto.parse_key(key, self.where(key_rel))
        except PKIError as exc:
            return CheckRow(spec.name, "-", crt_rel, spec.cn, None, None, "-", None, False, (str(exc),)), None
        problems = [p for p in self._ca_problems(spec, cert, pkey) if "expired" not in p]
        days, expiry = self._expiry(cert, warn_days)
        problems += expiry + self._mode_problems(((crt_rel, CERT_MODE), (key_rel, KEY_MODE)))
        chain = crypto.issued_by(cert, cert) if cert.issuer == cert.subject else None
        if chain is False:
            problems.append("its self-signature does not verify")
        cn, _ = crypto.subject_of(cert)
        row = CheckRow(spec.name, "-", crt_rel, cn, cert.not_valid_after_utc, days, "-", None, chain,
                       tuple(problems))
        return row, cert

    def _ca_missing(self, spec: CASpec, crt: bytes | None, key: bytes | None) -> str:
        """What is missing of a CA, and the command that repairs it (or why none can)."""
        crt_rel, key_rel = _ca_files(spec)
        fix = self._ca_fix(spec, crt, key)
        lost = " and ".join(self.where(r) for r, d in ((crt_rel, crt), (key_rel, key)) if d is None)
        if fix.how == "restore":
            return f"{lost} missing; `{self.init_command()}` restores it from {fix.source}"
        if fix.how == "resign":
            return f"{lost} missing; `{self.init_command()}` re-signs it from {key_rel} (same key)"
        if fix.how == "new":
            return f"{lost} missing; `{self.init_command()}` creates the CA (nothing shows one existed)"
        return self._ca_refusal(spec, crt, key, fix)

    def _check_interrupted(self) -> list[str]:
        staging = self.root / durable.STAGING
        if not staging.exists():
            return []
        return [f"{staging}: a write was interrupted (a crash); `{self.init_command()}` finishes or drops it"]

    def _check_identity(self, ca_certs: dict[str, x509.Certificate]) -> list[str]:
        try:
            recorded = {name: self._recorded_ca(name) for name in ca_certs}
        except PKIError as exc:
            return [str(exc)]
        return [f"{self.where(_ca_files(ca_spec(name))[0])} has key "
                f"{crypto.key_fingerprint(cert)}, this store recorded {recorded[name]} ({IDENTITY}): the CA was swapped"
                for name, cert in ca_certs.items() if recorded[name] and recorded[name] != crypto.key_fingerprint(cert)]

    def _check_leaf(self, leaf: Leaf, ca_certs: dict[str, x509.Certificate], warn_days: int) -> CheckRow:
        spec, node = leaf.spec, leaf.node or "-"
        try:
            found = self._read_leaf(leaf)
        except PKIError as exc:
            found = str(exc)
        if isinstance(found, str):
            why = f"{self.where(leaf.main)} is missing" if found == "new" else f"{self.where(leaf.main)}: {found}"
            if found == "new" or "missing" in found:
                why += f"; `{self.renew_command(leaf)}` issues a new pair"
            return CheckRow(spec.name, node, leaf.main, spec.common_name(leaf.host), None, None, spec.ca, None,
                            None, (why,))
        cert = found.cert
        problems: list[str] = []
        ca_cert = ca_certs.get(spec.ca)
        chain: bool | None = None
        if ca_cert is not None:
            broken = self._broken(leaf, found, ca_cert)
            chain = not any("not signed" in b for b in broken)
            problems += broken
        problems += [s for s in self._stale(leaf, cert) if not s.startswith(("SANs", "expired"))]
        required = spec.required_sans(self.topo, leaf.host)
        lacking = required.missing_from(crypto.sans_of(cert))
        san_ok = None if not required else not lacking
        if lacking:
            problems.append(f"SANs lack {lacking}")
        days, expiry = self._expiry(cert, warn_days)
        problems += expiry
        if spec.kind is Kind.KUBECONFIG:
            problems += self._kubeconfig_problems(leaf, ca_cert)
        problems += self._mode_problems(zip(leaf.files, (m for _, m in leaf.node_paths), strict=True))
        # Each problem names its repair: a date wants a renewal, a stale subject/SAN/server or a mode an init.
        fixes = {p: self.renew_command(leaf) if p in expiry else self.init_command() for p in problems}
        problems = [p if "`kha pki " in p else f"{p}; `{fixes[p]}`" for p in problems]
        return CheckRow(spec.name, node, leaf.main, crypto.subject_of(cert)[0], cert.not_valid_after_utc, days,
                        spec.ca, san_ok, chain, tuple(problems))

    def _kubeconfig_problems(self, leaf: Leaf, ca_cert: x509.Certificate | None) -> list[str]:
        data = self._read(leaf.main)
        assert data is not None
        kc = kubeconfig.parse(data, self.where(leaf.main))
        out: list[str] = []
        server = kubeconfig.server_for(leaf.spec, self.topo, leaf.host)
        if kc.server != server:
            out.append(f"server is {kc.server}, should be {server}")
        if ca_cert is not None and kc.ca_pem != crypto.cert_pem(ca_cert):
            out.append(f"certificate-authority-data is not {leaf.spec.ca}.crt")
        return out

    def _mode_problems(self, files: Iterable[tuple[str, int]]) -> list[str]:
        out: list[str] = []
        for rel, mode in files:
            try:
                have = stat.S_IMODE((self.root / rel).stat().st_mode)
            except FileNotFoundError:
                continue
            if have != mode:
                out.append(f"{rel} has mode {have:o}, should be {mode:o} (`{self.init_command()}` sets it)")
        return out

    def _check_sa(self) -> list[str]:
        try:
            key, pub = self._read(_SA_KEY), self._read(_SA_PUB)
            if key is None and (copy := self._sa_copy()) is not None:
                return [f"{self.where(_SA_KEY)} is missing; `{self.init_command()}` restores it from {copy[0]}"]
            if key is None and pub is not None:
                return [f"{self.where(_SA_KEY)} is missing and no node tree holds a copy: restore it from a backup "
                        f"(tokens issued are verified with it), or remove {self.where(_SA_PUB)} and run "
                        f"`{self.init_command()}` for a new pair (every service-account token is then invalid)"]
            if key is None or pub is None:
                lost = self.where(_SA_KEY if key is None else _SA_PUB)
                return [f"{lost} is missing; `{self.init_command()}` writes it"]
            sa = crypto.parse_key(key, self.where(_SA_KEY), check=False)
            if not crypto.same_key(crypto.parse_public_key(pub, self.where(_SA_PUB)), sa):
                return [f"{self.where(_SA_PUB)} is not the public half of {self.where(_SA_KEY)}"]
        except PKIError as exc:
            return [str(exc)]
        return self._mode_problems(((_SA_KEY, KEY_MODE), (_SA_PUB, CERT_MODE)))

    def _check_nodes(self) -> list[str]:
        out: list[str] = []
        wanted: set[str] = set()
        sources: dict[str, bytes | None] = {}
        for nf in self.plan.node_files:
            wanted.add(nf.target)
            data = self._read(nf.target)
            if nf.source != nf.target and nf.source not in sources:
                sources[nf.source] = self._read(nf.source)
            if data is None:
                out.append(f"{nf.target} is missing (run `{self.init_command()}`)")
            elif nf.source != nf.target and data != sources[nf.source]:
                out.append(f"{nf.target} differs from {nf.source} (run `{self.init_command()}`)")
            else:
                out += self._mode_problems(((nf.target, nf.mode),))
        nodes_dir = self.root / NODES_DIR
        if nodes_dir.is_dir():
            for path in sorted(nodes_dir.rglob("*")):
                rel = path.relative_to(self.root).as_posix()
                if path.is_file() and rel not in wanted:
                    out.append(f"{rel} should not be there for this topology (`{self.init_command()}` removes it)")
        return out


def _some(names: Iterable[str], most: int = 3) -> str:
    """``a, b, c and 4 more``: a few names for a message."""
    ordered = sorted(names)
    more = f" and {len(ordered) - most} more" if len(ordered) > most else ""
    return ", ".join(ordered[:most]) + more


def _try(parse: Callable[[], T]) -> T | None:
    try:
        return parse()
    except PKIError:
        return None


def _try_cert(data: bytes) -> x509.Certificate | None:
    try:
        return x509.load_pem_x509_certificate(data)
    except ValueError:
        return None


def _try_key(data: bytes) -> crypto.PrivateKey | None:
    try:
        return crypto.parse_key(data, "-", check=False)
    except PKIError:
        return None


def _subject(cn: str, orgs: tuple[str, ...]) -> str:
    return f"CN={cn}" + "".join(f", O={o}" for o in orgs)


def _date(when: dt.datetime) -> str:
    return when.strftime("%b %d, %Y %H:%M UTC")
