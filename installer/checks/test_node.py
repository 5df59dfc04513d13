"""Every node: its clock in sync, swap off, the kernel modules and sysctls kha sets, containerd and kubelet
running. (``node/…`` checks; ``kha check --only node``.)"""

from __future__ import annotations

from installer import nodeops
from installer.checks import verdicts
from installer.checks.target import Target
from installer.kubernetes import render as k8s
from installer.nodeprep import phases as prep
from installer.nodeprep import render as prep_render
from installer.topology import Host

#: chrony selects its source within a few polls (iburst): the install waits 90 s for it, so does this.
TIME_DEADLINE_S = prep.TIME_SYNC_TIMEOUT_S


def test_time(target: Target, note: list[str]) -> None:
    """chronyd's tracking (synchronised, offset under 0.5 s) where chronyd runs; else what the node has."""
    seen: dict[str, str] = {}

    def look(h: Host) -> str | None:
        host = target.host(h)
        clock = verdicts.Clock(chronyd=bool(target.processes(h, "chronyd")))
        if clock.chronyd:
            tracking = host.run("chronyc -n -c tracking").stdout
            clock = verdicts.Clock(chronyd=True, tracking=tracking)
            problem, what = verdicts.time_verdict(clock, chrony_enabled=target.topo.settings.chrony_enabled,
                                                  sync_problem=prep.time_problem(tracking))
        else:
            timesyncd = host.service("systemd-timesyncd").is_running
            clock = verdicts.Clock(
                chronyd=False, timesyncd=timesyncd,
                ntp_synchronized=host.run("timedatectl show -p NTPSynchronized --value").stdout.strip()
                if timesyncd else "",
                container=host.run("systemd-detect-virt --container --quiet").rc == 0)
            problem, what = verdicts.time_verdict(clock, chrony_enabled=target.topo.settings.chrony_enabled,
                                                  sync_problem=None)
            if problem and target.topo.settings.chrony_enabled:
                problem += "\n" + target.unit_state(h, "chrony")
        seen[h.name] = what
        return problem

    target.until(lambda: target.each(prep_render.nodes(target.topo), look), TIME_DEADLINE_S)
    kinds = sorted(set(seen.values()))
    note.append(f"{kinds[0]}" if len(kinds) == 1 else "; ".join(f"{n}: {w}" for n, w in sorted(seen.items())))


def test_swap(target: Target) -> None:
    """No swap on a Kubernetes node (kubelet refuses to run with it)."""

    def look(h: Host) -> str | None:
        areas = verdicts.active_swap(target.host(h).file("/proc/swaps").content_string)
        return f"swap on: {', '.join(areas)} (/proc/swaps)" if areas else None

    target.until(lambda: target.each(target.kubernetes_nodes, look), 10)


def test_kernel(target: Target, note: list[str]) -> None:
    """The kernel modules and sysctls kha sets (modules-load.d, sysctl.d) are in effect on every node."""
    modules = k8s.modules(target.topo)

    def look(h: Host) -> str | None:
        host, t = target.host(h), target.transport(h)
        problems = [f"kernel module {m} not loaded ({k8s.MODULES_FILE} lists it)"
                    for m in modules if not nodeops.module_present(t, m)]
        for key, want in k8s.SYSCTLS.items():
            value = str(host.sysctl(key))
            if value != want:
                problems.append(f"{key} = {value}, kha sets {want} ({k8s.SYSCTL_FILE})")
        return "; ".join(problems) or None

    target.until(lambda: target.each(target.kubernetes_nodes, look), 10)
    note.append(f"{', '.join(modules)}; {', '.join(f'{k}={v}' for k, v in k8s.SYSCTLS.items())}")


def test_runtime(target: Target) -> None:
    """containerd and kubelet enabled and running on every Kubernetes node; containerd's CRI socket listening."""

    def look(h: Host) -> str | None:
        host = target.host(h)
        problems = []
        for unit in ("containerd", "kubelet"):
            svc = host.service(unit)
            if not svc.is_running or not svc.is_enabled:
                problems.append(f"{unit} {'running' if svc.is_running else 'not running'}, "
                                f"{'enabled' if svc.is_enabled else 'not enabled'}: {target.unit_state(h, unit)}")
        if not host.socket(f"unix://{k8s.CRI_SOCKET}").is_listening:
            problems.append(f"nothing listens on {k8s.CRI_SOCKET}")
        return "\n".join(problems) or None

    target.until(lambda: target.each(target.kubernetes_nodes, look), 30)
