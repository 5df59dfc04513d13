"""Bad input, one table: every case exits 2 with a line naming FILE:LINE or the flag, writes nothing
first, and never shows a traceback.

Inventory cases edit a scenario inventory (``scenarios/inventories``) in ``tmp_path`` and run
``kha render`` into ``tmp_path`` (or ``kha install --only pki`` where the check belongs to logging in):
the folder must look exactly as it did before. Flag cases put something in the way of a flag. A few
run through ``python -m kha`` in a child process, so nothing can leak past the in-process boundary.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from kha import cli
from tests.unit import variants

REPO = Path(__file__).resolve().parents[2]
RENDER = ("render", "-i", "{inv}", "--dir", "{tmp}/out", "--state", "{tmp}/state")
INSTALL_PKI = ("install", "-i", "{inv}", "--state", "{tmp}/state", "--only", "pki")
CHECK = ("inventory", "check", "{inv}")


@dataclass(frozen=True)
class Case:
    """One bad input. ``var``: a raw ``[all:vars]`` line appended (as a user types it); ``swap``: text of
    the inventory replaced; ``setup``: what to put in ``tmp_path`` first. The error must name the
    inventory and the line of the edit (``var``/``swap``), or the flag (``message`` says which)."""

    name: str
    message: str  # a regex the error line must match
    var: str | None = None
    swap: tuple[str, str] | None = None
    argv: tuple[str, ...] = RENDER
    setup: Callable[[Path], object] | None = None
    base: str = "m-master.hostname"
    code: int = 2


def _file(path: str) -> Callable[[Path], object]:
    return lambda tmp: (tmp / path).parent.mkdir(parents=True, exist_ok=True) or (tmp / path).write_text("x\n")


def _folder(path: str) -> Callable[[Path], object]:
    return lambda tmp: (tmp / path).mkdir(parents=True)


NODE1 = "node1 ansible_host=10.56.56.11"
SYSTEM_DIRS = ("/", "/var", "/var/lib", "/etc", "/usr", "/usr/local", "/bin", "/sbin", "/lib", "/boot", "/home",
               "/root", "/opt", "/srv", "/tmp", "/etc/kubernetes", "/var/lib/kubelet", "/run", "/proc", "/sys",
               "/dev")

CASES: list[Case] = [
    # -- a data folder is never a system folder -------------------------------------------------------
    *(Case(f"etcd-data-dir-{d.strip('/').replace('/', '-') or 'slash'}", r"etcd_data_dir: .*system folder",
           var=f'etcd_data_dir="{d}"') for d in SYSTEM_DIRS),
    Case("kubelet-root-var-lib", r"kubelet_root_dir: '/var/lib' is a system folder", var='kubelet_root_dir="/var/lib"'),
    Case("containerd-root-opt", r"containerd_storage_dir: '/opt' is a system folder",
         var='containerd_storage_dir="/opt"'),
    Case("docker-root-home", r"docker_storage_dir: '/home' is a system folder", var='docker_storage_dir="/home"'),
    Case("data-dir-one-level", r"etcd_data_dir: '/etcd' is a system folder \(or too close to /\)",
         var='etcd_data_dir="/etcd"'),
    Case("data-dir-in-tmp", r"etcd_data_dir: '/tmp/etcd' is under /tmp", var='etcd_data_dir="/tmp/etcd"'),
    Case("data-dir-in-run", r"etcd_data_dir: '/run/etcd' is under /run, which is memory-backed",
         var='etcd_data_dir="/run/etcd"'),
    Case("data-dir-in-etc", r"etcd_data_dir: '/etc/kubernetes/etcd' is under /etc",
         var='etcd_data_dir="/etc/kubernetes/etcd"'),
    Case("data-dirs-nested", r"etcd_data_dir=/var/lib/kubelet/etcd and kubelet_root_dir=/var/lib/kubelet overlap",
         var='etcd_data_dir="/var/lib/kubelet/etcd"'),
    Case("data-dirs-equal", r"etcd_data_dir=/var/lib/etcd and containerd_storage_dir=/var/lib/etcd overlap",
         var='containerd_storage_dir="/var/lib/etcd"'),
    # -- paths are plain and normalised --------------------------------------------------------------
    Case("path-relative", r"etcd_data_dir: 'var/lib/etcd' must be an absolute path",
         var='etcd_data_dir="var/lib/etcd"'),
    Case("path-dotdot", r"etcd_data_dir: '/var/lib/etcd/\.\./\.\./\.\./etc' is not a normalised path",
         var='etcd_data_dir="/var/lib/etcd/../../../etc"'),
    Case("path-dot", r"is not a normalised path", var='etcd_data_dir="/var/lib/./etcd"'),
    Case("path-double-slash", r"is not a normalised path", var='etcd_data_dir="/var/lib//etcd"'),
    Case("path-space", r"etcd_data_dir: '/var/lib/etcd data' holds ' '", var='etcd_data_dir="/var/lib/etcd data"'),
    Case("path-dollar", r"holds '\$'", var='etcd_data_dir="/var/lib/$HOME"'),
    Case("path-percent", r"holds '%'", var='etcd_data_dir="/var/lib/etcd%i"'),
    Case("path-semicolon", r"holds ';'", var='etcd_data_dir="/var/lib/etcd;rm"'),
    Case("path-backslash-n", r"holds .*'\\\\'", var=r'etcd_data_dir="/var/lib/etcd\nExecStartPre=/bin/sh"'),
    Case("path-quote", r"holds \"'\"", var="""etcd_data_dir="/var/lib/'etcd'\""""),
    Case("path-tab", r"holds '\\t'", var='kubelet_root_dir="/var/lib/kube\tlet"'),
    # -- names that reach certificates and YAML are RFC 1123 --------------------------------------------
    Case("san-backslash-n", r"kube_master_external_domain: 'a.example.com\\\\nfoo: bar' is not an RFC 1123",
         var=r'kube_master_external_domain="a.example.com\nfoo: bar"'),
    Case("san-leading-dash", r"'-api.example.com' is not an RFC 1123",
         var='kube_master_external_domain="-api.example.com"'),
    Case("san-trailing-dash", r"'api-.example.com' is not an RFC 1123",
         var='kube_master_external_domain="api-.example.com"'),
    Case("san-empty-label", r"'api..example.com' is not an RFC 1123",
         var='kube_master_external_domain="api..example.com"'),
    Case("san-label-64", r"is not an RFC 1123", var=f'kube_master_external_domain="{"a" * 64}.example.com"'),
    Case("san-254-chars", r"253 characters at most",
         var=f'kube_master_external_domain="{".".join(["a" * 62] * 4)}.ab"'),
    Case("san-underscore", r"'under_score.example.com' is not an RFC 1123",
         var='kube_master_external_domain="under_score.example.com"'),
    Case("san-list-one-bad", r"'bad name.example.com' is not an RFC 1123",
         var='kube_master_external_domain=["ok.example.com", "bad name.example.com"]'),
    Case("san-bad-ip", r"kube_master_external_ip: '203.0.113.300' is not an IP address",
         var='kube_master_external_ip=["203.0.113.7", "203.0.113.300"]'),
    Case("dns-domain-backslash-n", r"kube_dns_domain: .* is not an RFC 1123",
         var=r'kube_dns_domain="cluster.local\nkind: Evil"'),
    Case("cluster-name-colon", r"cluster_name: 'x: y' is not an RFC 1123", var='cluster_name="x: y"'),
    Case("node-port-range-injection", r"kube_service_node_port_range: .* is not a port range",
         var=r'kube_service_node_port_range="30000-32767\n    authorization-mode: AlwaysAllow"'),
    Case("node-port-range-reversed", r"'32767-30000' is not a port range",
         var='kube_service_node_port_range="32767-30000"'),
    # -- interface names as the kernel takes them --------------------------------------------------------
    Case("iface-slash", r"lb_keepalived_interface: 'eth0/1' is not a network interface name",
         var='lb_keepalived_interface="eth0/1"'),
    Case("iface-16-chars", r"'abcdefghijklmnop' is not a network interface name",
         var='lb_keepalived_interface="abcdefghijklmnop"'),
    Case("iface-dot", r"'\.' is not a network interface name", var='lb_keepalived_interface="."'),
    Case("iface-dotdot", r"'\.\.' is not a network interface name", var='lb_keepalived_interface=".."'),
    Case("iface-space", r"'eth 0' is not a network interface name", var='lb_keepalived_interface="eth 0"'),
    Case("iface-colon", r"'eth0:1' is not a network interface name", var='lb_keepalived_interface="eth0:1"'),
    # -- secrets: a safe alphabet and a length keepalived reads whole --------------------------------------
    Case("vrrp-pass-too-long", r"lb_keepalived_password: is 11 characters long; keepalived uses only the first 8",
         var='lb_keepalived_password="0123456789a"'),
    Case("vrrp-pass-space", r"lb_keepalived_password: must use only letters", var='lb_keepalived_password="pa ss"'),
    Case("vrrp-pass-hash", r"lb_keepalived_password: must use only letters", var='lb_keepalived_password="pa#ss"'),
    Case("vrrp-pass-quote", r"lb_keepalived_password: must use only letters", var="""lb_keepalived_password='pa"s'"""),
    Case("token-uppercase", r"kubeadm_token: .* is not a bootstrap token",
         var='kubeadm_token="ABCDEF.0123456789abcdef"'),
    # -- the VIP --------------------------------------------------------------------------------------
    Case("vip-network-address", r"VIP 10.56.56.0 is the network address of 10.56.56.0/24",
         swap=('lb_kube_apiserver_ip="10.56.56.10"', 'lb_kube_apiserver_ip="10.56.56.0"')),
    Case("vip-broadcast-address", r"VIP 10.56.56.255 is the broadcast address of 10.56.56.0/24",
         swap=('lb_kube_apiserver_ip="10.56.56.10"', 'lb_kube_apiserver_ip="10.56.56.255"')),
    Case("vip-broadcast-of-node-subnet", r"VIP 10.56.63.255 is the broadcast address of 10.56.56.0/21",
         swap=('lb_kube_apiserver_ip="10.56.56.10"',
               'node_subnet="10.56.56.0/21"\nlb_kube_apiserver_ip="10.56.63.255"')),
    Case("vip-is-a-node", r"VIP 10.56.56.12 is the address of node2",
         swap=('lb_kube_apiserver_ip="10.56.56.10"', 'lb_kube_apiserver_ip="10.56.56.12"')),
    Case("vip-outside-node-subnet", r"VIP 10.57.0.10 is not in the nodes' network 10.56.56.0/24",
         swap=('lb_kube_apiserver_ip="10.56.56.10"', 'lb_kube_apiserver_ip="10.57.0.10"')),
    # -- certificate lifetimes: a CA outlives its leaves ---------------------------------------------------
    Case("kube-ca-shorter-than-leaves", r"kube_ca_certs_expired: kube_ca_certs_expired=100 is shorter than "
         r"kube_certs_expired=365", var='kube_ca_certs_expired="100"'),
    Case("etcd-ca-shorter-than-leaves", r"etcd_ca_certs_expired=30 is shorter than etcd_certs_expired=365",
         var='etcd_ca_certs_expired="30"'),
    Case("leaves-longer-than-ca", r"kube_certs_expired: kube_ca_certs_expired=3650 is shorter than "
         r"kube_certs_expired=4000", var='kube_certs_expired="4000"'),
    # -- logging in: checked before any connection and before the state folder is made -----------------------
    Case("ssh-key-missing", r"ansible_ssh_private_key_file: /nonexistent/id_ed25519 does not exist",
         swap=(NODE1, f"{NODE1} ansible_ssh_private_key_file=/nonexistent/id_ed25519"), argv=INSTALL_PKI),
    Case("ssh-key-missing-check", r"ansible_ssh_private_key_file: ~/no-such-kha-key does not exist",
         swap=(NODE1, f"{NODE1} ansible_ssh_private_key_file=~/no-such-kha-key"), argv=CHECK),
    Case("ssh-key-is-a-folder", r"ansible_ssh_private_key_file: /etc is not a file",
         swap=(NODE1, f"{NODE1} ansible_ssh_private_key_file=/etc"), argv=INSTALL_PKI),
    Case("ssh-key-empty", r"ansible_ssh_private_key_file: is empty",
         swap=(NODE1, f'{NODE1} ansible_ssh_private_key_file=""')),
    Case("ssh-user-semicolon", r"ansible_user: 'root;id' is not a login name",
         swap=('ansible_user="root"', 'ansible_user="root;id"')),
    # -- flags naming the wrong kind of thing --------------------------------------------------------------
    Case("render-dir-is-a-file", r"kha: --dir .*/out: is a file; expected a folder", setup=_file("out")),
    Case("render-dir-under-a-file", r"kha: --dir .*/out: cannot be created, .*/blocker is a file",
         argv=("render", "-i", "{inv}", "--dir", "{tmp}/blocker/out", "--state", "{tmp}/state"),
         setup=_file("blocker")),
    Case("render-node-folder-is-a-file", r"kha: --dir .*/out: .*/out/nodes/node1 is a file; expected a node's folder",
         setup=_file("out/nodes/node1")),
    Case("render-state-is-a-file", r"kha: --state .*/state: is a file; expected a folder", setup=_file("state")),
    Case("state-secrets-is-a-folder", r"kha: --state .*/state: .*/state/secrets.json is a folder; expected the "
         r"cluster's secrets file", setup=_folder("state/secrets.json")),
    Case("state-pki-is-a-file", r"kha: --state .*/state: .*/state/pki is a file; expected the PKI store folder",
         setup=_file("state/pki")),
    Case("default-state-is-a-file", r"kha: state folder \(beside the inventory\) .*/hosts.kha: is a file",
         argv=("render", "-i", "{inv}", "--dir", "{tmp}/out"), setup=_file("hosts.kha")),
    Case("install-state-is-a-file", r"kha: --state .*/state: is a file", argv=INSTALL_PKI, setup=_file("state")),
    Case("install-ssh-config-missing", r"kha: --ssh-config .*/ssh_config: does not exist; expected a file",
         argv=(*INSTALL_PKI, "--ssh-config", "{tmp}/ssh_config")),
    Case("install-ssh-config-folder", r"kha: --ssh-config .*/cfg: is a folder; expected a file",
         argv=(*INSTALL_PKI, "--ssh-config", "{tmp}/cfg"), setup=_folder("cfg")),
    Case("install-known-hosts-folder", r"kha: --known-hosts .*/kh: is a folder; expected a file",
         argv=(*INSTALL_PKI, "--known-hosts", "{tmp}/kh"), setup=_folder("kh")),
    Case("install-unknown-phase", r"etcd/bootstrapp", argv=(*INSTALL_PKI[:-1], "etcd/bootstrapp")),
    Case("pki-init-dir-is-a-file", r"kha: --dir .*/store: is a file; expected a folder",
         argv=("pki", "init", "-i", "{inv}", "--dir", "{tmp}/store"), setup=_file("store")),
    Case("pki-store-node-folder-is-a-file", r"kha: --dir .*/store: .*/store/nodes/node2 is a file",
         argv=("pki", "init", "-i", "{inv}", "--dir", "{tmp}/store"), setup=_file("store/nodes/node2")),
    Case("pki-check-needs-a-store", r"kha pki check needs --dir DIR \(the store\), or --nodes -i INVENTORY",
         argv=("pki", "check")),
    Case("pki-check-nodes-needs-the-inventory", r"--nodes needs -i INVENTORY", argv=("pki", "check", "--nodes")),
    Case("pki-check-state-without-nodes", r"--state is for --nodes",
         argv=("pki", "check", "--dir", "{tmp}/store", "--state", "{tmp}/state")),
    Case("pki-check-nodes-another-store", r"--dir .*/elsewhere: --nodes compares the nodes with the store in "
         r"the state folder \(.*/state/pki\)",
         argv=("pki", "check", "--nodes", "-i", "{inv}", "--state", "{tmp}/state", "--dir", "{tmp}/elsewhere")),
    Case("pki-check-nodes-no-store", r"--state .*/state: no PKI store there",
         argv=("pki", "check", "--nodes", "-i", "{inv}", "--state", "{tmp}/state")),
    Case("pki-rollout-inventory-missing", r"no such inventory file",
         argv=("pki", "rollout", "-i", "{tmp}/nope.ini", "--state", "{tmp}/state")),
    Case("pki-rollout-known-hosts-folder", r"kha: --known-hosts .*/kh: is a folder; expected a file",
         argv=("pki", "rollout", "-i", "{inv}", "--state", "{tmp}/state", "--known-hosts", "{tmp}/kh"),
         setup=_folder("kh")),
    Case("reset-unknown-node", r"--node node9: not a node of .*\(its nodes: node1, node2, node3, node4\)",
         argv=("reset", "-i", "{inv}", "--state", "{tmp}/state", "--node", "node9")),
    Case("node-remove-an-etcd-member", r"node1 is also an etcd member leaving: run `kha etcd remove`",
         swap=("[del-node]", "[del-node]\nnode1"), argv=("node", "remove", "-i", "{inv}", "--state", "{tmp}/state")),
    Case("inventory-is-a-folder", r"cannot read inventory", argv=("inventory", "check", "{tmp}/inv.d"),
         setup=_folder("inv.d")),
    Case("inventory-missing", r"no such inventory file", argv=("render", "-i", "{tmp}/nope.ini", "--dir", "{tmp}/o")),
    Case("bundle-missing", r"manifest.json: not a format-1 kha bundle manifest",
         argv=(*RENDER, "--bundle", "{tmp}/no-bundle")),
    # -- node preparation knobs (installer/nodeprep, kubelet reservations) ----------------------------
    Case("ntp-server-bad-name", r"ntp_server: 'ntp_1\.example' is not an RFC 1123 DNS name",
         var='ntp_server="ntp_1.example"'),
    Case("timezone-path", r"timezone: '\.\./\.\./etc/passwd' is not a time zone name",
         var='timezone="../../etc/passwd"'),
    Case("custom-hosts-not-an-address", r"custom_hosts: 'reg' is not an IP address",
         var="custom_hosts='{\"reg\": \"10.0.0.1\"}'"),
    Case("custom-hosts-bad-name", r"custom_hosts: 'bad name' is not an RFC 1123 DNS name",
         var="custom_hosts='{\"10.0.0.1\": [\"bad name\"]}'"),
    Case("http-proxy-no-scheme", r"http_proxy: 'proxy:3128' is not a proxy URL", var='http_proxy="proxy:3128"'),
    Case("https-proxy-quote", r"https_proxy: .* is not a proxy URL", var="https_proxy='http://p\";x'"),
    Case("no-proxy-bad-item", r"no_proxy: 'a b' is not an address, network \(CIDR\) or domain name",
         var='no_proxy="10.0.0.0/8,a b"'),
    Case("kube-memory-reserved-unit", r"kube_memory_reserved: '256MB' is not a Kubernetes quantity",
         var='kube_memory_reserved="256MB"'),
    Case("eviction-percent", r"eviction_hard_nodefs_available: '120%' must be above 0% and below 100%",
         var='eviction_hard_nodefs_available="120%"'),
    Case("etcd-backup-hour", r"etcd_backup_hour: 24 is outside 0\.\.23", var='etcd_backup_hour="24"'),
    Case("skip-verify-not-bool", r"skip_verify_node: 'maybe' is not a boolean", var='skip_verify_node="maybe"'),
]


