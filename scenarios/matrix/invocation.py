"""A cell as the pytest command CI already runs, and the Kubernetes version it installs.

The matrix adds no test code of its own: a cell is one of the existing tiers, with the same arguments tox
gives them (tox.ini): ``install`` is ``tox -e allinone|s-master|m-master`` / ``allinone-qemu`` (tests/e2e),
``checks`` the same install with only ``kha check`` and its red/green tests (tests/e2e/test_checks.py),
``failover`` is ``tox -e failover-pr`` / ``failover`` (tests/failover), ``day2`` is the etcd day-2 module of
the integration tier. The e2e tier also takes another base image (``--kha-os``) and another load balancer
(``--kha-lb``: the scenario's inventory rewritten, ``scenarios.matrix.variant``); what the fixtures cannot
vary yet (another image or LB for the other suites, an external LB, an online Kubernetes) is a reason the
cell does not run, said in words by ``unsupported``.

Relative Kubernetes versions are resolved when a cell runs, the way kinder does it: ``latest`` is
upstream's ``stable.txt``, ``latest-N`` the newest patch of the minor N below it (``stable-1.M.txt``).
Only ever asked for a cell that may download from dl.k8s.io (see ``probe``); the answer is recorded in the
cell's results.
"""

from __future__ import annotations

import re
import sys
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from installer import topology
from scenarios import catalog
from scenarios.matrix import variant
from scenarios.matrix.model import RELATIVE, Cell

#: The offline bundle's Kubernetes (images/bundle/recipe.py builds v1.20.2 from Debian's source package).
BUNDLE_VERSION = "1.20.2"
RELEASES = "https://dl.k8s.io/release"
TESTS = Path(__file__).resolve().parents[2] / "tests"

Fetch = Callable[[str], str]

#: The suites the e2e tier runs, and which part of tests/e2e each is: ``install`` all of it; ``checks`` the
#: install and ``kha check`` (every check green, then red when its cause is made, then green again). A tier
#: runs ``checks`` for a cell that adds an image or a load balancer where another cell of the same tier
#: already runs the whole e2e tier on that topology: the install and the health checks are what differ.
E2E_SUITES = {"install": "", "checks": "test_checks.py"}


def lb_of(scenario: str) -> str:
    """The matrix's ``lb`` value for what a scenario's inventory installs."""
    return _lb_of(scenario)


@cache
def _lb_of(scenario: str) -> str:
    return variant.lb_value(topology.load(catalog.get(scenario).inventory))


def unsupported(cell: Cell) -> str | None:
    """Why no test fixture can run ``cell`` yet, or None when one can. The e2e tier (``install``, ``checks``) boots any
    base image (``--kha-os``) and installs any load balancer the scenario's inventory can be rewritten for
    (``--kha-lb``, ``scenarios.matrix.variant``); the other suites run the scenario as it is."""
    if cell.suite == "day2" and (cell.topology != "m-master" or cell.driver != "lxc"):
        return ("the day-2 tests run on the integration tier's installed m-master on LXC only "
                "(tests/integration: etcd_lb)")
    if cell.suite == "failover" and cell.topology != "m-master":
        return "the failover fixture installs m-master only (tests/failover/conftest.py)"
    image = catalog.get(cell.topology).image
    if cell.os != image and cell.suite not in E2E_SUITES:
        return (f"the {cell.suite} fixtures boot scenarios.toml's image for {cell.topology} ({image}); only the "
                "install and checks suites take another (--kha-os)")
    native = lb_of(cell.topology)
    if cell.lb != native:
        if cell.suite not in E2E_SUITES:
            return (f"{cell.topology}'s inventory installs {native}; only the install and checks suites rewrite "
                    "it for another load balancer (--kha-lb)")
        why = variant.problem(cell.topology, cell.lb)
        if why is not None:
            return why
    if cell.kubernetes != BUNDLE_VERSION:
        return (f"the test fixtures install the offline bundle (Kubernetes {BUNDLE_VERSION}) only; "
                f"{cell.kubernetes} has no fixture yet")
    return None


def argv(cell: Cell, failover_cases: str, out: Path) -> list[str]:
    """The pytest command for ``cell`` (``unsupported(cell)`` must be None), writing into ``out``; test
    paths are absolute so the command runs from any folder. ``failover_cases``: pr or full."""
    why = unsupported(cell)
    if why is not None:
        raise ValueError(f"{cell.id}: {why}")
    pytest = [sys.executable, "-m", "pytest", "--junitxml", str(out / "junit.xml")]
    if cell.suite in E2E_SUITES:
        varied = [*(("--kha-os", cell.os) if cell.os != catalog.get(cell.topology).image else ()),
                  *(("--kha-lb", cell.lb) if cell.lb != lb_of(cell.topology) else ())]
        return [*pytest, "-m", "e2e", "--kha-scenario", cell.topology, "--kha-driver", cell.driver, *varied,
                str(TESTS / "e2e" / E2E_SUITES[cell.suite])]
    if cell.suite == "failover":
        return [*pytest, "-m", "failover", "--kha-tier", failover_cases, "--kha-driver", cell.driver,
                "--kha-results", str(out / "failover"), str(TESTS / "failover")]
    return [*pytest, "-m", "integration", str(TESTS / "integration" / "test_etcd_day2_cluster.py")]


@dataclass(frozen=True)
class Resolved:
    """What a cell's ``kubernetes`` value meant when it ran."""

    asked: str
    version: str
    source: str


def resolve(value: str, fetch: Fetch | None = None) -> Resolved:
    """``1.20.2`` as it is; ``latest`` / ``latest-N`` from upstream's release markers (``fetch``: url → text)."""
    m = RELATIVE.match(value)
    if m is None:
        return Resolved(value, value, "the offline bundle" if value == BUNDLE_VERSION else "pinned in the matrix")
    get = fetch or _fetch
    url = f"{RELEASES}/stable.txt"
    latest = _version(get(url), url)
    back = int(m.group(1) or 0)
    if back == 0:
        return Resolved(value, latest, url)
    major, minor, _patch = latest.split(".")
    if int(minor) - back < 0:
        raise ValueError(f"{value}: {latest} has no minor {back} below it")
    url = f"{RELEASES}/stable-{major}.{int(minor) - back}.txt"
    return Resolved(value, _version(get(url), url), url)


def _version(text: str, url: str) -> str:
    found = re.fullmatch(r"v?(\d+\.\d+\.\d+)", text.strip())
    if found is None:
        raise ValueError(f"{url} answered {text.strip()[:60]!r}, not a version")
    return found.group(1)


def _fetch(url: str) -> str:
    with urllib.request.urlopen(url, timeout=30) as resp:  # https, a fixed host (RELEASES)
        body: bytes = resp.read(200)
    return body.decode()
