"""cost_shift end to end: real events through Pipeline, the worker's stages and states,
and the attribution on the alert as Slack and the backtest show it."""

from __future__ import annotations

import random

import orjson
import pytest

from detectors.cost_shift import CostShiftState
from stream.core.alerts import Alert
from stream.core.buckets import CACHED_TOKENS, INPUT_TOKENS, OUTPUT_TOKENS, ROW_FIELDS
from stream.core.ingest import Ingest
from stream.core.pipeline import Pipeline
from stream.core.pricing import PriceTable
from stream.kafka.stages import (
    GlobalStage,
    PartitionDetect,
    Priced,
    decode_bundle,
    decode_rollups,
    encode_bundle,
)
from stream.kafka.state import CustomerStates, OpenRows
from stream.notify.model import Notification
from stream.notify.receivers.slack_blocks import blocks
from stream.offline.backtest import Run, episodes, format_text
from stream.settings import CONFIG_DIR, Settings, settings_from_dict

T0 = 1_793_577_600.0  # 2026-11-02T00:00:00Z
HOUR = 3600.0
SETTINGS = Settings()
PRICES = PriceTable.load(CONFIG_DIR / "prices.yaml")
SWITCH = T0 + 34 * HOUR  # day 2, 10:00
RUNAWAY = (T0 + 26 * HOUR, T0 + 26.5 * HOUR)  # day 2, 02:00-02:30


def model_of(endpoint: str, ts: float) -> str:
    if endpoint == "chat":
        return "gpt-4o" if ts >= SWITCH else "gpt-4o-mini"
    return "gpt-4o" if endpoint == "agent" else "gpt-4o-mini"


def tokens(endpoint: str) -> tuple[int, int]:
    """Median input and output tokens: agent requests are long (~$0.018 each)."""
    return (4000, 800) if endpoint == "agent" else (1000, 200)


def events(hours: float = 40.0, seed: int = 3) -> list[tuple[float, bytes]]:
    """acme's traffic: chat and search at 165 requests an hour on gpt-4o-mini, agent at
    60 an hour on gpt-4o (~$1/h); chat switches to gpt-4o at SWITCH (same volume, same tokens),
    agent runs away (10x requests) for half an hour on day 2."""
    rng = random.Random(seed)
    out = []
    for endpoint, per_hour in (("chat", 165.0), ("search", 165.0), ("agent", 60.0)):
        ts = T0
        while ts < T0 + hours * HOUR:
            runaway = endpoint == "agent" and RUNAWAY[0] <= ts < RUNAWAY[1]
            ts += rng.expovariate(per_hour * (10 if runaway else 1) / HOUR)
            body = {
                "event_id": f"{endpoint}-{len(out)}",
                "ts": round(ts, 3),
                "customer_id": "acme",
                "endpoint": endpoint,
                "provider": "openai",
                "model": model_of(endpoint, ts),
                "input_tokens": int(tokens(endpoint)[0] * rng.uniform(0.8, 1.2)),
                "output_tokens": int(tokens(endpoint)[1] * rng.uniform(0.75, 1.25)),
            }
            out.append((ts, orjson.dumps(body)))
    return sorted(out, key=lambda item: item[0])


@pytest.fixture(scope="module")
def run() -> tuple[list[tuple[float, Alert]], Pipeline]:
    """Alerts with the event time of the event that brought them out."""
    pipeline = Pipeline(SETTINGS, PRICES)
    out = []
    for ts, raw in events():
        out += [(ts, a) for a in pipeline.feed("usage", raw)]
    return out, pipeline


