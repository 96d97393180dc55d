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
    first.save_open_rows()
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
    clock = FakeClock()
    stage = GlobalStage(SETTINGS, partitions=2, clock=clock)
    row = [0.1, 100.0, 60.0, 50.0, 0.0, 0.1, 60.0, 40.0, 20.0, 40.0]
    part = {("openai", "gpt-4o"): row}
    base = int(T0 // 60)
    out = []
    for i in range(10):  # partition 0 races ahead; nothing is judged without partition 1
        out += stage.add(0, base + i, [(base + i, part)])
    assert out == [] and stage.pending
    for i in range(10):
        out += stage.add(1, base + i, [(base + i, part)])
    assert out and out[0].key == {"provider": "openai", "model": "gpt-4o"}
    # Fired after two buckets, each with both partitions' 100 attempts.
    assert out[0].decision.values["requests"] == 2 * 200
    assert stage.add(1, base + 10, [(base, part)]) == [] and stage.late == 1
    pending = {i: raw for i, raw in stage.pending_changes().items() if raw}
    restored = GlobalStage(SETTINGS, partitions=2, clock=clock)
    restored.restore(stage.snapshot(), pending)
    assert restored.snapshot() == stage.snapshot()
    assert restored.pending == stage.pending


def test_an_idle_partition_does_not_hold_provider_judgements_back():
    clock = FakeClock()
    stage = GlobalStage(SETTINGS, partitions=2, clock=clock)
    part = {("openai", "gpt-4o"): [0.1, 100.0, 60.0, 50.0, 0.0, 0.1, 60.0, 40.0, 20.0, 40.0]}
    base = int(T0 // 60)
    for i in range(5):
        stage.add(0, base + i, [(base + i, part)])
    clock.now = SETTINGS.worker.source_idle_s + 1
    assert stage.add(0, base + 5, [(base + 5, part)])  # partition 1 never reported: idle


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


def test_worker_logs_are_json_lines_when_not_on_a_terminal(capsys):
    from stream.logs import logging_config

    config = logging_config("info")  # pytest's stderr is not a terminal
    assert config is not None
    assert config["formatters"]["json"]["()"] == "stream.logs.JsonFormatter"
