"""Per-key threshold overrides: which keys a rule matches, and the parameters it sets.

``detectors.overrides`` in config/spendwatch.yaml is an ordered list; each item has a
``match`` (customer_id, endpoint, provider, model, plan) and, per detector, only the
parameters it changes. Each match value is one of:

- an exact value: ``acme``
- a glob (contains ``*``, ``?`` or ``[``): ``acme-*``
- a regular expression between slashes, anchored at both ends: ``/acme-(eu|us)/``

>>> m = Match(customer_id="/acme-(eu|us)/", endpoint="batch*")
>>> m.matches({"customer_id": "acme-eu", "endpoint": "batch-nightly"})
True
>>> m.matches({"customer_id": "acme-asia", "endpoint": "batch"}), m.describe()
(False, 'customer_id=/acme-(eu|us)/, endpoint=batch*')
>>> free = Override(match={"plan": "free"}, spend_spike={"absolute_usd_per_hour": 0.21})
>>> free.patch("spend_spike")
{'absolute_usd_per_hour': 0.21}

A field the key does not have never matches (spend per customer has no endpoint).
"""

from __future__ import annotations

import dataclasses
import fnmatch
import re
from collections.abc import Callable, Mapping
from typing import Any, get_type_hints

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, create_model, field_validator

from detectors.cost_shift import CostShiftParams
from detectors.margin_breach import MarginBreachParams
from detectors.retry_storm import RetryStormParams
from detectors.spend_spike import SpendSpikeParams

MATCH_FIELDS = ("customer_id", "endpoint", "provider", "model", "plan")
# Each detector setting, the parameters it takes, and the key labels its keys carry.
DETECTORS: dict[str, type] = {
    "spend_spike": SpendSpikeParams,
    "cost_shift": CostShiftParams,
    "retry_storm": RetryStormParams,
    "retry_storm_global": RetryStormParams,
    "margin_breach": MarginBreachParams,
}
KEY_FIELDS: dict[str, tuple[str, ...]] = {
    "spend_spike": ("customer_id", "endpoint", "plan"),  # endpoint only per endpoint
    "cost_shift": ("customer_id", "endpoint", "plan"),
    "retry_storm": ("customer_id", "endpoint", "plan"),
    "retry_storm_global": ("provider", "model"),
    "margin_breach": ("customer_id", "plan"),
}
PATTERN_HELP = "an exact value, a glob such as acme-*, or a regex between slashes: /^acme-.*$/"


def compile_pattern(text: str) -> Callable[[str], bool]:
    """A test for one match value: exact, glob or ``/regex/`` (anchored)."""
    if len(text) >= 2 and text.startswith("/") and text.endswith("/"):
        try:
            regex = re.compile(text[1:-1])
        except re.error as exc:
            raise ValueError(
                f"not a valid regular expression ({exc}); use {PATTERN_HELP}"
            ) from None
        return lambda value: regex.fullmatch(value) is not None
    if any(c in text for c in "*?["):
        glob = re.compile(fnmatch.translate(text))
        return lambda value: glob.match(value) is not None
    return text.__eq__


def is_literal(text: str) -> bool:
    return not (text.startswith("/") and text.endswith("/") and len(text) >= 2) and not any(
        c in text for c in "*?["
    )


class Match(BaseModel):
    """Which keys a rule applies to: every field given must match (empty: every key)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    customer_id: str | None = Field(default=None, description="Customer id pattern.")
    endpoint: str | None = Field(default=None, description="Endpoint pattern.")
    provider: str | None = Field(default=None, description="Provider pattern.")
    model: str | None = Field(default=None, description="Model pattern.")
    plan: str | None = Field(default=None, description="Plan name pattern.")
    _tests: tuple[tuple[str, Callable[[str], bool]], ...] = PrivateAttr(default=())

    @field_validator(*MATCH_FIELDS)
    @classmethod
    def _pattern_compiles(cls, value: str | None) -> str | None:
        if value is not None:
            compile_pattern(value)
        return value

    def model_post_init(self, context: Any) -> None:
        self._tests = tuple((name, compile_pattern(value)) for name, value in self.given().items())

    def given(self) -> dict[str, str]:
        return {name: v for name in MATCH_FIELDS if (v := getattr(self, name)) is not None}

    def matches(self, labels: Mapping[str, str | None]) -> bool:
        for name, test in self._tests:
            value = labels.get(name)
            if value is None or not test(value):
                return False
        return True

    def describe(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.given().items()) or "every key"

    def covers(self, other: Match) -> bool:
        """True when every key ``other`` matches is matched by this one too (conservative)."""
        mine, theirs = self.given(), other.given()
        for name, pattern in mine.items():
            value = theirs.get(name)
            if value is None:
                return False
            if value != pattern and not (is_literal(value) and compile_pattern(pattern)(value)):
                return False
        return True


def _patch_model(name: str, params: type) -> type[BaseModel]:
    """A model of the same fields as ``params`` (same types, ranges, text), all optional:
    an override states only what it changes."""
    hints = get_type_hints(params, include_extras=True)
    fields: dict[str, Any] = {f.name: (hints[f.name], None) for f in dataclasses.fields(params)}
    return create_model(name, __config__=ConfigDict(extra="forbid"), **fields)


SpendSpikePatch = _patch_model("SpendSpikePatch", SpendSpikeParams)
CostShiftPatch = _patch_model("CostShiftPatch", CostShiftParams)
RetryStormPatch = _patch_model("RetryStormPatch", RetryStormParams)
MarginBreachPatch = _patch_model("MarginBreachPatch", MarginBreachParams)


class Patches(BaseModel):
    """Per detector, the parameters a rule changes (only those written are changed)."""

    model_config = ConfigDict(extra="forbid")

    spend_spike: SpendSpikePatch | None = Field(  # type: ignore[valid-type]
        default=None, description="spend_spike parameters to change (as in its section)."
    )
    cost_shift: CostShiftPatch | None = Field(  # type: ignore[valid-type]
        default=None,
        description="cost_shift parameters to change (accept_from: accept a key's new level).",
    )
    retry_storm: RetryStormPatch | None = Field(  # type: ignore[valid-type]
        default=None, description="retry_storm parameters to change."
    )
    retry_storm_global: RetryStormPatch | None = Field(  # type: ignore[valid-type]
        default=None, description="retry_storm_global parameters to change."
    )
    margin_breach: MarginBreachPatch | None = Field(  # type: ignore[valid-type]
        default=None, description="margin_breach parameters to change."
    )

    def patch(self, detector: str) -> dict[str, Any]:
        """The parameters this rule sets for ``detector`` (those written in the file)."""
        given = getattr(self, detector)
        return {} if given is None else given.model_dump(exclude_unset=True)


class Override(Patches):
    """One rule of ``detectors.overrides``: keys it matches, parameters it sets."""

    match: Match = Field(description="Keys this override applies to.")
