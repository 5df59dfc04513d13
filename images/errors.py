"""The image builder's exception tree, drawn once here.

    KhaError (core/errors.py)
    ├── ImageError
    │   ├── UnknownRecipe      no recipe has that name; lists the valid ones (an InputError: exit 2)
    │   ├── NeedsDownload      the recipe's source is not reachable from this machine (decided from
    │   │                      configuration, without sending traffic): names what and where from
    │   ├── SourceConfigError  the machine's apt configuration names no mirror we can build from
    │   ├── RecipeError        a recipe breaks a rule (a malformed digest or URL): found when it is made (exit 2)
    │   ├── UnpinnedDigest     a cloud-image recipe has no sha256 to check the download against (exit 2)
    │   ├── DigestMismatch     the downloaded cloud image is not the pinned one: recipe, URL, both
    │   │                      digests (exit 2; nothing is kept in the cache)
    │   ├── DownloadError      the download itself failed (HTTP status, connection, short read)
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


class RecipeError(ImageError, InputError):
    """A recipe breaks a rule (a digest that is not a sha256, a URL that is not http(s))."""


class UnpinnedDigest(ImageError, InputError):
    """A cloud-image recipe without a pinned sha256: refused before any download (never trust on first use)."""

    def __init__(self, recipe: str, url: str, checksum_url: str | None) -> None:
        self.recipe = recipe
        self.url = url
        self.checksum_url = checksum_url
        where = f" from {checksum_url}" if checksum_url else ""
        super().__init__(
            f"image {recipe!r} has no pinned sha256 in its recipe (images/recipes.py), so its download ({url}) "
            f"cannot be verified and is refused; on a machine with internet, read the digest{where} and pin it "
            "in the recipe"
        )


class DigestMismatch(ImageError, InputError):
    """The bytes served at ``url`` are not the image the recipe pins. Nothing of them is kept."""

    def __init__(self, recipe: str, url: str, expected: str, got: str) -> None:
        self.recipe = recipe
        self.url = url
        self.expected = expected
        self.got = got
        super().__init__(
            f"image {recipe!r}: the download from {url} does not match the recipe's pinned digest "
            f"(expected sha256 {expected}, got {got}); nothing was kept in the cache"
        )


class DownloadError(ImageError):
    """Downloading a cloud image failed (HTTP status, connection, a short read)."""


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
