"""The configuration reference (README) generated from the settings models themselves.

    python -m stream.commands.reference

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


def _ref(node: dict[str, Any]) -> str | None:
    """The model a field holds: ``$ref``, or the one ``$ref`` of an optional (ref | null)."""
    if "$ref" in node:
        return node["$ref"].rsplit("/", 1)[-1]
    refs = [o["$ref"] for o in node.get("anyOf", []) if "$ref" in o]
    others = [o for o in node.get("anyOf", []) if "$ref" not in o]
    if len(refs) == 1 and all(o.get("type") == "null" for o in others):
        return refs[0].rsplit("/", 1)[-1]
    return None


def _resolve(schema: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    ref = _ref(node)
    return node if ref is None else schema["$defs"][ref]


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
    schema: dict[str, Any],
    node: dict[str, Any],
    prefix: str,
    defaults: dict[str, Any],
    expanding: tuple[str, ...] = (),
) -> Iterator[tuple[str, ...]]:
    in_item = "[]." in prefix
    for name, prop in node.get("properties", {}).items():
        target = _resolve(schema, prop)
        path = f"{prefix}{name}"
        default = defaults.get(name, prop.get("default"))
        if "properties" in target:
            valid = "section" if "$ref" in prop else "section or null"
            if in_item:  # inside a list item, a nested section is one row
                yield path, "", valid, prop.get("description", "")
                continue
            if prop.get("description"):
                yield path, "", valid, prop["description"]
            inner = (*expanding, _ref(prop) or "")
            yield from _rows(schema, target, path + ".", default or {}, inner)
            continue
        shown = json.dumps(default, default=str)
        if target.get("type") == "object" and "additionalProperties" in target:
            shown = "see below"
        valid = _valid(target)
        if name in node.get("required", ()):
            shown, valid = "", f"required {valid}"
        yield path, shown, valid, prop.get("description", "")
        # A list of models (not inside another list): a row per field of an item, path[].field.
        item = _ref(target.get("items", {})) if target.get("type") == "array" else None
        if item is not None and item not in expanding and not in_item:
            item_schema = schema["$defs"][item]
            yield from _rows(schema, item_schema, path + "[].", {}, (*expanding, item))


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