def test_a_model_switch_on_one_endpoint_fires_cost_shift_for_it_with_its_attribution(run):
    alerts, _ = run
    shifts = [(ts, a) for ts, a in alerts if a.labels["alertname"] == "cost_shift"]
    firing = [(ts, a) for ts, a in shifts if a.status == "firing"]
    endpoint = [(ts, a) for ts, a in firing if a.labels.get("endpoint") == "chat"]
    assert len(endpoint) == 1
    fired_at, alert = endpoint[0]
    assert alert.labels == {
        "alertname": "cost_shift",
        "severity": "warning",
        "customer_id": "acme",
        "endpoint": "chat",
        "scope": "endpoint",
    }
    assert SWITCH + HOUR <= fired_at <= SWITCH + 1.5 * HOUR
    assert SWITCH - 300 <= alert.starts_at <= SWITCH + 1800
    notes = alert.annotations
    assert notes["summary"].startswith("Cost shift for acme on chat: $0.00")
    assert float(notes["ratio"]) > 8
    assert 0.6 <= float(notes["money_at_risk_usd_per_hour"]) <= 0.8  # $0.70/h: under $3/h
    assert notes["attribution"].startswith("+$0.")
    assert ": model mix +1," in notes["attribution"]
    assert float(notes["excess_model_mix_pct"]) > 95
    assert abs(float(notes["excess_volume_pct"])) < 1
    shares = [float(v) for k, v in notes.items() if k.startswith("excess_") and k.endswith("_pct")]
    assert sum(shares) == pytest.approx(100, abs=0.01)
    # No other endpoint shifted; the customer did (its chat requests cost 15x).
    assert {a.labels.get("endpoint") for _, a in firing} == {"chat", None}


def test_a_runaway_loop_is_a_spend_spike_attributed_to_volume_and_no_cost_shift(run):
    alerts, _ = run
    spikes = [
        a
        for _, a in alerts
        if a.labels["alertname"] == "spend_spike"
        and a.status == "firing"
        and a.labels.get("endpoint") == "agent"
    ]
    assert spikes and RUNAWAY[0] <= spikes[0].starts_at < RUNAWAY[1]
    notes = spikes[0].annotations
    assert notes["attribution"].startswith("+$") and ": volume +" in notes["attribution"]
    assert float(notes["excess_volume_pct"]) > 80
    assert not [
        a
        for _, a in alerts
        if a.labels["alertname"] == "cost_shift" and a.starts_at < SWITCH - HOUR
    ]


def test_the_shift_state_of_every_key_is_in_the_detection_tables(run):
    _, pipeline = run
    detection = pipeline.per_customer
    assert set(detection.shift_endpoint) == {("acme", e) for e in ("chat", "search", "agent")}
    assert set(detection.shift_customer) == {"acme"}
    assert detection.shift_endpoint[("acme", "chat")].episode is not None
    assert ("acme", "chat") in detection.active["shift_endpoint"]


def test_slack_shows_why_and_the_money_per_month(run):
    alerts, _ = run
    [alert] = [
        a
        for _, a in alerts
        if a.labels["alertname"] == "cost_shift"
        and a.status == "firing"
        and a.labels.get("endpoint") == "chat"
    ]
    payload = alert.to_payload()
    n = Notification("slack", "g", "firing", {}, payload["labels"], {}, (payload,))
    out = blocks(n)
    fields = [f["text"] for f in out[1]["fields"]]
    assert any(f.startswith("Money at risk: $0.") and "/month)" in f for f in fields)
    assert any(f.startswith("Observed: $0.00") and "×" in f for f in fields)
    why = [b for b in out if b["type"] == "context" and "Why:" in b["elements"][0]["text"]]
    assert why and "model mix" in why[0]["elements"][0]["text"]


def test_the_backtest_lists_why_with_the_episode(run):
    alerts, pipeline = run
    found = episodes([a for _, a in alerts])
    shift = [e for e in found if e.alertname == "cost_shift" and "ep" in e.key_text]
    assert shift and "model mix" in shift[0].why
    assert shift[0].to_json()["attribution"] == shift[0].why
    text = format_text([Run("default", found, pipeline.buckets.watermark)])
    assert "why cus=acme,ep=chat cost_shift" in text


def priced(i: int, ts: float, **tokens: int) -> Priced:
    return Priced(
        "usage", f"e{i}", ts, "acme", "chat", "openai", "gpt-4o", 1, False, False, 0.01,
        "usage:0", i, **tokens,
    )  # fmt: skip


