"""Worker metrics in the Prometheus text format (served on /metrics).

>>> m = Metrics()
>>> m.inc("spendwatch_events_in_total", topic="usage")
>>> m.set("spendwatch_event_time_lag_seconds", 2.5)
>>> print(m.render(), end="")
# HELP spendwatch_event_time_lag_seconds Wall clock minus the newest event time processed.
# TYPE spendwatch_event_time_lag_seconds gauge
spendwatch_event_time_lag_seconds 2.5
# HELP spendwatch_events_in_total Messages read, by topic.
# TYPE spendwatch_events_in_total counter
spendwatch_events_in_total{topic="usage"} 1
"""

from __future__ import annotations

from collections import defaultdict

Labels = tuple[tuple[str, str], ...]

HELP = {
    "spendwatch_events_in_total": "Messages read, by topic.",
    "spendwatch_dead_letters_total": "Messages refused to the dead-letter topic, by reason.",
    "spendwatch_events_detected_total": "Events read by the detect stage (after ingest).",
    "spendwatch_duplicates_total": "Events dropped as duplicates (same event_id, or re-delivered).",
    "spendwatch_late_events_total": "Events later than the allowed lateness, dropped.",
    "spendwatch_alerts_total": "Alert transitions sent, by detector, severity and status.",
    "spendwatch_event_time_lag_seconds": "Wall clock minus the newest event time processed.",
    "spendwatch_batch_seconds": "Time to process one batch, by stage (sum and count).",
    "spendwatch_config_info": "Config in force.",
    "spendwatch_config_reload_total": "Config reloads, by result (applied, refused).",
    "spendwatch_notifications_total": "Notifications delivered (2xx), by receiver and status.",
}


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


class Metrics:
    """Counters and gauges with labels; rendering is the only I/O-shaped part."""

    def __init__(self) -> None:
        self.counters: dict[str, dict[Labels, float]] = defaultdict(dict)
        self.gauges: dict[str, dict[Labels, float]] = defaultdict(dict)

    def inc(self, name: str, amount: float = 1.0, **labels: str) -> None:
        series = self.counters[name]
        key = tuple(sorted(labels.items()))
        series[key] = series.get(key, 0.0) + amount

    def set(self, name: str, value: float, **labels: str) -> None:
        self.gauges[name][tuple(sorted(labels.items()))] = value

    def observe(self, name: str, seconds: float, **labels: str) -> None:
        """A summary without quantiles: ``name_sum`` and ``name_count``."""
        self.inc(f"{name}_sum", seconds, **labels)
        self.inc(f"{name}_count", 1.0, **labels)

    def value(self, name: str, **labels: str) -> float:
        key = tuple(sorted(labels.items()))
        return self.counters.get(name, {}).get(key, self.gauges.get(name, {}).get(key, 0.0))

    def render(self) -> str:
        lines: list[str] = []
        kinds = [(n, "counter", s) for n, s in self.counters.items()]
        kinds += [(n, "gauge", s) for n, s in self.gauges.items()]
        for name, kind, series in sorted(kinds):
            base = name.removesuffix("_sum").removesuffix("_count")
            if base != name:
                kind = "summary"
            if name == base or name.endswith("_sum"):
                if base in HELP:
                    lines.append(f"# HELP {base} {HELP[base]}")
                lines.append(f"# TYPE {base} {kind}")
            for labels, value in sorted(series.items()):
                text = ",".join(f'{k}="{_escape(v)}"' for k, v in labels)
                shown = int(value) if float(value).is_integer() else value
                lines.append(f"{name}{{{text}}} {shown}" if text else f"{name} {shown}")
        return "\n".join(lines) + "\n"
