"""Hypothesis budgets for the fuzz suite, chosen by the environment variable SPENDWATCH_FUZZ.

- ``default`` (unset; ``make test``): few examples, derandomized, no example database, so
  CI runs the same examples every time and tests/fuzz/ takes about half a minute;
- ``long`` (``make fuzz``): 50 times the examples, random, failures kept in .hypothesis/.

The tests take the profile named ``fuzz`` (never loaded globally: the rest of the suite
keeps its own hypothesis settings); costly tests run a fraction of its examples.
"""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, settings

EXAMPLES = 100
# Messages of 64 KiB and four-hour replays are slow and large by design.
_SLOW = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example]

settings.register_profile(
    "fuzz-default",
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=_SLOW,
)
settings.register_profile(
    "fuzz-long",
    max_examples=50 * EXAMPLES,
    deadline=None,
    derandomize=False,
    suppress_health_check=_SLOW,
)

_CHOSEN = os.environ.get("SPENDWATCH_FUZZ") or "default"
if _CHOSEN not in ("default", "long"):
    raise pytest.UsageError(f"SPENDWATCH_FUZZ={_CHOSEN!r}: expected 'default' or 'long'")
settings.register_profile("fuzz", parent=settings.get_profile(f"fuzz-{_CHOSEN}"))
