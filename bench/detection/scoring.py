"""Scoring firings against labelled incidents and bursts (pure: no I/O, no clock).

A firing is *about* a labelled window when its key is compatible with the window's labels
and it overlaps the window in time, with a tolerance: the firing's span, from its
``startsAt`` (event time of the first bad bucket, or a change point a detector estimates)
to the event time it came out, meets [start - 60 s, end + 15 min]. So a firing raised
before the window opened is not about it, nor one whose trouble began after it closed
(plus 15 minutes for windowed detectors and hysteresis). Compatible:
the same customer, and the same endpoint when both name one (a customer-level alert is
about its endpoints' incidents; an endpoint alert is about its customer's); or, for labels
without a customer, the same provider and model on an alert without a customer. Nothing
looks at ``alertname``: any detector's firings are scored the same way.

Each firing gets one verdict, the first that applies:

- ``match``: about an incident's own labels. Counts for the incident's recall and delay.
- ``related``: about an incident's secondary labels (an outage's endpoints, a retry
  loop's provider/model): right, but not what detects that incident.
- ``neutral``: about a labelled burst (real traffic, not trouble): neither right nor wrong.
- ``false``: anything else.

Precision = (match + related) / (match + related + false). The delay of a detected
incident runs from its start to the event time its first matching firing came out.

>>> inc = Labelled("i1", "runaway_loop", "spike", 5.0, {"customer_id": "a", "endpoint": "x"},
...                (), 600.0, 3000.0, 4.0)
>>> burst = Labelled("b1", "burst", "burst", 2.0, {"customer_id": "b", "endpoint": "y"},
...                  (), 600.0, 1200.0, 1.0)
>>> fs = [Firing("spend_spike", {"customer_id": "a"}, "warning", 660.0, 870.0),
...       Firing("spend_spike", {"customer_id": "b", "endpoint": "y"}, "warning", 700.0, 900.0),
...       Firing("retry_storm", {"customer_id": "c", "endpoint": "z"}, "warning", 60.0, 90.0)]
>>> verdicts, outcomes = judge(fs, [inc], [burst])
>>> verdicts, outcomes[0].detected_by, outcomes[0].delay_s
(['match', 'neutral', 'false'], 'spend_spike', 270.0)
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from bench.detection.traffic import Firing, epoch
from detectors.decision import HOURS_PER_MONTH

BEFORE_S = 60.0  # a firing may start this long before a window (a bucket's worth)
AFTER_S = 900.0  # or this long after it ends (windows of 5 buckets, hysteresis)
BUCKET_S = 60.0
WORTH_USD_PER_MONTH = 100.0  # the recall target covers incidents worth at least this
VERDICTS = ("match", "related", "neutral", "false")


@dataclass(frozen=True)
class Labelled:
    """An incident or a burst from truth.json. Times are epoch seconds; excess USD/h."""

    id: str
    kind: str
    group: str
    size: float
    labels: Mapping[str, str]
    secondary: Sequence[Mapping[str, str]]
    start: float
    end: float
    excess_usd_per_hour: float
    run: str = ""

    @property
    def excess_usd_per_month(self) -> float:
        return self.excess_usd_per_hour * HOURS_PER_MONTH

    @classmethod
    def incident(cls, entry: Mapping[str, Any], run: str = "") -> Labelled:
        return cls(
            entry["id"],
            entry["kind"],
            entry["group"],
            float(entry["size"]),
            entry["labels"],
            tuple(entry.get("secondary", ())),
            epoch(entry["start"]),
            epoch(entry["end"]),
            float(entry["excess_usd_per_hour"]),
            run,
        )

    @classmethod
    def burst(cls, entry: Mapping[str, Any], run: str = "") -> Labelled:
        return cls(
            entry["id"],
            "burst",
            "burst",
            float(entry["multiplier"]),
            entry["labels"],
            (),
            epoch(entry["start"]),
            epoch(entry["end"]),
            float(entry["excess_usd_per_hour"]),
            run,
        )

    def covers(self, firing: Firing) -> bool:
        """Whether ``firing`` (startsAt to when it came out) meets this window, with the
        tolerance."""
        return firing.emitted_at >= self.start - BEFORE_S and firing.starts_at <= self.end + AFTER_S


def compatible(key: Mapping[str, str], labels: Mapping[str, str]) -> bool:
    """Whether an alert with key labels ``key`` is about a window labelled ``labels``."""
    if "customer_id" in labels:
        if key.get("customer_id") != labels["customer_id"]:
            return False
        return (
            "endpoint" not in key
            or "endpoint" not in labels
            or (key["endpoint"] == labels["endpoint"])
        )
    return (
        "customer_id" not in key
        and "provider" in labels
        and key.get("provider") == labels["provider"]
        and key.get("model") == labels.get("model", key.get("model"))
    )


@dataclass
class Outcome:
    """What became of one incident."""

    incident: Labelled
    detected_by: str | None = None  # alertname of the first matching firing
    delay_s: float | None = None  # from its start to when that firing came out
    alertnames: list[str] = field(default_factory=list)  # every matching one, sorted

    @property
    def detected(self) -> bool:
        return self.detected_by is not None


def judge(
    firings: Sequence[Firing], incidents: Sequence[Labelled], bursts: Sequence[Labelled]
) -> tuple[list[str], list[Outcome]]:
    """The verdict of each firing (see the module docstring), and each incident's outcome."""
    outcomes = [Outcome(inc) for inc in incidents]
    verdicts: list[str] = []
    for firing in firings:
        key = firing.key
        matched = [
            o for o in outcomes if o.incident.covers(firing) and compatible(key, o.incident.labels)
        ]
        for o in matched:
            delay = firing.emitted_at - o.incident.start
            if o.delay_s is None or delay < o.delay_s:
                o.detected_by, o.delay_s = firing.alertname, delay
            if firing.alertname not in o.alertnames:
                o.alertnames = sorted([*o.alertnames, firing.alertname])
        if matched:
            verdicts.append("match")
        elif any(
            inc.covers(firing) and any(compatible(key, s) for s in inc.secondary)
            for inc in incidents
        ):
            verdicts.append("related")
        elif any(b.covers(firing) and compatible(key, b.labels) for b in bursts):
            verdicts.append("neutral")
        else:
            verdicts.append("false")
    return verdicts, outcomes


