"""stream.offline.simulate: deterministic, contract-valid traffic, realistic noise, incidents."""

from __future__ import annotations

import gzip
import re
from collections import Counter, defaultdict
from dataclasses import replace
from datetime import datetime
from functools import cached_property
from itertools import takewhile
from pathlib import Path
from typing import Any

import jsonschema
import orjson
import pytest

from stream.contracts import schema
from stream.core.pricing import PriceTable
from stream.offline.simulate import DEFAULT_PRICES, SimConfig, SimSummary, iter_events, simulate

RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}(Z|\+00:00)$")
OVERHEAD = 0.65

SMALL = SimConfig(days=0.2, customers=5, rate_per_min=30, seed=3)
CLEAN = SimConfig(days=1.1, customers=8, rate_per_min=30, seed=5)
INCIDENTS = SimConfig(days=1.25, customers=8, rate_per_min=60, seed=7, incidents=True)


class Run:
    """One simulate() output, loaded: events in file order, customers, truth."""

    def __init__(self, outdir: Path, cfg: SimConfig) -> None:
        self.cfg = cfg
        self.outdir = outdir
        self.summary = simulate(outdir, cfg)
        self.raw = {
            kind: gzip.decompress((outdir / f"{kind}.jsonl.gz").read_bytes())
            for kind in ("usage", "errors")
        }
        self.usage = [orjson.loads(line) for line in self.raw["usage"].splitlines()]
        self.errors = [orjson.loads(line) for line in self.raw["errors"].splitlines()]
        self.customers = [
            orjson.loads(line) for line in (outdir / "customers.jsonl").read_bytes().splitlines()
        ]
        truth = outdir / "truth.json"
        self.truth = orjson.loads(truth.read_bytes()) if truth.exists() else None

    def attempts(self) -> list[dict[str, Any]]:
        """Usage and error events, producer duplicates dropped."""
        return self.unique

    @cached_property
    def unique(self) -> list[dict[str, Any]]:
        seen: set[str] = set()
        out = []
        for event in self.usage + self.errors:
            if event["event_id"] not in seen:
                seen.add(event["event_id"])
                out.append(event)
        return out

    def monthly_api_usd(self) -> dict[str, float]:
        """Projected monthly API cost per customer, USD, priced the way ingest prices it."""
        prices = PriceTable.load(DEFAULT_PRICES)
        spend: dict[str, float] = defaultdict(float)
        for e in self.attempts():
            cost = e.get("cost_usd")
            if cost is None:
                cost = prices.cost_usd(
                    e["provider"],
                    e["model"],
                    e.get("input_tokens", 0),
                    e.get("output_tokens", 0),
                    e.get("cached_input_tokens", 0),
                    e.get("cache_write_tokens", 0),
                )
            spend[e["customer_id"]] += cost
        return {c: usd / self.cfg.days * 30 for c, usd in spend.items()}


def seconds(ts: str | int | float) -> float:
    """Epoch seconds from any contract timestamp form."""
    if isinstance(ts, str):
        return datetime.fromisoformat(ts).timestamp()
    return ts / 1000 if ts > 1e11 else float(ts)


@pytest.fixture(scope="module")
def clean(tmp_path_factory: pytest.TempPathFactory) -> Run:
    return Run(tmp_path_factory.mktemp("clean"), CLEAN)


@pytest.fixture(scope="module")
def incidents(tmp_path_factory: pytest.TempPathFactory) -> Run:
    return Run(tmp_path_factory.mktemp("incidents"), INCIDENTS)


def incident(run: Run, kind: str) -> dict[str, Any]:
    assert run.truth is not None
    return next(inc for inc in run.truth["incidents"] if inc["kind"] == kind)


def window(inc: dict[str, Any], shift_s: float = 0.0) -> tuple[float, float]:
    return seconds(inc["start"]) + shift_s, seconds(inc["end"]) + shift_s


# Determinism -----------------------------------------------------------------------------


