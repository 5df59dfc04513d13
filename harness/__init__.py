"""The kha harness: boots test topologies on libvirt (LXC system containers or qemu VMs) and runs
operations on them. It never imports ``installer`` or ``scenarios``; ``scenarios.topologies`` turns
inventories into the ``harness.spec.TopologySpec`` it consumes.

Where things live:
- ``spec``: the request (frozen, validated); ``errors``: the exception tree;
- ``provider``: ``Provider.up`` → ``Cluster`` (power, links, pause, snapshots, teardown by kha mark);
- ``node`` (driver interface), ``lxc``, ``qemu``: what differs per node runtime;
- ``daemon``, ``netns``: the system libvirt or a private libvirtd in its own network namespace;
- ``firstboot``, ``seed``, ``keys``, ``ssh``: per-node identity, SSH keys, ssh_config, readiness;
- ``libvirtxml``, ``state``, ``image``, ``accel``, ``paths``, ``progress``, ``hostcmd``: plumbing;
- ``pytest_plugin``: fixtures for tests.
"""
