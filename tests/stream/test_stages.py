"""The worker's stages without Kafka: exactly-once effect, watermarks, snapshots."""

from __future__ import annotations

import gzip

import orjson

from stream.customers import load_customers
from stream.detect import Keyed
from stream.ingest import DeadLetter
from stream.pipeline import Pipeline
from stream.pricing import PriceTable
from stream.replay import replay_files
from stream.settings import CONFIG_DIR, Settings
from stream.simulate import SimConfig, simulate
from stream.stages import GlobalStage, IngestStage, PartitionDetect, Priced, SourceClock
from stream.state import CustomerStates

T0 = 1793577600.0
SETTINGS = Settings()
PRICES = PriceTable.load(CONFIG_DIR / "prices.yaml")


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_the_watermark_waits_for_the_slowest_active_source_and_not_for_idle_ones():
    clock = FakeClock()
    sources = SourceClock(idle_s=10, clock=clock)
    sources.observe("usage:0", T0 + 600)
    sources.observe("errors:0", T0 + 60_000)  # read far ahead during a catch-up
    assert sources.watermark() == T0 + 600
    clock.now = 11
    sources.observe("usage:0", T0 + 700)
    assert sources.watermark() == T0 + 700  # errors:0 went idle
    clock.now = 30
    assert sources.watermark() == T0 + 60_000  # everything idle: nothing left to wait for


def priced_events(tmp_path):
    simulate(tmp_path, SimConfig(days=1.5, customers=8, seed=4, incidents=True, rate_per_min=60))
    stage = IngestStage(SETTINGS, PRICES)
    out = []
    for kind, name in (("usage", "usage.jsonl.gz"), ("errors", "errors.jsonl.gz")):
        with gzip.open(tmp_path / name) as lines:
            for offset, raw in enumerate(lines):
                item = stage.handle(kind, raw.rstrip(), f"{kind}:0", offset)
                assert not isinstance(item, DeadLetter)
                out.append(Priced.decode(item.encode()))  # through the wire format
    return out


def run_partition(events, table, customers, clock, batches=1):
    detect = PartitionDetect(SETTINGS, customers.get, CustomerStates(table), 0, 1, clock)
    keyed: list[Keyed] = []
    for event in events:
        detect.add(event)
    keyed += detect.close_due()[0]
    return detect, keyed


