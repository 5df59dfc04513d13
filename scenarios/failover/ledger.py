"""The write ledger: a client that creates one uniquely named ConfigMap after another through the VIP and
records each create as a ``model.Op``, the readers that list afterwards what exists, and the checker that
decides from the two whether the cluster lost an acknowledged write.

Owns the Kubernetes half of the failover suite's durability check (``scenarios.workload`` owns etcd's own):

* ``WriteLedger`` POSTs ConfigMap ``w-<run>-000001``, ``w-<run>-000002`` … (label ``kha-ledger=<run>``) to
  ``/api/v1/namespaces/<ns>/configmaps``, ``rate_hz`` times a second, one write in flight, each name written
  once and never retried; ``write_outcome`` turns each answer into ok / failed / unknown.
  ``ensure_namespace`` creates the namespace first.
* ``ApiLister`` lists the run's objects through one kube-apiserver (a LIST with a label selector, which
  without ``resourceVersion`` is a consistent read: https://kubernetes.io/docs/reference/using-api/api-concepts/#semantics-for-get-and-list);
  ``EtcdLister`` ranges over their keys in one etcd member (``/registry/configmaps/<ns>/w-<run>-``; values
  are protobuf, so keys only, and each key's ``mod_revision``, which is the object's resourceVersion).
  ``read_ledger`` runs them from inside the topology's network and keeps each answer as a ``Listing``.
* ``check_ledger`` judges a history against the listings: no acknowledged write missing from any reader,
  no write recorded failed present anywhere, each acknowledged object listed at the resourceVersion its
  create returned, and how many unknown writes landed (``LedgerReport``). No I/O: it can run again offline.

The run id is in every name, not only in the label: the namespace is shared by every case run against a
cluster, so ``w-000001`` of the next run would meet the last run's object, and etcd, which cannot select by
label, can range over one run's keys by their prefix.
"""

from __future__ import annotations

import base64
import json
import logging
import re
import secrets
import time
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from core import waiting
from scenarios.errors import ClientError, ScenarioError
from scenarios.failover.clients import Recorder, Reply, gist, https_url, request
from scenarios.failover.model import Check, Op, Outcome
from scenarios.workload import EtcdHTTP, TLSFiles, in_netns, prefix_end

log = logging.getLogger(__name__)

#: The ledger's client name in a case history (the timeline draws clients named "write …").
LEDGER_CLIENT = "write vip"
NAMESPACE = "kha-ledger"
#: The label every ledger object carries; its value is the run id.
LABEL = "kha-ledger"
#: kube-apiserver's --etcd-prefix, left at its default by kha
#: (https://kubernetes.io/docs/reference/command-line-tools-reference/kube-apiserver/).
ETCD_PREFIX = "/registry"

_RUN = re.compile(r"[a-z0-9]{1,16}")
# An RFC 1123 label: what a namespace name must be.
_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
# An op's detail: "name@resourceVersion" when ok, "name: error" otherwise (names hold neither "@" nor ":").
_DETAIL = re.compile(r"(?P<name>[a-z0-9][a-z0-9.-]*)(?:@(?P<rv>\d+)$|: |$)")


def name_prefix(run: str) -> str:
    return f"w-{run}-"


def object_name(run: str, i: int) -> str:
    """The ``i``-th object of run ``run``: ``w-<run>-000001``."""
    return f"{name_prefix(run)}{i:06d}"


def parse_detail(op: Op) -> tuple[str, str | None]:
    """The object name a ledger op wrote, and the resourceVersion its create returned (None unless ok)."""
    m = _DETAIL.match(op.detail)
    if m is None or (op.outcome is Outcome.OK) != (m.group("rv") is not None):
        raise ScenarioError(f"not a write ledger op ({op.outcome}): {op.detail!r}")
    return m.group("name"), m.group("rv")


# -- the writer ------------------------------------------------------------------------------------------------


def _status_text(reply: Reply) -> str:
    """``HTTP 409 AlreadyExists: configmaps "w-…" already exists`` from a Kubernetes Status body."""
    try:
        status = json.loads(reply.body)
    except ValueError:
        status = None
    if isinstance(status, dict) and status.get("kind") == "Status":
        reason = f" {status['reason']}" if status.get("reason") else ""
        return f"HTTP {reply.status}{reason}: {gist(str(status.get('message', '')))}"
    return f"HTTP {reply.status}: {gist(reply.text)}"


