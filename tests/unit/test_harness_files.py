"""What the harness writes to disk: the state file, ssh_config, known_hosts, keys, first-boot files,
the PID-1 wrapper and the progress lines."""

from __future__ import annotations

import json
import os
import resource
import stat
import subprocess
import sys
from pathlib import Path

import paramiko
import pytest
from test_harness_libvirt import make_state  # same directory (pytest rootdir-relative import)

from core.progress import Steps
from harness import firstboot, netns, seed
from harness.errors import StateError
from harness.keys import KeyPair, known_hosts_line
from harness.ssh import Direct, Target, ViaNetns, render_ssh_config
from harness.state import ClusterState


def test_state_round_trip(tmp_path: Path) -> None:
    state = make_state(tmp_path, driver="qemu")
    state.libvirt = {"isolated": True, "netns": "kha-unit-abc123", "root": str(tmp_path / "libvirt"),
                     "cache": "/c", "pids": {"libvirtd": 10, "virtlogd": 9}}
    state.snapshots = ["clean"]
    state.accel = "tcg"
    state.save()
    loaded = ClusterState.load(tmp_path)
    assert loaded == state
    assert loaded.netns == "kha-unit-abc123"
    doc = json.loads((tmp_path / "state.json").read_text())
    assert doc["cluster"] == "unit" and doc["driver"] == "qemu"
    assert doc["paths"]["ssh_config"] == str(tmp_path / "ssh_config")


def test_missing_or_broken_state_is_a_state_error(tmp_path: Path) -> None:
    with pytest.raises(StateError, match="no cluster state"):
        ClusterState.load(tmp_path)
    (tmp_path / "state.json").write_text("{not json")
    with pytest.raises(StateError, match="cannot read"):
        ClusterState.load(tmp_path)
    (tmp_path / "state.json").write_text('{"format": 1}')
    with pytest.raises(StateError, match="not a kha cluster state"):
        ClusterState.load(tmp_path)


def test_ssh_config_reaches_nodes_by_name_and_address_through_the_namespace(tmp_path: Path) -> None:
    targets = [Target("node1", "10.56.56.11"), Target("10.56.56.12", "10.56.56.12")]
    text = render_ssh_config(targets, tmp_path / "id_ed25519", tmp_path / "known_hosts",
                             ViaNetns("kha-c-123456"), "c")
    cfg = paramiko.SSHConfig.from_text(text)
    for alias in ("node1", "10.56.56.11"):
        entry = cfg.lookup(alias)
        assert entry["hostname"] == "10.56.56.11"
        assert entry["user"] == "root"
        assert entry["identityfile"] == [str(tmp_path / "id_ed25519")]
        assert entry["userknownhostsfile"] == str(tmp_path / "known_hosts")
        assert entry["stricthostkeychecking"] == "yes"
        assert entry["proxycommand"] == "ip netns exec kha-c-123456 nc 10.56.56.11 22"
    assert cfg.lookup("10.56.56.12")["hostname"] == "10.56.56.12"
    assert text.count("Host 10.56.56.12\n") == 1  # an address-named node gets one pattern, not two


def test_ssh_config_without_namespace_connects_directly(tmp_path: Path) -> None:
    text = render_ssh_config([Target("n", "192.0.2.5")], tmp_path / "k", tmp_path / "kh", Direct(), "c")
    assert "ProxyCommand" not in text


def test_keys_are_openssh_ed25519_and_private_files_are_0600(tmp_path: Path) -> None:
    pair = KeyPair.generate("me@test")
    pair.write(tmp_path / "id")
    assert stat.S_IMODE(os.stat(tmp_path / "id").st_mode) == 0o600
    loaded = paramiko.Ed25519Key.from_private_key_file(str(tmp_path / "id"))
    assert f"{loaded.get_name()} {loaded.get_base64()}" == pair.public_blob
    assert KeyPair.read(tmp_path / "id") == pair
    line = known_hosts_line(["node1", "10.56.56.11", "node1"], pair)
    assert line == f"node1,10.56.56.11 {pair.public_blob}"
    (tmp_path / "known_hosts").write_text(line + "\n")
    hk = paramiko.HostKeys(str(tmp_path / "known_hosts"))
    assert hk.lookup("10.56.56.11")["ssh-ed25519"] == loaded  # type: ignore[index]


def fake_image(tmp_path: Path) -> Path:
    """A merged-/usr tree like Debian's: /sbin -> usr/sbin, /root is 0700."""
    img = tmp_path / "image"
    for d in ("usr/sbin", "etc/ssh", "etc/systemd/network", "root"):
        (img / d).mkdir(parents=True)
    (img / "sbin").symlink_to("usr/sbin")
    os.chmod(img / "root", 0o700)
    return img


