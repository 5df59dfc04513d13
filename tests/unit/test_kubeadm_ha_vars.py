"""kubeadm-ha's variables run unchanged: every variable has a fate in one table (``settings.KNOBS``),
``-e @variables.yaml`` / ``--vars FILE`` override ``[all:vars]`` with errors at the YAML file's line,
and README.md's table is ``kha inventory vars``'s output."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from installer import settings, topology
from installer.settings import KNOBS_BY_NAME, Fate
from kha import cli
from tests.unit import variants

REPO = Path(__file__).resolve().parents[2]
STOCK = REPO / "scenarios" / "inventories" / "variables.kubeadm-ha.yaml"


def _inventory(tmp_path: Path) -> Path:
    """kubeadm-ha's example/hosts.m-master.ip.ini shape, on kubeadm-ha's example network (192.168.56.0/24),
    where the stock file's VIP 192.168.56.15 lives."""
    text = (variants.INVENTORIES / "hosts.m-master.ip.ini").read_text().replace("10.56.56.", "192.168.56.")
    inv = tmp_path / "hosts.m-master.ip.ini"
    inv.write_text(text)
    return inv


def _vars(tmp_path: Path, text: str, name: str = "variables.yaml") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def _line_of(path: Path, key: str) -> int:
    return next(i for i, row in enumerate(path.read_text().splitlines(), 1) if row.startswith(f"{key}:"))


def test_readme_table_is_the_commands_output(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["inventory", "vars"]) == 0
    out = capsys.readouterr().out
    readme = (REPO / "README.md").read_text()
    m = re.search(r"<!-- knobs:begin -->\n(.*?)<!-- knobs:end -->", readme, re.S)
    assert m, "README.md lacks the <!-- knobs:begin --> / <!-- knobs:end --> block"
    assert m.group(1) == out, "README's kubeadm-ha variables table is stale: paste `kha inventory vars` into it"
    assert out == settings.markdown_table()


def test_every_stock_variable_has_a_fate_and_its_stock_value_parses() -> None:
    stock = yaml.safe_load(STOCK.read_text())
    assert len(stock) > 150
    assert sorted(set(stock) - set(KNOBS_BY_NAME)) == [], "a variable of kubeadm-ha's file has no fate"
    for name, value in stock.items():
        knob = KNOBS_BY_NAME[name]
        assert knob.stock is not settings.NO_STOCK, name
        assert knob.is_stock(settings.varsfile.as_text(value)), f"{name}: the table's stock value is not the file's"
        knob.parse(settings.varsfile.as_text(value))  # the stock value has the right type
    counts = {f: sum(1 for k in settings.KNOBS if k.fate is f) for f in Fate}
    assert all(counts.values()), counts


