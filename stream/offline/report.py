"""The backtest report: one self-contained HTML file (inline SVG charts, no script, no network).

At the top, a summary table (alerts per detector under each config; episodes added,
removed and changed in severity), then the differences and the episodes, then one chart
per alerted key (``<figure class="chart" data-key="cus=acme,ep=chat">``).

Where the charts' numbers come from (see :mod:`stream.offline.keyseries`): after the backtest's
replays, the same input is replayed once more with the detectors off, keeping the bucket
counts of the alerted keys only; each key's spend per bucket is then fed through
spend_spike's own ``update`` (its :class:`~detectors.ewstats.SeasonalBaseline`) with each
config's parameters, reading the baseline before every bucket is learnt, so the band
(baseline +/- 1 sd) is what the detector saw; the spend threshold is baseline x
(1 + ``relative_margin``). Endpoint and provider/model keys with retry storms also get the
error rate over retry_storm's window, its learnt baseline error rate and the configured
``error_rate`` threshold. Markers show where each config's alerts fired and resolved.

Long series are downsampled outside alert windows (the episode +/- 30 minutes; only
its start and end +/- 30 minutes for episodes over 3 hours): points
there are means over a coarser step (5, 15, 60 or 240 min, chosen so a chart has at most
about 400 such points), and the report says which step it used. A simulated week of 20
customers stays well under a few MB.
"""

from __future__ import annotations

import html
import io
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib import rc_context
from matplotlib.figure import Figure

from stream.core.alerts import rfc3339
from stream.offline.backtest import (
    Diff,
    Episode,
    KeyLabels,
    Run,
    alerted_keys,
    key_text,
    per_detector,
)
from stream.offline.keyseries import (
    Band,
    KeySeries,
    RecordingBuckets,
    dense,
    error_band,
    params_at,
    spend_band,
)
from stream.settings import Settings

PAD_S = 1800.0  # kept at full resolution around an episode
STEPS_MIN = (5, 15, 60, 240)
MAX_COARSE_POINTS = 400
LONG_EPISODE_S = 3 * 3600.0  # longer episodes are kept at full resolution at their edges only
_DECIMALS = re.compile(r"(\.\d)\d+")
COLOURS = ("#1f6fb4", "#e07b00")  # config [1], config [2]


@dataclass
class KeyChart:
    """What one chart shows: the key's series and, per config, the bands it was judged by."""

    series: KeySeries
    spend_bands: list[Band | None]  # per config (None: no spend detector on this key)
    error_bands: list[Band | None]  # per config (None: no retry storm chart)
    error_window: int = 5
    error_thresholds: tuple[float, ...] = ()


def coarse_step_s(n_buckets: int, width: float) -> float:
    """The downsampling step, seconds: the smallest of STEPS_MIN that keeps a chart's
    coarse points under MAX_COARSE_POINTS (never finer than a bucket)."""
    for minutes in STEPS_MIN:
        if n_buckets * width / (minutes * 60) <= MAX_COARSE_POINTS:
            return max(minutes * 60.0, width)
    return STEPS_MIN[-1] * 60.0


def downsample(
    times: np.ndarray, columns: list[np.ndarray], keep: np.ndarray, step: float
) -> tuple[np.ndarray, list[np.ndarray]]:
    """Means over ``step`` seconds (NaN-aware) except where ``keep`` is true.

    >>> t = np.arange(10) * 60.0
    >>> keep = np.zeros(10, dtype=bool); keep[7] = True
    >>> out_t, (out_v,) = downsample(t, [np.arange(10.0)], keep, 300.0)
    >>> out_t.tolist(), out_v.tolist()
    ([120.0, 330.0, 420.0, 510.0], [2.0, 5.5, 7.0, 8.5])
    """
    if len(times) == 0:
        return times, columns
    slot = np.where(keep, times, np.floor(times / step) * step)
    new = np.ones(len(times), dtype=bool)
    new[1:] = (slot[1:] != slot[:-1]) | keep[1:] | keep[:-1]
    starts = np.flatnonzero(new)
    counts = np.diff(np.append(starts, len(times)))
    out_t = np.add.reduceat(times, starts) / counts
    out = []
    for col in columns:
        valid = ~np.isnan(col)
        sums = np.add.reduceat(np.where(valid, col, 0.0), starts)
        n = np.add.reduceat(valid.astype(float), starts)
        with np.errstate(invalid="ignore", divide="ignore"):
            out.append(np.where(n > 0, sums / np.maximum(n, 1), np.nan))
    return out_t, out