@dataclass
class ScoredRun:
    """One run's firings judged: verdicts in firing order, outcomes, and its key-days."""

    name: str
    clean: bool
    firings: list[Firing]
    verdicts: list[str]
    outcomes: list[Outcome]
    key_days: float  # keys judged x days after the first (warm-up) day


def score_run(
    name: str,
    clean: bool,
    truth: Mapping[str, Any],
    firings: Sequence[Firing],
    keys: int,
    alertnames: Iterable[str] | None = None,
) -> ScoredRun:
    """Judge one run's ``firings`` (only those named in ``alertnames`` when given)."""
    wanted = None if alertnames is None else set(alertnames)
    chosen = [f for f in firings if wanted is None or f.alertname in wanted]
    incidents = [Labelled.incident(e, name) for e in truth.get("incidents", ())]
    bursts = [Labelled.burst(e, name) for e in truth.get("bursts", ())]
    verdicts, outcomes = judge(chosen, incidents, bursts)
    days = (epoch(truth["end"]) - epoch(truth["start"])) / 86_400
    return ScoredRun(name, clean, chosen, verdicts, outcomes, keys * max(days - 1, 0.0))


def ratio(part: float, whole: float) -> float | None:
    return part / whole if whole else None


def spread(values: Sequence[float]) -> dict[str, Any]:
    """Count, median and 95th percentile (numpy's linear interpolation), seconds."""
    if not values:
        return {"n": 0, "median_s": None, "p95_s": None}
    array = np.asarray(values, dtype=float)
    return {
        "n": len(values),
        "median_s": float(np.median(array)),
        "p95_s": float(np.percentile(array, 95)),
    }


def time_to_detect(outcomes: Sequence[Outcome]) -> dict[str, Any]:
    """Median delay over ``outcomes`` with a miss counting as never (seconds; ``None``
    and ``never`` when the median incident was not detected), and its 95th percentile."""
    delays = np.array([np.inf if o.delay_s is None else o.delay_s for o in outcomes])
    out: dict[str, Any] = {"n": len(outcomes), "detected": int(np.isfinite(delays).sum())}
    for name, q in (("median_s", 50), ("p95_s", 95)):
        value = float(np.percentile(delays, q, method="lower")) if len(delays) else None
        out[name] = value if value is not None and math.isfinite(value) else None
    out["never"] = bool(len(delays)) and out["median_s"] is None
    return out


def band(outcome: Outcome, floor_usd_per_hour: float) -> str:
    """The money band of an incident: under $100/month, under the spike floor, or over."""
    inc = outcome.incident
    if inc.excess_usd_per_month < WORTH_USD_PER_MONTH:
        return "under_100_usd_per_month"
    if inc.excess_usd_per_hour < floor_usd_per_hour:
        return "100_usd_per_month_to_floor"
    return "floor_and_over"


def _recall(outcomes: Sequence[Outcome]) -> dict[str, Any]:
    detected = sum(o.detected for o in outcomes)
    return {"n": len(outcomes), "detected": detected, "recall": ratio(detected, len(outcomes))}


