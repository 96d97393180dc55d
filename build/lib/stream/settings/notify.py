"""Notify configuration: the route tree, inhibition rules, static silences and receivers.

Modelled on Alertmanager's configuration. Matchers are Alertmanager strings
(``label="value"``, ``label!="value"``, ``label=~"regex"``, ``label!~"regex"``; a regex
must match the whole value). A child route leaves a field unset (None) to inherit it
from its parent; the root falls back to the named defaults (30 s / 5 min / 4 h).

>>> m = Matcher.parse('customer_id=~"acme|initech"')
>>> m.op, m.matches({"customer_id": "acme"}), m.matches({"customer_id": "acme-2"})
('=~', True, False)
>>> s = NotifySettings(route={"receivers": ["pd"]}, receivers=[{"name": "pd", "kind": "pagerduty"}])
>>> s.route.receivers, s.inhibit_rules[0].equal
(['pd'], ['alertname', 'customer_id'])
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator, Mapping
from datetime import datetime
from functools import lru_cache
from typing import Annotated, Literal

from pydantic import (
    AliasChoices,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from stream.settings.receivers import ReceiverSettings

DEFAULT_GROUP_BY = ["customer_id"]
DEFAULT_GROUP_WAIT_S = 30.0
DEFAULT_GROUP_INTERVAL_S = 300.0
DEFAULT_REPEAT_INTERVAL_S = 14_400.0
ALL_LABELS = "..."

_MATCHER = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*(.*?)\s*$", re.DOTALL)
_ESCAPES = {'"': '"', "\\": "\\", "n": "\n"}


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _unquote(text: str) -> str:
    if len(text) >= 2 and text[0] == text[-1] == '"':
        body = text[1:-1]
        # \" \\ \n are escapes; any other backslash stays (so regex classes like \d work).
        return re.sub(r"\\(.)", lambda m: _ESCAPES.get(m[1], "\\" + m[1]), body)
    if '"' in text:
        raise ValueError("unbalanced quotes")
    return text


class Matcher(Section):
    """One label condition; a missing label counts as the empty string (as in Alertmanager)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Annotated[str, Field(min_length=1, description="Label name.")]
    op: Annotated[Literal["=", "!=", "=~", "!~"], Field(description="Comparison.")] = "="
    value: Annotated[str, Field(description="Value, or a regex matched in full.")] = ""

    @model_validator(mode="after")
    def _regex_compiles(self) -> Matcher:
        if self.op in ("=~", "!~"):
            try:
                _compiled(self.value)
            except re.error as exc:
                raise ValueError(f"invalid regex {self.value!r}: {exc}") from None
        return self

    @classmethod
    def parse(cls, text: str) -> Matcher:
        """A matcher from ``label="value"`` (also ``!=``, ``=~``, ``!~``; quotes optional)."""
        return _parse(text)

    def matches(self, labels: Mapping[str, str]) -> bool:
        value = labels.get(self.name, "")
        if self.op == "=":
            return value == self.value
        if self.op == "!=":
            return value != self.value
        found = _compiled(self.value).fullmatch(value) is not None
        return found if self.op == "=~" else not found

    def __str__(self) -> str:
        escaped = self.value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
        return f'{self.name}{self.op}"{escaped}"'