def _inventory(tmp_path: Path, case: Case) -> tuple[Path, int | None]:
    """The case's inventory under ``tmp_path`` and the line its edit sits on (None: no edit)."""
    text = (variants.INVENTORIES / f"hosts.{case.base}.ini").read_text()
    line = None
    if case.swap is not None:
        old, new = case.swap
        assert old in text, f"{case.name}: {old!r} not in the scenario inventory"
        at = text.index(old)
        text = text.replace(old, new, 1)
        line = text[:at].count("\n") + len(new.splitlines())  # the line the check points at: the swap's last
    if case.var is not None:  # replaces the scenario's own setting of that variable, if any
        name = case.var.split("=", 1)[0] + "="
        text = "\n".join(row for row in text.splitlines() if not row.startswith(name)) + "\n" + case.var + "\n"
        line = len(text.splitlines())
    path = tmp_path / "hosts.ini"
    path.write_text(text)
    return path, line


def _tree(root: Path) -> dict[str, bytes | None]:
    return {str(p.relative_to(root)): (p.read_bytes() if p.is_file() else None) for p in sorted(root.rglob("*"))}


def _argv(case: Case, inv: Path, tmp_path: Path) -> list[str]:
    return [a.format(inv=inv, tmp=tmp_path) for a in case.argv]


