"""The shared contracts (JSON Schemas) the tests check against."""

from __future__ import annotations

import json
import os
from functools import cache
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def contracts_dir() -> Path:
    """shared/contracts beside the repo (CI lays shared/ next to the clone)."""
    env = os.environ.get("SPENDWATCH_CONTRACTS_DIR")
    candidates = [Path(env)] if env else []
    candidates += [REPO.parent / "shared" / "contracts", REPO / "shared" / "contracts"]
    for path in candidates:
        if path.is_dir():
            return path
    raise FileNotFoundError(f"shared/contracts not found in {candidates}")


@cache
def schema(name: str) -> dict:
    return json.loads((contracts_dir() / f"{name}.schema.json").read_text())
