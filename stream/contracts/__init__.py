"""The JSON Schemas of what spendwatch reads and sends (ground floor: data, no imports).

``usage-event``, ``error-event`` and ``customer`` describe the input topics' records;
``alert-webhook`` the generic webhook's body (Alertmanager's version "4" format). They ship
inside the package, so an installed spendwatch and every checkout of the repository have
them; the pydantic models in :mod:`stream.core.events` and :mod:`stream.core.customers`
agree with them, and the tests check both against these files.

>>> sorted(NAMES)
['alert-webhook', 'customer', 'error-event', 'usage-event']
>>> schema("usage-event")["type"]
'object'
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

DIR = Path(__file__).resolve().parent
NAMES = frozenset(p.name.removesuffix(".schema.json") for p in DIR.glob("*.schema.json"))


def path(name: str) -> Path:
    """The schema file of contract ``name`` (e.g. ``usage-event``)."""
    if name not in NAMES:
        raise KeyError(f"no contract {name!r}; known: {', '.join(sorted(NAMES))}")
    return DIR / f"{name}.schema.json"


@cache
def schema(name: str) -> dict[str, Any]:
    """The parsed JSON Schema of contract ``name``."""
    loaded: dict[str, Any] = json.loads(path(name).read_text(encoding="utf-8"))
    return loaded