def test_same_seed_writes_byte_identical_files(tmp_path: Path) -> None:
    simulate(tmp_path / "a", SMALL)
    simulate(tmp_path / "b", SMALL)
    for name in ("usage.jsonl.gz", "errors.jsonl.gz", "customers.jsonl"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name


def test_different_seed_writes_different_traffic(tmp_path: Path) -> None:
    simulate(tmp_path / "a", SMALL)
    simulate(tmp_path / "b", SimConfig(days=0.2, customers=5, rate_per_min=30, seed=4))
    for name in ("usage.jsonl.gz", "customers.jsonl"):
        assert (tmp_path / "a" / name).read_bytes() != (tmp_path / "b" / name).read_bytes(), name


def test_iter_events_yields_what_simulate_writes(tmp_path: Path) -> None:
    simulate(tmp_path, SMALL)
    by_kind: dict[str, list[bytes]] = {"usage": [], "errors": []}
    for kind, event in iter_events(SMALL):
        by_kind[kind].append(orjson.dumps(event))
    for kind, lines in by_kind.items():
        written = gzip.decompress((tmp_path / f"{kind}.jsonl.gz").read_bytes()).splitlines()
        assert lines == written


def test_summary_counts_the_lines_written(clean: Run) -> None:
    assert isinstance(clean.summary, SimSummary)
    assert clean.summary.usage_events == len(clean.usage)
    assert clean.summary.error_events == len(clean.errors)
    assert clean.summary.customers == len(clean.customers) == CLEAN.customers
    assert "truth" not in clean.summary.files and clean.truth is None
    assert "usage events" in str(clean.summary)


# Contracts -------------------------------------------------------------------------------


def validator(name: str) -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(schema(name))


def test_every_event_of_a_sample_matches_its_contract(incidents: Run) -> None:
    usage, errors, customer = (validator(n) for n in ("usage-event", "error-event", "customer"))
    for event in incidents.usage[::20]:
        usage.validate(event)
    for event in incidents.errors:
        errors.validate(event)
    for record in incidents.customers:
        customer.validate(record)


def test_timestamps_mix_rfc3339_and_epoch_forms(clean: Run) -> None:
    events = clean.usage + clean.errors
    forms = Counter(type(e["ts"]).__name__ for e in events)
    strings = [e["ts"] for e in events if isinstance(e["ts"], str)]
    assert all(RFC3339.match(ts) for ts in strings)
    assert 0.03 < forms["float"] / len(events) < 0.07  # epoch seconds
    assert 0.03 < forms["int"] / len(events) < 0.07  # epoch milliseconds
    assert all(ts > 1e11 for e in events if isinstance(ts := e["ts"], int))
    assert {ts[-1] for ts in strings} == {"Z", "0"}  # 'Z' and '+00:00'


def test_timestamps_are_in_order_but_for_duplicates_a_moment_late(clean: Run) -> None:
    for events in (clean.usage, clean.errors):
        newest = 0.0
        for event in events:
            t = seconds(event["ts"])
            assert t >= newest - 3.0
            newest = max(newest, t)
    assert [seconds(e["ts"]) for e in clean.errors] == sorted(
        seconds(e["ts"]) for e in clean.errors
    )


def test_event_ids_are_unique_but_for_producer_duplicates(clean: Run) -> None:
    counts = Counter(e["event_id"] for e in clean.usage + clean.errors)
    assert max(counts.values()) == 2
    duplicates = sum(n - 1 for n in counts.values())
    assert 0.0005 < duplicates / len(clean.usage) < 0.005


def test_duplicates_repeat_the_identical_body(clean: Run) -> None:
    bodies: dict[str, set[bytes]] = defaultdict(set)
    for line in clean.raw["usage"].splitlines():
        bodies[orjson.loads(line)["event_id"]].add(line)
    assert all(len(lines) == 1 for lines in bodies.values())


# Realistic noise -------------------------------------------------------------------------


def test_clean_traffic_fails_about_one_and_a_half_percent(clean: Run) -> None:
    attempts = clean.attempts()
    first = [e for e in attempts if e["attempt"] == 1]
    failed = [e for e in first if "error_type" in e]
    assert 0.01 < len(failed) / len(first) < 0.02
    assert 0.01 < len(clean.errors) / len(attempts) < 0.03
    assert set(Counter(e["error_type"] for e in clean.errors)) == {
        "rate_limited",
        "timeout",
        "server_error",
        "overloaded",
    }
    assert all("retry_after_s" in e for e in clean.errors if e["error_type"] == "rate_limited")


def test_retries_share_request_id_with_the_next_attempt(clean: Run) -> None:
    by_request: dict[str, dict[int, dict[str, Any]]] = defaultdict(dict)
    for event in clean.attempts():
        by_request[event["request_id"]][event["attempt"]] = event
    for event in clean.errors:
        retried = event["attempt"] + 1 in by_request[event["request_id"]]
        assert retried == event["will_retry"]
        if retried:  # sent a few seconds after the failure (ts is when an attempt ended)
            retry = by_request[event["request_id"]][event["attempt"] + 1]
            sent = seconds(retry["ts"]) - retry["latency_ms"] / 1000
            assert 0 < sent - seconds(event["ts"]) < 10
    share = sum(e["will_retry"] for e in clean.errors) / len(clean.errors)
    assert 0.6 < share < 0.8
    assert all(e["attempt"] == 1 for e in clean.usage[:50] if len(by_request[e["request_id"]]) == 1)
    second = [e for e in clean.usage if e["attempt"] == 2]
    assert len(second) > 0.8 * sum(e["will_retry"] for e in clean.errors if e["attempt"] == 1)


def test_a_few_usage_events_report_their_price_table_cost(clean: Run) -> None:
    prices = PriceTable.load(DEFAULT_PRICES)
    reported = [e for e in clean.usage if "cost_usd" in e]
    assert 0.01 < len(reported) / len(clean.usage) < 0.03
    for e in reported:
        assert e["cost_usd"] == prices.cost_usd(
            e["provider"],
            e["model"],
            e["input_tokens"],
            e["output_tokens"],
            e.get("cached_input_tokens", 0),
            e.get("cache_write_tokens", 0),
        )


def test_anthropic_endpoints_use_the_prompt_cache(clean: Run) -> None:
    anthropic = [e for e in clean.usage if e["provider"] == "anthropic"]
    others = [e for e in clean.usage if e["provider"] != "anthropic"]
    assert anthropic, "no Anthropic traffic in this world"
    reads = sum(e["cached_input_tokens"] > 0 for e in anthropic) / len(anthropic)
    writes = sum(e["cache_write_tokens"] > 0 for e in anthropic) / len(anthropic)
    assert 0.75 < reads < 0.95 and 0.05 < writes < 0.2
    assert not any(e.get("cached_input_tokens") for e in others)


def test_afternoon_traffic_is_about_two_and_a_half_times_the_night(clean: Run) -> None:
    start = CLEAN.start.timestamp()
    hours = Counter(
        int((seconds(e["ts"]) - start) // 3600) for e in clean.attempts() if e["attempt"] == 1
    )
    afternoon = sum(hours[h] for h in (13, 14, 15, 16))
    night = sum(hours[h] for h in (1, 2, 3, 4))
    assert 1.8 < afternoon / night < 3.3


def test_customers_are_heavy_tailed_and_each_sends_a_request_a_minute(clean: Run) -> None:
    per_customer = Counter(e["customer_id"] for e in clean.attempts() if e["attempt"] == 1)
    minutes = CLEAN.days * 1440
    rates = sorted((n / minutes for n in per_customer.values()), reverse=True)
    assert len(rates) == CLEAN.customers
    assert min(rates) > 0.5  # ~1 request/min at the floor (night hours pull it down)
    assert rates[0] > 3 * rates[len(rates) // 2]


def test_paying_customers_pay_three_times_their_cost_to_serve(clean: Run) -> None:
    monthly = clean.monthly_api_usd()
    for record in clean.customers:
        if record["plan"] != "free":
            serve = monthly[record["customer_id"]] * (1 + OVERHEAD)
            assert record["monthly_price_usd"] >= 3 * serve, record


def test_free_customers_cost_under_ten_dollars_a_month(clean: Run) -> None:
    monthly = clean.monthly_api_usd()
    free = [r for r in clean.customers if r["plan"] == "free"]
    assert free, "expected some free-plan customers"
    for record in free:
        assert record["monthly_price_usd"] == 0
        assert monthly[record["customer_id"]] < 10.0, record


# Incidents -------------------------------------------------------------------------------


def test_truth_lists_the_five_incidents_starting_on_the_last_day(incidents: Run) -> None:
    truth = incidents.truth
    assert truth is not None
    assert truth["seed"] == INCIDENTS.seed and truth["bucket_s"] == 60
    start = seconds(truth["start"])
    assert start == INCIDENTS.start.timestamp()
    assert seconds(truth["end"]) == start + INCIDENTS.days * 86_400
    kinds = {inc["kind"]: inc for inc in truth["incidents"]}
    assert [inc["id"] for inc in truth["incidents"]] == [f"inc-{i}" for i in range(1, 6)]
    expected = {
        "runaway_loop": "spend_spike",
        "model_switch": "spend_spike",
        "retry_loop": "retry_storm",
        "provider_outage": "retry_storm",
        "plan_overgrowth": "margin_breach",
    }
    assert {kind: inc["alertname"] for kind, inc in kinds.items()} == expected
    timed = [inc for inc in truth["incidents"] if inc["kind"] != "plan_overgrowth"]
    assert all(seconds(inc["start"]) >= start + 86_400 for inc in timed)
    assert len({inc["start"] for inc in timed}) == len(timed)
    assert seconds(kinds["plan_overgrowth"]["start"]) == start
    assert set(kinds["provider_outage"]["labels"]) == {"provider", "model"}
    assert set(kinds["plan_overgrowth"]["labels"]) == {"customer_id"}
    for kind in ("runaway_loop", "model_switch", "retry_loop"):
        assert set(kinds[kind]["labels"]) == {"customer_id", "endpoint"}


def test_incidents_on_one_customer_do_not_overlap(incidents: Run) -> None:
    assert incidents.truth is not None
    spans: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for inc in incidents.truth["incidents"]:
        if "customer_id" in inc["labels"]:
            spans[inc["labels"]["customer_id"]].append(window(inc))
    for customer_spans in spans.values():
        customer_spans.sort()
        for (_, end), (start, _) in zip(customer_spans, customer_spans[1:], strict=False):
            assert start >= end


def first_attempts(run: Run, labels: dict[str, str], span: tuple[float, float]) -> int:
    return sum(
        1
        for e in run.attempts()
        if e["attempt"] == 1
        and span[0] <= seconds(e["ts"]) < span[1]
        and all(e[k] == v for k, v in labels.items())
    )


def test_runaway_loop_sends_ten_times_the_requests_of_the_day_before(incidents: Run) -> None:
    inc = incident(incidents, "runaway_loop")
    during = first_attempts(incidents, inc["labels"], window(inc))
    day_before = first_attempts(incidents, inc["labels"], window(inc, -86_400))
    assert during >= 10 * max(day_before, 1)


def test_model_switch_moves_the_endpoint_to_the_expensive_model(incidents: Run) -> None:
    inc = incident(incidents, "model_switch")
    lo, hi = window(inc)
    provider, model = inc["detail"]["to"].split("/")
    on_endpoint = [
        e for e in incidents.attempts() if all(e[k] == v for k, v in inc["labels"].items())
    ]
    during = {
        (e["provider"], e["model"])
        for e in on_endpoint
        if lo <= seconds(e["ts"]) < hi and e["attempt"] == 1
    }
    before = {(e["provider"], e["model"]) for e in on_endpoint if seconds(e["ts"]) < lo}
    assert during == {(provider, model)}
    assert before == {(inc["detail"]["provider"], inc["detail"]["model"])}
    assert model in ("gpt-4o", "claude-opus-4-1")


def test_retry_loop_rate_limits_half_the_attempts_up_to_attempt_five(incidents: Run) -> None:
    inc = incident(incidents, "retry_loop")
    lo, hi = window(inc)
    events = [
        e
        for e in incidents.attempts()
        if lo <= seconds(e["ts"]) < hi and all(e[k] == v for k, v in inc["labels"].items())
    ]
    limited = [e for e in events if e.get("error_type") == "rate_limited"]
    assert 0.35 < len(limited) / len(events) < 0.65
    assert max(e["attempt"] for e in events) == 5
    assert all(e["http_status"] == 429 and e["retry_after_s"] > 0 for e in limited)


def test_provider_outage_fails_the_model_for_three_customers_or_more(incidents: Run) -> None:
    inc = incident(incidents, "provider_outage")
    lo, hi = window(inc)
    labels = inc["labels"]
    share: dict[str, list[int]] = defaultdict(lambda: [0, 0])  # failed, all
    outside = [0, 0]
    for e in incidents.attempts():
        if (e["provider"], e["model"]) != (labels["provider"], labels["model"]):
            continue
        counts = share[e["customer_id"]] if lo <= seconds(e["ts"]) < hi else outside
        counts[0] += "error_type" in e
        counts[1] += 1
    hit = [c for c, (failed, n) in share.items() if n >= 5 and failed / n > 0.3]
    assert len(hit) >= 3
    assert outside[0] / outside[1] < 0.05


def test_overgrowth_customer_pays_less_than_its_cost_to_serve(incidents: Run) -> None:
    inc = incident(incidents, "plan_overgrowth")
    customer_id = inc["labels"]["customer_id"]
    record = next(r for r in incidents.customers if r["customer_id"] == customer_id)
    serve = incidents.monthly_api_usd()[customer_id] * (1 + OVERHEAD)
    assert record["plan"] in ("starter", "pro")
    assert 0 < record["monthly_price_usd"] < 0.6 * serve
    # Its billing month starts with the run: a month-end projection sees it outgrow its plan.
    assert record["billing_day"] == INCIDENTS.start.day
    assert "margin_target" not in record


def test_truth_names_the_alerts_an_incident_may_also_raise(incidents: Run) -> None:
    runaway = incident(incidents, "runaway_loop")
    assert runaway["secondary"] == [
        {"alertname": "spend_spike", "labels": {"customer_id": runaway["labels"]["customer_id"]}}
    ]
    outage = incident(incidents, "provider_outage")
    on_model = {
        (e["customer_id"], e["endpoint"])
        for e in incidents.attempts()
        if (e["provider"], e["model"]) == tuple(outage["labels"].values())
        and e["attempt"] == 1
        and seconds(e["ts"]) < seconds(outage["start"])
    }
    secondary = {(s["labels"]["customer_id"], s["labels"]["endpoint"]) for s in outage["secondary"]}
    assert on_model <= secondary
    assert {s["alertname"] for s in outage["secondary"]} == {"retry_storm"}


def test_incidents_leave_the_day_before_them_unchanged() -> None:
    cutoff = INCIDENTS.start.timestamp() + 86_400 - 60

    def first_day(cfg: SimConfig) -> list[dict[str, Any]]:
        events = (event for _, event in iter_events(cfg))
        return list(takewhile(lambda e: seconds(e["ts"]) < cutoff, events))

    assert first_day(INCIDENTS) == first_day(replace(INCIDENTS, incidents=False))


def test_start_must_be_timezone_aware(tmp_path: Path) -> None:
    assert SimConfig().start.isoformat() == "2026-11-02T00:00:00+00:00"
    assert SimConfig().start.weekday() == 0  # a Monday
    with pytest.raises(ValueError, match="timezone-aware"):
        simulate(tmp_path, replace(SMALL, start=datetime(2026, 11, 2)))


def test_incidents_need_a_day_of_history(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="days >= 1.06"):
        simulate(tmp_path, SimConfig(days=1.0, customers=8, rate_per_min=60, incidents=True))
