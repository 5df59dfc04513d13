"""The image builder's exception tree, drawn once here.

    KhaError (core/errors.py)
    └── ImageError
        ├── UnknownRecipe      no recipe has that name; lists the valid ones (an InputError: exit 2)
        ├── NeedsDownload      the recipe's source is not reachable from this machine (decided from
        │                      configuration, without sending traffic): names what and where from
        ├── SourceConfigError  the machine's apt configuration names no mirror we can build from
        └── BuildError         a build step failed; carries the command's argv and the tail of its output

Everything raised on purpose by ``images`` is an ``ImageError``, so a ``KhaError``; the CLI catches
``KhaError`` at the boundary, prints it once and picks the exit code.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence

from core.errors import InputError, KhaError


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
    """A build step failed. ``argv`` is the exact command (empty when the step was not a command)."""

    def __init__(
        self,
        message: str,
        *,
        argv: Sequence[str] = (),
        returncode: int | None = None,
        output_tail: str = "",
    ) -> None:
        self.argv = tuple(argv)
        self.returncode = returncode
        self.output_tail = output_tail
        parts = [message]
        if self.argv:
            parts.append(f"command (exit {returncode}): {shlex.join(self.argv)}")
        if output_tail.strip():
            parts.append("--- output (tail) ---\n" + output_tail.rstrip("\n"))
        super().__init__("\n".join(parts))
