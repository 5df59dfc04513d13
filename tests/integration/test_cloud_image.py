"""The cloud-image path, proven offline: a cloud disk made here, served over HTTP from 127.0.0.1, downloaded
and verified against its pinned sha256, booted on qemu under UEFI with a NoCloud seed, configured by
cloud-init, reached over SSH.

Real Ubuntu and Rocky images cannot be downloaded here (no internet but the package registries), so the
disk is ``debian-12-cloudinit`` (the Debian image with cloud-init) made into a GPT disk that boots by itself
(``images.clouddisk``): the same code downloads it, checks it and boots it as it would a vendor image.

- ``test_a_wrong_digest_over_http_is_refused_and_nothing_kept`` (integration tier, seconds): real HTTP, a
  pinned digest that does not match → the clear error, exit 2 from the CLI, no image in the cache.
- ``test_a_cloud_image_boots_with_cloud_init`` (``-m cloud_image``, ``tox -e cloud-image``; root, qemu, TCG
  here, minutes): the whole path. Not in CI's integration tier: it takes longer than that tier can spare.
  Run it under the topology lock on a shared machine: ``flock /tmp/kha-topology.lock tox -e cloud-image``.
"""

from __future__ import annotations

import functools
import hashlib
import http.server
import logging
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

import pytest

import images
from harness.keys import KeyPair
from harness.provider import Provider
from harness.spec import NodeSpec, TopologySpec
from images.cache import cache_dir
from images.clouddisk import make_cloud_disk
from images.errors import DigestMismatch
from images.recipes import RECIPES, CloudImageRecipe

log = logging.getLogger(__name__)

NAME = "local-cloud"
NODE = "cloud1"
ADDRESS = "10.58.0.11"


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        log.debug("http: " + format, *args)


@pytest.fixture
def serve() -> Iterator[functools.partial[str]]:
    """``serve(folder)`` → the base URL of an HTTP server on 127.0.0.1 serving ``folder``; stopped after."""
    servers: list[tuple[http.server.ThreadingHTTPServer, threading.Thread]] = []

    def start(folder: Path) -> str:
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0),
                                                 functools.partial(_Quiet, directory=str(folder)))
        thread = threading.Thread(target=server.serve_forever, name="kha-test-http", daemon=True)
        thread.start()
        servers.append((server, thread))
        return f"http://127.0.0.1:{server.server_address[1]}"

    yield functools.partial(start)
    for server, thread in servers:
        server.shutdown()
        server.server_close()
        thread.join(10)


def cloud_recipe(url: str, sha256: str) -> CloudImageRecipe:
    return CloudImageRecipe(name=NAME, description="the local cloud disk of the offline proof", url=url,
                            sha256=sha256, login_user="debian", boot="uefi")


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


@pytest.mark.integration
def test_a_wrong_digest_over_http_is_refused_and_nothing_kept(
    tmp_path: Path, serve: functools.partial[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    served = tmp_path / "www"
    served.mkdir()
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(served / "disk.qcow2"), "64M"], check=True)
    url = f"{serve(served)}/disk.qcow2"
    wrong = hashlib.sha256(b"not this disk").hexdigest()
    cache = tmp_path / "cache"
    monkeypatch.setenv("KHA_CACHE_DIR", str(cache))
    monkeypatch.setenv("KHA_OFFLINE", "1")  # this machine itself stays reachable
    monkeypatch.setitem(RECIPES, NAME, cloud_recipe(url, wrong))
    with pytest.raises(DigestMismatch) as err:
        images.build_cloud(NAME)
    msg = str(err.value)
    assert f"'{NAME}'" in msg and url in msg and wrong in msg and sha256_of(served / "disk.qcow2") in msg
    kept = [p.name for p in (cache / "images").iterdir() if not p.name.endswith((".lock", ".failed.log"))]
    assert kept == [] and images.get_cloud(NAME) is None

    # The same through the CLI, as a user runs it: one ✗ line, exit 2, no traceback.
    code = ("import sys, kha.cli, images.recipes as r\n"
            f"r.RECIPES[{NAME!r}] = r.CloudImageRecipe(name={NAME!r}, description='x', url={url!r}, "
            f"sha256={wrong!r}, login_user='debian')\n"
            f"sys.exit(kha.cli.main(['image', 'build', {NAME!r}]))\n")
    cli = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=120,
                         env={"KHA_CACHE_DIR": str(cache), "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"})
    assert cli.returncode == 2, cli.stderr
    assert "does not match the recipe's pinned digest" in cli.stderr and "Traceback" not in cli.stderr
    assert images.get_cloud(NAME) is None


