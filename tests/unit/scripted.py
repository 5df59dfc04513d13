"""A scripted node for unit tests: a ``Transport`` that answers the commands kha sends instead of running them.

``ScriptedNode`` keeps the node's files, logs every command (as ``shlex.join`` of its argv, without the ``env``
prefix ``remote.compose`` adds) and answers what every family has (``test``, ``sha256sum``, ``stat``,
``curl -o``, ``mkdir`` …). A family's node (``FakeDebian`` in test_kubernetes_source, ``FakeRocky`` in
test_node_prep_redhat) adds its package manager and services by overriding ``_answer`` and calling
``super()._answer`` for the rest. A command nobody answers fails the test: a new command a node would
receive must be scripted (and so reviewed) before it passes.
"""

from __future__ import annotations

import hashlib
import os
import shlex
from collections.abc import Mapping

from installer.remote import Transport


class ScriptedNode(Transport):
    node = "fake"

    def __init__(self, *, downloads: Mapping[str, bytes] | None = None) -> None:
        self.files: dict[str, bytes] = {}
        self.log: list[str] = []
        #: every path ``put`` wrote, in order (a second run that changes nothing leaves it as it was)
        self.written: list[str] = []
        #: what ``curl -o PATH URL`` fetches, by URL (a URL not listed fetches ``b"key from URL"``)
        self.downloads = dict(downloads or {})

    @property
    def as_root(self) -> bool:
        return True

    def _exec(self, argv: tuple[str, ...], stdin: bytes | None, timeout: float | None
              ) -> tuple[int | None, bytes, bytes]:
        words = list(argv)
        if words[0] == "env":  # compose()'s prefix that carries the environment
            words = words[1:]
            while "=" in words[0]:
                words.pop(0)
        self.log.append(shlex.join(words))
        code, out, err = self._answer(words)
        return code, out.encode(), err.encode()

    def ran(self, *prefixes: str) -> list[str]:
        """The logged commands that start with one of ``prefixes``."""
        return [c for c in self.log if c.startswith(prefixes)]

    def _answer(self, argv: list[str]) -> tuple[int, str, str]:
        match argv:
            case ["test", "-s", path]:
                return (0 if self.files.get(path) else 1), "", ""
            case ["test", "-e" | "-f", path]:
                return (0 if path in self.files else 1), "", ""
            case ["curl", *_, "-o", path, url]:
                self.files[path] = self.downloads.get(url, f"key from {url}".encode())
                return 0, "", ""
            case ["cat", path]:
                data = self.files.get(path)
                if data is None:
                    return 1, "", f"cat: {path}: No such file or directory"
                return 0, data.decode(), ""
            case ["sha256sum", "--", path]:
                data = self.files.get(path)
                return (0, f"{hashlib.sha256(data).hexdigest()}  {path}\n", "") if data is not None else (1, "", "")
            case ["stat", "-c", _, "--", path]:
                return (0, "644 root root\n", "") if path in self.files else (1, "", "")
            case ["rm", "-f", *paths]:
                for p in paths:
                    self.files.pop(p, None)
                return 0, "", ""
            case ["sh", "-c", *_] | ["mkdir", *_] | ["install", "-d", *_]:
                return 0, "", ""
        raise AssertionError(f"unexpected command on the scripted node {self.node}: {argv}")

    def put(self, src: bytes | str | os.PathLike[str], remote_path: str, *, mode: int | None = None,
            owner: str | None = None, group: str | None = None, sudo: bool = False) -> None:
        assert isinstance(src, bytes)
        self.files[remote_path] = src
        self.written.append(remote_path)

    def get(self, remote_path: str, local_path: str | os.PathLike[str] | None = None, *,
            sudo: bool = False) -> bytes:
        return self.files[remote_path]

    def close(self) -> None:
        pass