def alert_windows(times: np.ndarray, found: Sequence[Episode], until: float) -> np.ndarray:
    """Buckets shown at full resolution: each episode +/- PAD_S, or only its edges +/- PAD_S
    when it lasted longer than LONG_EPISODE_S."""
    keep = np.zeros(len(times), dtype=bool)
    for e in found:
        end = e.end if e.end is not None else until
        if end - e.start <= LONG_EPISODE_S:
            keep |= (times >= e.start - PAD_S) & (times <= end + PAD_S)
        else:
            keep |= np.abs(times - e.start) <= PAD_S
            keep |= np.abs(times - end) <= PAD_S
    return keep


def _dates(t: np.ndarray) -> np.ndarray:
    return np.asarray(np.round(t), dtype="int64").astype("datetime64[s]")


def _markers(ax, per_run: Sequence[Sequence[Episode]], until: float) -> None:
    for i, found in enumerate(per_run):
        colour = COLOURS[i % len(COLOURS)]
        for n, e in enumerate(found):
            end = e.end if e.end is not None else until
            ax.axvspan(*_dates(np.array([e.start, end])), color=colour, alpha=0.08, lw=0)
            label = f"[{i + 1}] fired / resolved" if n == 0 else None
            ax.axvline(_dates(np.array([e.start]))[0], color=colour, lw=1.2, label=label)
            if e.end is not None:
                ax.axvline(_dates(np.array([e.end]))[0], color=colour, lw=1.2, ls=":")


def render_chart(chart: KeyChart, per_run: Sequence[Sequence[Episode]], until: float) -> str:
    """One key's chart as an SVG document string (deterministic for the same input)."""
    s = chart.series
    keep = alert_windows(s.times, [e for found in per_run for e in found], until)
    step = coarse_step_s(len(s.times), s.width)
    cols = [s.spend]
    for band in chart.spend_bands:
        if band is not None:
            cols += [band.mean, band.sd, band.threshold]
    errors = any(b is not None for b in chart.error_bands)
    if errors:
        cols.append(s.error_rate(chart.error_window))
        cols += [b.mean for b in chart.error_bands if b is not None]
    t, cols = downsample(s.times, cols, keep, step)
    dates = _dates(t)
    fig = Figure(figsize=(10, 4.6 if errors else 3.2), dpi=72)
    axes = fig.subplots(2 if errors else 1, 1, sharex=True, squeeze=False)[:, 0]
    ax = axes[0]
    ax.plot(dates, cols[0], color="#222", lw=0.9, label="spend per bucket (USD)")
    at = 1
    shown: np.ndarray | None = None
    for i, band in enumerate(chart.spend_bands):
        if band is None:
            continue
        mean, sd, threshold = cols[at : at + 3]
        at += 3
        colour = COLOURS[i % len(COLOURS)]
        if i == 0:
            ax.fill_between(
                dates, mean - sd, mean + sd, color=colour, alpha=0.2, lw=0, label="baseline ± 1 sd"
            )
            ax.plot(dates, mean, color=colour, lw=0.8, label="baseline")
        if shown is not None and np.allclose(threshold, shown, equal_nan=True):
            continue  # the same line as the other config's
        shown = threshold
        ls = "--" if i == 0 else "-."
        ax.plot(dates, threshold, color=colour, lw=0.9, ls=ls, label=f"[{i + 1}] threshold")
    ax.set_ylabel("USD per bucket")
    _markers(ax, per_run, until)
    ax.legend(loc="upper left", fontsize=7, ncols=3, frameon=False)
    if errors:
        ax2 = axes[1]
        ax2.plot(dates, cols[at], color="#a01010", lw=0.9, label="error rate (window)")
        means = iter(cols[at + 1 :])
        shown = None
        for i, band in enumerate(chart.error_bands):
            if band is None:
                continue
            mean = next(means)
            if shown is not None and np.allclose(mean, shown, equal_nan=True):
                continue
            shown = mean
            colour = COLOURS[i % len(COLOURS)]
            ax2.plot(dates, mean, color=colour, lw=0.8, label=f"[{i + 1}] baseline error rate")
        for i, rate in enumerate(chart.error_thresholds):
            if math.isnan(rate) or rate in chart.error_thresholds[:i]:
                continue
            colour = COLOURS[i % len(COLOURS)]
            ls = "--" if i == 0 else "-."
            ax2.axhline(rate, color=colour, lw=0.9, ls=ls, label=f"[{i + 1}] threshold")
        ax2.set_ylabel("error rate")
        ax2.set_ylim(0, 1)
        _markers(ax2, per_run, until)
        ax2.legend(loc="upper left", fontsize=7, ncols=3, frameon=False)
    axes[-1].set_xlabel("event time (UTC)")
    fig.autofmt_xdate()
    fig.tight_layout()
    out = io.StringIO()
    with rc_context({"svg.fonttype": "none", "svg.hashsalt": key_text(s.key)}):
        fig.savefig(out, format="svg", metadata={"Date": None})
    text = out.getvalue()
    # A tenth of a pixel is plenty: path coordinates are most of the file.
    text = re.sub(r' d="[^"]*"', lambda m: _DECIMALS.sub(r"\1", m.group(0)), text)
    return text[text.index("<svg") :]


