"""Files the installer puts on nodes: one type for a rendered file, and the jinja2 environment.

Every component (etcd, load balancer, kubeadm …) describes what it would write as ``NodeFile``s;
``kha render`` mirrors them under ``OUT/nodes/<node>/`` and the install phases put them on nodes
unchanged, so what a user reviews is byte for byte what lands.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import jinja2
import yaml


@dataclass(frozen=True)
class NodeFile:
    """A file for one node at an absolute path, with its mode and owner."""

    path: str
    content: bytes
    mode: int = 0o644
    owner: str = "root"
    group: str = "root"

    def __post_init__(self) -> None:
        if not PurePosixPath(self.path).is_absolute():
            raise ValueError(f"node file path must be absolute: {self.path}")

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.content).hexdigest()


def _one_line(value: Any) -> Any:
    """Every ``{{ value }}`` a template prints: a line break in it could add a directive to the config."""
    if isinstance(value, str) and ("\n" in value or "\r" in value):
        raise ValueError(f"a template value spans lines: {value!r}")
    return value


def environment(package: str) -> jinja2.Environment:
    """A strict jinja2 environment over ``<package>/templates``: an unset variable is an error, and so is a
    printed value with a line break (templates are for line-oriented configs: haproxy, keepalived, nginx)."""
    return jinja2.Environment(
        finalize=_one_line,
        loader=jinja2.PackageLoader(package, "templates"),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,  # configs and units, not HTML
    )


def render(env: jinja2.Environment, template: str, **context: Any) -> bytes:
    return env.get_template(template).render(**context).encode()


class _Dumper(yaml.SafeDumper):
    """yaml's safe dumper; a string of several lines is written as a literal block (``|``), for readers."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    # The emitter falls back to a quoted scalar by itself when a block cannot hold the value exactly.
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|" if "\n" in value else None)


_Dumper.add_representer(str, _str)


def dump_yaml(docs: list[dict[str, Any]], header: str = "") -> bytes:
    """YAML documents from data: the dumper quotes every value, so no value can add a key or a document.
    ``header``: fixed comment lines to put first (never data)."""
    if any(line and not line.startswith("#") for line in header.splitlines()):
        raise ValueError("a YAML header is comment lines only")
    # No "---" before the first document: kubeadm 1.20 reads the header comments before it as a document of
    # their own and refuses it ("kind and apiVersion is mandatory"). Not allow_unicode: with it, yaml writes
    # a NEL (U+0085) raw inside quotes, where a reader folds it into a space.
    body = yaml.dump_all(docs, Dumper=_Dumper, sort_keys=False, default_flow_style=False, width=1 << 16)
    return (header + body).encode()


def mirror(files: dict[str, list[NodeFile]], out: Path) -> list[Path]:
    """Write each node's files under ``out/nodes/<node>/<absolute path>``; returns what was written."""
    written: list[Path] = []
    for node, items in files.items():
        for f in items:
            dest = out / "nodes" / node / f.path.lstrip("/")
            dest.parent.mkdir(parents=True, exist_ok=True)
            if not dest.exists() or dest.read_bytes() != f.content:
                dest.write_bytes(f.content)
            dest.chmod(f.mode)
            written.append(dest)
    return written
