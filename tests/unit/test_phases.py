"""The phase runner: order, --only/--skip, dry-run, failures and the progress lines a user sees."""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from installer.errors import CommandError, ConfigError, PhaseError
from installer.phases import Context, Phase, Runner, Status, Step, all_paths


class FakeClock:
    """A clock that only moves when a phase says time passed."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@dataclass(kw_only=True)
class Notes(Context):
    """A context whose phases note what ran (and hand a typed value on, as install phases do)."""

    ran: list[str] = field(default_factory=list)
    external_etcd: bool = False


def mark(name: str, clock: FakeClock | None = None, seconds: float = 0.0) -> Callable[[Notes], None]:
    """A phase body that notes it ran in ctx.ran and takes ``seconds`` on ``clock``."""

    def run(ctx: Notes) -> None:
        ctx.ran.append(name)
        if clock is not None:
            clock.now += seconds

    return run


def tree() -> list[Phase[Notes]]:
    return [
        Phase("preflight", run=mark("preflight")),
        Phase(
            "etcd",
            run=mark("etcd"),
            children=(
                Phase("certs", run=mark("etcd/certs")),
                Phase("bootstrap", run=mark("etcd/bootstrap")),
            ),
        ),
        Phase("loadbalancer", children=(Phase("haproxy", run=mark("loadbalancer/haproxy")),)),
    ]


def run(
    phases: Sequence[Phase[Notes]], *, only: Sequence[str] = (), skip: Sequence[str] = ()
) -> tuple[list[str], Notes, list[Step]]:
    """Run with a frozen clock; return the output lines, the context and the result steps."""
    out = io.StringIO()
    ctx = Notes()
    result = Runner(phases, only=only, skip=skip, out=out, clock=FakeClock()).run(ctx)
    return out.getvalue().splitlines(), ctx, result.steps


# -- order -------------------------------------------------------------------------------------


def test_runs_depth_first_parent_before_children_in_order() -> None:
    lines, ctx, _ = run(tree())
    assert ctx.ran == ["preflight", "etcd", "etcd/certs", "etcd/bootstrap", "loadbalancer/haproxy"]
    # A parent without its own run prints no line of its own.
    assert lines == [
        "✓ preflight  0.0s",
        "✓ etcd  0.0s",
        "✓ etcd/certs  0.0s",
        "✓ etcd/bootstrap  0.0s",
        "✓ loadbalancer/haproxy  0.0s",
    ]


def test_all_paths_and_plan_list_paths_in_run_order() -> None:
    assert all_paths(tree()) == [
        "preflight",
        "etcd",
        "etcd/certs",
        "etcd/bootstrap",
        "loadbalancer",
        "loadbalancer/haproxy",
    ]
    # plan() lists what would execute: parents without a run of their own are not in it.
    assert Runner(tree()).plan() == [
        "preflight",
        "etcd",
        "etcd/certs",
        "etcd/bootstrap",
        "loadbalancer/haproxy",
    ]


# -- only / skip -------------------------------------------------------------------------------


def test_only_a_leaf_runs_just_that_leaf_and_shows_the_rest_skipped() -> None:
    lines, ctx, _ = run(tree(), only=["etcd/bootstrap"])
    assert ctx.ran == ["etcd/bootstrap"]  # the parent's own run is not part of the selection
    assert lines == [
        "- preflight (skipped)",
        "- etcd/certs (skipped)",
        "✓ etcd/bootstrap  0.0s",
        "- loadbalancer (skipped)",
    ]
    assert Runner(tree(), only=["etcd/bootstrap"]).plan() == ["etcd/bootstrap"]


def test_only_a_parent_runs_it_and_all_its_descendants() -> None:
    lines, ctx, _ = run(tree(), only=["etcd"])
    assert ctx.ran == ["etcd", "etcd/certs", "etcd/bootstrap"]
    assert lines == [
        "- preflight (skipped)",
        "✓ etcd  0.0s",
        "✓ etcd/certs  0.0s",
        "✓ etcd/bootstrap  0.0s",
        "- loadbalancer (skipped)",
    ]


@pytest.mark.parametrize(
    "only",
    [["etcd/certs,loadbalancer"], ["etcd/certs", "loadbalancer"], [" etcd/certs , loadbalancer ,"]],
)
def test_only_accepts_comma_separated_lists(only: list[str]) -> None:
    _, ctx, _ = run(tree(), only=only)
    assert ctx.ran == ["etcd/certs", "loadbalancer/haproxy"]


def test_skip_removes_a_whole_subtree() -> None:
    lines, ctx, _ = run(tree(), skip=["etcd"])
    assert ctx.ran == ["preflight", "loadbalancer/haproxy"]
    assert lines == ["✓ preflight  0.0s", "- etcd (skipped)", "✓ loadbalancer/haproxy  0.0s"]


def test_only_and_skip_together_skip_wins_inside_the_selection() -> None:
    lines, ctx, _ = run(tree(), only=["etcd,loadbalancer"], skip=["etcd/certs"])
    assert ctx.ran == ["etcd", "etcd/bootstrap", "loadbalancer/haproxy"]
    assert lines == [
        "- preflight (skipped)",
        "✓ etcd  0.0s",
        "- etcd/certs (skipped)",
        "✓ etcd/bootstrap  0.0s",
        "✓ loadbalancer/haproxy  0.0s",
    ]


@pytest.mark.parametrize(("flag", "value"), [("only", "etcd/boot"), ("skip", "etcd,nope")])
def test_unknown_path_is_a_config_error_listing_valid_paths_before_anything_runs(
    flag: str, value: str
) -> None:
    ran: list[str] = []
    phases: list[Phase[Context]] = [
        Phase("etcd", children=(Phase("bootstrap", run=lambda ctx: ran.append("x")),))
    ]
    out = io.StringIO()
    with pytest.raises(ConfigError) as err:
        if flag == "only":
            Runner(phases, only=[value], out=out).run()
        else:
            Runner(phases, skip=[value], out=out).run()
    text = str(err.value)
    assert f"--{flag}" in text
    assert "valid: etcd, etcd/bootstrap" in text
    assert ran == []
    assert out.getvalue() == ""


def test_unknown_path_suggests_the_closest_one() -> None:
    with pytest.raises(ConfigError, match="did you mean 'etcd/bootstrap'"):
        Runner(tree(), only=["etcd/bootsrap"])


# -- dry-run -----------------------------------------------------------------------------------


def write_file(target: Path) -> Phase[Context]:
    def run(ctx: Context) -> None:
        if ctx.would(f"write {target}"):
            return
        target.write_text("written\n")

    return Phase("write", run=run)


def test_dry_run_calls_phases_which_report_what_they_would_do_and_do_nothing(tmp_path: Path) -> None:
    target = tmp_path / "etc" / "kha.conf"
    seen: list[bool] = []
    phases = [
        Phase("files", children=(write_file(target),)),
        Phase("after", run=lambda ctx: seen.append(ctx.dry_run)),
    ]
    out = io.StringIO()
    ctx = Notes()
    Runner(phases, dry_run=True, out=out, clock=FakeClock()).run(ctx)

    assert not target.exists()
    assert seen == [True]
    assert out.getvalue().splitlines() == [
        "✓ files/write  0.0s",
        f"    would write {target}",
        "✓ after  0.0s",
    ]
    assert [str(w) for w in ctx.report] == [f"would write {target}"]
    assert [w.phase for w in ctx.report] == ["files/write"]


def test_without_dry_run_the_same_phase_writes_and_reports_nothing(tmp_path: Path) -> None:
    target = tmp_path / "kha.conf"
    lines, ctx, _ = run([Phase("files", children=(write_file(target),))])
    assert target.read_text() == "written\n"
    assert lines == ["✓ files/write  0.0s"]
    assert ctx.report == []


def test_a_context_already_in_dry_run_stays_in_dry_run(tmp_path: Path) -> None:
    target = tmp_path / "kha.conf"
    Runner([write_file(target)], out=io.StringIO()).run(Context(dry_run=True))
    assert not target.exists()


# -- failure -----------------------------------------------------------------------------------


def failing_tree(clock: FakeClock, error: Callable[[Notes], None]) -> list[Phase[Notes]]:
    def bootstrap(ctx: Notes) -> None:
        clock.now += 0.3
        error(ctx)

    return [
        Phase("etcd", children=(Phase("certs", run=mark("etcd/certs")), Phase("bootstrap", run=bootstrap))),
        Phase("loadbalancer", run=mark("loadbalancer")),
    ]


def test_failure_names_phase_and_node_and_stops_the_run() -> None:
    def fail(ctx: Context) -> None:
        raise CommandError("node2", ["etcdctl", "member", "add", "node2"], 1, stderr="connection refused")

    clock = FakeClock()
    out = io.StringIO()
    ctx = Notes()
    with pytest.raises(PhaseError) as err:
        Runner(failing_tree(clock, fail), out=out, clock=clock).run(ctx)

    assert "etcd/bootstrap" in str(err.value)
    assert "node2" in str(err.value)
    assert "connection refused" in str(err.value)
    assert (err.value.path, err.value.node) == ("etcd/bootstrap", "node2")
    assert isinstance(err.value.cause, CommandError)
    # The ✗ line is printed; nothing after the failure ran or printed.
    assert out.getvalue().splitlines() == ["✓ etcd/certs  0.0s", "✗ etcd/bootstrap  0.3s"]
    assert ctx.ran == ["etcd/certs"]


def test_failure_outside_a_remote_call_names_the_node_the_phase_was_on() -> None:
    def fail(ctx: Context) -> None:
        with ctx.node("node1"):
            pass
        with ctx.node("node3"):
            raise ValueError("member list is empty")

    with pytest.raises(PhaseError) as err:
        Runner(failing_tree(FakeClock(), fail), out=io.StringIO()).run(Notes())
    assert str(err.value) == "phase etcd/bootstrap failed on node3: member list is empty"


def test_failure_with_no_node_says_so_plainly() -> None:
    def fail(ctx: Context) -> None:
        raise RuntimeError("bad")

    with pytest.raises(PhaseError) as err:
        Runner(failing_tree(FakeClock(), fail), out=io.StringIO()).run(Notes())
    assert str(err.value) == "phase etcd/bootstrap failed: bad"
    assert err.value.node is None


# -- timing ------------------------------------------------------------------------------------


def test_timing_lines_show_seconds_with_one_decimal() -> None:
    clock = FakeClock()
    phases = [
        Phase("quick", run=mark("quick", clock, 0.04)),
        Phase("etcd", children=(Phase("bootstrap", run=mark("etcd/bootstrap", clock, 1.23)),)),
        Phase("slow", run=mark("slow", clock, 61.0)),
    ]
    out = io.StringIO()
    result = Runner(phases, out=out, clock=clock).run(Notes())
    assert out.getvalue().splitlines() == ["✓ quick  0.0s", "✓ etcd/bootstrap  1.2s", "✓ slow  61.0s"]
    assert [(s.path, s.status) for s in result.steps] == [
        ("quick", Status.OK),
        ("etcd/bootstrap", Status.OK),
        ("slow", Status.OK),
    ]
    assert result.steps[1].seconds == pytest.approx(1.23)


# -- run_if ------------------------------------------------------------------------------------


def test_run_if_false_shows_the_phase_as_not_needed_and_skips_its_subtree() -> None:
    def external_etcd(ctx: Notes) -> None:
        ctx.external_etcd = True

    phases = [
        Phase("detect", run=external_etcd),
        Phase(
            "etcd",
            run_if=lambda ctx: not ctx.external_etcd,
            children=(Phase("bootstrap", run=mark("etcd/bootstrap")),),
        ),
        Phase("kubeadm", run=mark("kubeadm"), run_if=lambda ctx: True),
        Phase("cni", run=mark("cni"), run_if=lambda ctx: False),
    ]
    lines, ctx, steps = run(phases)
    assert ctx.ran == ["kubeadm"]
    assert lines == [
        "✓ detect  0.0s",
        "- etcd (skipped: not needed)",
        "✓ kubeadm  0.0s",
        "- cni (skipped: not needed)",
    ]
    assert [(s.path, s.status) for s in steps] == [
        ("detect", Status.OK),
        ("etcd", Status.NOT_NEEDED),
        ("kubeadm", Status.OK),
        ("cni", Status.NOT_NEEDED),
    ]


# -- context and tables ------------------------------------------------------------------------


@dataclass(kw_only=True)
class InstallContext(Notes):
    control_planes: tuple[str, ...]


def test_a_context_subclass_carries_typed_values_to_phases() -> None:
    def join(ctx: InstallContext) -> None:
        for node in ctx.control_planes:
            if ctx.would(f"join {node}"):
                continue

    phases: list[Phase[InstallContext]] = [Phase("join", run=join), Phase("mark", run=mark("mark"))]
    out = io.StringIO()
    ctx = InstallContext(control_planes=("cp1", "cp2"))
    Runner(phases, dry_run=True, out=out, clock=FakeClock()).run(ctx)
    assert out.getvalue().splitlines() == [
        "✓ join  0.0s",
        "    would join cp1",
        "    would join cp2",
        "✓ mark  0.0s",
    ]


def test_a_phase_table_with_bad_names_is_rejected() -> None:
    with pytest.raises(ValueError, match="duplicate"):
        Phase("etcd", children=(Phase("certs"), Phase("certs")))
    with pytest.raises(ValueError, match="duplicate"):
        Runner([Phase[Context]("etcd"), Phase[Context]("etcd")])
    with pytest.raises(ValueError, match="name"):
        Phase("etcd/certs")
