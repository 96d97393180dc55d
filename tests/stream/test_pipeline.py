"""The embedded pipeline on hand-made events: ingest rules, buckets, alerts."""

import orjson
import pytest

from stream.core.events import Customer
from stream.core.ingest import DeadLetter
from stream.core.pipeline import Pipeline
from stream.core.pricing import PriceTable
from stream.settings import CONFIG_DIR, Settings

T0 = 1793577600.0  # 2026-11-02T00:00:00Z
PRICES = PriceTable.load(CONFIG_DIR / "prices.yaml")


def event(i, ts, customer="acme", endpoint="chat", model="gpt-4o", **extra):
    body = {
        "event_id": f"ev-{i}",
        "ts": ts,
        "customer_id": customer,
        "endpoint": endpoint,
        "provider": "openai",
        "model": model,
        "input_tokens": 2000,
        "output_tokens": 500,
    }
    return orjson.dumps({**body, **extra})


def make(settings=None, customers=None):
    dead = []
    pipeline = Pipeline(
        settings or Settings(),
        PriceTable.load(CONFIG_DIR / "prices.yaml"),
        customers,
        on_dead_letter=dead.append,
    )
    return pipeline, dead


def bucket_rows(pipeline):
    return {i: dict(rows) for i, rows in pipeline.buckets.open.items()}


