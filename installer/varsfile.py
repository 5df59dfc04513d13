"""kubeadm-ha's variables file (``-e @example/variables.yaml``): a YAML mapping of variable → value.

This module owns reading that file and the ``-e @FILE`` / ``--vars FILE`` flags. Values become the same
``inventory.Value`` an ``[all:vars]`` line gives, with their YAML line kept (``FileLine``), so a bad value
is reported as ``variables.yaml:LINE``. Ansible's precedence holds: extra vars override the inventory's
group vars (https://docs.ansible.com/ansible/latest/playbook_guide/playbooks_variables.html#understanding-variable-precedence),
and of several files the later wins.

YAML values are turned into the text an ``[all:vars]`` line would hold (``as_text``): booleans as
``true``/``false``, numbers as written, lists and mappings as JSON, an empty value as ``""``.
"""

from __future__ import annotations

import argparse
import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from core.errors import InputError
from installer.errors import ConfigError, Problem
from installer.inventory import FileLine, Value

__all__ = ["add_arguments", "as_text", "files_from_args", "merge", "read"]

_VAR_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def as_text(value: Any) -> str:
    """A YAML value as the text an ``[all:vars]`` line would hold."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, int | float):
        return str(value)
    return json.dumps(value, sort_keys=True, default=str)


def read(path: str | Path) -> dict[str, Value]:
    """The variables of one file. Raises ConfigError (FILE:LINE) for a YAML error or a non-mapping."""
    p = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError([Problem(p, None, "no such variables file")]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([Problem(p, None, f"cannot read variables file: {exc}")]) from None
    loader = yaml.SafeLoader(text)
    problems: list[Problem] = []
    out: dict[str, Value] = {}
    try:
        root = loader.get_single_node()
        if root is None:
            return {}  # kubeadm-ha's stock file: every line commented out
        if not isinstance(root, yaml.MappingNode):
            raise ConfigError([Problem(p, root.start_mark.line + 1, "expected a mapping of variable: value "
                                       f"(as kubeadm-ha's example/variables.yaml), got a YAML "
                                       f"{'list' if isinstance(root, yaml.SequenceNode) else 'scalar'}")])
        loader.flatten_mapping(root)  # merge keys (<<: *anchor), as Ansible's loader allows
        for key_node, value_node in root.value:
            line = FileLine(key_node.start_mark.line + 1, p)
            key = loader.construct_object(key_node, deep=True)
            if not isinstance(key, str) or not _VAR_NAME.fullmatch(key):
                problems.append(Problem(p, line, f"{key!r} is not a variable name (letters, digits, '_')"))
                continue
            if key.startswith("ansible_"):
                problems.append(Problem(p, line, "connection variables belong on the host lines in [all] of the "
                                        "inventory, not in the variables file", key))
                continue
            if key in out:
                problems.append(Problem(p, line, f"{key} is set twice (also at line {out[key].line}); keep one", key))
                continue
            out[key] = Value(as_text(loader.construct_object(value_node, deep=True)), line)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        what = getattr(exc, "problem", None) or str(exc)
        at = mark.line + 1 if mark is not None else None
        raise ConfigError([Problem(p, at, f"not valid YAML: {what}")]) from None
    finally:
        loader.dispose()
    if problems:
        raise ConfigError(problems)
    return out


def merge(group_vars: Mapping[str, Value], files: Sequence[str | Path]) -> dict[str, Value]:
    """The inventory's ``[all:vars]`` overridden by each file in turn (Ansible's extra vars win)."""
    out = dict(group_vars)
    for f in files:
        out.update(read(f))
    return out


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``-e @FILE`` (Ansible's spelling, repeatable) and ``--vars FILE``: both land in ``args.extra_vars``."""
    parser.add_argument("-e", "--extra-vars", dest="extra_vars", action="append", default=[], metavar="@FILE",
                        help="kubeadm-ha variables file (YAML), e.g. -e @example/variables.yaml; overrides "
                             "[all:vars] (repeatable, the later wins)")
    parser.add_argument("--vars", dest="extra_vars", action="append", type=lambda f: "@" + f, metavar="FILE",
                        help="the same as -e @FILE")


def files_from_args(args: argparse.Namespace) -> list[str]:
    """The variables files named by ``-e @FILE`` / ``--vars FILE``, in order. ``-e key=value`` is refused."""
    out = []
    for item in getattr(args, "extra_vars", None) or []:
        if not item.startswith("@") or len(item) == 1:
            raise InputError(f"-e {item}: kha reads -e @FILE (a YAML file of variables, as kubeadm-ha's "
                             "example/variables.yaml); put single variables in that file or in [all:vars]")
        out.append(item[1:])
    return out
