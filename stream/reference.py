"""The configuration reference (README) generated from the settings models themselves.

    python -m stream.reference

The README's "Configuration reference" tables are this output; a test keeps them equal,
so a field added to a model without its description in the README fails the suite.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from stream.settings import PlanSettings, Settings

_RANGES = (
    ("exclusiveMinimum", "> {}"),
    ("minimum", ">= {}"),
    ("exclusiveMaximum", "< {}"),
    ("maximum", "<= {}"),
)


def _resolve(schema: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    ref = node.get("$ref")
    if ref is None:
        return node
    return schema["$defs"][ref.rsplit("/", 1)[-1]]


def _valid(node: dict[str, Any]) -> str:
    options = node.get("anyOf", [node])
    parts = []
    for option in options:
        kind = option.get("type", "")
        if kind == "null":
            parts.append("null")
            continue
        limits = [fmt.format(option[key]) for key, fmt in _RANGES if key in option]
        parts.append(" ".join([kind, *limits]).strip())
    return " or ".join(p for p in parts if p)


def _rows(
    schema: dict[str, Any], node: dict[str, Any], prefix: str, defaults: dict[str, Any]
) -> Iterator[tuple[str, ...]]:
    for name, prop in node.get("properties", {}).items():
        target = _resolve(schema, prop)
        path = f"{prefix}{name}"
        default = defaults.get(name, prop.get("default"))
        if "properties" in target:
            if prop.get("description"):
                yield path, "", "section", prop["description"]
            yield from _rows(schema, target, path + ".", default or {})
            continue
        shown = json.dumps(default, default=str)
        if target.get("type") == "object" and "additionalProperties" in target:
            shown = "see below"
        yield path, shown, _valid(target), prop.get("description", "")


def _table(rows: Iterator[tuple[str, ...]]) -> list[str]:
    lines = ["| setting | default | valid | meaning |", "|---|---|---|---|"]
    for path, default, valid, text in rows:
        shown = f"`{default}`" if default else ""
        lines.append(f"| `{path}` | {shown} | {valid} | {text} |")
    return lines


def reference() -> str:
    """Markdown tables of every setting: key, default, valid values, meaning."""
    settings = Settings.model_json_schema()
    settings["properties"].pop("source_path", None)
    plan = PlanSettings.model_json_schema()
    lines = _table(_rows(settings, settings, "", {}))
    lines += ["", "Each plan under `plans` (`default` applies to plans not listed):", ""]
    lines += _table(_rows(plan, plan, "plans.<name>.", {}))
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(reference(), end="")
