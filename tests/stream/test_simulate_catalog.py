"""stream.offline.simulate's benchmark traffic: catalog incidents, bursts, sparse keys."""

from __future__ import annotations

import statistics
from collections import defaultdict
from dataclasses import replace
from datetime import datetime

import pytest

from stream.core.pricing import PriceTable
from stream.offline.simulate import DEFAULT_PRICES, SimConfig
from stream.offline.simulate.catalog import KINDS
from stream.offline.simulate.traffic import Traffic
from stream.offline.simulate.world import build_world

CATALOG = SimConfig(
    days=1.6,
    customers=80,
    seed=3,
    rate_per_min=40,
    incident_kinds=tuple(KINDS),
    incident_sizes={kind: (max(spec.sizes),) for kind, spec in KINDS.items()},
    bursts=3,
    sparse_share=0.2,
)


@pytest.fixture(scope="module")
def run():
    traffic = Traffic(CATALOG)
    events = list(traffic.emissions())
    return traffic, events


def test_every_catalog_incident_is_labelled_with_kind_size_key_times_and_excess(run):
    traffic, _ = run
    truths = [inc.truth() for inc in traffic.incidents]
    assert sorted({t["kind"] for t in truths}) == sorted(KINDS)
    assert len(truths) == 2 * len(KINDS)  # one key drawn by spend, one uniformly
    for t in truths:
        assert t["size"] == max(KINDS[t["kind"]].sizes)
        assert t["excess_usd_per_month"] == pytest.approx(730 * t["excess_usd_per_hour"], abs=0.05)
        assert datetime.fromisoformat(t["start"]) >= datetime.fromisoformat("2026-11-03T00:00:00Z")
        assert ("customer_id" in t["labels"]) != (t["kind"] == "provider_outage")
    customers = [inc.customer for inc in traffic.incidents if inc.customer is not None]
    assert len(customers) == len(set(customers))  # one incident per customer


def test_prompt_growth_multiplies_input_tokens_on_its_endpoint_only_after_onset(run):
    traffic, events = run
    inc = next(i for i in traffic.incidents if i.kind == "prompt_growth")
    before, after = [], []
    for kind, event, _ in events:
        if kind != "usage" or event["customer_id"] != inc.labels["customer_id"]:
            continue
        if event["endpoint"] != inc.labels["endpoint"]:
            continue
        ms = _ms(event["ts"])
        (after if ms >= inc.start_ms else before).append(event["input_tokens"])
    assert len(before) > 20 and len(after) > 20
    ratio = statistics.median(after) / statistics.median(before)
    assert 2.0 < ratio < 4.5


def test_bursts_are_labelled_on_customers_without_an_incident(run):
    traffic, _ = run
    busy = {inc.customer for inc in traffic.incidents}
    assert len(traffic.bursts) == round(3 * 1.6)
    assert all(traffic.world.endpoints[b.endpoint].customer not in busy for b in traffic.bursts)
    assert all(1.5 <= b.multiplier <= 6 for b in traffic.bursts)


def test_sparse_share_slows_some_paying_customers_and_leaves_the_rest_alone():
    prices = PriceTable.load(DEFAULT_PRICES)
    plain = build_world(replace(CATALOG, sparse_share=0.0), prices)
    sparse = build_world(CATALOG, prices)
    slowed = [(a, b) for a, b in zip(plain.customers, sparse.customers, strict=True) if a != b]
    assert len(slowed) == round(0.2 * sum(not c.free_tier for c in plain.customers))
    assert all(b.rate_per_min <= 0.5 and not b.free_tier for _, b in slowed)
    assert [c.name for c in plain.customers] == [c.name for c in sparse.customers]


def test_catalog_and_plain_incidents_are_exclusive_and_unknown_kinds_are_named():
    with pytest.raises(ValueError, match="exclusive"):
        Traffic(replace(CATALOG, incidents=True))
    with pytest.raises(ValueError, match="unknown \\['meteor'\\]"):
        Traffic(replace(CATALOG, incident_kinds=("meteor",)))


def _ms(ts: object) -> float:
    if isinstance(ts, str):
        return datetime.fromisoformat(ts).timestamp() * 1000
    value = float(ts)  # type: ignore[arg-type]
    return value if value > 1e11 else value * 1000


def test_margin_erosion_ramps_up_its_customers_requests(run):
    traffic, events = run
    inc = next(i for i in traffic.incidents if i.kind == "margin_erosion")
    per_hour: dict[int, int] = defaultdict(int)
    for kind, event, _ in events:
        if kind == "usage" and event["customer_id"] == inc.labels["customer_id"]:
            per_hour[int((_ms(event["ts"]) - traffic.start_ms) // 3_600_000)] += 1
    onset = (inc.start_ms - traffic.start_ms) // 3_600_000
    last = (traffic.end_ms - traffic.start_ms) // 3_600_000 - 1
    assert inc.end_ms - inc.start_ms >= 12 * 3_600_000  # the 12 h ramp is done by the end
    assert per_hour[last] > 2 * per_hour[onset - 1]  # 6x, whatever the daily cycle does
