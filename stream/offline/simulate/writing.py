"""The files: ``simulate`` runs the traffic into usage.jsonl.gz and errors.jsonl.gz (gzip
without a time stamp), prices the customers from what they spent into customers.jsonl and,
with incidents, writes their labels to truth.json."""

from __future__ import annotations

import gzip
import math
from dataclasses import dataclass
from datetime import UTC
from pathlib import Path
from typing import IO, Any

import numpy as np
import orjson

from stream.offline.simulate.traffic import ERRORS, USAGE, Traffic
from stream.offline.simulate.world import SimConfig, rfc3339

OVERHEAD_RATIO = 0.65  # cost-to-serve = API cost x (1 + overhead), the default plan's
PRICE_MULTIPLE = (4.0, 6.0)  # clean customers pay this many times their cost-to-serve
FREE_MAX_API_USD = 10.0  # per month; the free plan's cost cap is 25 USD cost-to-serve
OVERGROWTH_PRICE_SHARE = 0.5  # of the cost-to-serve, for the plan_overgrowth customer
LIST_PRICES = {
    "starter": (29, 49, 99, 149, 199, 299),
    "pro": (499, 799, 999, 1499, 1999, 2999, 3999, 4999),
}


@dataclass(frozen=True)
class SimSummary:
    """What ``simulate`` wrote: files, line counts (duplicates included) and incidents."""

    outdir: Path
    files: dict[str, Path]
    usage_events: int
    error_events: int
    duplicates: int
    customers: int
    incidents: tuple[str, ...]
    start: str
    end: str

    def __str__(self) -> str:
        lines = [
            f"simulated {self.start} .. {self.end} into {self.outdir}",
            f"  usage events {self.usage_events} (producer duplicates {self.duplicates}),"
            f" error events {self.error_events}, customers {self.customers}",
        ]
        lines += [f"  incident {line}" for line in self.incidents]
        lines += [f"  wrote {path}" for path in self.files.values()]
        return "\n".join(lines)


def price_customers(traffic: Traffic) -> list[dict[str, Any]]:
    """Customer records priced from what each customer spent, projected to a month.

    Projected monthly API cost = spend per simulated day x 30 (USD); cost-to-serve adds
    the 0.65 overhead. Paying customers get the smallest list price of at least 4-6x
    their cost-to-serve; free-tier customers stay free under 10 USD of API cost a month;
    the plan_overgrowth customer pays half its cost-to-serve. With catalog incidents
    (``incident_kinds``) the projection is from the first day, before any of them, so a
    customer's price does not already pay for its incident.
    """
    rng = np.random.default_rng([traffic.cfg.seed, 3])
    days = traffic.minutes / 1440
    overgrowth = next((inc for inc in traffic.incidents if inc.kind == "plan_overgrowth"), None)
    spend = traffic.spend_usd
    if traffic.cfg.incident_kinds:
        days = min(days, 1.0)
        spend = traffic.spend_day_usd[:, 0]
    records = []
    for c, customer in enumerate(traffic.world.customers):
        api_usd = float(spend[c]) / days * 30
        serve_usd = api_usd * (1 + OVERHEAD_RATIO)
        plan, price = _list_price(rng.uniform(*PRICE_MULTIPLE) * serve_usd)
        billing_day, margin_target = customer.billing_day, customer.margin_target
        if overgrowth is not None and c == overgrowth.customer:
            price = max(round(OVERGROWTH_PRICE_SHARE * serve_usd, 2), 0.01)
            plan = "pro" if price >= LIST_PRICES["pro"][0] else "starter"
            # Its billing month starts with the run, so a month-end projection has a whole
            # month ahead of it (a period ending mid-run would hide the overgrowth).
            billing_day, margin_target = min(traffic.cfg.start.astimezone(UTC).day, 28), None
            overgrowth.detail.update(
                monthly_price_usd=price, projected_monthly_cost_to_serve_usd=round(serve_usd, 2)
            )
        elif customer.free_tier and api_usd < FREE_MAX_API_USD:
            plan, price, margin_target = "free", 0.0, None
        record: dict[str, Any] = {
            "customer_id": customer.customer_id,
            "name": customer.name,
            "plan": plan,
            "monthly_price_usd": price,
            "billing_day": billing_day,
        }
        if margin_target is not None:
            record["margin_target"] = margin_target
        records.append(record)
    for inc in traffic.incidents:
        if inc.group == "margin" and inc.customer is not None:
            inc.detail["plan"] = records[inc.customer]["plan"]
            inc.detail["monthly_price_usd"] = records[inc.customer]["monthly_price_usd"]
    return records


