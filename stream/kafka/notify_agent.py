"""The worker's notify side: alerts topic -> dispatcher (state in Faust tables) -> receivers.

Grouping needs every alert of a group in one place, so the ``notify_intake`` agent moves
each alert from the alerts topic (any number of partitions) to a one-partition internal
topic; the worker that owns that partition runs the dispatcher. Its two mappings (active
alerts, and the notification log of what each receiver got) are tables with changelogs,
so a worker that takes over, or restarts after a crash, rebuilds the dispatcher from them:
notifications that were not delivered are sent, delivered ones are not sent again
(at-least-once: a crash between a receiver's 2xx and the log write sends that one twice).

Delivery runs in its own tasks (one lane per receiver), so a slow or dead receiver never
holds detection back. Silences come from the compacted silences topic, followed by every
worker, plus the config's static ones.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Iterator, MutableMapping
from typing import Any

import orjson

from stream.metrics import Metrics
from stream.notify.delivery import Delivery
from stream.notify.grouping import Dispatcher
from stream.notify.model import DeliveryResult, Notification
from stream.settings import Settings

log = logging.getLogger("spendwatch.notify")


class TableDict(MutableMapping[str, dict[str, Any]]):
    """A bytes->bytes table seen as str -> JSON dict, decoded once and written through.

    Only the owner of the table's one partition writes, so the decoded copy stays true.
    """

    def __init__(self, table: MutableMapping[bytes, bytes]) -> None:
        self.table = table
        self.data: dict[str, dict[str, Any]] = {
            key.decode(): orjson.loads(value) for key, value in table.items() if value
        }

    def __getitem__(self, key: str) -> dict[str, Any]:
        return self.data[key]

    def __setitem__(self, key: str, value: dict[str, Any]) -> None:
        self.data[key] = value
        self.table[key.encode()] = orjson.dumps(value)

    def __delitem__(self, key: str) -> None:
        del self.data[key]
        self.table.pop(key.encode(), None)

    def __iter__(self) -> Iterator[str]:
        return iter(self.data)

    def __len__(self) -> int:
        return len(self.data)


class NotifyStage:
    """The dispatcher and delivery of the worker that owns the notify partition."""

    def __init__(
        self,
        settings: Settings,
        alerts_table: MutableMapping[bytes, bytes],
        nflog_table: MutableMapping[bytes, bytes],
        silences: dict[str, dict[str, Any]],
        metrics: Metrics,
    ) -> None:
        self.settings = settings
        self.alerts_table = alerts_table
        self.nflog_table = nflog_table
        self.silences = silences
        self.metrics = metrics
        self.dispatcher: Dispatcher | None = None
        self.delivery: Delivery | None = None
        self.wake = asyncio.Event()
        self.started = asyncio.Event()  # set while this worker is the notifier

    @property
    def active(self) -> bool:
        return self.dispatcher is not None

    async def take_over(self) -> None:
        """Become the notifier: rebuild the dispatcher from the tables, start delivery."""
        await self.give_up()
        self.dispatcher, self.delivery = self._build(
            self.settings, TableDict(self.alerts_table), TableDict(self.nflog_table)
        )
        await self.delivery.start()
        self.started.set()
        log.info(
            "notifier started alerts=%s receivers=%s",
            len(self.dispatcher.alerts),
            ",".join(r.name for r in self.settings.notify.receivers) or "-",
        )
        self.wake.set()

    def _build(
        self,
        settings: Settings,
        alerts: MutableMapping[str, dict[str, Any]],
        nflog: MutableMapping[str, dict[str, Any]],
    ) -> tuple[Dispatcher, Delivery]:
        dispatcher = Dispatcher(
            settings.notify,
            alerts,
            nflog,
            silences=self.silences,
            external_url=settings.alerts.external_url,
        )
        delivery = Delivery.from_settings(
            settings.notify.receivers,
            os.environ,
            on_delivered=self.delivered,
            on_dropped=self.dropped,
            refs_for=dispatcher.refs_for,
        )
        return dispatcher, delivery

    def prepare_reload(self, settings: Settings) -> tuple[Dispatcher, Delivery] | None:
        """The dispatcher and delivery of ``settings`` over the same state (raises, and
        changes nothing, when they cannot be built); None when not the notifier."""
        if self.dispatcher is None:
            return None
        return self._build(settings, self.dispatcher.alerts, self.dispatcher.nflog)

    async def reload(
        self, settings: Settings, built: tuple[Dispatcher, Delivery] | None, drain_s: float = 2.0
    ) -> None:
        """Routes, receivers, inhibition and static silences of ``settings`` from now on.
        Active alerts and the notification log are kept (same tables): nothing delivered is
        sent again; what the old delivery had not delivered after ``drain_s`` is sent by the
        new one (at-least-once, as after a take-over)."""
        old_static = {s.silence_id() for s in self.settings.notify.silences}
        new_static = {s.silence_id() for s in settings.notify.silences}
        self.settings = settings
        for silence_id in old_static - new_static:  # a static silence taken out of the file
            self.silences.pop(silence_id, None)
        old = self.delivery
        if built is None or self.dispatcher is None:
            return
        if old is not None:
            await old.wait_idle(drain_s)
        self.dispatcher, self.delivery = built  # one step: the notifier loop sees old or new
        if old is not None:
            await old.stop()
        await built[1].start()
        names = ",".join(r.name for r in settings.notify.receivers) or "-"
        log.info("notifier reloaded alerts=%s receivers=%s", len(self.dispatcher.alerts), names)
        self.wake.set()

    async def give_up(self) -> None:
        """Stop notifying (the partition moved away); what is unsent stays in the tables."""
        self.started.clear()
        delivery, self.delivery, self.dispatcher = self.delivery, None, None
        if delivery is not None:
            await delivery.stop()

    def delivered(self, notification: Notification, result: DeliveryResult) -> None:
        if self.dispatcher is not None:
            self.dispatcher.delivered(notification, result, time.time())
            self.metrics.inc(
                "spendwatch_notifications_total",
                receiver=notification.receiver,
                status=notification.status,
            )
            self.wake.set()

    def dropped(self, notification: Notification, result: DeliveryResult) -> None:
        if self.dispatcher is not None:
            self.dispatcher.release(notification, time.time())

    async def add(self, payloads: list[dict[str, Any]]) -> None:
        """Alerts read from the notify topic. Waits until this worker has taken over as
        the notifier: the agent can be handed the partition's records before the tables
        are recovered, and an alert dropped then would never be read again (its offset
        is committed)."""
        while self.dispatcher is None:
            await self.started.wait()
        now = time.time()
        for payload in payloads:
            self.dispatcher.add(payload, now)
        self.wake.set()

    def flush_due(self) -> float | None:
        """Hand every due notification to delivery; when to look again (epoch s)."""
        dispatcher, delivery = self.dispatcher, self.delivery
        if dispatcher is None or delivery is None:
            return None
        now = time.time()
        for notification in dispatcher.due(now):
            delivery.enqueue(notification)
        return dispatcher.next_due(now)

    async def run(self, ready: Any, owns: Any, prepare: Any, poll_s: float = 1.0) -> None:
        """The notifier loop: take over when this worker owns the notify partition and its
        tables are recovered, then send what is due, waking on new alerts. ``prepare`` is
        awaited before taking over (the worker makes its producer learn the tables'
        changelog topics, which writes from outside a stream need)."""
        while True:
            self.wake.clear()  # before looking, so a wake-up while we look is kept
            if owns() and ready():
                if self.dispatcher is None:
                    await prepare()
                    await self.take_over()
            elif self.dispatcher is not None:
                await self.give_up()
            wake_at = self.flush_due()
            timeout = poll_s if wake_at is None else min(poll_s, max(0.0, wake_at - time.time()))
            with contextlib.suppress(TimeoutError):  # not wait_for: it can swallow a cancel
                async with asyncio.timeout(max(0.01, timeout)):
                    await self.wake.wait()

    def alerts_page(self) -> dict[str, Any]:
        """``/alerts``: firing alerts and their state, and the notifier's groups."""
        if self.dispatcher is None:
            return {"owner": False, "alerts": [], "groups": []}
        statuses = self.dispatcher.active(time.time())
        return {
            "owner": True,
            "alerts": [s.to_dict() for s in statuses],
            "groups": self.dispatcher.groups(),
        }

    def export(self) -> None:
        if self.delivery is not None:
            self.delivery.export(self.metrics)
