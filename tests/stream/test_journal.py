"""A batch's records are all or nothing (stream.kafka.journal): a worker killed at any
point of writing them resumes with the alerts an uninterrupted run fires, each once."""

from __future__ import annotations

from collections import Counter

import orjson
import pytest

from stream.core.alerts import build_alert
from stream.core.customers import load_customers
from stream.kafka.journal import Journal, partition_journal
from stream.kafka.outbox import identity
from stream.kafka.stages import GlobalStage, PartitionDetect, decode_rollups, rollup_reports
from stream.kafka.state import CustomerStates, partition_of
from tests.stream.test_stages import SETTINGS, FakeClock, priced_events


def keys(parity: int, part: int) -> bytes:
    return b"j:%d:%d" % (parity, part)


def record(n: int) -> bytes:
    return orjson.dumps({"n": n, "pad": "x" * 40})


def test_an_entry_larger_than_a_part_is_cut_and_recovered_whole():
    """Records, alerts and reports alike are spread over parts: a restarted worker closing
    hours of buckets has reports near the message limit each (a worker crashed on a part
    holding them all, over the producer's 1 MB)."""
    table: dict[bytes, bytes] = {}
    journal = Journal(table, keys, part_bytes=200)
    writes = {f"c{i}".encode(): record(i) for i in range(10)}
    alerts = [orjson.dumps({"fingerprint": f"f{i}", "pad": "y" * 60}) for i in range(4)]
    reports = [orjson.dumps({"p": 0, "r": "z" * 150, "n": i}) for i in range(4)]
    journal.write(writes, alerts, now=1.0, reports=reports)
    parts = [raw for k, raw in table.items() if k.startswith(b"j:1:")]
    assert len(parts) >= 10 and max(len(raw) for raw in parts) < 200 + 120
    for key in writes:
        del table[key]  # none of the records arrived
    recovered = Journal(table, keys, part_bytes=200).recover()
    assert [(e.seq, e.alerts, e.reports) for e in recovered] == [
        (1, [orjson.loads(a) for a in alerts], [orjson.loads(r) for r in reports])
    ]
    assert {k: table[k] for k in writes} == writes


def test_an_entry_cut_short_is_not_applied_and_the_one_before_it_is():
    table: dict[bytes, bytes] = {}
    journal = Journal(table, keys, part_bytes=200)
    journal.write({b"a": record(1), b"b": record(1)}, [b'{"fingerprint":"one"}'], now=1.0)
    before = dict(table)
    # Entry 2 goes under the other parity's keys; entry 3 over entry 1's. Cut short after
    # its first part, entry 3 is not applied and entry 2 is what holds.
    journal.write({b"a": record(2)}, [b'{"fingerprint":"two"}'], now=2.0)
    after_two = dict(table)
    log: list[tuple[bytes, bytes]] = []

    class Logged(dict):
        def __setitem__(self, key, value):
            log.append((key, value))
            super().__setitem__(key, value)

    logged = Logged(after_two)
    third = Journal(logged, keys, part_bytes=200)
    third.seq = journal.seq
    third.write({f"c{i}".encode(): record(3) for i in range(10)} | {b"b": None}, [], now=3.0)
    crashed = dict(after_two)
    crashed.update(log[:1])  # only the first part of entry 3 reached the changelog
    recovered = Journal(crashed, keys, part_bytes=200).recover()
    assert [e.seq for e in recovered] == [2]  # entry 1 was partly overwritten by 3
    assert crashed[b"a"] == record(2) and crashed[b"b"] == before[b"b"]
    assert not any(k.startswith(b"c") for k in crashed)
    # Written whole, entry 3 is recovered with its deletion, and entry 2 with it.
    whole = dict(after_two)
    whole.update(log)
    whole[b"b"] = record(1)  # the deletion did not arrive
    recovered = Journal(whole, keys, part_bytes=200).recover()
    assert [e.seq for e in recovered] == [2, 3]
    assert b"b" not in whole and whole[b"c0"] == record(3)


