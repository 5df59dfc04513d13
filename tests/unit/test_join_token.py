"""The bootstrap token a join uses is re-made (delete, then create) until the API answers: a failed delete
is tried again, not swallowed, and no answer carries the token itself."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from scripted import ScriptedNode

from core import waiting
from installer.errors import KubernetesError
from installer.kubernetes.phases import remake_token, token_commands

TOKEN = "jvd994.cprkqt4019qfw0hh"
DELETE, CREATE = token_commands("/usr/local/bin/kubeadm", TOKEN)


class FirstMaster(ScriptedNode):
    """kubeadm token delete/create against an API that refuses ``refusals`` requests first."""

    def __init__(self, refusals: int, token_exists: bool = True) -> None:
        super().__init__()
        self.refusals = refusals
        self.token_exists = token_exists

    def _answer(self, argv: list[str]) -> tuple[int, str, str]:
        if argv[1:3] == ["token", "delete"] or argv[1:3] == ["token", "create"]:
            if self.refusals:
                self.refusals -= 1
                return 1, "", "error: Get https://10.56.56.10:8443/api: EOF"
            if argv[2] == "delete":
                if not self.token_exists:
                    return 1, "", 'secrets "bootstrap-token-jvd994" not found'
                self.token_exists = False
                return 0, "bootstrap token deleted", ""
            if self.token_exists:
                return 1, "", 'a token with id "jvd994" already exists'
            self.token_exists = True
            return 0, TOKEN, ""
        return super()._answer(argv)


def tries(node: FirstMaster, limit: int = 10) -> Iterator[str | None]:
    for _ in range(limit):
        yield remake_token(node, DELETE, CREATE)


def test_a_refused_delete_is_tried_again_not_followed_by_a_create_that_must_fail() -> None:
    node = FirstMaster(refusals=1)
    answers = list(tries(node, 2))
    assert answers[0] == "kubeadm token delete: error: Get https://10.56.56.10:8443/api: EOF"
    assert answers[1] is None and node.token_exists
    assert node.ran("/usr/local/bin/kubeadm token create") == [node.log[-1]]  # one create, after the delete


def test_no_token_to_delete_is_fine_and_nothing_says_the_token() -> None:
    node = FirstMaster(refusals=0, token_exists=False)
    assert remake_token(node, DELETE, CREATE) is None
    refused = FirstMaster(refusals=5)
    answer = remake_token(refused, DELETE, CREATE)
    assert answer is not None and TOKEN.split(".")[1] not in answer


def test_an_api_that_never_answers_ends_in_one_error_naming_what_it_said() -> None:
    node = FirstMaster(refusals=1000)
    clock = iter(range(0, 1000, 30))
    with pytest.raises(KubernetesError, match="kubeadm token delete: error: Get"):
        waiting.until(lambda: remake_token(node, DELETE, CREATE), timeout=120, interval=2,
                      error=KubernetesError, clock=lambda: float(next(clock)), sleep=lambda _s: None)
