"""``spendwatch replay --deliver``: replayed alerts through the dispatcher to real receivers.

The clock is event time: an alert arrives at its own time (``startsAt`` when firing,
``endsAt`` when resolved; never earlier than the alert before it), so ``group_wait_s``,
``group_interval_s`` and ``repeat_interval_s`` pass in event time, and a two-day replay
notifies as the worker would have over those two days. Between two alerts the
dispatcher is asked for what is due at each time it names (:meth:`Dispatcher.next_due`);
after the last alert the clock runs on until every group has had its next check. Each
batch of notifications is delivered (real HTTP, with :class:`Delivery`'s retries) before
the clock moves on, as if delivery took no event time; the whole wait is bounded by
``timeout_s`` wall seconds, after which what is still queued is reported as pending.

Dispatcher state lives in plain dicts; the config's static silences and inhibition
rules apply; silences on the Kafka topic do not (a replay needs no broker).

>>> event_time({"status": "resolved", "startsAt": "2026-11-02T10:00:00Z",
...             "endsAt": "2026-11-02T10:30:00Z"})
1793615400.0
>>> DeliveryReport({"pd": 2, "slack": 5}, {"pd": 0, "slack": 1}, 0, 8).summary()
'delivered 7 of 8 notifications: pd 2, slack 5 (slack: 1 failed)'
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from stream.core.events import to_epoch_seconds
from stream.notify.delivery import Delivery
from stream.notify.grouping import Dispatcher
from stream.notify.model import DeliveryResult, Notification
from stream.notify.routing import RouteNode
from stream.settings.notify import NotifySettings
from stream.settings.receivers import ReceiverSettings


@dataclass
class DeliveryReport:
    """What ``--deliver`` sent: per receiver delivered and failed counts."""

    sent: dict[str, int]
    failed: dict[str, int]  # refused (4xx) or given up after max_attempts
    pending: int  # still queued or in flight when the wait ended
    notifications: int  # handed to delivery, repeats and resolves included

    @property
    def ok(self) -> bool:
        return self.pending == 0 and not any(self.failed.values())

    def summary(self) -> str:
        """One line for people."""
        per = ", ".join(f"{name} {n}" for name, n in sorted(self.sent.items())) or "no receivers"
        line = f"delivered {sum(self.sent.values())} of {self.notifications} notifications: {per}"
        problems = [f"{name}: {n} failed" for name, n in sorted(self.failed.items()) if n]
        if self.pending:
            problems.append(f"{self.pending} still pending")
        return line + (f" ({'; '.join(problems)})" if problems else "")


def event_time(alert: Mapping[str, Any]) -> float:
    """When an alert transition happened, epoch seconds: endsAt if resolved, else startsAt."""
    stamp = alert["endsAt"] if alert["status"] == "resolved" else alert["startsAt"]
    return to_epoch_seconds(stamp)


def routed_receivers(notify: NotifySettings) -> list[ReceiverSettings]:
    """The receivers some route sends to (others need no secret for a replay)."""
    used = {name for _, route in notify.route.walk() for name in route.receivers or []}
    return [r for r in notify.receivers if r.name in used]


def check_deliverable(notify: NotifySettings, env: Mapping[str, str]) -> None:
    """ValueError when no route names a receiver, or naming every unset secret variable."""
    receivers = routed_receivers(notify)
    if not receivers:
        raise ValueError(
            "--deliver: no route sends to a receiver (set notify.route.receivers and "
            "notify.receivers in the config; README: Alert delivery)"
        )
    for receiver in receivers:
        receiver.secret(env)


def _horizon_s(node: RouteNode) -> float:
    """The longest wait before a route's group is checked again (group_wait / _interval)."""
    own = max(node.group_wait_s, node.group_interval_s)
    return max([own, *(_horizon_s(child) for child in node.children)])


class _EventClock:
    now = float("-inf")


async def deliver_replayed(
    alerts: Iterable[Mapping[str, Any]],
    notify: NotifySettings,
    env: Mapping[str, str],
    timeout_s: float = 60.0,
    external_url: str = "",
) -> DeliveryReport:
    """Dispatch ``alerts`` (contract items, in the order replay emitted them) in event time
    and deliver the notifications; waits at most ``timeout_s`` wall seconds in all.

    ValueError when no route names a receiver or a receiver's secret is not in ``env``.
    """
    check_deliverable(notify, env)
    receivers = routed_receivers(notify)
    dispatcher = Dispatcher(notify, {}, {}, external_url=external_url)
    clock = _EventClock()
    count = 0

    def delivered(n: Notification, result: DeliveryResult) -> None:
        dispatcher.delivered(n, result, clock.now)

    def dropped(n: Notification, result: DeliveryResult) -> None:
        dispatcher.release(n, clock.now)

    delivery = Delivery.from_settings(
        receivers, env, on_delivered=delivered, on_dropped=dropped, refs_for=dispatcher.refs_for
    )
    deadline = time.monotonic() + timeout_s

    async def advance(until: float, inclusive: bool = False) -> None:
        """Run the dispatcher's checks due before ``until`` (event time; at it too when
        ``inclusive``), delivering each batch. Alerts arriving at a check's time are in it."""
        nonlocal count
        while (at := dispatcher.next_due(clock.now)) is not None and (
            at < until or (inclusive and at == until)
        ):
            clock.now = max(clock.now, at)
            batch = dispatcher.due(clock.now)
            for notification in batch:
                delivery.enqueue(notification)
            count += len(batch)
            if batch:
                await delivery.wait_idle(max(0.0, deadline - time.monotonic()))
            elif (again := dispatcher.next_due(clock.now)) is not None and again <= clock.now:
                break  # nothing can become due without the clock moving: move it

    await delivery.start()
    try:
        for alert in alerts:
            t = max(clock.now, event_time(alert))
            await advance(t)
            clock.now = t
            dispatcher.add(alert, t)
        if clock.now > float("-inf"):
            await advance(clock.now + _horizon_s(dispatcher.tree), inclusive=True)
        await delivery.wait_idle(max(0.0, deadline - time.monotonic()))
        stats = delivery.stats()
        pending = sum(s.queue_depth for s in stats.values())
    finally:
        await delivery.stop()
    return DeliveryReport(
        sent={name: s.sent for name, s in stats.items()},
        failed={name: s.failed for name, s in stats.items()},
        pending=pending,
        notifications=count,
    )