def test_a_crash_and_redelivery_changes_nothing_in_the_alerts(tmp_path):
    events = priced_events(tmp_path)
    # Usage is read way ahead of errors (two topics); both stay active, so nothing is late.
    usage = [e for e in events if e.kind == "usage"]
    errors = [e for e in events if e.kind == "errors"]
    customers = load_customers(tmp_path / "customers.jsonl")
    clock = FakeClock()

    whole_table: dict[bytes, bytes] = {}
    whole = PartitionDetect(SETTINGS, customers.get, CustomerStates(whole_table), 0, 1, clock)
    alerts = []
    for chunk in range(0, len(usage), 5000):
        for event in usage[chunk : chunk + 5000] + errors[chunk // 40 : (chunk + 5000) // 40]:
            whole.add(event)
        alerts += whole.close_due()[0]
    for event in errors[len(usage) // 40 :]:
        whole.add(event)
    alerts += whole.close_due()[0]
    assert whole.buckets.stats.late_events == 0

    # The same stream, cut at a "crash": state saved after the first half, then everything
    # from the start is delivered again (at-least-once) to a new PartitionDetect.
    table: dict[bytes, bytes] = {}
    states = CustomerStates(table)
    first = PartitionDetect(SETTINGS, customers.get, states, 0, 1, clock)
    again = []
    half = len(usage) // 2
    for chunk in range(0, half, 5000):
        for event in usage[chunk : chunk + 5000] + errors[chunk // 40 : (chunk + 5000) // 40]:
            first.add(event)
        again += first.close_due()[0]
    states.flush()
    table[first.key] = first.snapshot()
    restored_states = CustomerStates(table)
    second = PartitionDetect(SETTINGS, customers.get, restored_states, 0, 1, clock)
    second.restore(table[second.key], restored_states.load(iter(list(table.items()))))
    for chunk in range(0, len(usage), 5000):  # from the start: the first half is re-delivered
        for event in usage[chunk : chunk + 5000] + errors[chunk // 40 : (chunk + 5000) // 40]:
            second.add(event)
        again += second.close_due()[0]
    for event in errors[len(usage) // 40 :]:
        second.add(event)
    again += second.close_due()[0]
    assert second.replayed > 0
    ident = lambda ks: sorted((str(k.key), k.decision.status, k.decision.starts_at) for k in ks)  # noqa: E731
    assert ident(again) == ident(alerts)


def test_partition_detection_matches_the_embedded_pipeline(tmp_path):
    events = priced_events(tmp_path)
    customers = load_customers(tmp_path / "customers.jsonl")
    events.sort(key=lambda e: e.ts)
    detect = PartitionDetect(SETTINGS, customers.get, CustomerStates({}), 0, 1, FakeClock())
    keyed = []
    for event in events:
        detect.add(event)
        keyed += detect.close_due()[0]
    # The stream has no end to flush: compare what both decided before the last buckets.
    cutoff = max(e.ts for e in events) - 600
    pipeline = Pipeline(SETTINGS, PRICES, customers)
    expected = replay_files(
        pipeline, [tmp_path / "usage.jsonl.gz"], [tmp_path / "errors.jsonl.gz"], progress=False
    ).alerts

    def when(status, starts_at, ends_at):
        return ends_at if status == "resolved" else starts_at

    mine = sorted(
        (k.decision.status, k.decision.starts_at, str(sorted(k.key.items())))
        for k in keyed
        if when(k.decision.status, k.decision.starts_at, k.decision.ends_at) < cutoff
    )
    theirs = sorted(
        (
            a.status,
            a.starts_at,
            str(sorted((k, v) for k, v in a.labels.items() if k in ("customer_id", "endpoint"))),
        )
        for a in expected
        if "customer_id" in a.labels and when(a.status, a.starts_at, a.ends_at) < cutoff
    )
    assert mine == theirs


def test_the_global_stage_judges_a_bucket_once_all_partitions_reported():
    stage = GlobalStage(SETTINGS, lag_buckets=2)
    row = [0.1, 100.0, 60.0, 50.0, 0.0, 0.1, 60.0, 40.0, 20.0, 40.0]
    part = {("openai", "gpt-4o"): row}
    out = []
    base = int(T0 // 60)
    for i in range(10):
        out += stage.add(base + i, part)
        out += stage.add(base + i, part)  # a second partition's share of the same bucket
    assert out and out[0].key == {"provider": "openai", "model": "gpt-4o"}
    assert stage.add(base, part) == [] and stage.late == 1
    restored = GlobalStage(SETTINGS, lag_buckets=2)
    restored.restore(stage.snapshot())
    assert restored.snapshot() == stage.snapshot()


def test_priced_events_survive_the_wire():
    event = Priced(
        "usage", "e1", T0, "acme", "chat", "openai", "gpt-4o", 2, True, False, 0.5, "usage:3", 42
    )
    assert Priced.decode(event.encode()) == event
    assert orjson.loads(event.encode())[0] == "usage"


def test_a_source_not_seen_yet_holds_the_watermark_until_it_goes_idle():
    clock = FakeClock()
    sources = SourceClock(idle_s=10, clock=clock)
    sources.expect(["usage:0", "errors:0"])
    sources.observe("usage:0", T0 + 600)
    assert sources.watermark() == 0.0  # errors:0 may still bring older events
    clock.now = 11
    sources.observe("usage:0", T0 + 700)
    assert sources.watermark() == T0 + 700
