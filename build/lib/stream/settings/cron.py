"""A tiny cron matcher: ``minute hour day-of-month month day-of-week``, no more.

Each field is ``*``, a number, a range ``a-b``, a step ``*/n`` or ``a-b/n``, or a comma
list of those. Day of week is 0-7 (0 and 7 are Sunday). As in Vixie cron, when both
day-of-month and day-of-week are restricted, a day matching either one matches.
Times are wall-clock fields of whatever local time the caller hands in.

>>> nightly = Cron.parse("0 2 * * *")
>>> nightly.matches(datetime(2026, 11, 2, 2, 0)), nightly.matches(datetime(2026, 11, 2, 2, 1))
(True, False)
>>> weekdays = Cron.parse("*/15 9-17 * * 1-5")
>>> weekdays.matches(datetime(2026, 11, 2, 9, 45)), weekdays.matches(datetime(2026, 11, 1, 9, 45))
(True, False)
>>> Cron.parse("0 2 * *")
Traceback (most recent call last):
...
ValueError: a cron expression has 5 fields (minute hour day-of-month month day-of-week), got 4
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

# (name, lowest, highest) of each field, in order.
_FIELDS = (
    ("minute", 0, 59),
    ("hour", 0, 23),
    ("day-of-month", 1, 31),
    ("month", 1, 12),
    ("day-of-week", 0, 7),
)


def _field(text: str, name: str, low: int, high: int) -> frozenset[int]:
    """The values one cron field allows.

    >>> sorted(_field("1-10/3,20", "minute", 0, 59))
    [1, 4, 7, 10, 20]
    """
    values: set[int] = set()
    for part in text.split(","):
        body, _, step_text = part.partition("/")
        try:
            step = int(step_text) if step_text else 1
            if body == "*":
                start, end = low, high
            elif "-" in body:
                first, _, last = body.partition("-")
                start, end = int(first), int(last)
            else:
                start = int(body)
                end = high if step_text else start
        except ValueError:
            raise ValueError(f"{name} field {text!r}: not a number, range or step") from None
        if step < 1 or not low <= start <= end <= high:
            raise ValueError(f"{name} field {text!r}: values must lie in {low}-{high}")
        values.update(range(start, end + 1, step))
    return frozenset(values)


@dataclass(frozen=True, slots=True)
class Cron:
    """The minutes a cron expression selects."""

    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 = Sunday
    any_day: bool  # day-of-month is *
    any_weekday: bool  # day-of-week is *

    @classmethod
    def parse(cls, text: str) -> Cron:
        parts = text.split()
        if len(parts) != 5:
            raise ValueError(
                "a cron expression has 5 fields (minute hour day-of-month month "
                f"day-of-week), got {len(parts)}"
            )
        minutes, hours, days, months, weekdays = (
            _field(p, *spec) for p, spec in zip(parts, _FIELDS, strict=True)
        )
        weekdays = frozenset(d % 7 for d in weekdays)  # 7 is Sunday too
        return cls(minutes, hours, days, months, weekdays, parts[2] == "*", parts[4] == "*")

    def matches(self, moment: datetime) -> bool:
        """Whether the minute of ``moment`` (its wall-clock fields) is selected."""
        if moment.minute not in self.minutes or moment.hour not in self.hours:
            return False
        if moment.month not in self.months:
            return False
        day_ok = moment.day in self.days
        weekday_ok = (moment.isoweekday() % 7) in self.weekdays
        if self.any_day or self.any_weekday:
            return day_ok and weekday_ok
        return day_ok or weekday_ok
