"""JSON Schema of config/spendwatch.yaml, from the settings models (for editors and CI).

    spendwatch config schema --out config/spendwatch.schema.json

The shipped file is this output; a test keeps them equal. The YAML's first line,
``# yaml-language-server: $schema=spendwatch.schema.json``, points editors at it.

>>> schema = config_schema()
>>> schema["title"], "source_path" in schema["properties"], schema["additionalProperties"]
('spendwatch configuration', False, False)
"""

from __future__ import annotations

import json
from typing import Any

from stream.settings import Settings

DIALECT = "https://json-schema.org/draft/2020-12/schema"


def config_schema() -> dict[str, Any]:
    """The schema a config file validates against (the environment is not part of it)."""
    schema = Settings.model_json_schema()
    schema["properties"].pop("source_path", None)
    schema.pop("description", None)
    schema["title"] = "spendwatch configuration"
    schema["description"] = "config/spendwatch.yaml; see README 'Configuration reference'."
    return {"$schema": DIALECT, **schema}


def schema_text() -> str:
    return json.dumps(config_schema(), indent=2, sort_keys=False) + "\n"