def summarize(runs: Sequence[ScoredRun], floor_usd_per_hour: float) -> dict[str, Any]:
    """Every traffic figure the benchmark reports (see README "Benchmark")."""
    incident_runs = [r for r in runs if not r.clean]
    clean_runs = [r for r in runs if r.clean]
    outcomes = [o for r in incident_runs for o in r.outcomes]
    by_kind: dict[str, dict[str, Any]] = {}
    for o in outcomes:
        sizes = by_kind.setdefault(o.incident.kind, {})
        sizes.setdefault(f"{o.incident.size:g}", []).append(o)
    recall = {
        "all": _recall(outcomes),
        "worth_100_usd_per_month": _recall(
            [o for o in outcomes if o.incident.excess_usd_per_month >= WORTH_USD_PER_MONTH]
        ),
        "by_band": {
            name: _recall([o for o in outcomes if band(o, floor_usd_per_hour) == name])
            for name in ("under_100_usd_per_month", "100_usd_per_month_to_floor", "floor_and_over")
        },
        "by_kind": {
            kind: {
                "all": _recall([o for group in sizes.values() for o in group]),
                **{size: _recall(group) for size, group in sorted(sizes.items(), key=_by_size)},
            }
            for kind, sizes in by_kind.items()
        },
    }
    delays = [o for o in outcomes if o.delay_s is not None]
    delay = {
        "by_group": {
            group: spread([o.delay_s for o in delays if o.incident.group == group])  # type: ignore[misc]
            for group in sorted({o.incident.group for o in outcomes})
        },
        "by_kind": {
            kind: spread([o.delay_s for o in delays if o.incident.kind == kind])  # type: ignore[misc]
            for kind in by_kind
        },
        # Incidents worth >= $100/month, a miss counting as never: what the delay targets use.
        "worth_100_usd_per_month": {
            group: time_to_detect(
                [
                    o
                    for o in outcomes
                    if o.incident.group == group
                    and o.incident.excess_usd_per_month >= WORTH_USD_PER_MONTH
                ]
            )
            for group in sorted({o.incident.group for o in outcomes})
        },
    }
    return {
        "recall": recall,
        "precision": _verdicts(incident_runs),
        "delay": delay,
        "clean": _clean(clean_runs),
        "incident_runs": {
            "key_days": sum(r.key_days for r in incident_runs),
            "episodes_per_key_day": ratio(
                sum(len(r.firings) for r in incident_runs), sum(r.key_days for r in incident_runs)
            ),
        },
        "by_alertname": _by_alertname(runs),
        "incidents": [_row(o, floor_usd_per_hour) for o in outcomes],
        "false_alerts": [
            {
                "run": r.name,
                "alertname": f.alertname,
                "labels": f.key,
                "severity": f.severity,
                "starts_at": f.starts_at,
                "emitted_at": f.emitted_at,
            }
            for r in runs
            for f, v in zip(r.firings, r.verdicts, strict=True)
            if v == "false"
        ],
    }


def _by_size(item: tuple[str, Any]) -> float:
    return float(item[0])


def _verdicts(runs: Sequence[ScoredRun]) -> dict[str, Any]:
    counts = Counter(v for r in runs for v in r.verdicts)
    right = counts["match"] + counts["related"]
    out: dict[str, Any] = {"alerts": sum(counts.values())}
    out.update({v: counts[v] for v in VERDICTS})
    out["precision"] = ratio(right, right + counts["false"])
    return out


def _clean(runs: Sequence[ScoredRun]) -> dict[str, Any]:
    counts = Counter(v for r in runs for v in r.verdicts)
    key_days = sum(r.key_days for r in runs)
    false = counts["false"]
    return {
        "runs": len(runs),
        "key_days": key_days,
        "alerts": sum(counts.values()),
        "neutral": counts["neutral"],
        "false": false,
        "false_per_1000_key_days": None if not key_days else 1000 * false / key_days,
        "episodes_per_key_day": ratio(sum(counts.values()), key_days),
        "false_by_alertname": dict(
            sorted(
                Counter(
                    f.alertname
                    for r in runs
                    for f, v in zip(r.firings, r.verdicts, strict=True)
                    if v == "false"
                ).items()
            )
        ),
    }


def _by_alertname(runs: Sequence[ScoredRun]) -> dict[str, dict[str, int]]:
    out: dict[str, Counter[str]] = {}
    for r in runs:
        for firing, verdict in zip(r.firings, r.verdicts, strict=True):
            counts = out.setdefault(firing.alertname, Counter())
            counts["alerts"] += 1
            counts[("clean_" if r.clean else "") + verdict] += 1
        for o in r.outcomes:
            if o.detected_by is not None:
                out.setdefault(o.detected_by, Counter())["first_detections"] += 1
    return {name: dict(sorted(counts.items())) for name, counts in sorted(out.items())}


def _row(o: Outcome, floor_usd_per_hour: float) -> dict[str, Any]:
    inc = o.incident
    return {
        "run": inc.run,
        "id": inc.id,
        "kind": inc.kind,
        "group": inc.group,
        "size": inc.size,
        "labels": dict(inc.labels),
        "start": inc.start,
        "excess_usd_per_hour": round(inc.excess_usd_per_hour, 4),
        "excess_usd_per_month": round(inc.excess_usd_per_month, 2),
        "band": band(o, floor_usd_per_hour),
        "detected_by": o.detected_by,
        "alertnames": o.alertnames,
        "delay_s": o.delay_s,
    }
