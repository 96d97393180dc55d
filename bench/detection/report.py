"""The targets the benchmark is held to, and the printed tables."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TextIO

from bench.detection.scoring import BUCKET_S


def targets(traffic: dict[str, Any], series: dict[str, Any]) -> list[dict[str, Any]]:
    """Each target: what is measured, the bar, and whether it passes (no figure: fails)."""
    worth = traffic["recall"]["worth_100_usd_per_month"]
    timely = traffic["delay"]["worth_100_usd_per_month"]
    spike, shift = timely.get("spike", {}), timely.get("cost_shift", {})
    spike_after = None if spike.get("median_s") is None else spike["median_s"] - BUCKET_S
    ratio = series["ratio"]
    rows = [
        ("recall, incidents worth >= $100/month", worth["recall"], ">=", 1.0, "", _found(worth)),
        (
            "precision (bursts neutral)",
            traffic["precision"]["precision"],
            ">=",
            0.95,
            "",
            f"{traffic['precision']['false']} false of {traffic['precision']['alerts']}",
        ),
        (
            "false alerts per 1,000 key-days, clean traffic",
            traffic["clean"]["false_per_1000_key_days"],
            "<=",
            1.0,
            "",
            f"{traffic['clean']['false']} in {traffic['clean']['key_days']:,.0f} key-days",
        ),
        (
            "spike delay after the first bucket closes, median",
            spike_after,
            "<=",
            60.0,
            "s",
            _found(spike),
        ),
        (
            "cost-shift delay from onset, median",
            shift.get("median_s"),
            "<=",
            3600.0,
            "s",
            _found(shift),
        ),
        (
            f"series NAB score, {ratio['of']} / {ratio['over']}",
            ratio["value"],
            ">=",
            1.5,
            "x",
            "",
        ),
    ]
    out = []
    for name, measured, op, bar, unit, note in rows:
        passed = measured is not None and (measured >= bar if op == ">=" else measured <= bar)
        out.append(
            {
                "target": name,
                "measured": measured,
                "bar": f"{op} {bar:g}{unit}",
                "pass": passed,
                "note": note,
            }
        )
    return out


def _found(r: dict[str, Any]) -> str:
    """'7 of 23 found' for a recall or time-to-detect row (delays: a miss is never)."""
    if not r:
        return "no such incidents"
    return f"{r.get('detected', 0)} of {r.get('n', 0)} worth >= $100/month found"


def fmt(x: Any, digits: int = 2) -> str:
    if x is None:
        return "-"
    if isinstance(x, float):
        return f"{x:.{digits}f}"
    return str(x)


def _never(row: dict[str, Any], name: str) -> str:
    return "never" if row["n"] and row[name] is None else duration(row[name])


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.1f}m"
    return f"{seconds / 3600:.1f}h"


def table(rows: Sequence[Sequence[str]], out: TextIO) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        out.write("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
        out.write("\n")


BANDS = {
    "under_100_usd_per_month": "under $100/month",
    "100_usd_per_month_to_floor": "$100/month to the spike floor",
    "floor_and_over": "the spike floor and over",
}


def print_report(result: dict[str, Any], out: TextIO) -> None:
    """The figures as tables: traffic recall, delays and alerts; series; targets."""
    traffic = result["traffic"]
    runs = result["runs"]
    out.write(
        f"\nTraffic: {len(runs)} runs, {sum(r['events'] for r in runs):,} events, "
        f"{traffic['incident_runs']['key_days']:,.0f} incident-run and "
        f"{traffic['clean']['key_days']:,.0f} clean key-days\n"
    )
    _recall(traffic, out)
    _alerts(traffic, out)
    _series(result["series"], out)
    out.write("\nTargets\n")
    rows = [["TARGET", "MEASURED", "BAR", "", "NOTE"]]
    for t in result["targets"]:
        measured = "never" if t["measured"] is None else fmt(t["measured"], 3)
        rows.append([t["target"], measured, t["bar"], "pass" if t["pass"] else "FAIL", t["note"]])
    table(rows, out)


def _recall(traffic: dict[str, Any], out: TextIO) -> None:
    delays = traffic["delay"]["by_kind"]
    rows = [["KIND", "SIZE", "N", "FOUND", "RECALL", "DELAY MEDIAN", "DELAY P95"]]
    for kind, sizes in traffic["recall"]["by_kind"].items():
        for size, r in sizes.items():
            d = delays[kind] if size == "all" else {}
            rows.append(
                [
                    kind if size == "all" else "",
                    size,
                    str(r["n"]),
                    str(r["detected"]),
                    fmt(r["recall"]),
                    duration(d.get("median_s")),
                    duration(d.get("p95_s")),
                ]
            )
    table(rows, out)
    out.write("\nRecall by money at stake (expected excess at the key's mean rate)\n")
    recall = traffic["recall"]
    named = [("all", recall["all"]), ("worth >= $100/month", recall["worth_100_usd_per_month"])]
    named += [(BANDS[name], r) for name, r in recall["by_band"].items()]
    rows = [["INCIDENTS", "N", "FOUND", "RECALL"]]
    rows += [[name, str(r["n"]), str(r["detected"]), fmt(r["recall"])] for name, r in named]
    table(rows, out)
    out.write("\nDelay from onset to the first matching firing, by group\n")
    rows = [["GROUP", "FOUND", "MEDIAN", "P95", "WORTH >= $100/MO", "MEDIAN", "P95"]]
    timely = traffic["delay"]["worth_100_usd_per_month"]
    for group, d in traffic["delay"]["by_group"].items():
        w = timely[group]
        rows.append(
            [group, str(d["n"]), duration(d["median_s"]), duration(d["p95_s"])]
            + [f"{w['detected']}/{w['n']}", _never(w, "median_s"), _never(w, "p95_s")]
        )
    table(rows, out)
    out.write("(worth >= $100/month: a miss counts as never)\n")


def _alerts(traffic: dict[str, Any], out: TextIO) -> None:
    p, c = traffic["precision"], traffic["clean"]
    out.write("\nAlerts (firings)\n")
    rows = [
        ["TRAFFIC", "ALERTS", "MATCH", "RELATED", "NEUTRAL", "FALSE", "PRECISION"]
        + ["FALSE/1000 KEY-DAYS", "EPISODES/KEY-DAY"],
        [
            "incident runs",
            *(str(p[k]) for k in ("alerts", "match", "related", "neutral", "false")),
            fmt(p["precision"]),
            "-",
            fmt(traffic["incident_runs"]["episodes_per_key_day"], 4),
        ],
        [
            "clean runs",
            str(c["alerts"]),
            "-",
            "-",
            str(c["neutral"]),
            str(c["false"]),
            "-",
            fmt(c["false_per_1000_key_days"]),
            fmt(c["episodes_per_key_day"], 4),
        ],
    ]
    table(rows, out)
    names = ("alerts", "first_detections", "match", "related", "neutral", "false", "clean_false")
    rows = [["ALERTNAME", *(n.upper().replace("_", " ") for n in names)]]
    for name, counts in traffic["by_alertname"].items():
        rows.append([name, *(str(counts.get(k, 0)) for k in names)])
    table(rows, out)


def _series(series: dict[str, Any], out: TextIO) -> None:
    out.write(f"\nSeries: {series['series']} labelled series, NAB standard profile\n")
    detectors = series["detectors"]
    parts = list(next(iter(detectors.values())))
    rows = [["PART", *(f"{name}: score (windows found, FP)" for name in detectors)]]
    for part in parts:
        cells = [
            f"{fmt(d[part]['score_unclipped'])} ({d[part]['windows_detected']}/"
            f"{d[part]['windows']}, {d[part]['false_positives']})"
            for d in detectors.values()
        ]
        rows.append([part, *cells])
    table(rows, out)
    ratio = series["ratio"]
    out.write(f"ratio {ratio['of']} / {ratio['over']}: {fmt(ratio['value'])}\n")