def _check_error(case: Case, err: str, inv: Path, line: int | None) -> None:
    assert "Traceback" not in err and "Exception ignored" not in err, err
    hits = [row for row in err.splitlines() if re.search(case.message, row)]
    assert hits, f"{case.name}: no line matches {case.message!r}:\n{err}"
    if line is not None:
        assert any(row.startswith(f"{inv}:{line}: ") for row in hits), f"{case.name}: not at {inv}:{line}:\n{err}"


def test_the_table_is_large_and_names_are_unique() -> None:
    assert len(CASES) >= 60
    assert len({c.name for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input_exits_2_names_where_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], case: Case
) -> None:
    inv, line = _inventory(tmp_path, case)
    if case.setup is not None:
        case.setup(tmp_path)
    before = _tree(tmp_path)
    assert cli.main(_argv(case, inv, tmp_path)) == case.code
    out, err = capsys.readouterr()
    _check_error(case, err, inv, line)
    assert "Traceback" not in out
    assert _tree(tmp_path) == before, "something was written before the error"


SUBPROCESS = ["path-backslash-n", "san-backslash-n", "ssh-key-missing", "render-dir-is-a-file",
              "state-secrets-is-a-folder", "render-node-folder-is-a-file"]


@pytest.mark.parametrize("case", [c for c in CASES if c.name in SUBPROCESS], ids=SUBPROCESS)
def test_bad_input_through_a_real_process_shows_no_traceback(tmp_path: Path, case: Case) -> None:
    inv, line = _inventory(tmp_path, case)
    if case.setup is not None:
        case.setup(tmp_path)
    before = _tree(tmp_path)
    proc = subprocess.run([sys.executable, "-m", "kha", *_argv(case, inv, tmp_path)], cwd=REPO,
                          capture_output=True, text=True, check=False, timeout=120)
    assert proc.returncode == case.code, proc.stderr
    _check_error(case, proc.stderr, inv, line)
    assert "Traceback" not in proc.stdout
    assert _tree(tmp_path) == before


