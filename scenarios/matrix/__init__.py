"""The test matrix (``scenarios/matrix.toml``): OS × Kubernetes × topology × load balancer × driver × suite.

- ``model``: the file read into frozen dataclasses (axes, exclusions, needs, timeouts, tiers), validated
  before anything runs; cells and selections;
- ``probe``: what this machine offers (KVM that boots, configured downloads, memory, base images) and so
  which cells can run here, each refusal with its reason;
- ``invocation``: a cell as the pytest command CI already runs (tox's e2e, failover and day-2 tiers);
- ``runner``: ``kha matrix run``: the cells one after another (or ``--jobs N``), JUnit + results JSON per
  cell, a summary;
- ``results``: the results files' data and reading them back;
- ``ci``: ``kha matrix generate github|gitlab``: the nightly CI files, from the matrix;
- ``report``: ``kha matrix report``: HTML + Markdown over results, the baseline comparison, trend plots;
- ``cli``: the ``kha matrix`` subcommands.
"""
