"""The bundle builder's own error, hung under ``images.errors``' tree (drawn there once):

    ImageError
    ├── UnknownRecipe
    │   └── UnknownBundle      no bundle recipe has that name; lists the valid ones
    ├── NeedsDownload          (reused) e.g. the upstream recipe on a machine without internet
    └── BuildError             (reused) a build step failed; BuildCommandFailed: argv and output tail

A manifest.json that does not follow the bundle manifest schema is ``core.bundle_manifest.ManifestError``
(a ``KhaError``; the installer reads the same schema). The CLI catches ``KhaError`` at the boundary.
"""

from __future__ import annotations

from collections.abc import Sequence

from images.errors import UnknownRecipe


class UnknownBundle(UnknownRecipe):
    """No bundle recipe is called ``name``."""

    def __init__(self, name: str, valid: Sequence[str]) -> None:
        super().__init__(name, valid)
        self.args = (f"unknown bundle recipe {name!r}; valid bundle recipes: {', '.join(self.valid)}",)

    def __str__(self) -> str:
        return str(self.args[0])