def test_first_boot_files_follow_image_symlinks_and_modes(tmp_path: Path) -> None:
    spec = make_state(tmp_path).spec
    host_key, root_key = KeyPair.generate("h"), KeyPair.generate("r")
    upper = tmp_path / "upper"
    upper.mkdir()
    firstboot.write_tree(upper, firstboot.lxc_files(spec, spec.node("node1"), host_key, root_key),
                         like=fake_image(tmp_path))
    # /sbin stays the image's symlink: the wrapper lands in usr/sbin, no directory shadows it.
    assert not (upper / "sbin").exists()
    assert (upper / "usr/sbin/kha-init").stat().st_mode & 0o777 == 0o755
    assert stat.S_IMODE((upper / "root").stat().st_mode) == 0o700
    assert (upper / "etc/hostname").read_text() == "node1\n"
    assert "10.56.56.12\tnode2" in (upper / "etc/hosts").read_text()
    network = (upper / "etc/systemd/network/10-kha-eth0.network").read_text()
    assert "Address=10.56.56.11/24" in network and "Gateway=10.56.56.1" in network
    assert stat.S_IMODE((upper / "etc/ssh/ssh_host_ed25519_key").stat().st_mode) == 0o600
    assert (upper / "root/.ssh/authorized_keys").read_text().strip() == root_key.public
    assert "HostKey /etc/ssh/ssh_host_ed25519_key" in (upper / "etc/ssh/sshd_config.d/20-kha-harness.conf").read_text()
    assert (upper / "etc/kha/proc-sys/vm/overcommit_memory").read_text() == "1\n"


def test_hosts_file_skips_address_named_nodes(tmp_path: Path) -> None:
    spec = make_state(tmp_path).spec
    files = {f.path: f for f in firstboot.node_files(spec, spec.node("node1"), KeyPair.generate("h"),
                                                     KeyPair.generate("r"))}
    assert files["/etc/hosts"].content.decode().startswith("127.0.0.1\tlocalhost\n")


def test_resolve_in_follows_relative_and_absolute_links(tmp_path: Path) -> None:
    img = fake_image(tmp_path)
    (img / "usr/lib").mkdir()
    (img / "lib").symlink_to("/usr/lib")
    assert firstboot.resolve_in(img, Path("sbin")) == Path("usr/sbin")
    assert firstboot.resolve_in(img, Path("lib/kha")) == Path("usr/lib/kha")
    assert firstboot.resolve_in(img, Path("etc/ssh")) == Path("etc/ssh")


@pytest.mark.parametrize("script", [firstboot.KHA_INIT, seed.SEED_SCRIPT])
def test_shell_scripts_parse(script: str) -> None:
    proc = subprocess.run(["sh", "-n"], input=script, text=True, capture_output=True, check=False)
    assert proc.returncode == 0, proc.stderr


def test_seed_unit_runs_before_networking_and_sshd() -> None:
    before = " ".join(line for line in seed.SEED_UNIT.splitlines() if line.startswith("Before="))
    for unit in ("systemd-networkd.service", "ssh.service", "kha-ssh-hostkeys.service"):
        assert unit in before


def test_netns_names_are_unique_per_state_dir_and_short(tmp_path: Path) -> None:
    a = netns.name_for("m-master", tmp_path / "a")
    assert a == netns.name_for("m-master", tmp_path / "a")
    assert a != netns.name_for("m-master", tmp_path / "b")
    assert a.startswith("kha-m-master-")


def test_progress_lines_say_what_how_long_and_whether_it_worked() -> None:
    lines: list[str] = []
    now = [10.0]
    steps = Steps(lines.append, clock=lambda: now[0])
    with steps.step("boot 4 nodes"):
        now[0] += 1.94
    with pytest.raises(RuntimeError), steps.step("network"):
        now[0] += 0.25
        raise RuntimeError("boom")
    assert lines == ["✓ boot 4 nodes  1.9s", "✗ network  0.2s"]
    assert steps.seconds("boot 4 nodes") == pytest.approx(1.94)


def test_lxc_runc_wrapper_clamps_oom_score_and_nofile(tmp_path: Path) -> None:
    # The wrapper every LXC node gets in front of runc: a negative oom_score_adj is refused on these hosts.
    wrapper = tmp_path / "runc"
    wrapper.write_text(firstboot.RUNC_WRAPPER)
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    spec = {"process": {"oomScoreAdj": -998, "args": ["pause"],
                        "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1 << 40, "soft": 1 << 40}]}}
    (bundle / "config.json").write_text(json.dumps(spec))
    proc_file = tmp_path / "process.json"
    proc_file.write_text(json.dumps({"oomScoreAdj": -5, "args": ["sh"]}))
    argv_log = tmp_path / "argv"
    fake = tmp_path / "real-runc"
    fake.write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" > {argv_log}\n')
    fake.chmod(0o755)
    env = {**os.environ, "KHA_RUNC_REAL": str(fake)}
    subprocess.run([sys.executable, str(wrapper), "--root", "/run/x", "create", "--bundle", str(bundle), "id1"],
                   env=env, check=True)
    assert argv_log.read_text().split() == ["--root", "/run/x", "create", "--bundle", str(bundle), "id1"]
    done = json.loads((bundle / "config.json").read_text())["process"]
    assert done["oomScoreAdj"] == 0 and done["args"] == ["pause"]
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    assert done["rlimits"][0]["hard"] <= hard and done["rlimits"][0]["soft"] <= done["rlimits"][0]["hard"]
    subprocess.run([sys.executable, str(wrapper), "exec", f"--process={proc_file}", "id1"], env=env, check=True)
    assert json.loads(proc_file.read_text())["oomScoreAdj"] == 0