def write_outcome(reply: Reply) -> tuple[Outcome, str]:
    """The outcome of one create (POST) and what goes with it: the new object's resourceVersion when ok,
    else the error.

    * ok: 201 Created with a resourceVersion: the object exists and must be listed by every reader;
    * failed: certainly no effect: no part of the request left (connection refused or unreachable, connect
      timeout, TLS handshake refused), or a 4xx other than 409: the apiserver rejected the request before
      storing anything (403 forbidden, 404 no such namespace, 422 invalid, 429 rejected by priority and
      fairness);
    * unknown: it may have been stored: a timeout or a lost connection once the request was sent; any 5xx
      (a 500 or 504 "etcd request timed out" can follow a commit whose answer was lost); and 409
      AlreadyExists. The ledger writes each name once, so a 409 says the object exists, but not whether this
      request created it (kube-apiserver's etcd client retried a create whose commit answer was lost and
      found its own object) or something else did (a stale object under the same name): not failed (it
      exists), not ok (no resourceVersion came back to hold the readers to). The checker counts it among
      the unknown writes that landed.
    """
    if reply.status is None:
        return (Outcome.UNKNOWN if reply.sent else Outcome.FAILED), reply.error
    if reply.status == 201:
        try:
            rv = json.loads(reply.body)["metadata"]["resourceVersion"]
        except (ValueError, KeyError, TypeError):
            rv = None
        if isinstance(rv, str) and rv.isdigit():
            return Outcome.OK, rv
        return Outcome.UNKNOWN, f"HTTP 201 without a resourceVersion: {gist(reply.text)}"
    if 400 <= reply.status < 500 and reply.status != 409:
        return Outcome.FAILED, _status_text(reply)
    return Outcome.UNKNOWN, _status_text(reply)


_JSON = {"Content-Type": "application/json", "Accept": "application/json"}


class WriteLedger(Recorder):
    """Creates ConfigMaps ``w-<run>-000001`` … in ``namespace`` through ``base_url`` (the VIP), ``rate_hz``
    a second, for at most ``max_duration`` s, each recorded by ``write_outcome`` as
    ``Op(client=name, detail="w-…@<resourceVersion>")`` when ok, ``"w-…: <error>"`` otherwise.

    One write is in flight at a time (one Jepsen process): a write that hangs delays the next, and the
    schedule resumes at the next slot after it, so during an outage the ledger writes once per ``timeout``.
    Each name is written once; nothing is retried. ``run`` (a fresh random id by default) is in every name
    and label.
    """

    def __init__(self, base_url: str, tls: TLSFiles, *, namespace: str = NAMESPACE, rate_hz: float = 10.0,
                 timeout: float = 1.0, netns: str | None = None, max_duration: float, run: str | None = None,
                 name: str = LEDGER_CLIENT) -> None:
        if rate_hz <= 0:
            raise ScenarioError(f"{name}: rate_hz must be positive, not {rate_hz}")
        super().__init__(name, netns=netns, interval=1.0 / rate_hz, timeout=timeout, max_duration=max_duration,
                         threads=1)
        self.run = run if run is not None else secrets.token_hex(4)
        if not _RUN.fullmatch(self.run):
            raise ScenarioError(f"{name}: run id {self.run!r} is not 1-16 lowercase letters and digits")
        if not _DNS_LABEL.fullmatch(namespace):
            raise ScenarioError(f"{name}: {namespace!r} is not a namespace name")
        self.base_url = base_url
        self.namespace = namespace
        self.tls = tls
        self.url = https_url(base_url, f"/api/v1/namespaces/{namespace}/configmaps")
        self._ctx = tls.context()

    def _work(self, k: int, deadline: float) -> None:
        for i, _ in enumerate(self._slots(0, 1, deadline), start=1):
            name = object_name(self.run, i)
            body = json.dumps({"apiVersion": "v1", "kind": "ConfigMap",
                               "metadata": {"name": name, "labels": {LABEL: self.run}},
                               "data": {"write": str(i)}}).encode()
            start = time.monotonic()
            reply = request(self.url, self._ctx, method="POST", body=body, headers=_JSON, timeout=self.timeout)
            outcome, what = write_outcome(reply)
            detail = f"{name}@{what}" if outcome is Outcome.OK else f"{name}: {what}"
            self._record(Op(self.name, start, time.monotonic(), outcome, detail))

    def listers(self, apiservers: Sequence[str], etcd: EtcdHTTP | None = None,
                etcd_endpoints: Sequence[str] = ()) -> list[Lister]:
        """A reader of this run's objects per apiserver (``https://10.56.56.11:6443`` …) and per etcd member."""
        readers: list[Lister] = [ApiLister(url, self.tls, self.namespace, self.run) for url in apiservers]
        if etcd_endpoints:
            if etcd is None:
                raise ScenarioError("etcd endpoints given without an etcd client")
            readers += [EtcdLister(etcd, ep, self.namespace, self.run) for ep in etcd_endpoints]
        return readers