@pytest.mark.cloud_image
def test_a_cloud_image_boots_with_cloud_init(
    tmp_path: Path, serve: functools.partial[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    timings: dict[str, float] = {}

    def timed(what: str, start: float) -> None:
        timings[what] = round(time.monotonic() - start, 1)

    # The source image lives in the usual cache (built once, ~2.5 min); only the download goes to a fresh one.
    start = time.monotonic()
    source = images.build("debian-12-cloudinit", cache=cache_dir())
    timed("source image (cached or built)", start)
    www = tmp_path / "www"
    start = time.monotonic()
    disk = make_cloud_disk(source, www / f"{NAME}.qcow2", root_mib=2048)
    timed("cloud disk made", start)
    url = f"{serve(www)}/{disk.name}"
    monkeypatch.setenv("KHA_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("KHA_STATE_DIR", str(tmp_path / "clusters"))
    monkeypatch.setenv("KHA_OFFLINE", "1")
    monkeypatch.setitem(RECIPES, NAME, cloud_recipe(url, sha256_of(disk)))

    start = time.monotonic()
    img = images.build_cloud(NAME)
    timed("download + verify", start)
    assert img.sha256 == sha256_of(disk) and img.boot == "uefi"

    spec = TopologySpec("cloudimg", IPv4Network("10.58.0.0/24"), IPv4Address("10.58.0.1"),
                        (NodeSpec(NODE, IPv4Address(ADDRESS), vcpus=1, memory_mib=1024),), image=NAME,
                        driver="qemu", source="tests/integration/test_cloud_image.py")
    lines: list[str] = []
    provider = Provider(isolated=True, emit=lines.append)
    start = time.monotonic()
    cluster = provider.up(spec, state_dir=tmp_path / "clusters" / spec.cluster)
    try:
        timed("kha up (OVMF boot → cloud-init → SSH login)", start)

        def sh(script: str, timeout: float = 120.0) -> str:
            code, out, err = cluster.run(NODE, ["sh", "-c", script], timeout=timeout)
            assert code == 0, f"{script}: exit {code}: {out}{err}"
            return out.strip()

        # The login itself (as root, with the cluster key, host key checked against the pinned one by a
        # RejectPolicy client) is what `up` waited for; these are what a user would look at next.
        start = time.monotonic()
        status = sh("cloud-init status --wait --long", timeout=300)
        timed("cloud-init status --wait", start)
        assert "status: done" in status
        assert sh("cat /run/cloud-init/result.json").count("DataSourceNoCloud") >= 1
        assert sh("hostname") == NODE
        assert f"inet {ADDRESS}/24" in sh("ip -4 -o addr show")
        assert sh("ip -4 route show default").startswith("default via 10.58.0.1")
        assert sh("id -un") == "root"
        assert sh("test -d /sys/firmware/efi && echo uefi") == "uefi"
        pinned = cluster.known_hosts.read_text().split()[1:3]
        assert sh("cat /etc/ssh/ssh_host_ed25519_key.pub").split()[:2] == pinned
        assert sh("ls /etc/ssh/ | grep -c '^ssh_host_.*_key$'") == "1", "only the pinned host key"
        assert "passwordauthentication no" in sh("sshd -T | grep -i '^passwordauthentication'")
        # A key that is not the cluster's is refused: root login is by that key only.
        stranger = KeyPair.generate("stranger")
        stranger.write(tmp_path / "stranger")
        refused = subprocess.run(
            ["ip", "netns", "exec", str(cluster.state.netns), "ssh", "-i", str(tmp_path / "stranger"),
             "-o", "BatchMode=yes", "-o", f"UserKnownHostsFile={cluster.known_hosts}", "-o", "IdentitiesOnly=yes",
             "-o", "StrictHostKeyChecking=yes", "-o", "ConnectTimeout=20", f"root@{ADDRESS}", "true"],
            capture_output=True, text=True, check=False, timeout=60)
        assert refused.returncode == 255 and "Permission denied" in refused.stderr, refused.stderr
    finally:
        log.info("cloud image proof timings: %s", timings)
        print(f"\ncloud image proof timings: {timings}\n" + "\n".join(lines), file=sys.stderr)
        cluster.destroy()
    assert not (tmp_path / "clusters" / spec.cluster).exists()
    assert images.get_cloud(NAME) == img, "the verified download stays cached for the next topology"
