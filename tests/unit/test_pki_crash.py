"""``kha pki init`` and ``kha pki renew`` killed (SIGKILL) after every durable write, then run again.

The store's one write path (``installer.pki.durable``) counts its durable steps (a staged file, the commit
record, one rename, the clean-up) and, with the test-only ``KHA_TEST_CRASH_AFTER_WRITES=K``, kills its own
process right after the K-th. Each K runs in a forked child that calls the real ``kha`` entry point (a
fresh interpreter costs two seconds here; a fork costs milliseconds, so every K fits in the unit tier),
plus one run through ``python -m kha.cli`` to show the hook works there too. After each kill:

- ``kha pki check`` does not refuse forever: each problem names the ``kha pki`` command that repairs it;
- the same command run again exits 0 and ``kha pki check`` is then clean;
- a CA that was visible (both halves) before the re-run is the same CA after it;
- the store holds exactly the files a clean run makes: no staging folder, no temporary file, no stray key.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
import variants

from installer import secrets, topology
from installer.pki import crypto, durable
from installer.pki.store import Store
from kha.cli import main

CAS = ("ca/ca", "ca/front-proxy-ca", "ca/etcd/ca")
RENEW = ("apiserver", "etcd/server", "front-proxy-client")


def files(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()} if root.exists() else set()


def cas(root: Path) -> dict[str, str]:
    """Key fingerprint of each CA whose both halves are visible."""
    out: dict[str, str] = {}
    for ca in CAS:
        crt, key = root / f"{ca}.crt", root / f"{ca}.key"
        if crt.is_file() and key.is_file():
            out[ca] = crypto.key_fingerprint(crypto.parse_cert(crt.read_bytes(), str(crt)))
    return out


def killed_at(k: int, argv: Sequence[str] | Callable[[], int]) -> int:
    """Run ``kha ARGV`` (or a function) in a forked child that SIGKILLs itself after its K-th durable write.

    Returns the child's exit code, or minus the signal that ended it.
    """
    pid = os.fork()
    if pid == 0:  # the child: the real CLI, quiet, ended by the hook or by os._exit
        code = 99
        try:
            os.environ[durable.CRASH_AFTER_WRITES] = str(k)
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 1)
            os.dup2(devnull, 2)
            code = argv() if callable(argv) else main(list(argv))
        finally:
            os._exit(code)
    deadline = time.monotonic() + 60
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            raise AssertionError(f"kha {' '.join(argv)} with the crash hook at {k} hung")
        time.sleep(0.005)


def assert_repairable(root: Path, inv: Path) -> None:
    """What ``kha pki check`` says about a crashed store: every problem comes with its ``kha pki`` command."""
    report = Store(root, topology.load(inv)).check()
    problems = [p for r in report.rows for p in r.problems] + list(report.problems)
    lacking = [p for p in problems if "`kha pki " not in p]
    assert not lacking, f"problems without the command that repairs them: {lacking}"


def assert_no_loose_keys(root: Path) -> None:
    """Right after a kill: key material only in 0600 files or in the 0700 staging folder."""
    staging = root / durable.STAGING
    if staging.exists():
        assert staging.stat().st_mode & 0o777 == 0o700
    for p in root.rglob("*"):
        if p.is_file() and b"PRIVATE KEY" in p.read_bytes() and staging not in p.parents:
            assert p.stat().st_mode & 0o777 == 0o600, p


def assert_pairs_whole(root: Path) -> None:
    """Right after a kill: each key and its certificate are both there or both absent, unless a decided
    write is still being moved into place (the next run finishes it)."""
    if (root / durable.STAGING / "COMMIT").exists():
        return
    for p in root.rglob("*.key"):
        mate = p.with_suffix(".pub" if p.name == "sa.key" else ".crt")
        assert mate.exists(), f"{p} is there without {mate.name}"
    for p in [*(root / "ca").rglob("*.crt"), *(root / "ca").rglob("*.pub"), *(root / "cluster").rglob("*.crt")]:
        assert p.with_suffix(".key").exists(), f"{p} is there without its key"


def crash_every_write(argv: Sequence[str], *, root: Path, inv: Path, prepare: Path | None, clean: set[str],
                      capsys: pytest.CaptureFixture[str]) -> int:
    """Kill ``kha ARGV`` after each write in turn (on a fresh copy of ``prepare``, or on nothing); returns
    how many kill points there were."""
    k = 0
    while True:
        k += 1
        shutil.rmtree(root, ignore_errors=True)
        if prepare is not None:
            shutil.copytree(prepare, root)
        before = cas(root)
        code = killed_at(k, argv)
        if code == 0:
            return k - 1  # the run finished before its K-th write: every kill point was tried
        assert code == -signal.SIGKILL, f"kill point {k}: exit {code}"
        assert_no_loose_keys(root)
        assert_pairs_whole(root)
        visible = cas(root)
        assert {ca: fp for ca, fp in visible.items() if ca in before} == before, "the crash changed a CA"
        assert_repairable(root, inv)
        assert main(list(argv)) == 0, f"re-run after kill point {k}: {capsys.readouterr().err}"
        assert main(["pki", "check", "--dir", str(root)]) == 0, f"kill point {k}: {capsys.readouterr().out}"
        capsys.readouterr()
        after = cas(root)
        assert {ca: after[ca] for ca in visible} == visible, f"kill point {k}: a CA visible before the re-run changed"
        assert files(root) == clean, f"kill point {k}: {sorted(files(root) ^ clean)}"


@pytest.fixture
def inv(tmp_path: Path) -> Path:
    return variants.write(tmp_path / "hosts.ini", "allinone.hostname", cert_key_type="ecdsa")


def test_init_killed_after_every_write_always_recovers(tmp_path: Path, inv: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    clean = tmp_path / "clean"
    assert main(["pki", "init", "-i", str(inv), "--dir", str(clean)]) == 0
    root = tmp_path / "store"
    points = crash_every_write(["pki", "init", "-i", str(inv), "--dir", str(root)], root=root, inv=inv, prepare=None,
                               clean=files(clean), capsys=capsys)
    written = files(clean) - {durable.LOCK}  # 43: each staged, the commit record, each renamed, the clean-up
    assert points == 2 * len(written) + 2, points


def test_renew_killed_after_every_write_keeps_the_cas(tmp_path: Path, inv: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    base = tmp_path / "base"
    assert main(["pki", "init", "-i", str(inv), "--dir", str(base)]) == 0
    root = tmp_path / "store"
    points = crash_every_write(["pki", "renew", "--dir", str(root), *RENEW], root=root, inv=inv, prepare=base,
                               clean=files(base), capsys=capsys)
    # 8 files (3 pairs, and node1's copy of the cluster-wide front-proxy-client): staged, committed, renamed.
    assert points == 2 * 8 + 2, points


def test_a_kill_through_the_real_command_line_between_commit_and_rename(tmp_path: Path, inv: Path) -> None:
    """The hook as an operator's shell would meet it: ``python -m kha.cli``, killed once the write was decided."""
    clean = tmp_path / "clean"
    assert main(["pki", "init", "-i", str(inv), "--dir", str(clean)]) == 0
    n = len(files(clean))
    root = tmp_path / "store"
    argv = [sys.executable, "-m", "kha.cli", "pki", "init", "-i", str(inv), "--dir", str(root)]
    env = {**os.environ, durable.CRASH_AFTER_WRITES: str(n + 1 + n // 2)}  # half the files moved into place
    first = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert first.returncode == -signal.SIGKILL, first.stderr
    half = files(root)
    assert (root / durable.STAGING).is_dir() and 0 < len(half - {p for p in half if p.startswith(".")}) < n
    staged_cas = cas(root)
    again = subprocess.run([*argv[:3], "pki", "check", "--dir", str(root), "-i", str(inv)],
                           capture_output=True, text=True, timeout=120, check=False)
    assert again.returncode == 1 and f"`kha pki init -i {inv} --dir {root}` finishes or drops it" in again.stdout
    with contextlib.suppress(KeyError):
        env.pop(durable.CRASH_AFTER_WRITES)
    second = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert second.returncode == 0, second.stderr
    assert "recovered .staging: completed a write a crash interrupted" in second.stdout
    assert files(root) == files(clean)
    assert {ca: cas(root)[ca] for ca in staged_cas} == staged_cas


def test_the_secrets_file_is_written_the_same_way(tmp_path: Path) -> None:
    path = tmp_path / "state" / "secrets.json"

    def create() -> int:
        secrets.load_or_create(path)
        return 0

    for k, expect in ((1, "dropped"), (2, "completed")):  # staged / decided, not yet renamed
        shutil.rmtree(path.parent, ignore_errors=True)
        assert killed_at(k, create) == -signal.SIGKILL
        assert not path.exists() and (path.parent / durable.STAGING).is_dir()
        staged = (path.parent / durable.STAGING / "0").read_bytes()
        kept = secrets.load_or_create(path)
        assert sorted(os.listdir(path.parent)) == ["secrets.json"], f"{expect}: {os.listdir(path.parent)}"
        assert (path.read_bytes() == staged) is (expect == "completed")
        assert secrets.load_or_create(path) == kept