def ensure_namespace(base_url: str, tls: TLSFiles, namespace: str = NAMESPACE, *, netns: str | None = None,
                     timeout: float = 60.0, attempt_timeout: float = 5.0) -> float:
    """Create ``namespace`` through ``base_url`` unless it exists (201 and 409 both do); the seconds it took.

    Retried while the apiserver does not answer or answers 5xx; a 4xx other than 409 fails at once
    (``ClientError``), and ``ScenarioError`` after ``timeout`` s.
    """
    if not _DNS_LABEL.fullmatch(namespace):
        raise ScenarioError(f"{namespace!r} is not a namespace name")
    url = https_url(base_url, "/api/v1/namespaces")
    ctx = tls.context()
    body = json.dumps({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}).encode()

    def check() -> str | None:
        reply = request(url, ctx, method="POST", body=body, headers=_JSON, timeout=attempt_timeout)
        if reply.status in (201, 409):
            return None
        if reply.status is not None and 400 <= reply.status < 500:
            raise ClientError(f"create namespace {namespace} through {base_url}: {_status_text(reply)}",
                              definite=True)
        return f"create namespace {namespace} through {base_url}: {reply.error or _status_text(reply)}"

    def create() -> float:
        return waiting.until(check, timeout=timeout, interval=1.0, error=ScenarioError)

    return in_netns(netns, create, timeout=timeout + attempt_timeout + 30)


# -- the readers ---------------------------------------------------------------------------------------------------


class Lister(Protocol):
    """Lists one run's ledger objects through one path: object name → resourceVersion."""

    @property
    def name(self) -> str: ...

    def read(self) -> dict[str, str]: ...


@dataclass(frozen=True)
class Listing:
    """What one reader listed, and when the read began (``time.monotonic``): writes acknowledged before
    ``t`` must be in it."""

    reader: str
    t: float
    objects: dict[str, str]


@dataclass(frozen=True)
class ApiLister:
    """Lists a run's objects through one kube-apiserver (``https://10.56.56.11:6443``), bypassing the VIP."""

    base_url: str
    tls: TLSFiles
    namespace: str
    run: str
    timeout: float = 5.0

    @property
    def name(self) -> str:
        return f"apiserver {urllib.parse.urlsplit(self.base_url).hostname}"

    def read(self) -> dict[str, str]:
        selector = urllib.parse.quote(f"{LABEL}={self.run}", safe="")
        url = https_url(self.base_url, f"/api/v1/namespaces/{self.namespace}/configmaps?labelSelector={selector}")
        reply = request(url, self.tls.context(), headers={"Accept": "application/json"}, timeout=self.timeout)
        if reply.status != 200:
            raise ClientError(f"{self.name}: list: {reply.error or _status_text(reply)}", definite=True)
        try:
            items: list[dict[str, Any]] = json.loads(reply.body).get("items") or []
            return {item["metadata"]["name"]: str(item["metadata"]["resourceVersion"]) for item in items}
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ClientError(f"{self.name}: list: not a ConfigMapList: {gist(reply.text)}", definite=True) from exc


@dataclass(frozen=True)
class EtcdLister:
    """Lists a run's objects straight from one etcd member (``https://10.56.56.11:2379``): a linearizable
    range over their keys, with the apiserver's etcd client certificate (``workload.TLSFiles.from_store``)."""

    client: EtcdHTTP
    endpoint: str
    namespace: str
    run: str
    timeout: float = 5.0

    @property
    def name(self) -> str:
        return f"etcd {urllib.parse.urlsplit(self.endpoint).hostname}"

    def read(self) -> dict[str, str]:
        folder = f"{ETCD_PREFIX}/configmaps/{self.namespace}/"
        prefix = folder + name_prefix(self.run)
        try:
            out = self.client.post(self.endpoint, "/v3/kv/range", {
                "key": base64.b64encode(prefix.encode()).decode(),
                "range_end": base64.b64encode(prefix_end(prefix).encode()).decode(),
                "keys_only": True}, self.timeout)
        finally:
            self.client.close()  # this thread's connections: the reads run in a thread of their own
        try:
            return {base64.b64decode(kv["key"]).decode().removeprefix(folder): str(kv["mod_revision"])
                    for kv in out.get("kvs", [])}
        except (ValueError, KeyError, TypeError) as exc:
            raise ClientError(f"{self.name}: not a range answer: {gist(str(out))}", definite=True) from exc


def read_ledger(readers: Sequence[Lister], *, netns: str | None = None, retry_for: float = 30.0) -> list[Listing]:
    """Each reader's listing, read from inside ``netns``, one reader after another; a reader that fails is
    asked again every 0.5 s for up to ``retry_for`` s (a member still recovering), then ``ScenarioError``."""
    def read_all() -> list[Listing]:
        out: list[Listing] = []
        for reader in readers:
            def check(reader: Lister = reader) -> str | None:
                t = time.monotonic()
                try:
                    objects = reader.read()
                except ClientError as exc:
                    return str(exc)
                out.append(Listing(reader.name, t, objects))
                return None
            waiting.until(check, timeout=retry_for, interval=0.5,
                          error=lambda last: ScenarioError(f"cannot list the write ledger: {last}"))
        return out
    return in_netns(netns, read_all, timeout=(retry_for + 10) * max(1, len(readers)) + 30)


