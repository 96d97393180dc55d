"""Worker metrics in the Prometheus text format (served on /metrics).

Every family the worker exports is declared once in :data:`FAMILIES` (name, type, HELP,
label names). :meth:`Metrics.render` writes each family as one block, ``# HELP``,
``# TYPE``, then its samples, in the declared order, and writes every declared family
from the start, so a scraper sees ``spendwatch_dead_letters_total`` before the first
dead letter. An unlabelled counter starts at 0; a family with labels has no sample until
one is written.

>>> m = Metrics()
>>> m.inc("spendwatch_events_in_total", topic="usage")
>>> m.observe("spendwatch_batch_seconds", 0.25, stage="ingest")
>>> text = m.render()
>>> print("\\n".join(line for line in text.splitlines() if "_in_total" in line or "batch" in line))
# HELP spendwatch_events_in_total Messages read, by topic.
# TYPE spendwatch_events_in_total counter
spendwatch_events_in_total{topic="usage"} 1
# HELP spendwatch_batch_seconds Time to process one batch, by stage (seconds; sum and count).
# TYPE spendwatch_batch_seconds summary
spendwatch_batch_seconds_sum{stage="ingest"} 0.25
spendwatch_batch_seconds_count{stage="ingest"} 1
>>> print("\\n".join(line for line in text.splitlines() if "dead_letters" in line))
# HELP spendwatch_dead_letters_total Messages refused to the dead-letter topic, by reason.
# TYPE spendwatch_dead_letters_total counter

A name that is not declared still renders, with a generic HELP, so a forgotten
declaration never breaks /metrics (tests/stream/test_metrics.py fails on one instead).
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from typing import Literal

Labels = tuple[tuple[str, str], ...]
Kind = Literal["counter", "gauge", "summary"]

UNDECLARED_HELP = "Not declared in stream/metrics.py."


@dataclass(frozen=True, slots=True)
class Family:
    """One metric family: a summary's samples are ``name_sum`` and ``name_count``."""

    name: str
    kind: Kind
    help: str
    labels: tuple[str, ...] = ()


FAMILIES: dict[str, Family] = {
    f.name: f
    for f in (
        # ingest
        Family("spendwatch_events_in_total", "counter", "Messages read, by topic.", ("topic",)),
        Family(
            "spendwatch_dead_letters_total",
            "counter",
            "Messages refused to the dead-letter topic, by reason.",
            ("reason",),
        ),
        Family(
            "spendwatch_batch_seconds",
            "summary",
            "Time to process one batch, by stage (seconds; sum and count).",
            ("stage",),
        ),
        # detect
        Family(
            "spendwatch_events_detected_total",
            "counter",
            "Events read by the detect stage (after ingest).",
        ),
        Family(
            "spendwatch_duplicates_total",
            "counter",
            "Events dropped as duplicates (same event_id, or re-delivered).",
        ),
        Family(
            "spendwatch_late_events_total",
            "counter",
            "Events later than the allowed lateness, dropped.",
        ),
        Family(
            "spendwatch_unknown_model_events_total",
            "counter",
            "Events priced by the price table's fallback: their model is not in it.",
        ),
        Family(
            "spendwatch_unknown_models",
            "gauge",
            "Distinct (provider, model) pairs priced by the fallback (see /health).",
        ),
        Family(
            "spendwatch_event_time_lag_seconds",
            "gauge",
            "Wall clock minus the newest event time processed (seconds).",
        ),
        # alerts
        Family(
            "spendwatch_alerts_total",
            "counter",
            "Alert transitions sent, by alertname (detector), severity and status.",
            ("alertname", "severity", "status"),
        ),
        # config
        Family(
            "spendwatch_config_info",
            "gauge",
            "Config versions seen: 1 for the one in force, 0 for those replaced.",
            ("version",),
        ),
        Family(
            "spendwatch_config_reload_total",
            "counter",
            "Config reloads, by result (applied, refused).",
            ("result",),
        ),
        # notify (the per-receiver ones are written by stream.notify.delivery)
        Family(
            "spendwatch_notifications_total",
            "counter",
            "Notifications delivered (2xx), by receiver and status (firing, resolved).",
            ("receiver", "status"),
        ),
        Family(
            "spendwatch_notifications_sent_total",
            "counter",
            "Notifications delivered (2xx), by receiver.",
            ("receiver",),
        ),
        Family(
            "spendwatch_notifications_failed_total",
            "counter",
            "Notifications refused (4xx) or given up, by receiver.",
            ("receiver",),
        ),
        Family(
            "spendwatch_notifications_dropped_total",
            "counter",
            "Notifications evicted from a full queue, by receiver.",
            ("receiver",),
        ),
        Family(
            "spendwatch_notification_retries_total",
            "counter",
            "Failed attempts that were retried, by receiver.",
            ("receiver",),
        ),
        Family(
            "spendwatch_notification_queue_depth",
            "gauge",
            "Notifications pending or in flight, by receiver.",
            ("receiver",),
        ),
        Family(
            "spendwatch_receiver_circuit_open",
            "gauge",
            "1 while the receiver's circuit breaker is open, else 0.",
            ("receiver",),
        ),
    )
}

