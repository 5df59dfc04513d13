"""The bridge CNI phase's wait for pod ranges (``phases.PodRangeWait``): the controller-manager that allocates them
has ``POD_RANGE_GRACE_S`` from when it answers healthy, however long it took to come up. CI saw a Debian 11 VM
under TCG finish kubeadm init in 205 s and then run out of a fixed 120 s before kube-controller-manager was up."""

from __future__ import annotations

import pytest

from installer.errors import KubernetesError
from installer.kubernetes.phases import POD_RANGE_GRACE_S, POD_RANGE_TIMEOUT_S, PodRangeWait

CM = "kube-controller-manager on node1"


def test_a_controller_manager_slow_to_start_is_waited_for_and_named() -> None:
    wait = PodRangeWait(CM)
    for now in range(0, 500, 2):
        assert wait.problem("node1", "/healthz: curl: (7) Failed to connect", float(now)) == (
            "node1 (kube-controller-manager on node1 not up: /healthz: curl: (7) Failed to connect)")
    assert wait.problem("node1", None, 500.0) == "node1 (kube-controller-manager on node1 healthy for 0 s)"
    assert wait.problem("node1", None, 500.0 + POD_RANGE_GRACE_S) == (
        "node1 (kube-controller-manager on node1 healthy for 120 s)")
    assert POD_RANGE_TIMEOUT_S >= 500 + POD_RANGE_GRACE_S  # the overall bound leaves room for this slow start


def test_a_healthy_controller_manager_that_allocates_nothing_fails_after_the_grace() -> None:
    wait = PodRangeWait(CM)
    wait.problem("node1, node2", None, 10.0)
    with pytest.raises(KubernetesError, match=r"^no pod range allocated to node1, node2: kube-controller-manager on "
                                              r"node1 has answered healthy for 121 s and allocated none \(it "
                                              r"allocates from kube_pod_subnet"):
        wait.problem("node1, node2", None, 131.0)


def test_a_restart_starts_the_grace_over() -> None:
    wait = PodRangeWait(CM)
    wait.problem("node1", None, 0.0)
    wait.problem("node1", None, 100.0)
    assert "not up" in wait.problem("node1", "/healthz: no answer", 110.0)  # the liveness probe restarted it
    assert wait.problem("node1", None, 115.0).endswith("healthy for 0 s)")
    assert wait.problem("node1", None, 230.0).endswith("healthy for 115 s)")
