"""Config files for CLI tests: the repo's prices, the given notify section, no secrets."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from stream.settings import CONFIG_DIR


def write_config(folder: Path, notify: dict[str, Any], **top: Any) -> Path:
    """A spendwatch.yaml in ``folder`` with ``notify`` (and other top-level settings)."""
    path = folder / "spendwatch.yaml"
    data = {"prices_file": str(CONFIG_DIR / "prices.yaml"), **top, "notify": notify}
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path