@lru_cache(maxsize=1024)
def _compiled(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


@lru_cache(maxsize=4096)
def _parse(text: str) -> Matcher:
    found = _MATCHER.match(text)
    if found is None:
        raise ValueError(
            f'bad matcher {text!r}: expected label="value", label!="value", '
            f'label=~"regex" or label!~"regex"'
        )
    name, op, raw = found.groups()
    try:
        return Matcher.model_validate({"name": name, "op": op, "value": _unquote(raw)})
    except ValueError as exc:
        reason = exc.errors()[0]["msg"] if hasattr(exc, "errors") else str(exc)
        raise ValueError(f"bad matcher {text!r}: {reason.removeprefix('Value error, ')}") from None


def parse_matchers(texts: list[str] | tuple[str, ...]) -> tuple[Matcher, ...]:
    """Parsed matchers (cached); raises ValueError naming the bad one."""
    return tuple(_parse(t) for t in texts)


def matches_all(matchers: tuple[Matcher, ...], labels: Mapping[str, str]) -> bool:
    return all(m.matches(labels) for m in matchers)


def _check_matchers(texts: list[str]) -> list[str]:
    parse_matchers(texts)
    return texts


class Route(Section):
    """A node of the routing tree: which alerts it takes, who gets them, and when."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    name: Annotated[
        str | None, Field(min_length=1, description="Optional; unique across the tree.")
    ] = None
    matchers: Annotated[
        list[str],
        Field(description='Alerts this route takes, e.g. severity="critical"; all must match.'),
    ] = []
    receivers: Annotated[
        list[str] | None,
        Field(description="Receiver names notified; unset: the parent's."),
    ] = None
    continue_: Annotated[
        bool,
        Field(
            alias="continue",
            description="After matching, also try the next sibling routes.",
        ),
    ] = False
    group_by: Annotated[
        list[str] | None,
        Field(description='Labels one notification groups by; ["..."]: all labels.'),
    ] = None
    group_wait_s: Annotated[
        float | None,
        Field(ge=0, description="Wait before a new group's first notification, s."),
    ] = None
    group_interval_s: Annotated[
        float | None,
        Field(gt=0, description="Wait before notifying a group's changes, s."),
    ] = None
    repeat_interval_s: Annotated[
        float | None,
        Field(gt=0, description="Re-send an unchanged firing group after, s."),
    ] = None
    routes: Annotated[
        list[Route], Field(description="Child routes; the first that matches wins.")
    ] = []

    _check = field_validator("matchers")(_check_matchers)

    def walk(self, path: str = "route") -> Iterator[tuple[str, Route]]:
        """This route and its descendants, depth first, with their config paths."""
        yield path, self
        for i, child in enumerate(self.routes):
            yield from child.walk(f"{path}.routes[{i}]")


def _default_route() -> Route:
    return Route(
        receivers=[],
        group_by=list(DEFAULT_GROUP_BY),
        group_wait_s=DEFAULT_GROUP_WAIT_S,
        group_interval_s=DEFAULT_GROUP_INTERVAL_S,
        repeat_interval_s=DEFAULT_REPEAT_INTERVAL_S,
    )


class InhibitRule(Section):
    """Firing alerts matching ``source_matchers`` mute alerts matching ``target_matchers``."""

    source_matchers: Annotated[
        list[str], Field(min_length=1, description="The muting (usually more severe) alerts.")
    ]
    target_matchers: Annotated[list[str], Field(min_length=1, description="The muted alerts.")]
    equal: Annotated[
        list[str], Field(description="Labels that must be equal in source and target.")
    ] = []

    _check = field_validator("source_matchers", "target_matchers")(_check_matchers)


def _default_inhibit_rules() -> list[InhibitRule]:
    return [
        InhibitRule(
            source_matchers=['severity="critical"'],
            target_matchers=['severity="warning"'],
            equal=["alertname", "customer_id"],
        )
    ]


class SilenceSpec(Section):
    """A silence written in the config (planned maintenance, batch windows)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    id: Annotated[
        str | None,
        Field(min_length=1, description="Stable id; unset: derived from the silence itself."),
    ] = None
    matchers: Annotated[list[str], Field(min_length=1, description="Alerts muted; all must match.")]
    starts_at: Annotated[AwareDatetime, Field(description="RFC 3339 or epoch seconds.")]
    ends_at: Annotated[AwareDatetime, Field(description="RFC 3339 or epoch seconds.")]
    created_by: Annotated[
        str,
        Field(
            min_length=1,
            validation_alias=AliasChoices("created_by", "author"),
            description="Who (also accepted as author).",
        ),
    ]
    comment: Annotated[str, Field(min_length=1, description="Why.")]

    _check = field_validator("matchers")(_check_matchers)

    @model_validator(mode="after")
    def _ends_after_start(self) -> SilenceSpec:
        if self.ends_at <= self.starts_at:
            raise ValueError(
                f"silence {self.id or self.matchers}: ends_at {self.ends_at.isoformat()} "
                f"must be after starts_at {self.starts_at.isoformat()}"
            )
        return self

    def silence_id(self) -> str:
        if self.id:
            return self.id
        text = "|".join([*self.matchers, _epoch(self.starts_at), _epoch(self.ends_at)])
        return "static-" + hashlib.sha256(text.encode()).hexdigest()[:12]


def _epoch(t: datetime) -> str:
    return repr(t.timestamp())


class NotifySettings(Section):
    """Alert delivery: the route tree, the receivers, inhibition and static silences."""

    route: Annotated[
        Route, Field(description="The root route: takes every alert; children refine.")
    ] = Field(default_factory=_default_route)
    receivers: Annotated[
        list[ReceiverSettings], Field(description="Named receivers routes refer to.")
    ] = []
    inhibit_rules: Annotated[
        list[InhibitRule], Field(description="Firing alerts that mute others.")
    ] = Field(default_factory=_default_inhibit_rules)
    silences: Annotated[
        list[SilenceSpec], Field(description="Static silences (maintenance windows).")
    ] = []

    @model_validator(mode="after")
    def _references_resolve(self) -> NotifySettings:
        if self.route.matchers:
            raise ValueError("route (the root) takes every alert: it must have no matchers")
        names = [r.name for r in self.receivers]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"receivers: names must be unique; repeated: {', '.join(dupes)}")
        seen: dict[str, str] = {}
        for path, route in self.route.walk("notify.route"):
            if route.name is not None:
                if route.name in seen:
                    raise ValueError(
                        f"{path}: route name {route.name!r} is already used by {seen[route.name]}"
                    )
                seen[route.name] = path
            for receiver in route.receivers or []:
                if receiver not in names:
                    label = f"route {route.name!r} ({path})" if route.name else f"route {path}"
                    defined = ", ".join(names) or "none"
                    raise ValueError(
                        f"{label} names receiver {receiver!r}, which is not defined in "
                        f"notify.receivers (defined: {defined})"
                    )
        return self
