"""Delivery: one ordered queue and task per receiver, with retries and a circuit breaker.

Each receiver gets a *lane*: a FIFO of notifications and one task sending them one at a
time, so a receiver that is down gets everything in order once it is back, and a slow or
dead receiver never delays another. An attempt that fails in a way worth retrying (5xx,
408, 429, refused connection, timeout) is retried with exponential backoff and full
jitter, waiting at least the receiver's Retry-After. After ``breaker_failures``
consecutive failed attempts the lane's circuit opens: attempts pause for
``breaker_open_s`` (nothing is dropped), then one probe decides whether it closes or
opens again. A notification counts as delivered only on a 2xx; then ``on_delivered`` is
called (the dispatcher's notification log). A permanent failure (4xx other than 408/429)
is logged, counted and dropped, as is a notification that used up ``max_attempts``;
``max_queue`` bounds a lane, beyond it the oldest pending notification is dropped. Every
drop calls ``on_dropped`` (the dispatcher's ``release``, so the group is derived again).

Refs (e.g. Slack's channel and message ts) returned by a delivery are handed to the next
notification of the same group on that receiver, so a resolve can thread under its
firing message; ``refs_for`` lets the notification log supply them after a restart.

    delivery = Delivery.from_settings(
        receiver_settings, os.environ,
        on_delivered=lambda n, r: dispatcher.delivered(n, r, time.time()),
        on_dropped=lambda n, r: dispatcher.release(n, time.time()),
        refs_for=dispatcher.refs_for,
    )
    await delivery.start()
    delivery.enqueue(notification)      # any number, from the event loop's thread
    await delivery.stop(drain_s=5)      # waits up to 5 s for queues to empty
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from stream.metrics import FAMILIES, Metrics
from stream.notify.model import DeliveryResult, Notification
from stream.notify.receivers import Receiver, build_receivers
from stream.settings.receivers import ReceiverSettings

log = logging.getLogger(__name__)

OnDelivered = Callable[[Notification, DeliveryResult], Awaitable[None] | None]
OnDropped = OnDelivered
RefsFor = Callable[[Notification], Mapping[str, str] | None]


# Exported by :meth:`Delivery.export`, all labelled by receiver; declared, with their
# HELP text, in stream.metrics.FAMILIES (a name missing there fails at import).
METRIC_HELP = {
    name: FAMILIES[name].help
    for name in (
        "spendwatch_notifications_sent_total",
        "spendwatch_notifications_failed_total",
        "spendwatch_notifications_dropped_total",
        "spendwatch_notification_retries_total",
        "spendwatch_notification_queue_depth",
        "spendwatch_receiver_circuit_open",
    )
}


def backoff_s(attempt: int, base_s: float, max_s: float, rng: Callable[[], float]) -> float:
    """Full-jitter wait before retry number ``attempt`` (1-based), seconds.

    >>> backoff_s(1, 1.0, 300.0, lambda: 1.0), backoff_s(4, 1.0, 300.0, lambda: 0.5)
    (1.0, 4.0)
    >>> backoff_s(30, 1.0, 300.0, lambda: 1.0)
    300.0
    """
    return rng() * min(max_s, base_s * 2.0 ** min(attempt - 1, 60))


@dataclass(slots=True)
class LaneStats:
    """Counters of one receiver's lane (exported as metrics)."""

    sent: int = 0
    failed: int = 0  # permanent failures and give-ups after max_attempts
    dropped: int = 0  # pushed out of a full queue
    retries: int = 0
    consecutive_failures: int = 0
    breaker: str = "closed"  # closed | open | half_open
    queue_depth: int = 0
    last_error: str = ""


@dataclass(slots=True)
class _Lane:
    receiver: Receiver
    settings: ReceiverSettings
    pending: deque[Notification] = field(default_factory=deque)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    in_flight: Notification | None = None
    open_until: float = 0.0
    refs: dict[str, dict[str, str]] = field(default_factory=dict)
    stats: LaneStats = field(default_factory=LaneStats)
    task: asyncio.Task[None] | None = None

    def depth(self) -> int:
        return len(self.pending) + (self.in_flight is not None)


