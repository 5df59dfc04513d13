"""The bundle builder's own errors, hung under ``images.errors``' tree (drawn there once):

    ImageError
    ├── UnknownRecipe
    │   └── UnknownBundle      no bundle recipe has that name; lists the valid ones
    ├── NeedsDownload          (reused) e.g. the upstream recipe on a machine without internet
    ├── BuildError             (reused) a build step failed: argv and the tail of its output
    └── ManifestError          a manifest.json that does not follow the bundle manifest schema

The CLI catches ``ImageError`` at the boundary, as ``kha image`` does.
"""

from __future__ import annotations

from collections.abc import Sequence

from images.errors import ImageError, UnknownRecipe


class UnknownBundle(UnknownRecipe):
    """No bundle recipe is called ``name``."""

    def __init__(self, name: str, valid: Sequence[str]) -> None:
        super().__init__(name, valid)
        self.args = (f"unknown bundle recipe {name!r}; valid bundle recipes: {', '.join(self.valid)}",)

    def __str__(self) -> str:
        return str(self.args[0])


class ManifestError(ImageError):
    """``path`` is not a bundle manifest this code can read: ``problem`` says which field and why."""

    def __init__(self, path: str, problem: str) -> None:
        self.path = path
        self.problem = problem
        super().__init__(f"{path}: {problem}")
