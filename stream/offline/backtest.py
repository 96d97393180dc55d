"""Backtests: the alert episodes a replay fired, per day and per key, and how two configs differ.

Pure functions over the alert transitions a replay returned (no I/O): an episode is a
firing transition with its resolved partner (same fingerprint and start); the end stays
``None`` when the replay ended with the alert still open. Two configs' episodes are
matched by what the alert is about rather than by fingerprint (severity is a label, so a
severity change changes the fingerprint): the same ``alertname``, the same key labels
(customer_id, endpoint, provider, model) and overlapping time. An episode of the first
config that overlaps none of the second's is *removed*, one of the second overlapping none
of the first's is *added*, and an overlapping pair whose severities differ is *changed*.

>>> a = Episode("spend_spike", (("customer_id", "acme"),), "warning", 0.0, 600.0)
>>> b = Episode("spend_spike", (("customer_id", "acme"),), "critical", 300.0, None)
>>> c = Episode("retry_storm", (("customer_id", "acme"), ("endpoint", "chat")), "warning",
...             0.0, 60.0)
>>> d = compare([a, c], [b])
>>> [e.alertname for e in d.removed], d.added, [(x.severity, y.severity) for x, y in d.changed]
(['retry_storm'], [], [('warning', 'critical')])
>>> a.key_text, a.duration_s(until=900.0), b.duration_s(until=900.0)
('cus=acme', 600.0, 600.0)
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from stream.core.alerts import Alert, rfc3339

KEY_LABELS = ("customer_id", "endpoint", "provider", "model")
_SHORT = {"customer_id": "cus", "endpoint": "ep", "provider": "provider", "model": "model"}
KeyLabels = tuple[tuple[str, str], ...]


def key_of(labels: dict[str, str]) -> KeyLabels:
    """The labels that say which key an alert is about, in a fixed order."""
    return tuple((name, labels[name]) for name in KEY_LABELS if name in labels)


def key_text(key: KeyLabels) -> str:
    """A short, stable text for a key: ``cus=acme,ep=chat``."""
    return ",".join(f"{_SHORT[name]}={value}" for name, value in key)


@dataclass(frozen=True, slots=True)
class Episode:
    """One alert from firing to resolved. Times are event times, epoch seconds."""

    alertname: str
    key: KeyLabels
    severity: str
    start: float
    end: float | None  # None: still firing when the replay ended
    # Why spend moved, when the alert says (its ``attribution`` annotation); not identity.
    why: str = field(default="", compare=False)

    @property
    def identity(self) -> tuple[str, KeyLabels]:
        return self.alertname, self.key

    @property
    def key_text(self) -> str:
        return key_text(self.key)

    def duration_s(self, until: float) -> float:
        """Seconds from start to end, or to ``until`` for an episode still open."""
        return (self.end if self.end is not None else until) - self.start

    def overlaps(self, other: Episode) -> bool:
        end = math.inf if self.end is None else self.end
        other_end = math.inf if other.end is None else other.end
        # Half-open: an episode ending where another starts (a warning escalated to
        # critical) does not overlap it; one shorter than a bucket still overlaps an
        # episode it starts inside, or at the start of.
        if self.start == other.start:
            return True
        return self.start < other_end and other.start < end

    def to_json(self) -> dict[str, Any]:
        return {
            "alertname": self.alertname,
            "labels": dict(self.key),
            "severity": self.severity,
            "start": rfc3339(self.start),
            "end": None if self.end is None else rfc3339(self.end),
            **({"attribution": self.why} if self.why else {}),
        }


def episodes(alerts: Iterable[Alert]) -> list[Episode]:
    """Episodes from alert transitions, ordered by start, then key and alertname."""
    open_: dict[tuple[str, float], Alert] = {}
    done: list[Episode] = []
    for alert in alerts:
        ident = (alert.fingerprint, alert.starts_at)
        if alert.status == "firing":
            open_[ident] = alert
            continue
        fired = open_.pop(ident, alert)  # a resolution without its firing still counts
        done.append(_episode(fired, alert.ends_at))
    done += [_episode(a, None) for a in open_.values()]
    return sorted(done, key=lambda e: (e.start, e.key, e.alertname, e.severity))


def _episode(alert: Alert, end: float | None) -> Episode:
    labels = alert.labels
    why = alert.annotations.get("attribution", "") if alert.status == "firing" else ""
    return Episode(
        labels["alertname"], key_of(labels), labels["severity"], alert.starts_at, end, why
    )


def day_of(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d")


def per_day(found: Iterable[Episode]) -> Counter[tuple[str, str]]:
    """Alerts fired per (UTC day of the start, alertname)."""
    return Counter((day_of(e.start), e.alertname) for e in found)


def per_detector(found: Iterable[Episode]) -> Counter[str]:
    return Counter(e.alertname for e in found)


@dataclass
class Diff:
    """How the second config's episodes differ from the first's."""

    added: list[Episode] = field(default_factory=list)
    removed: list[Episode] = field(default_factory=list)
    changed: list[tuple[Episode, Episode]] = field(default_factory=list)  # (first, second)

    @property
    def empty(self) -> bool:
        return not (self.added or self.removed or self.changed)


def compare(first: Sequence[Episode], second: Sequence[Episode]) -> Diff:
    """Episodes added, removed and changed in severity from ``first`` to ``second``."""
    by_identity: dict[tuple[str, KeyLabels], list[Episode]] = {}
    for episode in second:
        by_identity.setdefault(episode.identity, []).append(episode)
    diff = Diff()
    matched: set[int] = set()
    for episode in first:
        overlapping = [e for e in by_identity.get(episode.identity, []) if e.overlaps(episode)]
        if not overlapping:
            diff.removed.append(episode)
        matched.update(id(e) for e in overlapping)
        diff.changed += [(episode, e) for e in overlapping if e.severity != episode.severity]
    diff.added = [e for e in second if id(e) not in matched]
    return diff


def alerted_keys(*runs: Iterable[Episode]) -> list[KeyLabels]:
    """Every key that alerted under any of the runs, sorted."""
    return sorted({e.key for run in runs for e in run})


@dataclass
class Run:
    """The episodes one config fired over the replayed period (``until``: its end, epoch s)."""

    name: str
    episodes: list[Episode]
    until: float


def _table(rows: list[tuple[str, ...]]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]


def _duration(seconds: float) -> str:
    minutes = int(round(seconds / 60))
    return f"{minutes // 60}h{minutes % 60:02d}m" if minutes >= 60 else f"{minutes}m"


def _when(t: float | None) -> str:
    return "(open)" if t is None else rfc3339(t)[:16].replace("T", " ")


def episode_rows(found: Iterable[Episode], until: float, mark: str = "") -> list[tuple[str, ...]]:
    return [
        (
            *((mark,) if mark else ()),
            e.key_text,
            e.alertname,
            e.severity,
            _when(e.start),
            _when(e.end),
            _duration(e.duration_s(until)),
        )
        for e in found
    ]


def format_text(runs: Sequence[Run], diff: Diff | None = None) -> str:
    """What a person reads: alerts per detector per day, the episodes, and the difference."""
    lines: list[str] = []
    days = sorted({day for run in runs for day, _ in per_day(run.episodes)})
    names = sorted({e.alertname for run in runs for e in run.episodes})
    lines.append("Alerts fired per detector per day (UTC)")
    header = ("DAY", "DETECTOR", *(f"[{i + 1}] {r.name}" for i, r in enumerate(runs)))
    rows: list[tuple[str, ...]] = [header]
    counts = [per_day(run.episodes) for run in runs]
    for day in days:
        for name in names:
            if any(c[day, name] for c in counts):
                rows.append((day, name, *(str(c[day, name]) for c in counts)))
    rows.append(("total", "", *(str(len(r.episodes)) for r in runs)))
    lines += _table(rows)
    head = ("KEY", "DETECTOR", "SEVERITY", "START", "END", "DURATION")
    for i, run in enumerate(runs):
        lines += ["", f"Episodes under [{i + 1}] {run.name}: {len(run.episodes)}"]
        if run.episodes:
            lines += _table([head, *episode_rows(run.episodes, run.until)])
            lines += [
                f"  why {e.key_text} {e.alertname} {_when(e.start)}: {e.why}"
                for e in run.episodes
                if e.why
            ]
    if diff is not None:
        lines += ["", f"Difference [1] -> [2]: {_diff_summary(diff)}"]
        until = max(r.until for r in runs)
        rows = [("", *head)]
        rows += episode_rows(diff.removed, until, "-")
        rows += episode_rows(diff.added, until, "+")
        for before, after in diff.changed:
            rows += episode_rows([after], until, f"~ {before.severity}->")
        if len(rows) > 1:
            lines += _table(rows)
    return "\n".join(lines) + "\n"


def _diff_summary(diff: Diff) -> str:
    return (
        f"{len(diff.added)} added, {len(diff.removed)} removed, "
        f"{len(diff.changed)} changed severity"
    )


def to_json(runs: Sequence[Run], diff: Diff | None = None) -> dict[str, Any]:
    """The same content as :func:`format_text`, as one JSON-ready mapping."""
    out: dict[str, Any] = {
        "runs": [
            {
                "config": run.name,
                "alerts_per_day": [
                    {"day": day, "alertname": name, "alerts": n}
                    for (day, name), n in sorted(per_day(run.episodes).items())
                ],
                "episodes": [
                    {**e.to_json(), "duration_s": e.duration_s(run.until)} for e in run.episodes
                ],
            }
            for run in runs
        ]
    }
    if diff is not None:
        out["diff"] = {
            "added": [e.to_json() for e in diff.added],
            "removed": [e.to_json() for e in diff.removed],
            "changed": [{"before": a.to_json(), "after": b.to_json()} for a, b in diff.changed],
        }
    return out