def test_an_older_workers_bundle_of_events_without_tokens_reads_as_no_tokens():
    new = [priced(0, T0 + 1, input_tokens=1000, output_tokens=200, cached_input_tokens=300)]
    old = [tuple(e)[:13] for e in [priced(1, T0 + 2)]]  # what a worker before tokens wrote
    raw = orjson.dumps({"e": [list(e) for e in new] + [list(e) for e in old], "m": {}})
    events, _ = decode_bundle(raw)
    assert [e.input_tokens for e in events] == [1000, 0]
    assert Priced.decode(orjson.dumps(old[0])).cached_input_tokens == 0
    detect = PartitionDetect(SETTINGS, lambda c: None, CustomerStates({}), 0, 1)
    assert detect.add_bundle(raw)[:2] == (2, 0)
    [row] = detect.buckets.open[int(T0 // 60)].values()
    assert len(row) == ROW_FIELDS
    assert (row[INPUT_TOKENS], row[OUTPUT_TOKENS], row[CACHED_TOKENS]) == (1000, 200, 300)


def test_open_rows_saved_before_tokens_read_as_no_tokens_and_rollups_carry_none():
    table: dict[bytes, bytes] = {}
    states = CustomerStates(table)
    index = int(T0 // 60)
    # A worker's open row from before tokens: bucket, key, then 8 counts.
    states.record("acme")["open"] = OpenRows([[index, "chat", "openai", "gpt-4o", *[1.0] * 8]])
    states.dirty.add("acme")
    states.flush()
    detect = PartitionDetect(SETTINGS, lambda c: None, CustomerStates(table), 0, 1)
    snapshot = orjson.dumps(
        {"closed_upto": index - 1, "watermark": T0, "sources": {}, "source_times": {}}
    )
    detect.restore(snapshot, detect.states.load(iter(table.items())))
    [row] = detect.buckets.open[index].values()
    assert row == [1.0] * 8 + [0.0] * 3
    # Rollups keep their layout (8 counts, the top customer's 2), tokens or not: an older
    # partition's report reads the same, and a backlog's report grows no larger.
    _, rollups = detect.detection.close(index, detect.buckets.pop(index))
    assert rollups[("openai", "gpt-4o")] == [1.0] * 8 + [1.0, 1.0]
    raw = orjson.dumps({"p": 1, "w": index, "r": [[index, [["openai", "gpt-4o", *[2.0] * 10]]]]})
    _, _, part, _ = decode_rollups(raw)
    stage = GlobalStage(SETTINGS, 1)
    stage.add(0, index - 1, part + [(index, rollups)])
    assert stage.pending[index][("openai", "gpt-4o")] == [3.0] * 8 + [2.0, 2.0]


def priced_events(hours: float) -> list[Priced]:
    ingest = Ingest(SETTINGS.ingest, PRICES, dedup=False)
    out: list[Priced] = []
    for offset, (_, raw) in enumerate(events(hours=hours)):
        event = ingest.parse("usage", raw)
        out.append(
            Priced(
                "usage", event.event_id, event.ts, event.customer_id, event.endpoint,
                event.provider, event.model, event.attempt, event.failed, event.rate_limited,
                ingest.admit("usage", event), "usage:0", offset, event.input_tokens,
                event.output_tokens, event.cached_input_tokens,
            )
        )  # fmt: skip
    return out


def feed(detect: PartitionDetect, chunk: list[Priced], size: int = 2000) -> list:
    keyed = []
    for start in range(0, len(chunk), size):
        part = chunk[start : start + size]
        detect.add_bundle(encode_bundle(part, {"usage:0": part[-1].ts}))
        keyed += detect.close_due()[0]
    return keyed


def test_cost_shift_states_live_in_the_customers_records_and_come_back_with_open_alerts():
    table: dict[bytes, bytes] = {}
    states = CustomerStates(table)
    detect = PartitionDetect(SETTINGS, lambda c: None, states, 0, 1)
    keyed = feed(detect, priced_events(36.5))
    assert any(k.decision.alertname == "cost_shift" for k in keyed)
    detect.save_open_rows()
    states.flush()
    restored = CustomerStates(table)
    active = restored.load(iter(table.items()))
    assert ("acme", "chat") in active["shift_endpoint"]
    view = restored.view("shift_endpoint")
    for key in (("acme", "chat"), ("acme", "search")):
        before: CostShiftState = detect.states.view("shift_endpoint")[key]
        assert view[key].to_dict() == before.to_dict()
    record = orjson.loads(table[b"acme"])
    for slot in ("shift_customer", "shift_endpoint\x1fchat"):
        assert len(orjson.dumps(record[slot])) < 2048


def test_an_accept_from_override_resolves_the_alert_and_the_new_level_stays_quiet():
    """The on-call accepts chat's new model in the config, from SWITCH + 3 h: that key's
    alert resolves then, and chat stays quiet on gpt-4o. Its customer's alert resolves
    soon after by itself: the customer's requests are expected to cost what its endpoints'
    baselines say, and chat's now says gpt-4o."""
    accepted = SWITCH + 3 * HOUR
    override = {
        "match": {"customer_id": "acme", "endpoint": "chat"},
        "cost_shift": {"accept_from": "2026-11-03T13:00:00Z"},
    }
    assert accepted == T0 + 37 * HOUR  # 2026-11-03T13:00:00Z
    settings = settings_from_dict({"detectors": {"overrides": [override]}})
    pipeline = Pipeline(settings, PRICES)
    out = []
    for _, raw in events(hours=58.0):
        out += pipeline.feed("usage", raw)
    chat = [
        a
        for a in out
        if a.labels["alertname"] == "cost_shift" and a.labels.get("endpoint") == "chat"
    ]
    assert [(a.status, a.ends_at) for a in chat] == [("firing", None), ("resolved", accepted)]
    assert chat[1].annotations["resolved_by"] == "accept_from"
    assert "overrides[0]" in chat[1].annotations["threshold_source"]
    customer = [
        a for a in out if a.labels["alertname"] == "cost_shift" and "endpoint" not in a.labels
    ]
    assert [a.status for a in customer] == ["firing", "resolved"]
    assert accepted <= customer[1].ends_at <= accepted + HOUR
    assert "resolved_by" not in customer[1].annotations  # calm, not accepted
    state = pipeline.per_customer.shift_endpoint[("acme", "chat")]
    assert state.accepted == accepted and state.episode is None


def test_a_worker_restarted_in_the_middle_of_a_step_learns_what_one_never_stopped_learns():
    """The step being summed is saved with the customers' states: after a crash and the
    re-delivery of what followed the last save, every cost_shift state is the same."""
    chunk = priced_events(38.0)
    whole = PartitionDetect(SETTINGS, lambda c: None, CustomerStates({}), 0, 1)
    alerts = feed(whole, chunk)
    table: dict[bytes, bytes] = {}
    first = PartitionDetect(SETTINGS, lambda c: None, CustomerStates(table), 0, 1)
    cut = len(chunk) * 2 // 3
    before = feed(first, chunk[:cut], size=1000)
    assert first.detection.shift_usage["shift_endpoint"]  # cut inside a step
    first.save_open_rows()
    first.states.flush()
    table[first.key] = first.snapshot()
    first.add_bundle(encode_bundle(chunk[cut : cut + 500], {}))  # applied, never saved
    restored = CustomerStates(table)
    second = PartitionDetect(SETTINGS, lambda c: None, restored, 0, 1)
    second.restore(table[second.key], restored.load(iter(list(table.items()))))
    after = feed(second, chunk, size=1000)  # from the start: the first part is re-delivered
    ident = lambda ks: sorted((str(k.key), k.decision.status, k.decision.starts_at) for k in ks)  # noqa: E731
    assert ident(before + after) == ident(alerts)
    for name in ("shift_endpoint", "shift_customer"):
        mine, theirs = second.detection.shift_usage, whole.detection.shift_usage
        assert mine[name] == theirs[name]
        view = restored.view(name)
        for key, state in whole.states.view(name).items():
            assert view[key].to_dict() == state.to_dict(), key