class Changelog(dict):
    """A table that keeps every write in order, as its changelog topic would."""

    def __init__(self) -> None:
        super().__init__()
        self.log: list[tuple[bytes, bytes | None]] = []

    def __setitem__(self, key: bytes, value: bytes) -> None:
        self.log.append((key, value))
        super().__setitem__(key, value)

    def pop(self, key, default=None):  # type: ignore[override]
        self.log.append((key, None))
        return super().pop(key, default)

    @classmethod
    def replayed(cls, log: list[tuple[bytes, bytes | None]]) -> Changelog:
        """The table a worker recovers from the first ``log`` writes."""
        table = cls()
        for key, value in log:
            if value is None:
                table.pop(key, None)
            else:
                table[key] = value
        table.log = []
        return table


def chunks(events):
    usage = [e for e in events if e.kind == "usage"]
    errors = [e for e in events if e.kind == "errors"]
    for start in range(0, len(usage), 5000):
        yield usage[start : start + 5000] + errors[start // 40 : (start + 5000) // 40]
    yield errors[len(usage) // 40 :]


def payloads(keyed) -> list[bytes]:
    runbook, external = SETTINGS.alerts.runbook_url, SETTINGS.alerts.external_url
    alerts = [build_alert(k.key, k.decision, runbook, external) for k in keyed]
    return [orjson.dumps(alert.to_payload()) for alert in alerts]


class Worker:
    """The worker's commit protocol on one partition (Worker.close_partition and commit),
    without Kafka: the journal entry and the records, then the alerts once durable."""

    def __init__(self, table: Changelog, customers, clock, part_bytes: int) -> None:
        self.table = table
        self.journal = partition_journal(table, 0, 1, part_bytes)
        self.unsent = self.journal.recover()
        states = CustomerStates(table)
        active = states.load(iter(list(table.items())))
        self.detect = PartitionDetect(SETTINGS, customers.get, states, 0, 1, clock)
        snapshot = table.get(self.detect.key)
        if snapshot:
            self.detect.restore(snapshot, active)
        self.commits: list[tuple[int, list[dict]]] = []  # (log length once durable, alerts)
        self.reports: list[tuple[int, bytes]] = []  # (log length when sent, report)

    def batch(self, events) -> None:
        for event in events:
            self.detect.add(event)
        keyed, rollups = self.detect.close_due()
        reports = rollup_reports(0, self.detect.complete_upto(), rollups, max_bytes=2_000)
        self.reports += [(len(self.table.log), report) for report in reports]
        writes = self.detect.changes()
        if writes or keyed:
            sent = payloads(keyed)
            self.journal.write(writes, sent, 0.0, reports if rollups else ())
            self.commits.append((len(self.table.log), [orjson.loads(p) for p in sent]))


def provider_wide(reports: list[bytes]) -> tuple[list[tuple], bytes]:
    """The global stage's alerts from these reports, and its state after them."""
    stage = GlobalStage(SETTINGS, partitions=1, clock=FakeClock())
    keyed = [k for report in reports for k in stage.add(*decode_rollups(report))]
    alerts = sorted((str(k.key), k.decision.status, k.decision.starts_at) for k in keyed)
    return alerts, stage.snapshot()


@pytest.fixture(scope="module")
def stream(tmp_path_factory):
    out = tmp_path_factory.mktemp("journal")
    return list(chunks(priced_events(out))), load_customers(out / "customers.jsonl")


@pytest.mark.parametrize(("cut", "reports_arrived"), [(0.3, True), (0.5, False), (0.97, True)])
def test_a_worker_killed_while_writing_a_batch_resumes_with_every_alert_once(
    stream, cut, reports_arrived
):
    """Killed with only a prefix of a batch's writes in the changelog (inside its journal
    entry, or inside its records, each a separate message), a new worker recovers from that
    prefix, gets every event again, and the alerts topic ends up with exactly the alerts of
    a run without the crash. Before the journal, a customer whose new record had arrived
    counted the batch's events twice (4 of 13 alerts differed at the batch of 100k events).

    The batch's reports to the global stage go to another topic: they may have arrived
    or not, whatever the changelog holds. Sent again or sent twice, the global stage merges
    each once and fires what it fires without the crash."""
    batches, customers = stream
    clock = FakeClock()
    whole = Worker(Changelog(), customers, clock, part_bytes=3_000)
    for events in batches:
        whole.batch(events)
    expected = sorted(identity(a) for _, alerts in whole.commits for a in alerts)
    assert len(expected) >= 10

    # The batch of the 20th chunk writes many records and an entry of several parts.
    first = Worker(Changelog(), customers, clock, part_bytes=3_000)
    for events in batches[:20]:
        first.batch(events)
    start = len(first.table.log)
    first.batch(batches[20])
    end = len(first.table.log)
    assert end - start >= 10
    crash = start + int((end - start) * cut)
    assert start < crash < end
    # What reached the alerts topic: every batch whose writes were all durable.
    topic = [a for durable, alerts in first.commits if durable <= crash for a in alerts]
    rollups = [r for sent, r in first.reports if sent < start or reports_arrived]

    second = Worker(Changelog.replayed(first.table.log[:crash]), customers, clock, 3_000)
    sent = {identity(a) for a in topic}
    topic += [a for entry in second.unsent for a in entry.alerts if identity(a) not in sent]
    rollups += [orjson.dumps(r) for entry in second.unsent for r in entry.reports]
    for events in batches:  # everything again, from the start
        second.batch(events)
    topic += [a for _, alerts in second.commits for a in alerts]
    got = Counter(identity(a) for a in topic)
    assert [i for i, n in got.items() if n > 1] == []
    assert sorted(got) == expected
    rollups += [report for _, report in second.reports]
    wanted = provider_wide([report for _, report in whole.reports])
    assert wanted[0] and provider_wide(rollups) == wanted  # each bucket's rows merged once


def test_partition_journal_keys_hash_to_their_partition():
    journal = partition_journal({}, 3, 8)
    assert {partition_of(journal.key(p, i), 8) for p in (0, 1) for i in range(5)} == {3}


def test_the_global_stage_merges_a_report_sent_twice_once():
    row = [0.1, 100.0, 60.0, 50.0, 0.0, 0.1, 60.0, 40.0, 20.0, 40.0]
    rollup = {("openai", f"model-{m}"): list(row) for m in range(40)}
    reports = rollup_reports(0, 7, [(6, rollup), (7, rollup)], max_bytes=1_000)
    assert decode_rollups(reports[0])[3] == [(6, 0)] and len(reports) > 4
    once, twice = (GlobalStage(SETTINGS, partitions=1, clock=FakeClock()) for _ in range(2))
    for report in reports:
        once.add(*decode_rollups(report))
    for report in reports[:3] + reports[:4] + reports[2:]:
        twice.add(*decode_rollups(report))
    assert twice.repeated == 5 and twice.snapshot() == once.snapshot()
    # A stage restored from its snapshot still knows what it merged.
    restored = GlobalStage(SETTINGS, partitions=1, clock=FakeClock())
    restored.restore(twice.snapshot(), {})
    restored.add(*decode_rollups(reports[-1]))
    assert restored.repeated == 1
    # Reports from before the numbering are merged as they come.
    old = orjson.loads(reports[0])
    del old["k"]
    legacy = GlobalStage(SETTINGS, partitions=1, clock=FakeClock())
    for _ in range(2):
        legacy.add(*decode_rollups(orjson.dumps(old)))
    assert legacy.repeated == 0 and legacy.pending[6][("openai", "model-0")][0] == 0.2


def test_a_bucket_is_cut_into_the_same_pieces_whatever_order_its_rows_came_in():
    row = [0.1, 100.0, 60.0, 50.0, 0.0, 0.1, 60.0, 40.0, 20.0, 40.0]
    models = [("openai", f"model-{m}") for m in range(40)]
    forward = {key: list(row) for key in models}
    backward = {key: list(row) for key in reversed(models)}
    assert rollup_reports(0, 7, [(7, forward)], 1_000) == rollup_reports(
        0, 7, [(7, backward)], 1_000
    )