def test_a_reader_that_goes_away_ends_kha_quietly(tmp_path: Path) -> None:
    """``kha pki check | head``: the pipe closes under kha; no traceback, no 'Exception ignored'."""
    inv = variants.INVENTORIES / "hosts.allinone.ip.ini"
    store = tmp_path / "store"
    assert cli.main(["pki", "init", "-i", str(inv), "--dir", str(store)]) == 0
    proc = subprocess.Popen([sys.executable, "-m", "kha", "pki", "check", "--dir", str(store)], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # before kha writes its first line
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) in (0, 1), err
    assert err == "", err


def test_an_os_error_half_way_is_one_line_naming_the_path(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A folder replaced by a file while kha runs (after the checks): exit 1, the path, what was expected."""
    inv = variants.INVENTORIES / "hosts.allinone.ip.ini"
    out = tmp_path / "out"

    def in_the_way(*_args: object, **_kw: object) -> None:
        raise NotADirectoryError(20, "Not a directory", str(out / "nodes" / "node1" / "etc"))

    monkeypatch.setattr("installer.render.mirror", in_the_way)
    assert cli.main(["render", "-i", str(inv), "--dir", str(out), "--state", str(tmp_path / "s")]) == 1
    err = capsys.readouterr().err
    assert err == f"kha: {out}/nodes/node1/etc: a part of this path is a file where a folder is expected\n"
