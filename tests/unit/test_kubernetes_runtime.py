"""The node runtime step (kubernetes/runtime) on scripted Debian nodes whose facts are read from them: which
packages it installs. Debian 11 with AppArmor on in the kernel gets ``apparmor`` (bullseye's containerd runs
apparmor_parser for every container; without it every static pod fails); containers, a kernel without AppArmor,
and Debian 12 do not."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import variants
from test_kubernetes_source import FakeDebian

from installer import install, nodeops
from installer.context import InstallContext, open_context
from installer.facts import OSFamily
from installer.kubernetes import phases
from installer.phases import Runner

OS_RELEASE = 'PRETTY_NAME="Debian GNU/Linux {major}"\nNAME="Debian GNU/Linux"\nVERSION_ID="{major}"\nID=debian\n'
MEMINFO = "MemTotal:        4028580 kB\nMemFree:          123456 kB\n"


class DebianNode(FakeDebian):
    """A Debian node as ``gather_facts`` and the runtime step see it: its release, whether it is a container,
    what /sys/module/apparmor/parameters/enabled reads (None: no such file, a kernel without AppArmor)."""

    def __init__(self, *, major: int, container: bool = False, apparmor: str | None = "Y\n") -> None:
        super().__init__()
        self.node = "node1"
        self.files["/etc/os-release"] = OS_RELEASE.format(major=major).encode()
        self.container = container
        self.apparmor = apparmor

    def _answer(self, argv: list[str]) -> tuple[int, str, str]:
        match argv:
            case ["ip", "-o", "-4", "addr", "show", "to", _]:
                return 0, "2: eth0    inet 10.56.56.11/24 brd 10.56.56.255 scope global eth0\n", ""
            case ["stat", "-f", "-c", "%T", "/var/lib"]:
                return 0, "ext2/ext3\n", ""
            case ["systemd-detect-virt", "--container", "--quiet"]:
                return (0 if self.container else 1), "", ""
            case ["nproc"]:
                return 0, "2\n", ""
            case ["cat", "/proc/meminfo"]:
                return 0, MEMINFO, ""
            case ["cat", nodeops.APPARMOR_ENABLED]:
                if self.apparmor is None:
                    return 1, "", f"cat: {nodeops.APPARMOR_ENABLED}: No such file or directory"
                return 0, self.apparmor, ""
            case ["test", "-d", _] | ["grep", "-qw", "overlay", "/proc/filesystems"] | ["modprobe", _]:
                return 0, "", ""
            case ["sysctl", "-q", "-w", _]:
                return 0, "", ""
            case ["sysctl", "-n", _]:
                return 0, "1\n", ""
            case ["swapon", "--show", "--noheadings"]:
                return 0, "", ""
            case ["systemctl", *_]:
                return 0, "", ""
        return super()._answer(argv)


def _runtime(tmp_path: Path, node: DebianNode) -> InstallContext:
    """The runtime step on the allinone inventory's node, with the facts read from ``node``."""
    inv = variants.inventory(tmp_path, "allinone", kube_version="1.29.3")
    ctx = open_context(InstallContext, inv, state=tmp_path / "state", known_hosts=tmp_path / "kh",
                       write_secrets=False)
    ctx.connector = lambda host: node  # type: ignore[assignment]
    Runner(install.phases(), only=["kubernetes/runtime"], out=io.StringIO()).run(ctx)
    return ctx


def test_bullseye_on_a_vm_with_apparmor_on_gets_the_apparmor_package(tmp_path: Path) -> None:
    node = DebianNode(major=11)
    ctx = _runtime(tmp_path, node)
    [facts] = ctx.facts.values()
    assert (facts.os_family, facts.os_major, facts.apparmor, facts.container) == (OSFamily.DEBIAN, 11, True, False)
    assert {*phases.RUNTIME_PACKAGES[OSFamily.DEBIAN], "apparmor"} == set(node.installed)


@pytest.mark.parametrize(("why", "node"), [
    ("a container: containerd does not use AppArmor inside one", DebianNode(major=11, container=True)),
    ("the kernel has no AppArmor (no such parameter file)", DebianNode(major=11, apparmor=None)),
    ("AppArmor is off in the kernel", DebianNode(major=11, apparmor="N\n")),
    ("bookworm's containerd does not need it", DebianNode(major=12)),
])
def test_apparmor_is_not_installed_where_containerd_does_not_need_it(tmp_path: Path, why: str,
                                                                     node: DebianNode) -> None:
    _runtime(tmp_path, node)
    assert set(node.installed) == set(phases.RUNTIME_PACKAGES[OSFamily.DEBIAN]), why
