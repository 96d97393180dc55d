"""``spendwatch worker``: the detection path as a faust-streaming worker on Kafka.

Flow: usage + errors topics -> ``ingest`` task (validate, price; bad input to the
dead-letter topic with its reason in headers and its original bytes) -> internal events
topic, one bundle per detect partition per batch -> ``detect`` agent (per-customer
detectors, state in a table with a changelog) -> alerts topic, and per-bucket
provider/model rollups -> internal rollups topic (one partition) -> ``global_detect``
agent -> alerts topic.

The ingest side is not a faust agent but :class:`stream.kafka.intake.Intake`, a plain aiokafka
consumer in its own group (``{app_id}-ingest``) that commits after its sends are acked:
faust's per-message machinery (fetcher, stream buffer, acks) cost about 60 us per raw
message and held the worker near 8,000 events/s (docs/faust-streaming-notes.md, 9).
Detect, global detect and the tables stay on faust; they see one message per bundle.

Agents are short loops; the work is in :mod:`stream.kafka.stages`. State is written once per
batch per customer. The web port serves ``/health`` (200 once tables are recovered and
customers loaded, else 503) and ``/metrics``.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
import time
from collections.abc import Mapping, MutableMapping
from typing import Any, cast

import faust
import orjson
from faust.tables import TableManager
from faust.types import TP
from mode.supervisors import CrashingSupervisor

from stream.core.alerts import build_alert
from stream.core.customers import load_customers
from stream.core.detect import Keyed
from stream.core.events import Customer, Rejection, parse_customer
from stream.core.pricing import PriceTable
from stream.kafka.connection import ensure_topics, faust_credentials, follow_compacted
from stream.kafka.intake import Intake
from stream.kafka.journal import Entry, Journal, durable, partition_journal
from stream.kafka.notify_agent import NotifyStage
from stream.kafka.outbox import already_sent, identity
from stream.kafka.reload import ConfigWatcher
from stream.kafka.silence_topic import apply_record
from stream.kafka.stages import (
    GlobalStage,
    IngestStage,
    PartitionDetect,
    decode_rollups,
    rollup_reports,
)
from stream.kafka.state import CustomerStates, opening
from stream.kafka.web import application_options
from stream.logs import logging_config
from stream.metrics import Metrics
from stream.notify.receivers import build_receivers
from stream.settings import DEFAULT_CONFIG, Settings

log = logging.getLogger("spendwatch.worker")
GLOBAL_KEY = b"global"
PENDING = b"pending:"


def _tables_recovered(app: faust.App) -> bool:
    """Whether the app's tables have been recovered from their changelogs. ``App.tables``
    is typed as the abstract TableManagerT, which lacks ``recovery``; the app builds the
    concrete TableManager (``conf.TableManager``), which has it."""
    return cast(TableManager, app.tables).recovery.completed.is_set()


class Worker:
    """The faust app, its topics, tables and agents, for one Settings."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        kafka, worker = settings.kafka, settings.worker
        topics = kafka.topics
        self.metrics = Metrics()
        self.prices = PriceTable.load(settings.resolve(settings.prices_file))
        self.customers: dict[str, Customer] = {}
        if settings.customers_file and settings.resolve(settings.customers_file).exists():
            self.customers.update(load_customers(settings.resolve(settings.customers_file)))
        self.customers_ready = asyncio.Event()
        worker.data_dir.mkdir(parents=True, exist_ok=True)
        self.app = faust.App(
            kafka.app_id,
            broker=[f"kafka://{server.strip()}" for server in kafka.bootstrap_servers.split(",")],
            broker_credentials=faust_credentials(kafka),
            broker_client_id=kafka.client_id,
            store="memory://",
            datadir=str(worker.data_dir),
            topic_partitions=topics.partitions,
            topic_replication_factor=topics.replication_factor,
            web_enabled=True,
            web_host=worker.web_host,
            web_bind=worker.web_bind,
            web_port=worker.web_port,
            web_application_options=application_options(worker.web_token_env, os.environ),
            key_serializer="raw",
            value_serializer="raw",
            consumer_auto_offset_reset="earliest",
            table_standby_replicas=0,
            broker_session_timeout=worker.session_timeout_s,
            broker_heartbeat_interval=max(1.0, worker.session_timeout_s / 4),
            stream_wait_empty=False,
        )
        app = self.app
        raw: dict[str, Any] = {"key_type": bytes, "value_type": bytes}
        self.events = app.topic(
            f"{kafka.app_id}-events", partitions=topics.partitions, internal=True, **raw
        )
        self.rollups = app.topic(f"{kafka.app_id}-rollups", partitions=1, internal=True, **raw)
        self.alerts = app.topic(topics.alerts, **raw)
        self.deadletter = app.topic(topics.deadletter, **raw)
        self.state_table = app.Table(
            "detect-state", partitions=topics.partitions, use_partitioner=True, default=None, **raw
        )
        self.global_table = app.Table(
            "global-state", partitions=1, use_partitioner=True, default=None, **raw
        )
        # Notify: every alert to one partition, so each group is judged in one place.
        self.notify_topic = app.topic(f"{kafka.app_id}-notify", partitions=1, internal=True, **raw)
        notify_tables = {"partitions": 1, "use_partitioner": True, "default": None, **raw}
        self.silences: dict[str, dict[str, Any]] = {}
        self.silences_ready = asyncio.Event()
        self.notify = NotifyStage(
            settings,
            app.Table("notify-alerts", **notify_tables),  # type: ignore[arg-type]
            app.Table("notify-nflog", **notify_tables),  # type: ignore[arg-type]
            self.silences,
            self.metrics,
        )
        self.ingest_stage = IngestStage(settings, self.prices)
        self.unknown_logged: set[tuple[str, str]] = set()
        self.known_changelogs: set[str] = set()  # changelog topics the producer knows
        events_topic = self.events.get_topic_name()
        self.intake = Intake(settings, self.ingest_stage, self.metrics, events_topic)
        self.states = CustomerStates(self.state_table)  # type: ignore[arg-type]
        self.partitions: dict[int, PartitionDetect] = {}
        self.global_stage: GlobalStage | None = None
        self.detect_lock = asyncio.Lock()  # the detect agent and the idle tick take turns
        self.global_lock = asyncio.Lock()  # the global agent and a rebalance take turns
        self.journals: dict[int, Journal] = {}  # per detect partition
        self.global_journal = Journal(
            cast(MutableMapping[bytes, bytes], self.global_table),
            lambda parity, part: b"journal:%d:%d" % (parity, part),
        )
        self.unflushed = False  # alerts sent since the producer's last flush
        self.watcher = ConfigWatcher(settings.source_path or DEFAULT_CONFIG, settings, self.metrics)
        self._wire()

    # -- agents -----------------------------------------------------------------------

    def _wire(self) -> None:
        app, worker = self.app, self.settings.worker
        take = (worker.batch_size, worker.batch_within_s)

        @app.task
        async def ingest() -> None:
            await self.intake.run()  # a plain consumer, see stream.kafka.intake (faust's cost)

        @app.agent(self.events, name="detect", supervisor_strategy=CrashingSupervisor)
        async def detect(stream: Any) -> None:
            async for batch in stream.take_events(*take):
                await self.detect_batch(batch)

        @app.agent(self.rollups, name="global_detect", supervisor_strategy=CrashingSupervisor)
        async def global_detect(stream: Any) -> None:
            async for batch in stream.take_events(*take):
                await self.global_batch(batch)

        @app.timer(interval=worker.tick_s)
        async def tick() -> None:
            await self.tick()

        @app.timer(interval=worker.broker_probe_s)
        async def probe_broker() -> None:
            await self.intake.probe(timeout_s=worker.broker_probe_s)

        @app.task
        async def follow_customers() -> None:
            kafka = self.settings.kafka
            await follow_compacted(
                kafka, kafka.topics.customers, self.apply_customer, self.customers_ready
            )

        @app.agent(self.alerts, name="notify_intake", supervisor_strategy=CrashingSupervisor)
        async def notify_intake(stream: Any) -> None:
            async for batch in stream.take_events(*take):
                for event in batch:
                    await self.notify_topic.send(key=event.key, value=event.value)

        @app.agent(self.notify_topic, name="notify", supervisor_strategy=CrashingSupervisor)
        async def notify(stream: Any) -> None:
            async for batch in stream.take_events(*take):
                await self.notify.add([orjson.loads(event.value) for event in batch])

        @app.task
        async def follow_silences() -> None:
            kafka = self.settings.kafka
            await follow_compacted(
                kafka, kafka.topics.silences, self.apply_silence, self.silences_ready
            )

        @app.task
        async def notifier() -> None:
            await self.notify.run(
                ready=self.notify_ready, owns=self.owns_notify, prepare=self.learn_notify_topics
            )

        @app.task
        async def watch_config() -> None:
            loop = asyncio.get_running_loop()
            loop.add_signal_handler(signal.SIGHUP, self.watcher.hangup)
            await self.watcher.run(self.apply_settings, self.settings.worker.config_poll_s)

        @app.page("/alerts")
        async def alerts(web: Any, request: Any) -> Any:
            return web.json(self.notify.alerts_page())

        # mode types every handler as (sender, *args, signal=, **kwargs): it cannot say
        # that this signal sends one set of partitions.
        @app.on_partitions_revoked.connect  # type: ignore[arg-type]
        async def revoked(app: Any, revoked: set[TP], **kwargs: Any) -> None:
            # After the batch in hand is committed: it may be part way through awaiting
            # its sends, its partitions and their states still in use (a detect agent
            # crashed on a partition revoked while it was closing it).
            async with self.detect_lock, self.global_lock:
                for tp in revoked:
                    if tp.topic == self.events.get_topic_name():
                        self.partitions.pop(tp.partition, None)
                        self.journals.pop(tp.partition, None)
                self.states.cache.clear()  # re-read from the table: ownership changed
                self.global_stage = None

        @app.page("/health")
        async def health(web: Any, request: Any) -> Any:
            body = self.health()
            return web.json(body, status=200 if body["ready"] else 503)

        @app.page("/metrics")
        async def metrics(web: Any, request: Any) -> Any:
            self.notify.export()
            self.export_unknown_models()
            return web.text(self.metrics.render(), content_type="text/plain; version=0.0.4")

    async def detect_batch(self, batch: list[Any]) -> None:
        started = time.perf_counter()
        await self.learn_changelog_topics(self.state_table)
        async with self.detect_lock:
            late = self.late_events()
            touched: set[int] = set()
            newest, events, duplicates = 0.0, 0, 0
            for message in batch:
                partition = message.message.partition
                detect = self.partitions.get(partition)
                if detect is None:
                    detect, unsent = self.open_partition(partition)
                    await self.resend(unsent)
                count, dropped, marked = detect.add_bundle(message.value)
                events += count
                duplicates += dropped
                newest = max(newest, marked)
                touched.add(partition)
            self.metrics.inc("spendwatch_duplicates_total", duplicates)
            for partition in sorted(touched):
                await self.close_partition(self.partitions[partition])
            self.metrics.inc("spendwatch_late_events_total", self.late_events() - late)
            self.metrics.inc("spendwatch_events_detected_total", events)
        if newest:
            self.metrics.set("spendwatch_event_time_lag_seconds", max(0.0, time.time() - newest))
        self.metrics.observe(
            "spendwatch_batch_seconds", time.perf_counter() - started, stage="detect"
        )

    def export_unknown_models(self) -> None:
        """Events priced by the fallback, as replay reports them; a warning for each model
        the first time it is seen (bounded by the price table's own cap)."""
        unknown = self.prices.unknown_models
        # A total kept by the price table: set, not added to.
        self.metrics.set("spendwatch_unknown_model_events_total", float(sum(unknown.values())))
        self.metrics.set("spendwatch_unknown_models", float(len(unknown)))
        for provider, model in unknown.keys() - self.unknown_logged:
            self.unknown_logged.add((provider, model))
            log.warning("unknown model priced by fallback provider=%s model=%s", provider, model)

    async def tick(self) -> None:
        """Close buckets that became due without new events (a source went idle)."""
        self.export_unknown_models()
        async with self.detect_lock:
            for detect in list(self.partitions.values()):
                await self.close_partition(detect)

    async def close_partition(self, detect: PartitionDetect) -> None:
        keyed, rollups = detect.close_due()
        # The global stage needs to hear how far this partition has closed even without
        # rollups, or an idle partition would hold every provider-wide judgement back.
        reports = rollup_reports(detect.partition, detect.complete_upto(), rollups)
        for report in reports:
            await self.rollups.send(key=b"rollup", value=report)
        if rollups:
            # They may not arrive before a crash, and after it the buckets stay closed: the
            # journal entry keeps them to be sent again (the global stage skips repeats).
            self.unflushed = True
        else:
            reports = []  # progress only: the next report says as much
        await self.commit(self.journals[detect.partition], detect.changes(), keyed, reports)

    def late_events(self) -> int:
        return sum(d.buckets.stats.late_events for d in self.partitions.values())

    def open_partition(self, partition: int) -> tuple[PartitionDetect, list[Entry]]:
        """Detection for a newly assigned partition, resumed from the recovered table (its
        last batch's records written again from its journal first), and the journal
        entries whose alerts may not have been sent."""
        count = self.settings.kafka.topics.partitions
        table = cast(MutableMapping[bytes, bytes], self.state_table)
        journal = self.journals[partition] = partition_journal(table, partition, count)
        unsent = journal.recover()
        detect = PartitionDetect(self.settings, self.customers.get, self.states, partition, count)
        topics = self.settings.kafka.topics
        detect.clock.expect(
            [f"{t}:{i}" for t in (topics.usage, topics.errors) for i in range(count)]
        )
        mine = opening(self.state_table.items(), partition, count)
        active = self.states.load(iter(mine))
        snapshot = self.state_table.get(detect.key)
        if snapshot:
            detect.restore(snapshot, active)
        else:
            detect.adopt(active)
        self.partitions[partition] = detect
        log.info("partition opened partition=%s decoded=%s", partition, len(mine))
        return detect, unsent

    async def apply_settings(self, new: Settings) -> None:
        """Hot reload (stream.kafka.reload): judge with ``new`` from the next bucket on, route and
        deliver with it from now on. Detector state, open episodes and active alerts stay.
        Swapped under the detect lock, so no batch is judged half with the old settings."""
        if self.app.should_stop:
            raise RuntimeError("the worker is stopping")
        built = self.notify.prepare_reload(new)  # raises before anything changed
        async with self.detect_lock:
            self.settings = new
            for detect in self.partitions.values():
                detect.settings = new
                detect.detection.reload(new)
            if self.global_stage is not None:
                self.global_stage.detection.reload(new)
        await self.notify.reload(new, built)

    async def global_batch(self, batch: list[Any]) -> None:
        async with self.global_lock:
            await self.learn_changelog_topics(self.global_table)
            if self.global_stage is None:
                self.global_stage = GlobalStage(
                    self.settings, self.settings.kafka.topics.partitions
                )
                unsent = self.global_journal.recover()
                snapshot = self.global_table.get(GLOBAL_KEY)
                if snapshot:
                    pending = {
                        int(k[len(PENDING) :]): v
                        for k, v in self.global_table.items()
                        if k.startswith(PENDING) and v
                    }
                    self.global_stage.restore(snapshot, pending)
                await self.resend(unsent)
            keyed: list[Keyed] = []
            for event in batch:
                keyed += self.global_stage.add(*decode_rollups(event.value))
            writes = {
                PENDING + str(index).encode(): rollup
                for index, rollup in self.global_stage.pending_changes().items()
            }
            writes[GLOBAL_KEY] = self.global_stage.snapshot()
            await self.commit(self.global_journal, writes, keyed)

    # -- alerts: decided once, sent once (stream.kafka.outbox) --------------------------------

    async def commit(
        self,
        journal: Journal,
        writes: dict[bytes, bytes | None],
        keyed: list[Keyed],
        reports: list[bytes] | None = None,
    ) -> None:
        """Commit a batch's records and alerts by its journal entry (stream.kafka.journal),
        wait until they are durable, then send the alerts: a crash before the wait repeats
        the batch (nothing was sent), a crash after it leaves the entry for :meth:`resend`."""
        if not writes and not keyed:
            return
        runbook, external = self.settings.alerts.runbook_url, self.settings.alerts.external_url
        alerts = [build_alert(k.key, k.decision, runbook, external) for k in keyed]
        payloads = [orjson.dumps(alert.to_payload()) for alert in alerts]
        if self.unflushed:
            # This entry may replace one whose alerts or reports are still on their way.
            await durable(self.app.producer)
            self.unflushed = False
        journal.write(writes, payloads, time.time(), reports or ())
        if not alerts:
            return
        await durable(self.app.producer)
        for alert, payload in zip(alerts, payloads, strict=True):
            await self.alerts.send(key=alert.fingerprint.encode(), value=payload)
            self.count_alert(alert.labels, alert.status, alert.fingerprint)
        self.unflushed = True

    async def resend(self, entries: list[Entry]) -> None:
        """After a restart or a move: send the alerts of recovered journal entries that
        the alerts topic does not have yet (the rest reached it before the crash), and
        their reports to the global stage again (it skips what it has merged)."""
        topic = self.settings.kafka.topics.alerts
        for entry in entries:
            for report in entry.reports:
                await self.rollups.send(key=b"rollup", value=orjson.dumps(report))
                self.unflushed = True
            if not entry.alerts:
                continue
            sent = await already_sent(self.settings.kafka, topic, entry.alerts, entry.written_at)
            missing = [alert for alert in entry.alerts if identity(alert) not in sent]
            for alert in missing:
                payload = orjson.dumps(alert)
                await self.alerts.send(key=alert["fingerprint"].encode(), value=payload)
                self.count_alert(alert["labels"], alert["status"], alert["fingerprint"])
            self.unflushed = self.unflushed or bool(missing)
            log.info(
                "journal recovered entry=%s decided=%s already_sent=%s sent_now=%s",
                entry.seq,
                len(entry.alerts),
                len(entry.alerts) - len(missing),
                len(missing),
            )

    def count_alert(self, labels: dict[str, str], status: str, fingerprint: str) -> None:
        self.metrics.inc(
            "spendwatch_alerts_total",
            alertname=labels["alertname"],
            severity=labels["severity"],
            status=status,
        )
        log.info("alert %s %s %s", status, labels["alertname"], fingerprint)

    # -- customers and silences: every worker reads the whole compacted topics ----------

    def apply_customer(self, key: bytes | None, value: bytes | None) -> None:
        if value is None:  # a tombstone
            if key:
                self.customers.pop(key.decode(errors="replace"), None)
            return
        try:
            record = parse_customer(value)
        except Exception as exc:  # noqa: BLE001 - no record may stop the follower
            record = Rejection.of_exception(exc)
        if isinstance(record, Rejection):
            self.metrics.inc("spendwatch_dead_letters_total", reason=f"customer_{record.reason}")
            log.warning("customer record refused field=%s detail=%s", record.field, record.detail)
            return
        self.customers[record.customer_id] = record

    def apply_silence(self, key: bytes | None, value: bytes | None) -> None:
        try:
            changed = apply_record(self.silences, key, value)
        except Exception as exc:  # noqa: BLE001 - no record may stop the follower
            reason = f"silence_{type(exc).__name__}"
            self.metrics.inc("spendwatch_dead_letters_total", reason=reason)
            log.warning("silence record refused error=%s: %.200s", type(exc).__name__, exc)
            return
        if changed:
            self.notify.wake.set()

    def owns_notify(self) -> bool:
        """This worker holds the notify topic's one partition."""
        name = self.notify_topic.get_topic_name()
        return any(tp.topic == name for tp in self.app.assignor.assigned_actives())

    async def learn_notify_topics(self) -> None:
        """The notify tables' changelog metadata, before the notifier writes on delivery."""
        await self.learn_changelog_topics(self.notify.alerts_table, self.notify.nflog_table)

    async def learn_changelog_topics(self, *tables: Any) -> None:
        """Have the producer track the tables' changelog topics in its metadata: a table
        made with ``use_partitioner`` picks the changelog partition from that metadata on
        every write (in a stream too), synchronously, and crashes its agent while the
        topic is missing. Knowing the topic once is not enough: the producer's metadata
        holds every topic until its first send asks for a topic of its own, and from then
        on only the topics it tracks, so an untracked changelog drops out at the next
        refresh (seen: a worker's detect agent crashed on its first flush)."""
        producer = self.app.producer._ensure_producer()  # type: ignore[attr-defined]
        for table in tables:
            name = table.changelog_topic.get_topic_name()
            if name not in self.known_changelogs:
                await producer.client.add_topic(name)  # tracked from now on
                await producer.partitions_for(name)
                self.known_changelogs.add(name)

    def notify_ready(self) -> bool:
        app = self.app
        return _tables_recovered(app) and not app.rebalancing and self.silences_ready.is_set()

    def health(self) -> dict[str, Any]:
        """``/health``: ready when the tables are recovered, no rebalance runs, the
        customers are loaded, the cluster answered within ``worker.ready_broker_s`` and
        the intake has not been behind for more than ``worker.ready_max_lag_s``."""
        app, worker, now = self.app, self.settings.worker, time.time()
        recovered = _tables_recovered(app)
        started = recovered and not app.rebalancing and self.customers_ready.is_set()
        silent_s = now - self.intake.broker_ok_at
        broker_ok = silent_s <= worker.ready_broker_s
        lag_s = self.intake.lag_s(now)
        ready = started and broker_ok and lag_s <= worker.ready_max_lag_s
        status = (
            "ok"
            if ready
            else "starting"
            if not started
            else "broker_unreachable"
            if not broker_ok
            else "lagging"
        )
        return {
            "ready": ready,
            "status": status,
            "broker_reachable": broker_ok,
            "broker_silent_s": round(silent_s, 1) if self.intake.broker_ok_at else None,
            "lag_s": round(lag_s, 1),
            "tables_recovered": recovered,
            "rebalancing": bool(app.rebalancing),
            "unknown_models": [
                {"provider": p, "model": m, "events": n}
                for (p, m), n in self.prices.unknown_models.most_common(10)
            ],
            "customers": len(self.customers),
            "detect_partitions": sorted(self.partitions),
            "notifier": self.notify.active,
            **self.watcher.info(),
        }


