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

    @property
    def active(self) -> bool:
        return self.dispatcher is not None

    async def take_over(self) -> None:
        """Become the notifier: rebuild the dispatcher from the tables, start delivery."""
        await self.give_up()
        notify = self.settings.notify
        self.dispatcher = Dispatcher(
            notify,
            TableDict(self.alerts_table),
            TableDict(self.nflog_table),
            silences=self.silences,
            external_url=self.settings.alerts.external_url,
        )
        self.delivery = Delivery.from_settings(
            notify.receivers,
            os.environ,
            on_delivered=self.delivered,
            on_dropped=self.dropped,
            refs_for=self.dispatcher.refs_for,
        )
        await self.delivery.start()
        log.info(
            "notifier started alerts=%s receivers=%s",
            len(self.dispatcher.alerts),
            ",".join(r.name for r in notify.receivers) or "-",
        )
        self.wake.set()

    async def give_up(self) -> None:
        """Stop notifying (the partition moved away); what is unsent stays in the tables."""
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

    def add(self, payloads: list[dict[str, Any]]) -> None:
        """Alerts read from the notify topic."""
        if self.dispatcher is None:
            return
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
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), timeout=max(0.01, timeout))

    def alerts_page(self) -> dict[str, Any]:
        """``/alerts``: firing alerts and their state, from the notifier."""
        if self.dispatcher is None:
            return {"owner": False, "alerts": []}
        statuses = self.dispatcher.active(time.time())
        return {"owner": True, "alerts": [s.to_dict() for s in statuses]}

    def export(self) -> None:
        if self.delivery is not None:
            self.delivery.export(self.metrics)
