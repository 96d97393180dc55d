"""Reading YAML config files so that every error can name the file and the line.

>>> import tempfile, os
>>> with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
...     _ = f.write("buckets:\\n  width_s: -1\\n")
>>> data, lines = load_yaml(Path(f.name))
>>> data, lines[("buckets", "width_s")]
({'buckets': {'width_s': -1}}, 2)
>>> os.unlink(f.name)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

Lines = dict[tuple[str | int, ...], int]


class ConfigFileError(ValueError):
    """A config file that cannot be used; the message names file, line, field and reason."""


def load_yaml(file: Path) -> tuple[Any, Lines]:
    """The file's data, and the 1-based line of every mapping key and list item in it."""
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigFileError(f"{file}: cannot read: {exc.strerror or exc}") from None
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"{file}:{mark.line + 1}" if mark is not None else str(file)
        raise ConfigFileError(f"{where}: YAML syntax error: {exc.problem}") from None
    except yaml.YAMLError as exc:
        raise ConfigFileError(f"{file}: YAML error: {exc}") from None
    lines: Lines = {}
    if node is not None:
        _walk(node, (), lines)
    return ({} if data is None else data), lines


def _walk(node: yaml.Node, path: tuple[str | int, ...], lines: Lines) -> None:
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            child = (*path, key.value)
            lines[child] = key.start_mark.line + 1
            _walk(value, child, lines)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            lines[(*path, i)] = item.start_mark.line + 1
            _walk(item, (*path, i), lines)


def line_of(lines: Lines, loc: tuple[str | int, ...]) -> int | None:
    """The line of the deepest part of ``loc`` that is in the file."""
    for end in range(len(loc), 0, -1):
        line = lines.get(tuple(loc[:end]))
        if line is not None:
            return line
    return None


def describe_errors(file: Path, exc: ValidationError, lines: Lines, prefix: tuple = ()) -> str:
    """One line per validation error: ``file:line: field.path: reason (got value)``."""
    out = []
    for err in exc.errors(include_url=False):
        loc = (*prefix, *err["loc"])
        field = ".".join(str(part) for part in loc) or "(root)"
        line = line_of(lines, loc)
        where = f"{file}:{line}" if line else f"{file} (or its SPENDWATCH_ environment override)"
        got = "" if err["type"] == "missing" else f" (got {err.get('input')!r:.80})"
        out.append(f"{where}: {field}: {err['msg']}{got}")
    return "\n".join(out)