# Python's default (700, 10, 10) ran a full collection of the whole heap (open buckets,
# detector states: ~0.1 s each) every few seconds under load, 15 % of the worker's CPU
# (docs/faust-streaming-notes.md, 9). Young collections every 50k allocations, a full one
# at most every 100 of those; cycles are still collected, just less often.
GC_THRESHOLDS = (50_000, 20, 100)


def tune_gc() -> None:
    """Fewer, larger garbage collections; objects alive at start-up are never scanned."""
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def check_receivers(settings: Settings, environ: Mapping[str, str]) -> None:
    """Refuse to start when a receiver's secret is missing from the environment: the
    notifier builds its receivers only once it owns the notify partition, and would
    crash seconds after start instead (ValueError naming every receiver and variable)."""
    try:
        build_receivers(settings.notify.receivers, environ)
    except ValueError as exc:
        raise ValueError(f"worker not started: {exc}") from None


def run(settings: Settings, loglevel: str = "info") -> None:
    """Create the topics if needed and run the worker until SIGTERM / SIGINT."""
    check_receivers(settings, os.environ)
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)  # faust runs on this loop too
    created = loop.run_until_complete(ensure_topics(settings.kafka))
    if created:
        log.info("topics created %s", ",".join(created))
    worker = Worker(settings)
    tune_gc()
    faust.Worker(
        worker.app,
        loop=loop,
        loglevel=loglevel,
        quiet=True,
        logging_config=logging_config(loglevel),
    ).execute_from_commandline()
