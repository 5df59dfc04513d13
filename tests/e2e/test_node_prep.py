"""Node preparation on a real node (installer/nodeprep, kubelet's reservations): an allinone installed with
kubeadm-ha's node-prep knobs set, then each checked on the node as an operator would look.

``installer/checks`` (``kha check``'s testinfra modules) did not exist when these were written; they check
over the installer's own SSH transport and move there once it does.

Knobs: kube_image_repository (the bundle's images tagged with it), chrony (no ntp_server: the first master
serves its own clock; on an LXC node chronyd runs with -x and never sets the host's clock), timezone,
custom_hosts, http_proxy/https_proxy/no_proxy pointing at 127.0.0.1 (nothing is fetched: the bundle's images
are imported, the image has the packages), kubelet reservations and eviction. kube_proxy_mode=ipvs is refused
on LXC here (this host's kernel has no IPVS), before any change.

Boots an allinone LXC node of its own, in a network namespace of its own (on a shared libvirtd, ``--kha-connect``,
in the next subnet, beside the session's allinone): in the allinone LXC e2e session
(``tox -e allinone``) only, deselected in the others (m-master, allinone-qemu), which would boot the same
node. In a VM chronyd runs as its unit says (no -x): unit-tested, not run here.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from core import waiting
from harness.pytest_plugin import Topologies
from images import bundle as bundles
from installer import install, topology
from installer.errors import ConfigError, PhaseError
from installer.nodeprep import phases as prep
from installer.nodeprep import render as prep_render
from scenarios import catalog, topologies
from scenarios.installed import Installed
from scenarios.report.pytest_plugin import install_or_fail, reports

pytestmark = [pytest.mark.e2e, pytest.mark.e2e_session("allinone", "lxc")]

PROXY = "http://127.0.0.1:3128"
#: kube_image_repository: a registry name custom_hosts points at 127.0.0.2, where nothing listens — a pod
#: runs only if its image was tagged with this name on the node (nothing can be pulled from it).
REPOSITORY = "registry.kha.test/k8s"
KNOBS = {
    "chrony_enabled": "true",
    "timezone": "Asia/Shanghai",
    "custom_hosts": '{"127.0.0.2": ["registry.kha.test", "mirror.kha.test"]}',
    "http_proxy": PROXY,
    "https_proxy": PROXY,
    "no_proxy": ".kha.test,192.168.0.0/16",
    "kube_memory_reserved": "256Mi",
    "system_memory_reserved": "512Mi",
    "kube_cpu_reserved": "100m",
    "eviction_hard_memory_available": "100Mi",
    "kube_image_repository": REPOSITORY,
}


#: kubeadm-ha's ansible_user other than root: the harness creates it (cluster key, passwordless sudo) and
#: kha logs in as it, running every command through ``sudo -n``.
LOGIN_USER = "kha"


#: The scenario's subnet, and the one this module's own node takes on a shared libvirtd (``--kha-connect``,
#: ``kha matrix run --hosts``), whose networks share one namespace: the session's allinone holds the first.
SUBNET, SHARED_SUBNET = "10.56.56.", "10.56.57."


def _variant(dest: Path, subnet: str, **knobs: str) -> Path:
    text = Path(catalog.get("allinone").inventory).read_text()
    assert 'ansible_user="root"' in text and SUBNET in text
    text = text.replace('ansible_user="root"', f'ansible_user="{LOGIN_USER}"').replace(SUBNET, subnet)
    for name, value in knobs.items():
        text = "\n".join(ln for ln in text.splitlines() if not ln.startswith(f"{name}=")) + f"\n{name}='{value}'\n"
    dest.write_text(text)
    return dest


@pytest.fixture(scope="module")
def prepared(kha_topologies: Topologies, tmp_path_factory: pytest.TempPathFactory,
             request: pytest.FixtureRequest) -> Iterator[Installed]:
    # A one-node LXC topology of this module's own: the session's ``installed`` cluster carries the scenario's
    # own inventory and state (~70 s more in the allinone session).
    tmp = tmp_path_factory.mktemp("node-prep")
    inv = _variant(tmp / "hosts.allinone.prep.ini", SHARED_SUBNET if kha_topologies.connect else SUBNET, **KNOBS)
    cluster = kha_topologies.own("allinone", "lxc",
                                 spec=topologies.spec_from(topology.load(inv), catalog.get("allinone"), "lxc"))
    inst = Installed(cluster, topology.load(inv), inv, tmp / "state", bundles.build().path)
    install_or_fail(inst, "with the node-prep knobs", reports=reports(request.config))
    try:
        yield inst
    finally:
        inst.close()


def _sh(inst: Installed, *argv: str) -> str:
    return inst.run(inst.topo.first_master, list(argv)).stdout


def test_kha_logged_in_as_the_inventorys_user_and_used_sudo(prepared: Installed) -> None:
    """ansible_user="kha": the whole install above ran as that login, every command through sudo -n."""
    t = prepared.node(prepared.topo.first_master)
    assert prepared.topo.first_master.user == LOGIN_USER and not t.as_root
    assert t.run(["id", "-un"]).stdout.strip() == LOGIN_USER
    assert t.run(["id", "-un"], sudo=True).stdout.strip() == "root"
    assert _sh(prepared, "stat", "-c", "%U %a", "/etc/kubernetes/pki/ca.key").split() == ["root", "600"]


def test_chrony_follows_its_source_and_a_container_never_sets_the_clock(prepared: Installed) -> None:
    tracking = _sh(prepared, "chronyc", "-n", "-c", "tracking")
    assert prep.time_problem(tracking) is None, tracking
    # allinone: the first master is the only node; it serves its own clock at stratum 10.
    assert tracking.split(",")[2] == str(prep_render.LOCAL_STRATUM), tracking
    container = prepared.run(prepared.topo.first_master, ["systemd-detect-virt", "--container", "--quiet"],
                             check=False).ok
    cmdline = _sh(prepared, "sh", "-c", "tr '\\0' ' ' < /proc/$(pidof chronyd | cut -d' ' -f1)/cmdline")
    assert ("-x" in cmdline.split()) is container, cmdline


def test_the_time_check_goes_red_when_chrony_stops(prepared: Installed) -> None:
    node = prepared.topo.first_master
    prepared.run(node, ["systemctl", "stop", "chrony"])
    try:
        said = prepared.run(node, ["chronyc", "-n", "-c", "tracking"], check=False).stdout
        assert prep.time_problem(said) is not None, said
    finally:
        prepared.run(node, ["systemctl", "start", "chrony"])


def test_timezone_is_set(prepared: Installed) -> None:
    assert _sh(prepared, "readlink", "/etc/localtime").strip() == "/usr/share/zoneinfo/Asia/Shanghai"
    assert _sh(prepared, "date", "+%Z").strip() == "CST"


def test_custom_hosts_resolve(prepared: Installed) -> None:
    assert _sh(prepared, "getent", "hosts", "mirror.kha.test").split() == ["127.0.0.2", "registry.kha.test",
                                                                         "mirror.kha.test"]
    hosts = _sh(prepared, "cat", "/etc/hosts")
    assert "127.0.0.1\tlocalhost" in hosts  # the node's own lines are kept


def test_containerd_and_apt_use_the_proxy(prepared: Installed) -> None:
    environ = _sh(prepared, "sh", "-c", "tr '\\0' '\\n' < /proc/$(pidof containerd)/environ").splitlines()
    env = dict(line.split("=", 1) for line in environ if "=" in line)
    assert env["HTTP_PROXY"] == env["HTTPS_PROXY"] == PROXY
    no_proxy = env["NO_PROXY"].split(",")
    assert {".kha.test", "192.168.0.0/16", "127.0.0.1", "10.244.0.0/18", "10.244.64.0/18", ".svc"} <= set(no_proxy)
    apt = _sh(prepared, "apt-config", "dump", "Acquire")
    assert f'Acquire::http::Proxy "{PROXY}";' in apt and f'Acquire::https::Proxy "{PROXY}";' in apt


def _ki(quantity: str) -> int:
    """A memory quantity as the node status shows it (``4Gi``, ``3405824Ki``), in KiB."""
    for suffix, ki in (("Ki", 1), ("Mi", 1024), ("Gi", 1024 * 1024)):
        if quantity.endswith(suffix):
            return int(quantity[:-2]) * ki
    raise AssertionError(f"unexpected memory quantity {quantity!r}")


def test_kubelet_reserves_what_the_inventory_says(prepared: Installed) -> None:
    node = prepared.kubectl_json("get", "node", prepared.topo.first_master.name)
    capacity, allocatable = node["status"]["capacity"], node["status"]["allocatable"]
    reserved_ki = (256 + 512 + 100) * 1024
    assert _ki(capacity["memory"]) - _ki(allocatable["memory"]) == reserved_ki, json.dumps(node["status"])
    assert int(capacity["cpu"]) * 1000 - int(allocatable["cpu"].rstrip("m")) == 100


def test_a_second_run_would_change_nothing(prepared: Installed) -> None:
    out = io.StringIO()
    install.run(prepared.inventory, state=prepared.state, ssh_config=prepared.cluster.ssh_config,
                known_hosts=prepared.cluster.known_hosts, only=["prepare"], dry_run=True, out=out)
    assert "would" not in out.getvalue(), out.getvalue()


def test_the_control_plane_runs_images_named_under_kube_image_repository(prepared: Installed) -> None:
    """kubeadm-ha's kube_image_repository: the static pods and kube-proxy ask for REPOSITORY/<image> and
    containerd's pause image is REPOSITORY/pause; the bundle's images were imported and tagged with those
    names, so every kube-system pod runs although REPOSITORY serves nothing."""
    seen: list[str] = []

    def look() -> str | None:
        pods = prepared.kubectl_json("-n", "kube-system", "get", "pods")["items"]
        images = sorted({c["image"] for p in pods for c in p["spec"]["containers"]})
        phases = {p["metadata"]["name"]: p["status"].get("phase") for p in pods}
        seen[:] = [json.dumps({"images": images, "phases": phases})]
        if not any("/kube-proxy:" in i for i in images) or not any("/kube-apiserver:" in i for i in images):
            return f"kube-proxy and kube-apiserver not both there yet: {seen[0]}"
        return None if set(phases.values()) == {"Running"} else f"not every pod Running: {seen[0]}"

    waiting.until(look, timeout=180, interval=3, error=AssertionError)
    images = json.loads(seen[0])["images"]
    assert all(i.startswith(f"{REPOSITORY}/") for i in images), images
    config = _sh(prepared, "cat", "/etc/containerd/config.toml")
    assert f'sandbox_image = "{REPOSITORY}/pause:' in config, config
    # The images phase again: everything is there under both names, nothing to import or tag.
    out = io.StringIO()
    install.run(prepared.inventory, state=prepared.state, ssh_config=prepared.cluster.ssh_config,
                known_hosts=prepared.cluster.known_hosts, only=["kubernetes/images"], bundle=prepared.bundle,
                dry_run=True, out=out)
    assert "would" not in out.getvalue(), out.getvalue()


def test_ipvs_is_verified_against_the_nodes_kernel(prepared: Installed, tmp_path: Path) -> None:
    """Where the kernel has IPVS (a VM), prepare/verify passes; where it has none (an LXC node on this host),
    it refuses at the inventory's kube_proxy_mode line, naming ip_vs, before any step that writes."""
    node = prepared.topo.first_master
    has_ipvs = prepared.run(node, ["test", "-e", "/proc/net/ip_vs"], check=False).ok or prepared.run(
        node, ["modprobe", "--dry-run", "ip_vs"], check=False).ok
    subnet = str(prepared.topo.first_master.address).rsplit(".", 1)[0] + "."
    inv = _variant(tmp_path / "hosts.allinone.ipvs.ini", subnet, **KNOBS, kube_proxy_mode="ipvs")
    out = io.StringIO()

    def verify() -> None:
        install.run(inv, state=prepared.state, ssh_config=prepared.cluster.ssh_config,
                    known_hosts=prepared.cluster.known_hosts, only=["prepare/verify"], out=out)

    if has_ipvs:
        verify()
        return
    with pytest.raises(PhaseError, match=r"phase prepare/verify failed") as err:
        verify()
    cause = err.value.cause
    assert isinstance(cause, ConfigError), repr(cause)
    line = next(i for i, row in enumerate(inv.read_text().splitlines(), 1) if row.startswith("kube_proxy_mode="))
    assert str(cause).startswith(f"{inv}:{line}: kube_proxy_mode: "), str(cause)
    assert "needs kernel module ip_vs" in str(cause)