def test_the_stock_file_passes_check_and_each_fate_is_printed(tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    inv = _inventory(tmp_path)
    assert cli.main(["inventory", "check", str(inv), "-e", f"@{STOCK}"]) == 0
    out, err = capsys.readouterr()
    stock = yaml.safe_load(STOCK.read_text())
    for name in stock:
        fate = KNOBS_BY_NAME[name].fate.value
        assert re.search(rf"^  {name} +{re.escape(fate)}\b.*\({re.escape(str(STOCK))}:{_line_of(STOCK, name)}\)$",
                         out, re.M), f"{name} ({fate}) not printed with its line"
    # Accepted-but-unused variables warn, at the YAML file's line, with the reason.
    assert f"{STOCK}:{_line_of(STOCK, 'nftables_to_iptables')}: warning: nftables_to_iptables: no-op: " in err
    # firewalld_disabled: true is what firewalld_mode's default does; any other value is refused.
    line = _line_of(STOCK, "firewalld_disabled")
    assert f"{STOCK}:{line}: warning: firewalld_disabled: kubeadm-ha's stock value" in err
    line = _line_of(STOCK, "pod_infra_container_image")
    assert f"{STOCK}:{line}: warning: pod_infra_container_image: kubeadm-ha's stock" in err
    assert "unknown variable" not in err
    topo = topology.load(inv, [STOCK])
    s = topo.settings
    assert (str(s.kube_version), str(topo.vip), s.lb_mode.value, s.kubernetes_audit) == ("1.26.7", "192.168.56.15",
                                                                                       "nginx", False)
    # kubeadm-ha's published secrets are not used: kha generates its own per cluster.
    assert s.kubeadm_token is None and s.lb_keepalived_password is None
    assert s.kube_master_external_ip == ("8.8.8.8",)
    # Its image repository, as kubeadm-ha would use it (images pulled from it, or the bundle's tagged with it).
    assert s.kube_image_repository == "registry.aliyuncs.com/kubeadm-ha"
    # Node preparation as kubeadm-ha's file asks: its time zone and kubelet reservations, no chrony, no proxy.
    assert (s.timezone, s.chrony_enabled, s.ntp_server, s.http_proxy) == ("Asia/Shanghai", False,
                                                                          ("ntp.aliyun.com",), None)
    assert (s.kube_memory_reserved, s.system_cpu_reserved, s.eviction_hard_nodefs_available) == ("256M", "500m",
                                                                                                  "10%")


def test_extra_vars_override_the_inventory_and_the_later_file_wins(tmp_path: Path) -> None:
    inv = _inventory(tmp_path)  # lb_mode="haproxy", kube_max_pods="110" in [all:vars]
    a = _vars(tmp_path, "lb_mode: nginx\nkube_max_pods: 100\n", "a.yaml")
    b = _vars(tmp_path, "kube_max_pods: 90\n", "b.yaml")
    assert topology.load(inv).settings.lb_mode.value == "haproxy"
    s = topology.load(inv, [a, b]).settings
    assert (s.lb_mode.value, s.kube_max_pods) == ("nginx", 90)
    assert cli.main(["inventory", "check", str(inv), "--vars", str(a), "-e", f"@{b}"]) == 0


def test_an_empty_variables_file_changes_nothing(tmp_path: Path) -> None:
    inv = _inventory(tmp_path)
    empty = _vars(tmp_path, "# every line commented, as kubeadm-ha ships it\n# lb_mode: nginx\n")
    assert topology.load(inv, [empty]).settings == topology.load(inv).settings


BAD = [
    # (name, yaml text, the key whose line is named (None: see the test), what the message says)
    ("refused-value", "pod_infra_container_image: my.registry.local/pause:3.2\n", "pod_infra_container_image",
     r"pod_infra_container_image: refused: kha picks every image itself"),
    ("bad-repository", "kube_image_repository: https://my.registry.local/k8s\n", "kube_image_repository",
     r"kube_image_repository: 'https://my.registry.local/k8s' is not an image repository like"),
    ("docker", "lb_mode: nginx\ncontainer_manager: docker\n", "container_manager",
     r"container_manager: docker is refused: kha installs containerd"),
    ("wrong-type", "kube_max_pods: many\n", "kube_max_pods", r"kube_max_pods: 'many' is not a whole number"),
    ("wrong-type-noop", "skip_verify_node: maybe\n", "skip_verify_node", r"skip_verify_node: 'maybe' is not a boolean"),
    ("wrong-type-list", "kube_master_external_ip: [\"not-an-ip\"]\n", "kube_master_external_ip",
     r"'not-an-ip' is not an IP address"),
    ("refused-true", "enabel_ingress_nodeport_lb: true\n", "enabel_ingress_nodeport_lb",
     r"enabel_ingress_nodeport_lb: refused: "),
    ("topology-rule", "lb_kube_apiserver_ip: 10.1.2.3\n", "lb_kube_apiserver_ip",
     r"VIP 10.1.2.3 is not in the nodes' network"),
    ("yaml-error", "lb_mode: nginx\nkube_version: [1.20\n", None, r"not valid YAML"),
    ("not-a-mapping", "- lb_mode\n- nginx\n", None, r"expected a mapping of variable: value"),
    ("twice", "lb_mode: nginx\nkube_max_pods: 100\nlb_mode: haproxy\n", None, r"lb_mode is set twice"),
    ("connection-var", "ansible_user: admin\n", "ansible_user", r"belong on the host lines in \[all\]"),
]


@pytest.mark.parametrize("case", BAD, ids=[c[0] for c in BAD])
def test_bad_variables_file_names_file_and_line_and_exits_2(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], case: tuple[str, str, str | None, str]) -> None:
    name, text, key, message = case
    inv = _inventory(tmp_path)
    vf = _vars(tmp_path, text)
    assert cli.main(["inventory", "check", str(inv), "-e", f"@{vf}"]) == 2
    err = capsys.readouterr().err
    if key is not None:
        where = f"{vf}:{_line_of(vf, key)}: "
    elif name == "twice":
        where = f"{vf}:3: "
    else:
        where = f"{vf}:"
    hits = [row for row in err.splitlines() if row.startswith(where) and re.search(message, row)]
    assert hits, f"no line starting {where!r} matching {message!r}:\n{err}"
    assert "Traceback" not in err


def test_minus_e_without_a_file_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    inv = _inventory(tmp_path)
    assert cli.main(["inventory", "check", str(inv), "-e", "lb_mode=nginx"]) == 2
    assert "kha reads -e @FILE" in capsys.readouterr().err
    assert cli.main(["inventory", "check", str(inv), "-e", f"@{tmp_path / 'missing.yaml'}"]) == 2
    assert "no such variables file" in capsys.readouterr().err


def test_render_takes_the_variables_file(tmp_path: Path) -> None:
    inv = _inventory(tmp_path)
    vf = _vars(tmp_path, "kube_image_repository: my.registry.local:5000/k8s\n")
    out = tmp_path / "out"
    assert cli.main(["render", "-i", str(inv), "--dir", str(out), "--state", str(tmp_path / "s"), "-e", f"@{vf}"]) == 0
    node = out / "nodes" / "192.168.56.11"
    assert "imageRepository: my.registry.local:5000/k8s\n" in (node / "etc/kha/kubeadm.yaml").read_text()
    assert 'sandbox_image = "my.registry.local:5000/k8s/pause:3.2"' in (node / "etc/containerd/config.toml").read_text()
    refused = _vars(tmp_path, "pod_infra_container_image: my.registry.local/pause:3.2\n", "refused.yaml")
    out, state = tmp_path / "out2", tmp_path / "s2"
    assert cli.main(["render", "-i", str(inv), "--dir", str(out), "--state", str(state), "-e", f"@{refused}"]) == 2
    assert not out.exists() and not state.exists()


def test_an_inventory_refused_value_names_the_inventory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    inv = _inventory(tmp_path)
    inv.write_text(inv.read_text() + 'pod_infra_container_image="my.registry.local/pause:3.2"\n')
    last = len(inv.read_text().splitlines())
    assert cli.main(["inventory", "check", str(inv)]) == 2
    assert f"{inv}:{last}: pod_infra_container_image: refused: " in capsys.readouterr().err