def test_events_are_priced_from_the_table_unless_they_carry_cost():
    pipeline, _ = make()
    pipeline.feed("usage", event(1, T0 + 1))
    pipeline.feed("usage", event(2, T0 + 2, cost_usd=0.5))
    row = pipeline.buckets.open[int(T0 // 60)][("acme", "chat", "openai", "gpt-4o")]
    assert row[0] == pytest.approx(0.01 + 0.5)  # 2,000 in + 500 out at $2.50/$10 = $0.01
    assert row[1] == 2


def test_duplicate_event_ids_are_counted_once():
    pipeline, _ = make()
    for _ in range(3):
        pipeline.feed("usage", event(1, T0 + 1))
    assert pipeline.ingest.stats.duplicates == 2
    assert pipeline.ingest.stats.accepted["usage"] == 1


def test_bad_input_goes_to_dead_letters_with_reason_and_original_bytes():
    pipeline, dead = make()
    raws = [
        b"{nope",
        event(1, T0, input_tokens=-1),
        b"x" * 70_000,
        event(2, "2100-01-02T00:00:00Z"),
    ]
    for raw in raws:
        assert pipeline.feed("usage", raw) == []
    assert [d.rejection.reason for d in dead] == [
        "json_invalid",
        "greater_than_equal",
        "too_large",
        "bad_timestamp",
    ]
    assert all(
        isinstance(d, DeadLetter) and d.raw == raw for d, raw in zip(dead, raws, strict=True)
    )
    assert sum(pipeline.ingest.stats.rejected.values()) == 4
    pipeline.feed("usage", event(3, T0))  # the stream goes on
    assert pipeline.ingest.stats.accepted["usage"] == 1


def test_an_event_far_ahead_of_stream_time_is_refused_not_trusted():
    pipeline, dead = make()
    pipeline.feed("usage", event(1, T0))
    pipeline.feed("usage", event(2, T0 + 30 * 86400))
    assert dead[0].rejection.reason == "ts_in_future"
    assert pipeline.buckets.watermark == T0


def test_late_events_within_lateness_count_and_later_ones_are_dropped():
    pipeline, _ = make()
    pipeline.feed("usage", event(1, T0 + 10))
    pipeline.feed("usage", event(2, T0 + 70))
    pipeline.feed("usage", event(3, T0 + 50))  # 20 s late: bucket 0 still open
    assert pipeline.buckets.open[int(T0 // 60)][("acme", "chat", "openai", "gpt-4o")][1] == 2
    pipeline.feed("usage", event(4, T0 + 95))  # watermark passes 60 + 30 s lateness
    assert int(T0 // 60) not in pipeline.buckets.open
    pipeline.feed("usage", event(5, T0 + 20))
    assert pipeline.buckets.stats.late_events == 1


def test_unknown_models_are_priced_by_fallback_and_counted():
    pipeline, _ = make()
    pipeline.feed("usage", event(1, T0, model="gpt-99-ultra"))
    assert pipeline.ingest.prices.unknown_models[("openai", "gpt-99-ultra")] == 1


def test_a_runaway_customer_fires_a_spend_spike_with_labels_and_resolves():
    settings = Settings(detectors={"spend_spike": {"warmup_s": 3600}})
    pipeline, _ = make(settings)
    alerts = []
    n = 0
    for minute in range(200):
        per_min = 30 if 120 <= minute < 150 else 3
        for k in range(per_min):
            n += 1
            alerts += pipeline.feed("usage", event(n, T0 + minute * 60 + k * 60 / per_min))
    alerts += pipeline.flush()
    spikes = [a for a in alerts if a.labels["alertname"] == "spend_spike"]
    keys = {(a.labels["scope"], a.status) for a in spikes}
    assert keys == {
        ("customer", "firing"),
        ("customer", "resolved"),
        ("endpoint", "firing"),
        ("endpoint", "resolved"),
    }
    firing = next(a for a in spikes if a.status == "firing" and a.labels["scope"] == "endpoint")
    assert firing.labels["customer_id"] == "acme" and firing.labels["endpoint"] == "chat"
    assert firing.starts_at == T0 + 120 * 60


def test_a_provider_outage_fires_one_global_retry_storm():
    pipeline, _ = make()
    alerts = []
    n = 0
    for minute in range(60):
        for customer in ("a", "b", "c", "d"):
            for k in range(30):
                n += 1
                ts = T0 + minute * 60 + k * 2
                if 30 <= minute < 40 and k % 3:
                    raw = event(n, ts, customer=customer, error_type="server_error")
                    alerts += pipeline.feed("errors", raw)
                else:
                    alerts += pipeline.feed("usage", event(n, ts, customer=customer))
    alerts += pipeline.flush()
    storms = [a for a in alerts if a.labels["scope"] == "provider"]
    assert [(a.status, a.labels["provider"], a.labels["model"]) for a in storms] == [
        ("firing", "openai", "gpt-4o"),
        ("resolved", "openai", "gpt-4o"),
    ]
    per_customer = {
        a.labels["customer_id"]
        for a in alerts
        if a.labels["alertname"] == "retry_storm" and "customer_id" in a.labels
    }
    assert per_customer == {"a", "b", "c", "d"}


def test_margin_breach_needs_a_customer_record():
    customers = {"acme": Customer(customer_id="acme", plan="starter", monthly_price_usd=1.0)}
    pipeline, _ = make(customers=customers)
    alerts = []
    for minute in range(30):
        alerts += pipeline.feed("usage", event(minute, T0 + minute * 60, cost_usd=0.5))
        alerts += pipeline.feed("usage", event(1000 + minute, T0 + minute * 60, customer="nobody"))
    alerts += pipeline.flush()
    margins = [a for a in alerts if a.labels["alertname"] == "margin_breach"]
    assert [(a.status, a.labels["severity"], a.labels["customer_id"]) for a in margins] == [
        ("firing", "critical", "acme")
    ]
    assert pipeline.per_customer.unknown_customers == {"nobody"}


def test_margin_terms_follow_a_replaced_customer_record_and_reloaded_settings():
    acme = Customer(customer_id="acme", plan="starter", monthly_price_usd=100.0)
    pipeline, _ = make(customers={"acme": acme})
    detection = pipeline.per_customer
    first = detection.terms("acme")
    assert first is not None and first.price_usd == 100.0
    assert detection.terms("acme") is first  # asked every bucket: kept while nothing changed
    pipeline.upsert_customer(acme.model_copy(update={"monthly_price_usd": 250.0}))
    assert detection.terms("acme").price_usd == 250.0
    raised = Settings.model_validate({"plans": {"starter": {"overhead_ratio": 1.5}}})
    detection.reload(raised)
    assert detection.terms("acme").overhead_ratio == 1.5
    pipeline.upsert_customer(acme.model_copy(update={"deleted": True}))
    assert detection.terms("acme") is None


def test_the_margin_terms_cache_is_bounded(monkeypatch):
    import stream.core.detect

    monkeypatch.setattr(stream.core.detect, "MAX_CACHED_TERMS", 3)
    customers = {
        f"c{i}": Customer(customer_id=f"c{i}", plan="pro", monthly_price_usd=10.0 + i)
        for i in range(10)
    }
    pipeline, _ = make(customers=customers)
    for i in range(10):
        assert pipeline.per_customer.terms(f"c{i}").price_usd == 10.0 + i
        assert len(pipeline.per_customer._terms) <= 3