class Delivery:
    """Sends notifications to their receivers (``notification.receiver`` names the lane)."""

    def __init__(
        self,
        receivers: Mapping[str, Receiver],
        settings: Iterable[ReceiverSettings],
        on_delivered: OnDelivered | None = None,
        refs_for: RefsFor | None = None,
        on_dropped: OnDropped | None = None,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
        rng: Callable[[], float] = random.random,
    ) -> None:
        by_name = {s.name: s for s in settings}
        unknown = sorted(set(receivers) - set(by_name))
        if unknown:
            raise ValueError(f"receivers without settings: {', '.join(unknown)}")
        self._lanes = {name: _Lane(r, by_name[name]) for name, r in receivers.items()}
        self._on_delivered = on_delivered
        self._refs_for = refs_for
        self._on_dropped = on_dropped
        self._sleep = sleep
        self._clock = clock
        self._rng = rng
        self.unknown_receiver = 0

    @classmethod
    def from_settings(
        cls,
        settings: Iterable[ReceiverSettings],
        env: Mapping[str, str],
        on_delivered: OnDelivered | None = None,
        refs_for: RefsFor | None = None,
        on_dropped: OnDropped | None = None,
    ) -> Delivery:
        """Receivers built from their settings, secrets read from ``env`` (os.environ)."""
        settings = list(settings)
        receivers = build_receivers(settings, env)
        return cls(receivers, settings, on_delivered, refs_for, on_dropped)

    async def start(self) -> None:
        """Start one task per receiver (call from the running event loop)."""
        for name, lane in self._lanes.items():
            if lane.task is None or lane.task.done():
                lane.task = asyncio.create_task(self._run(lane), name=f"deliver:{name}")

    def enqueue(self, notification: Notification) -> bool:
        """Queue a notification on its receiver's lane; False when no such receiver."""
        lane = self._lanes.get(notification.receiver)
        if lane is None:
            self.unknown_receiver += 1
            log.error("notification for unknown receiver receiver=%s", notification.receiver)
            return False
        if len(lane.pending) >= lane.settings.max_queue:
            oldest = lane.pending.popleft()
            lane.stats.dropped += 1
            log.error("delivery queue full, oldest dropped receiver=%s", notification.receiver)
            if self._on_dropped is not None:
                done = self._on_dropped(oldest, DeliveryResult(ok=False, detail="queue full"))
                if inspect.isawaitable(done):
                    asyncio.ensure_future(done)
        lane.pending.append(notification)
        lane.wake.set()
        return True

    def idle(self) -> bool:
        """True when no lane has anything pending or in flight."""
        return all(lane.depth() == 0 for lane in self._lanes.values())

    async def wait_idle(self, timeout_s: float) -> bool:
        """Wait up to ``timeout_s`` (wall seconds) for every queue to empty; True if it did."""
        deadline = time.monotonic() + timeout_s
        while not self.idle():
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(0.01)
        return True

    async def stop(self, drain_s: float = 0.0) -> None:
        """Wait up to ``drain_s`` for queues to empty, then stop the tasks and close
        receivers. What is still pending stays queued (start() resumes it)."""
        if drain_s > 0:
            await self.wait_idle(drain_s)
        tasks = {lane.task for lane in self._lanes.values() if lane.task is not None}
        while tasks:  # again for a task that took its cancel for something else's
            for task in tasks:
                task.cancel()
            done, tasks = await asyncio.wait(tasks, timeout=1.0)
            for task in done:
                if not task.cancelled() and task.exception() is not None:
                    log.error("delivery task ended", exc_info=task.exception())
        for lane in self._lanes.values():
            lane.task = None
            if lane.in_flight is not None:  # interrupted: first in line again
                lane.pending.appendleft(lane.in_flight)
                lane.in_flight = None
            await lane.receiver.close()

    def stats(self) -> dict[str, LaneStats]:
        """Counters per receiver name (queue depth and breaker state as of now)."""
        out = {}
        for name, lane in self._lanes.items():
            lane.stats.queue_depth = lane.depth()
            if lane.stats.breaker == "open" and self._clock() >= lane.open_until:
                lane.stats.breaker = "half_open"
            out[name] = lane.stats
        return out

    def export(self, metrics: Metrics) -> None:
        """Write the counters and gauges of :data:`METRIC_HELP` into ``metrics``."""
        for name, st in self.stats().items():
            key = (("receiver", name),)
            metrics.counters["spendwatch_notifications_sent_total"][key] = st.sent
            metrics.counters["spendwatch_notifications_failed_total"][key] = st.failed
            metrics.counters["spendwatch_notifications_dropped_total"][key] = st.dropped
            metrics.counters["spendwatch_notification_retries_total"][key] = st.retries
            metrics.set("spendwatch_notification_queue_depth", st.queue_depth, receiver=name)
            is_open = 1.0 if st.breaker == "open" else 0.0
            metrics.set("spendwatch_receiver_circuit_open", is_open, receiver=name)

    async def _run(self, lane: _Lane) -> None:
        while True:
            while not lane.pending:
                lane.wake.clear()
                await lane.wake.wait()
            lane.in_flight = lane.pending.popleft()
            await self._deliver(lane, lane.in_flight)
            lane.in_flight = None

    async def _deliver(self, lane: _Lane, n: Notification) -> None:
        s, stats = lane.settings, lane.stats
        attempt = 0
        while True:
            if (wait := lane.open_until - self._clock()) > 0:
                await self._sleep(wait)
            if stats.breaker == "open":
                stats.breaker = "half_open"
            attempt += 1
            result = await self._attempt(lane, n)
            if result.ok:
                await self._succeeded(lane, n, result)
                return
            stats.last_error = f"{result.status_code or ''} {result.detail}".strip()[:300]
            if result.permanent:
                stats.failed += 1
                log.error(
                    "delivery refused, dropped receiver=%s group=%s status=%s detail=%s",
                    s.name, n.group_key, result.status_code, result.detail[:200],
                )  # fmt: skip
                await self._notify(self._on_dropped, lane, n, result)
                return
            stats.consecutive_failures += 1
            if s.max_attempts is not None and attempt >= s.max_attempts:
                stats.failed += 1
                log.error(
                    "delivery given up receiver=%s group=%s attempts=%s error=%s",
                    s.name, n.group_key, attempt, stats.last_error,
                )  # fmt: skip
                await self._notify(self._on_dropped, lane, n, result)
                return
            wait = backoff_s(attempt, s.backoff_base_s, s.backoff_max_s, self._rng)
            if stats.consecutive_failures >= s.breaker_failures:
                lane.open_until = self._clock() + s.breaker_open_s
                if stats.breaker != "open":
                    log.warning("circuit open receiver=%s for_s=%s", s.name, s.breaker_open_s)
                stats.breaker = "open"
                wait = 0.0  # the open circuit is the wait
            if result.retry_after is not None:
                wait = max(wait, result.retry_after)
            stats.retries += 1
            log.warning(
                "delivery failed, will retry receiver=%s group=%s attempt=%s wait_s=%.3f error=%s",
                s.name, n.group_key, attempt, wait, stats.last_error,
            )  # fmt: skip
            if wait > 0:
                await self._sleep(wait)

    async def _attempt(self, lane: _Lane, n: Notification) -> DeliveryResult:
        refs = lane.refs.get(n.group_key)
        if refs is None and self._refs_for is not None:
            refs = dict(self._refs_for(n) or {})
        try:
            # asyncio.timeout, not wait_for: 3.11's wait_for swallows a cancel that comes in
            # the turn the send completes, and the lane would outlive stop()
            async with asyncio.timeout(lane.settings.attempt_timeout_s):
                return await lane.receiver.send(n, dict(refs or {}))
        except TimeoutError:
            return DeliveryResult(ok=False, detail="attempt timed out")
        except Exception as err:  # connection refused, reset, DNS...: worth retrying
            return DeliveryResult(ok=False, detail=f"{type(err).__name__}: {err}")

    async def _succeeded(self, lane: _Lane, n: Notification, result: DeliveryResult) -> None:
        stats = lane.stats
        if stats.breaker != "closed":
            log.info("circuit closed receiver=%s", lane.settings.name)
        stats.sent += 1
        stats.consecutive_failures = 0
        stats.breaker = "closed"
        lane.open_until = 0.0
        if n.status == "resolved":
            lane.refs.pop(n.group_key, None)
        elif result.refs:
            lane.refs[n.group_key] = dict(result.refs)
        await self._notify(self._on_delivered, lane, n, result)

    async def _notify(
        self, callback: OnDelivered | None, lane: _Lane, n: Notification, result: DeliveryResult
    ) -> None:
        if callback is None:
            return
        try:
            done = callback(n, result)
            if inspect.isawaitable(done):
                await done
        except Exception:
            name = lane.settings.name
            log.exception("delivery callback failed receiver=%s group=%s", name, n.group_key)
