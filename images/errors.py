"""The image builder's exception tree, drawn once here.

    KhaError (core/errors.py)
    ├── ImageError
    │   ├── UnknownRecipe      no recipe has that name; lists the valid ones (an InputError: exit 2)
    │   ├── NeedsDownload      the recipe's source is not reachable from this machine (decided from
    │   │                      configuration, without sending traffic): names what and where from
    │   ├── SourceConfigError  the machine's apt configuration names no mirror we can build from
    │   └── BuildError         a build step failed: what it produced is not what it must be
    │       └── BuildCommandFailed   … because a command failed: also a core CommandFailed (argv, exit
    │                                code, output tail), so it reads like every other failed command
    └── CommandFailed (core)
        └── BuildCommandFailed

Everything raised on purpose by ``images`` is an ``ImageError`` (callers such as the harness catch that
one type), so a ``KhaError``; the CLI catches ``KhaError`` at the boundary, prints it once and picks the
exit code. A bundle manifest that does not follow its schema is ``core.bundle_manifest.ManifestError``,
the builder's and the installer's one type for it.
"""

from __future__ import annotations

from collections.abc import Sequence

from core.errors import CommandFailed, InputError, KhaError


class ImageError(KhaError):
    """Base of every error the image builder raises on purpose."""


class UnknownRecipe(ImageError, InputError):
    """No recipe is called ``name``."""

    def __init__(self, name: str, valid: Sequence[str]) -> None:
        self.name = name
        self.valid = tuple(valid)
        super().__init__(f"unknown image recipe {name!r}; valid recipes: {', '.join(self.valid)}")


class NeedsDownload(ImageError):
    """Building ``recipe`` needs a download from ``source``, which this machine cannot reach."""

    def __init__(self, recipe: str, source: str, reason: str) -> None:
        self.recipe = recipe
        self.source = source
        self.reason = reason
        super().__init__(f"image {recipe!r} needs a download from {source}; this machine cannot reach it ({reason})")


class SourceConfigError(ImageError):
    """The apt configuration on this machine names no usable mirror (and no override is set)."""


class BuildError(ImageError):
    """A build step failed: what it produced is not what it must be."""


class BuildCommandFailed(BuildError, CommandFailed):
    """A build command failed: core's ``CommandFailed`` (argv, exit code, output tail) in the image tree."""

    @classmethod
    def of(cls, exc: CommandFailed, what: str | None = None) -> BuildCommandFailed:
        """``exc`` as a build failure; ``what`` (when given) says what went wrong instead of what ran."""
        return cls(exc.argv, exc.returncode, exc.stdout, stderr=exc.stderr, what=what or exc.what,
                   timeout=exc.timeout)