def _list_price(required_usd: float) -> tuple[str, float]:
    """(plan, monthly price USD): the smallest list price of at least ``required_usd``."""
    for plan, prices in LIST_PRICES.items():
        for price in prices:
            if price >= required_usd:
                return plan, float(price)
    return "enterprise", float(max(5000, math.ceil(required_usd / 1000) * 1000))


class GzipLines:
    """JSON lines into a gzip file whose header has no time stamp: same events, same bytes."""

    def __init__(self, path: Path, batch: int = 8192) -> None:
        self.path = path
        self.lines = 0
        self._raw: IO[bytes] = path.open("wb")
        self._gz = gzip.GzipFile(
            filename=path.name, mode="wb", fileobj=self._raw, compresslevel=5, mtime=0
        )
        self._batch = batch
        self._pending: list[bytes] = []

    def write(self, event: dict[str, Any]) -> None:
        self._pending.append(orjson.dumps(event, option=orjson.OPT_APPEND_NEWLINE))
        if len(self._pending) >= self._batch:
            self._flush()

    def _flush(self) -> None:
        self._gz.write(b"".join(self._pending))
        self.lines += len(self._pending)
        self._pending.clear()

    def __enter__(self) -> GzipLines:
        return self

    def __exit__(self, *exc: object) -> None:
        self._flush()
        self._gz.close()
        self._raw.close()


def simulate(outdir: Path, cfg: SimConfig) -> SimSummary:
    """Write usage.jsonl.gz, errors.jsonl.gz, customers.jsonl and (with incidents)
    truth.json into ``outdir`` (created if missing); the same config writes the same bytes."""
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    traffic = Traffic(cfg)
    files = {
        USAGE: outdir / "usage.jsonl.gz",
        ERRORS: outdir / "errors.jsonl.gz",
        "customers": outdir / "customers.jsonl",
    }
    with GzipLines(files[USAGE]) as usage, GzipLines(files[ERRORS]) as errors:
        writers = {USAGE: usage, ERRORS: errors}
        for kind, event, _ in traffic.emissions():
            writers[kind].write(event)
    customers = price_customers(traffic)
    files["customers"].write_bytes(
        b"".join(orjson.dumps(record, option=orjson.OPT_APPEND_NEWLINE) for record in customers)
    )
    if cfg.incidents or cfg.incident_kinds or cfg.bursts > 0:
        files["truth"] = outdir / "truth.json"
        truth: dict[str, Any] = {
            "seed": cfg.seed,
            "start": rfc3339(traffic.start_ms),
            "end": rfc3339(traffic.end_ms),
            "bucket_s": 60,
            "incidents": [inc.truth() for inc in traffic.incidents],
        }
        if cfg.bursts > 0:
            truth["bursts"] = [burst.truth() for burst in traffic.bursts]
        files["truth"].write_bytes(
            orjson.dumps(truth, option=orjson.OPT_INDENT_2 | orjson.OPT_APPEND_NEWLINE)
        )
    return SimSummary(
        outdir=outdir,
        files=files,
        usage_events=usage.lines,
        error_events=errors.lines,
        duplicates=traffic.duplicates,
        customers=len(customers),
        incidents=tuple(
            f"{inc.id} {inc.kind} {inc.labels} {rfc3339(inc.start_ms)} .. {rfc3339(inc.end_ms)}"
            for inc in traffic.incidents
        ),
        start=rfc3339(traffic.start_ms),
        end=rfc3339(traffic.end_ms),
    )
