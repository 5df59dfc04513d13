"""An external load balancer standing in for the one an ``lb_mode=slb`` user brings (a cloud LB, an F5): haproxy
on this machine, inside the topology's network namespace, outside every node.

kha installs nothing for slb: the inventory names the balancer's address (``lb_kube_apiserver_ip``) and port,
and every kubeconfig, kubelet and ``controlPlaneEndpoint`` points there. To test that, the address is added
to the topology's bridge inside its namespace (so the nodes reach it on their own network and nothing
leaves the namespace) and haproxy runs there in TCP mode, checking each apiserver's ``/readyz`` like a cloud
LB's health check. ``started`` ends the process it started (by its PID) and removes the address.
"""

from __future__ import annotations

import ipaddress
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from core import run
from scenarios.errors import ScenarioError

START_TIMEOUT_S = 10.0


def config(address: str, port: int, backends: Sequence[tuple[str, str, int]]) -> str:
    """haproxy.cfg: ``address:port`` in TCP mode to every ``(name, address, port)`` apiserver, checked on /readyz."""
    lines = ["global", "    log stderr format raw local0", "defaults", "    mode tcp", "    timeout connect 2s",
             "    timeout client 1h", "    timeout server 1h", "    log global",
             "frontend apiserver", f"    bind {address}:{port}", "    default_backend apiservers",
             "backend apiservers", "    balance roundrobin", "    option httpchk GET /readyz",
             "    http-check expect status 200"]
    lines += [f"    server {name} {addr}:{p} check check-ssl verify none inter 1s fall 2 rise 2"
              for name, addr, p in backends]
    return "\n".join(lines) + "\n"


@contextmanager
def started(netns: str, bridge: str, address: ipaddress.IPv4Interface, port: int,
            backends: Sequence[tuple[str, str, int]]) -> Iterator[int]:
    """haproxy for ``address`` (with its prefix, as the bridge's network has it) in ``netns``; yields its PID."""
    with tempfile.TemporaryDirectory(prefix="kha-slb-") as tmp:
        cfg = Path(tmp) / "haproxy.cfg"
        cfg.write_text(config(str(address.ip), port, backends))
        check = run.run(["haproxy", "-c", "-f", str(cfg)], check=False)
        if not check.ok:
            raise ScenarioError(f"the stand-in external LB's config does not pass haproxy -c: {check.stderr[-500:]}")
        said = Path(tmp) / "haproxy.log"
        run.run(["ip", "-n", netns, "addr", "add", str(address), "dev", bridge])
        # Its alerts (a backend going down) go to a file: a pipe nobody reads would fill up and stop it.
        with said.open("wb") as log:
            proc = subprocess.Popen(["ip", "netns", "exec", netns, "haproxy", "-db", "-f", str(cfg)],
                                    stdout=log, stderr=subprocess.STDOUT)
        try:
            _wait_listening(netns, str(address.ip), port, proc, said)
            yield proc.pid
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            run.run(["ip", "-n", netns, "addr", "del", str(address), "dev", bridge], check=False)


def _wait_listening(netns: str, address: str, port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            said = log.read_text(errors="replace")[-500:]
            raise ScenarioError(f"the stand-in external LB (haproxy in {netns}) exited {proc.returncode}: {said}")
        listening = run.run(["ip", "netns", "exec", netns, "ss", "-Hltn", f"src {address}:{port}"], check=False)
        if listening.ok and listening.stdout.strip():
            return
        time.sleep(0.2)
    raise ScenarioError(f"the stand-in external LB does not listen on {address}:{port} in {netns} after "
                        f"{START_TIMEOUT_S:.0f}s")