# -- the checker --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Missing:
    """An acknowledged write that a reader did not list, though it read after the acknowledgement."""

    reader: str
    name: str


@dataclass(frozen=True)
class Mismatch:
    """An acknowledged object a reader listed at another resourceVersion than its create returned."""

    reader: str
    name: str
    created: str
    listed: str


@dataclass(frozen=True)
class LedgerReport:
    """The checker's findings on one write ledger (names are object names)."""

    writes: int
    acked: int
    failed: int
    unknown: int
    readers: tuple[str, ...]
    #: acknowledged writes a reader did not list (must be none)
    missing: tuple[Missing, ...]
    #: writes recorded failed that some reader listed: the client misjudged (must be none)
    failed_present: tuple[str, ...]
    #: acknowledged objects listed at another resourceVersion than their create returned (must be none)
    mismatched: tuple[Mismatch, ...]
    #: acknowledged writes that no reader read after (must be none: nothing was checked)
    unchecked: tuple[str, ...]
    #: unknown writes that some reader listed (either answer is allowed)
    unknown_landed: tuple[str, ...]

    @property
    def lost(self) -> int:
        """Acknowledged writes missing from at least one reader."""
        return len({m.name for m in self.missing})

    @property
    def valid(self) -> bool:
        return not (self.missing or self.failed_present or self.mismatched or self.unchecked)

    def summary(self) -> str:
        return (f"{self.writes} writes: {self.acked} ok, {self.failed} failed, {self.unknown} unknown "
                f"({len(self.unknown_landed)} of those landed); lost {self.lost}; failed-but-present "
                f"{len(self.failed_present)}; resourceVersion mismatches {len(self.mismatched)}; "
                f"unchecked {len(self.unchecked)}; {len(self.readers)} readers")

    def checks(self) -> tuple[Check, ...]:
        """The findings as ``model.Check`` rows for a ``CaseResult``."""
        def names(xs: Sequence[str]) -> str:
            return ", ".join(xs[:5]) + (f" … ({len(xs)})" if len(xs) > 5 else "")
        lost = sorted({f"{m.name} ({m.reader})" for m in self.missing})
        return (
            Check("no acknowledged write lost", not self.missing,
                  names(lost) or f"{self.acked} acknowledged writes listed by all {len(self.readers)} readers",
                  self.lost, 0),
            Check("no failed write present", not self.failed_present, names(self.failed_present) or "none",
                  len(self.failed_present), 0),
            Check("resourceVersions as created", not self.mismatched,
                  names([f"{m.name} {m.reader}: {m.listed} ≠ {m.created}" for m in self.mismatched]) or "all equal",
                  len(self.mismatched), 0),
            Check("every acknowledged write read afterwards", not self.unchecked, names(self.unchecked) or "all",
                  len(self.unchecked), 0),
        )


def check_ledger(ops: Sequence[Op], listings: Sequence[Listing], *, client: str = LEDGER_CLIENT) -> LedgerReport:
    """Judge the ops of ``client`` (others are ignored, so a whole case history can be passed) against what
    the readers listed. A listing judges only the writes acknowledged before it began."""
    if not listings:
        raise ScenarioError("no listings to check the write ledger against")
    writes = [(op, *parse_detail(op)) for op in ops if op.client == client]
    acked = [(op, name, rv) for op, name, rv in writes if op.outcome is Outcome.OK]
    anywhere = {name for listing in listings for name in listing.objects}
    missing: list[Missing] = []
    mismatched: list[Mismatch] = []
    judged: set[str] = set()
    for listing in listings:
        for op, name, rv in acked:
            if op.end > listing.t:
                continue  # acknowledged after this read began
            judged.add(name)
            listed = listing.objects.get(name)
            if listed is None:
                missing.append(Missing(listing.reader, name))
            elif listed != rv:
                mismatched.append(Mismatch(listing.reader, name, str(rv), listed))
    return LedgerReport(
        writes=len(writes), acked=len(acked),
        failed=sum(1 for op, _, _ in writes if op.outcome is Outcome.FAILED),
        unknown=sum(1 for op, _, _ in writes if op.outcome is Outcome.UNKNOWN),
        readers=tuple(dict.fromkeys(listing.reader for listing in listings)),
        missing=tuple(missing),
        failed_present=tuple(n for op, n, _ in writes if op.outcome is Outcome.FAILED and n in anywhere),
        mismatched=tuple(mismatched),
        unchecked=tuple(n for _, n, _ in acked if n not in judged),
        unknown_landed=tuple(n for op, n, _ in writes if op.outcome is Outcome.UNKNOWN and n in anywhere),
    )
