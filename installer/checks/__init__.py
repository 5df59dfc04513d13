"""``kha check``: ordered, named checks of an installed cluster, written as pytest-testinfra modules.

Each ``test_<group>.py`` here is a pytest module of checks (``host.service``, ``host.file``,
``host.sysctl`` … on testinfra ``Host`` objects that run over kha's own SSH layer, ``backend.py``); each
check looks until its deadline (``Target.until``, on ``core.waiting``) and fails with what it saw.
``run.py`` runs them through pytest with ``plugin.py`` (✓/✗ per check, JUnit XML); the e2e tier runs the
same modules through ``kha check``, so an operator and CI check a cluster the same way.

``GROUPS`` is the order the groups run in: the node itself first, then what stands on it.
"""

GROUPS = ("node", "etcd", "loadbalancer", "apiserver", "kubernetes", "pki")
