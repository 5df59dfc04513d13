"""argv helpers for the bundle build (commands stay lists; ``core.run.stream`` has no working-directory
parameter, so the directory goes into the argv)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path


def in_dir(directory: Path, argv: Sequence[str]) -> list[str]:
    """``argv`` run with ``directory`` as its working directory (coreutils ``env --chdir``, no shell).

    apt-get source/download write into the working directory; gengo (openapi-gen) resolves vendor/ from
    it, as upstream's hack/run-in-gopath.sh runs it inside ``$GOPATH/src/k8s.io/kubernetes``.
    """
    return ["env", f"--chdir={directory}", *argv]
