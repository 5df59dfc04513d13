"""KVM or TCG for qemu nodes: decided by booting something tiny, never by /dev/kvm existing.

On our machines /dev/kvm exists but is backed by kvm_pvm, where a stock kernel under ``-accel kvm``
hangs after "Probing EDD" (../shared/MACHINE.md, "Virtualisation"). So the probe boots the image's own
kernel under KVM with no root device and waits for it to reach the root-mount panic (``panic=-1``
+ ``-no-reboot`` make qemu exit right there). A kernel that gets there within the timeout proves KVM
works; anything else means TCG. The answer is cached per (host kernel, qemu binary, guest kernel).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import subprocess
import time
from pathlib import Path
from typing import Literal

from harness import hostcmd, paths

log = logging.getLogger(__name__)

Accel = Literal["kvm", "tcg"]
QEMU = "qemu-system-x86_64"
_PROBE_TIMEOUT = 20.0


def choose(kernel: Path, cache: Path | None = None, timeout: float = _PROBE_TIMEOUT) -> Accel:
    """``kvm`` if a KVM guest boots here, else ``tcg``; cached. ``KHA_ACCEL`` (kvm|tcg) overrides."""
    forced = os.environ.get("KHA_ACCEL")
    if forced in ("kvm", "tcg"):
        return "kvm" if forced == "kvm" else "tcg"
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return "tcg"
    if not kernel.is_file():
        # A cloud image's kernel is inside its disk: nothing to probe with. KHA_ACCEL=kvm where KVM is known good.
        log.info("no kernel file to probe KVM with (a cloud image?): using TCG; KHA_ACCEL=kvm overrides")
        return "tcg"
    qemu = hostcmd.need(QEMU, "qemu-system-x86")
    cache_file = (cache or paths.harness_cache()) / "accel.json"
    key = _key(Path(qemu), kernel)
    known = _read(cache_file)
    if key in known:
        return "kvm" if known[key] == "kvm" else "tcg"
    result: Accel = "kvm" if probe_kvm(qemu, kernel, timeout) else "tcg"
    known[key] = result
    cache_file.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache_file.with_suffix(".tmp")
    tmp.write_text(json.dumps(known, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, cache_file)
    return result


def probe_kvm(qemu: str, kernel: Path, timeout: float) -> bool:
    """Boot ``kernel`` under KVM to its no-root panic; True if that happens within ``timeout``."""
    argv = [qemu, "-accel", "kvm", "-cpu", "host", "-m", "256", "-smp", "1", "-nodefaults", "-nographic",
            "-no-reboot", "-serial", "stdio", "-monitor", "none", "-nic", "none",
            "-kernel", str(kernel), "-append", "console=ttyS0 panic=-1 root=/dev/kha-probe-none"]
    start = time.monotonic()
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, errors="replace", timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        log.info("KVM probe: no panic within %.0fs, using TCG", timeout)
        return False
    output = proc.stdout + proc.stderr
    ok = "Kernel panic" in output or "VFS: Unable to mount root" in output
    log.info("KVM probe: %s after %.1fs (exit %d)", "works" if ok else "failed", time.monotonic() - start,
             proc.returncode)
    return ok


def _key(qemu: Path, kernel: Path) -> str:
    host = os.uname().release
    st = qemu.stat()
    digest = hashlib.sha256(kernel.read_bytes()).hexdigest()[:16]
    return f"{host}|{qemu}:{st.st_size}:{int(st.st_mtime)}|{digest}"


def _read(path: Path) -> dict[str, str]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}
