"""Planned windows: mute a detector, or relax its thresholds, for matching keys on a schedule.

A window is either recurring (``cron`` in the window's ``timezone`` plus a ``duration``)
or one-off (``start`` and ``end``; times without an offset are in ``timezone``). Windows
are judged on event time (the bucket's start), never the wall clock, so replays agree
with the live worker. Cron fields are local wall-clock time: a time a DST change skips
does not occur that day, a repeated one opens the window at each occurrence; the
duration is elapsed time.

>>> from datetime import UTC
>>> w = Window(match={"customer_id": "acme"}, mute=["spend_spike"],
...            cron="0 2 * * *", duration="2h", timezone="Europe/Berlin")
>>> summer = datetime(2026, 7, 1, 0, 30, tzinfo=UTC).timestamp()   # 02:30 in Berlin (CEST)
>>> winter = datetime(2026, 12, 1, 0, 30, tzinfo=UTC).timestamp()  # 01:30 in Berlin (CET)
>>> w.active(summer), w.active(winter), w.active(winter + 3600)
(True, False, True)
>>> parse_duration("1h30m"), parse_duration("45s"), parse_duration(90)
(5400.0, 45.0, 90.0)
"""

from __future__ import annotations

import bisect
import re
from datetime import datetime
from functools import cached_property
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, WithJsonSchema, field_validator, model_validator

from stream.settings.cron import Cron
from stream.settings.overrides import DETECTORS, Match, Patches

DetectorName = Literal[
    "spend_spike", "cost_shift", "retry_storm", "retry_storm_global", "margin_breach"
]
_UNITS = {"d": 86_400.0, "h": 3600.0, "m": 60.0, "s": 1.0}
_DURATION = re.compile(r"(?:(\d+(?:\.\d+)?)([dhms]))+?")
MAX_DURATION_S = 31 * 86_400.0


def parse_duration(value: str | float) -> float:
    """Seconds from ``90`` (seconds) or text such as ``2h``, ``1h30m``, ``1d``, ``45s``."""
    if isinstance(value, int | float):
        return float(value)
    text = value.strip().replace(" ", "")
    parts = _DURATION.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"not a duration: {value!r}; write e.g. 90m, 2h, 1h30m, 1d")
    return sum(float(n) * _UNITS[u] for n, u in parts)


class Window(Patches):
    """One planned window of ``detectors.windows``."""

    name: str = Field(default="", description="Shown by `config explain`.")
    match: Match = Field(default_factory=Match, description="Keys the window applies to.")
    mute: list[DetectorName] = Field(
        default_factory=list, description="Detectors that start no alert while open."
    )
    timezone: str = Field(default="UTC", description="IANA zone of cron, start and end.")
    cron: str | None = Field(
        default=None, description="When it opens: minute hour day month weekday."
    )
    duration: Annotated[
        float | None,
        WithJsonSchema(
            {
                "anyOf": [
                    {"type": "number", "exclusiveMinimum": 0, "maximum": MAX_DURATION_S},
                    {"type": "string", "pattern": r"^(\d+(\.\d+)?[dhms])+$"},
                    {"type": "null"},
                ]
            }
        ),
    ] = Field(
        default=None, gt=0, le=MAX_DURATION_S, description="How long it stays open (2h, 90m)."
    )
    start: datetime | None = Field(default=None, description="One-off window: opens at.")
    end: datetime | None = Field(default=None, description="One-off window: closes at.")

    @field_validator("timezone")
    @classmethod
    def _zone_exists(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"unknown time zone {value!r}; use an IANA name such as Europe/Berlin or UTC"
            ) from None
        return value

    @field_validator("cron")
    @classmethod
    def _cron_parses(cls, value: str | None) -> str | None:
        if value is not None:
            Cron.parse(value)
        return value

    @field_validator("duration", mode="before")
    @classmethod
    def _duration_parses(cls, value: object) -> object:
        return parse_duration(value) if isinstance(value, str) else value

    @model_validator(mode="after")
    def _one_schedule(self) -> Window:
        recurring = self.cron is not None or self.duration is not None
        one_off = self.start is not None or self.end is not None
        if recurring == one_off or (recurring and (self.cron is None or self.duration is None)):
            raise ValueError("a window needs either cron and duration, or start and end")
        if one_off and (self.start is None or self.end is None or self.end <= self.start):
            raise ValueError("a one-off window needs start and an end after it")
        if not self.mute and not any(self.patch(d) for d in DETECTORS):
            raise ValueError("a window must mute a detector or set parameters for one")
        return self

    @cached_property
    def _zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @cached_property
    def _cron(self) -> Cron | None:
        return None if self.cron is None else Cron.parse(self.cron)

    def _epoch(self, moment: datetime) -> float:
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=self._zone)
        return moment.timestamp()

    def active(self, t: float) -> bool:
        """Whether the window is open at event time ``t`` (epoch seconds)."""
        cron = self._cron
        if cron is None:
            assert self.start is not None and self.end is not None
            return self._epoch(self.start) <= t < self._epoch(self.end)
        assert self.duration is not None
        return self.opened_at(cron, t) is not None

    def opened_at(self, cron: Cron, t: float) -> float | None:
        """The latest cron minute ``s`` with ``s <= t < s + duration``, or None.

        Walks back an hour at a time (a minute-by-minute walk would cost the duration in
        minutes per bucket): within an hour the cron allows, the latest allowed minute.
        """
        assert self.duration is not None
        minutes = sorted(cron.minutes)
        s = float(int(t // 60) * 60)
        earliest = t - self.duration
        while s > earliest:
            local = datetime.fromtimestamp(s, self._zone)
            at = bisect.bisect_right(minutes, local.minute) - 1
            day_hour_ok = local.hour in cron.hours and cron.matches(
                local.replace(minute=minutes[at]) if at >= 0 else local
            )
            if at >= 0 and day_hour_ok:
                opened = s - (local.minute - minutes[at]) * 60
                return opened if opened > earliest else None
            s -= local.minute * 60 + 60  # the last minute of the previous local hour
        return None
