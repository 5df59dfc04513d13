"""The scenarios' exception tree, drawn once here.

    KhaError (core/errors.py)
    └── ScenarioError
        ├── FaultError         a fault could not be injected or healed, or its target is not where it must be
        │   └── CaseRefused    a case that does not exist or cannot apply here (an InputError: exit 2)
        ├── ClusterNotUp       the cluster named on the command line is not up (an InputError: exit 2)
        └── ClientError        a client's request to one endpoint did not succeed (recorded, not fatal)

Faults, clients and checkers raise these; the CLI and the pytest plugins catch ``KhaError``.
"""

from __future__ import annotations

from core.errors import InputError, KhaError


class ScenarioError(KhaError):
    """Base of every error the scenarios raise on purpose."""


class FaultError(ScenarioError):
    """A fault's target is not where it needs to be (no VIP holder, several), or it could not be healed."""


class CaseRefused(FaultError, InputError):
    """A failover case that does not exist, or cannot apply to this topology or machine: refused before
    anything is injected."""


class ClusterNotUp(ScenarioError, InputError):
    """The cluster a command names is not up (``kha status`` lists those that are)."""


class ClientError(ScenarioError):
    """A request to one endpoint did not succeed; ``definite`` when it certainly had no effect."""

    def __init__(self, message: str, *, definite: bool) -> None:
        self.definite = definite
        super().__init__(message)