CSS = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1em; }
th, td { border: 1px solid #ccc; padding: 2px 8px; text-align: left; }
th { background: #f3f3f3; }
td.n { text-align: right; }
.added { color: #0a7a0a; } .removed { color: #b00020; } .changed { color: #8a5a00; }
figure.chart { margin: 1.5em 0; border-top: 1px solid #ddd; padding-top: 0.5em; }
figure.chart svg { max-width: 100%; height: auto; }
.note { color: #555; font-size: 12px; }
"""


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _when(t: float | None) -> str:
    return "open" if t is None else rfc3339(t)[:16].replace("T", " ")


def _episode_table(rows: Sequence[tuple[str, Episode]]) -> str:
    out = ["<table><tr><th></th><th>key</th><th>detector</th><th>severity</th>"]
    out.append("<th>start</th><th>end</th><th>why (attribution)</th></tr>")
    for css, e in rows:
        out.append(
            f'<tr class="{css}"><td>{_e(css)}</td><td>{_e(e.key_text)}</td>'
            f"<td>{_e(e.alertname)}</td><td>{_e(e.severity)}</td>"
            f"<td>{_e(_when(e.start))}</td><td>{_e(_when(e.end))}</td>"
            f"<td>{_e(e.why)}</td></tr>"
        )
    return "".join(out) + "</table>"


def summary_table(runs: Sequence[Run], diff: Diff | None) -> str:
    counts = [per_detector(r.episodes) for r in runs]
    names = sorted({n for c in counts for n in c})
    head = "".join(f"<th>[{i + 1}] {_e(r.name)}</th>" for i, r in enumerate(runs))
    rows = [f'<table class="summary"><tr><th>detector</th>{head}</tr>']
    for name in [*names, "total"]:
        cells = "".join(
            f'<td class="n">{sum(c.values()) if name == "total" else c[name]}</td>' for c in counts
        )
        rows.append(f"<tr><td>{_e(name)}</td>{cells}</tr>")
    if diff is not None:
        for label, n in (
            ("added", len(diff.added)),
            ("removed", len(diff.removed)),
            ("changed severity", len(diff.changed)),
        ):
            rows.append(f'<tr><td>{label} [1] → [2]</td><td class="n" colspan="2">{n}</td></tr>')
    return "".join(rows) + "</table>"


def build_html(
    runs: Sequence[Run],
    diff: Diff | None,
    charts: dict[KeyLabels, KeyChart],
    period: tuple[float, float],
) -> str:
    """The whole report; ``charts`` has one entry per alerted key (in the order given)."""
    until = period[1]
    parts = [
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">',
        "<title>spendwatch backtest</title>",
        f"<style>{CSS}</style></head><body>",
        "<h1>spendwatch backtest</h1>",
        f"<p>Event time {_e(_when(period[0]))} to {_e(_when(period[1]))} UTC; configs: "
        + ", ".join(f"[{i + 1}] <code>{_e(r.name)}</code>" for i, r in enumerate(runs))
        + "</p>",
        summary_table(runs, diff),
    ]
    if diff is not None and not diff.empty:
        rows = [("removed", e) for e in diff.removed] + [("added", e) for e in diff.added]
        rows += [("changed", b) for _, b in diff.changed]
        parts += ["<h2>Differences [1] → [2]</h2>", _episode_table(rows)]
    for i, run in enumerate(runs):
        parts.append(
            f"<details><summary>Episodes under [{i + 1}] {_e(run.name)}: "
            f"{len(run.episodes)}</summary>"
            + _episode_table([("", e) for e in run.episodes])
            + "</details>"
        )
    steps = {coarse_step_s(len(c.series.times), c.series.width) for c in charts.values()}
    step_text = " / ".join(f"{s / 60:g} min" for s in sorted(steps)) or "n/a"
    parts += [
        '<p class="note">Series are rebuilt from a second pass over the same input with the '
        "pipeline's own ingest and buckets; the baseline band (± 1 sd) is what spend_spike's "
        "seasonal baseline held before each bucket, under config [1]; thresholds are "
        "baseline × (1 + relative_margin) for spend and the configured error_rate for retry "
        f"storms. Outside alert windows (± {PAD_S / 60:g} min) points are means over "
        f"{_e(step_text)}; inside them every bucket is shown. Solid vertical line: an alert "
        "fired; dotted: it resolved.</p>",
        f"<h2>Alerted keys: {len(charts)}</h2>",
    ]
    for key, chart in charts.items():
        per_run = [[e for e in r.episodes if e.key == key] for r in runs]
        caption = "; ".join(
            f"[{i + 1}] "
            + (", ".join(f"{e.alertname} {e.severity} {_when(e.start)}" for e in found) or "none")
            for i, found in enumerate(per_run)
        )
        parts.append(
            f'<figure class="chart" data-key="{_e(key_text(key))}">'
            f"<figcaption><b>{_e(key_text(key))}</b>: {_e(caption)}</figcaption>"
            f"{render_chart(chart, per_run, until)}</figure>"
        )
    parts.append("</body></html>\n")
    return "\n".join(parts)


def build_charts(
    recording: RecordingBuckets, settings: Sequence[Settings], runs: Sequence[Run]
) -> dict[KeyLabels, KeyChart]:
    """One chart per alerted key: its series and each config's bands (see module doc)."""
    charts: dict[KeyLabels, KeyChart] = {}
    for key in alerted_keys(*(r.episodes for r in runs)):
        series = dense(recording, key)
        if series is None:
            continue
        by_provider = key[0][0] == "provider"
        spend: list[Band | None] = []
        errors: list[Band | None] = []
        thresholds: list[float] = []
        storms = by_provider or any(
            e.key == key and e.alertname == "retry_storm" for r in runs for e in r.episodes
        )
        window = 5
        plan = recording.plans.get(dict(key).get("customer_id", ""))
        for config in settings:
            spike = params_at(config, "spend_spike", key, plan)
            spend.append(None if by_provider else spend_band(series, spike))
            if storms:
                name = "retry_storm_global" if by_provider else "retry_storm"
                retry = params_at(config, name, key, plan)
                last = retry(float(series.times[-1]))
                errors.append(error_band(series, retry) if last.enabled else None)
                thresholds.append(last.error_rate if last.enabled else math.nan)
                window = last.window_buckets
        charts[key] = KeyChart(series, spend, errors, window, tuple(thresholds))
    return charts


def write_report(
    path: Path,
    runs: Sequence[Run],
    diff: Diff | None,
    recording: RecordingBuckets,
    settings: Sequence[Settings],
) -> int:
    """Write the report to ``path``; returns its size in bytes."""
    charts = build_charts(recording, settings, runs)
    first = min((float(c.series.times[0]) for c in charts.values()), default=0.0)
    text = build_html(runs, diff, charts, (first, max(r.until for r in runs)))
    data = text.encode("utf-8")
    path.write_bytes(data)
    return len(data)