SUMMARY_SUFFIXES = ("_sum", "_count")


def _escape(value: str) -> str:
    """A label value as the text format wants it: backslash, quote and newline escaped."""
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _number(value: float) -> str:
    """1 rather than 1.0 for whole numbers; NaN, +Inf and -Inf as Prometheus spells them."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _sample(name: str, labels: Labels, value: float) -> str:
    text = ",".join(f'{k}="{_escape(v)}"' for k, v in labels)
    return f"{name}{{{text}}} {_number(value)}" if text else f"{name} {_number(value)}"


class Metrics:
    """Counters and gauges with labels; rendering is the only I/O-shaped part."""

    def __init__(self) -> None:
        self.counters: dict[str, dict[Labels, float]] = defaultdict(dict)
        self.gauges: dict[str, dict[Labels, float]] = defaultdict(dict)
        self.summaries: set[str] = set()

    def inc(self, name: str, amount: float = 1.0, **labels: str) -> None:
        series = self.counters[name]
        key = tuple(sorted(labels.items()))
        series[key] = series.get(key, 0.0) + amount

    def set(self, name: str, value: float, **labels: str) -> None:
        self.gauges[name][tuple(sorted(labels.items()))] = value

    def observe(self, name: str, seconds: float, **labels: str) -> None:
        """A summary without quantiles: ``name_sum`` and ``name_count``."""
        self.summaries.add(name)
        self.inc(f"{name}_sum", seconds, **labels)
        self.inc(f"{name}_count", 1.0, **labels)

    def value(self, name: str, **labels: str) -> float:
        key = tuple(sorted(labels.items()))
        return self.counters.get(name, {}).get(key, self.gauges.get(name, {}).get(key, 0.0))

    def render(self) -> str:
        """The text exposition format (version 0.0.4): one block per family."""
        families = [*FAMILIES.values(), *self._undeclared()]
        lines: list[str] = []
        for family in families:
            lines.append(f"# HELP {family.name} {_escape_help(family.help)}")
            lines.append(f"# TYPE {family.name} {family.kind}")
            lines += self._samples(family)
        return "\n".join(lines) + "\n"

    def _series(self, name: str) -> dict[Labels, float]:
        # Counters win over gauges of the same name and labels, as in value().
        return {**self.gauges.get(name, {}), **self.counters.get(name, {})}

    def _samples(self, family: Family) -> list[str]:
        name = family.name
        if family.kind == "summary":
            sums, counts = self._series(f"{name}_sum"), self._series(f"{name}_count")
            out = []
            for labels in sorted(sums.keys() | counts.keys()):
                out.append(_sample(f"{name}_sum", labels, sums.get(labels, 0.0)))
                out.append(_sample(f"{name}_count", labels, counts.get(labels, 0.0)))
            return out
        series = self._series(name)
        if not series and family.kind == "counter" and not family.labels:
            series = {(): 0.0}
        return [_sample(name, labels, value) for labels, value in sorted(series.items())]

    def _undeclared(self) -> list[Family]:
        """Families for names written but not declared (a generic HELP, never a crash)."""
        known = set(FAMILIES) | {
            f.name + s for f in FAMILIES.values() if f.kind == "summary" for s in SUMMARY_SUFFIXES
        }
        out: dict[str, Family] = {}
        for base in self.summaries - known:
            out[base] = Family(base, "summary", UNDECLARED_HELP)
            known |= {base + s for s in SUMMARY_SUFFIXES}
        stores: tuple[tuple[dict[str, dict[Labels, float]], Kind], ...] = (
            (self.gauges, "gauge"),
            (self.counters, "counter"),  # after gauges: a counter wins, as in _series
        )
        for store, kind in stores:
            for name, series in store.items():
                if name not in known and series:
                    out[name] = Family(name, kind, UNDECLARED_HELP)
        return [out[name] for name in sorted(out)]
