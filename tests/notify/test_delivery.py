"""Delivery over real loopback HTTP: order, exactly-once under faults, isolation, breaker."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from stream.metrics import Metrics
from stream.notify.delivery import METRIC_HELP, Delivery, LaneStats
from stream.notify.model import DeliveryResult, Notification
from stream.settings.receivers import ReceiverSettings
from tests.notify.servers import (
    PagerDutyServer,
    SlackApiServer,
    WebhookServer,
    alert_item,
    notification,
)

SECRET = "delivery-test-secret"
FAST = {"backoff_base_s": 0.01, "backoff_max_s": 0.05, "breaker_failures": 1000, "timeout_s": 2}
ENV = {
    "SPENDWATCH_WEBHOOK_SECRET": SECRET,
    "SPENDWATCH_SLACK_BOT_TOKEN": "xoxb-test",
    "SPENDWATCH_PAGERDUTY_ROUTING_KEY": "RK",
}


def hook(name: str, url: str, **policy: Any) -> ReceiverSettings:
    fields = {**FAST, **policy}
    return ReceiverSettings(name=name, kind="webhook", webhook={"url": url}, **fields)


def numbered(receiver: str, count: int) -> list[Notification]:
    return [notification(receiver, group_key=f"g{i}", sequence=i) for i in range(count)]


def sequences(server: WebhookServer) -> list[str]:
    return [r.json()["groupKey"] for r in server.delivered]


async def until(condition: Callable[[], bool], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not met before the deadline"
        await asyncio.sleep(0.01)


Log = list[tuple[Notification, DeliveryResult]]


def run(
    settings: list[ReceiverSettings],
    body: Callable[[Delivery, Log], Awaitable[None]],
    dropped: Log | None = None,
) -> Log:
    """Start a Delivery over ``settings``, run ``body``, stop it; the delivered log."""
    delivered: Log = []
    gave_up: Log = [] if dropped is None else dropped

    async def go() -> None:
        delivery = Delivery.from_settings(
            settings,
            ENV,
            on_delivered=lambda n, r: delivered.append((n, r)),
            on_dropped=lambda n, r: gave_up.append((n, r)),
        )
        await delivery.start()
        try:
            await body(delivery, delivered)
        finally:
            await delivery.stop()

    asyncio.run(go())
    return delivered


def test_every_notification_arrives_once_in_order_through_500s_and_429s() -> None:
    with WebhookServer(SECRET) as server:
        server.fail_next(3, 500)
        server.rate_limit_next(2, retry_after=0.05)
        server.fail_next(1, 503)
        sent = numbered("hook", 6)

        async def body(delivery: Delivery, delivered: list[Any]) -> None:
            for n in sent:
                delivery.enqueue(n)
            assert await delivery.wait_idle(10)
            stats = delivery.stats()["hook"]
            assert (stats.sent, stats.retries, stats.failed, stats.queue_depth) == (6, 6, 0, 0)

        delivered = run([hook("hook", server.url)], body)
        assert sequences(server) == [n.group_key for n in sent]
        assert [n for n, _ in delivered] == sent
        assert all(r.verified for r in server.requests)
        assert [r.status for r in server.requests[:6]] == [500, 500, 500, 429, 429, 503]


def test_retry_after_is_waited_out() -> None:
    with WebhookServer(SECRET) as server:
        server.rate_limit_next(1, retry_after=0.4)

        async def body(delivery: Delivery, delivered: list[Any]) -> None:
            delivery.enqueue(notification("hook"))
            await until(lambda: len(delivered) == 1)

        run([hook("hook", server.url)], body)
        limited, ok = server.requests
        assert (limited.status, ok.status) == (429, 200)
        assert ok.at - limited.at >= 0.4


def test_a_receiver_that_was_down_gets_everything_in_order_once_back() -> None:
    with WebhookServer(SECRET) as server:
        server.down()
        sent = numbered("hook", 5)

        async def body(delivery: Delivery, delivered: list[Any]) -> None:
            for n in sent[:3]:
                delivery.enqueue(n)
            await until(lambda: delivery.stats()["hook"].retries >= 3)
            for n in sent[3:]:
                delivery.enqueue(n)
            assert delivered == [] and delivery.stats()["hook"].queue_depth == 5
            server.up()
            assert await delivery.wait_idle(10)

        delivered = run([hook("hook", server.url)], body)
        assert sequences(server) == [n.group_key for n in sent]
        assert [n for n, _ in delivered] == sent


def test_a_dead_receiver_delays_no_other() -> None:
    with WebhookServer(SECRET) as dead, WebhookServer(SECRET) as healthy:
        dead.down()
        started = time.monotonic()

        async def body(delivery: Delivery, delivered: list[Any]) -> None:
            for i in range(5):
                delivery.enqueue(notification("dead", group_key=f"g{i}"))
                delivery.enqueue(notification("healthy", group_key=f"g{i}"))
            await healthy.until(5, timeout_s=3)
            assert dead.delivered == [] and delivery.stats()["dead"].queue_depth == 5
            dead.up()
            await dead.until(5)

        settings = [
            hook("dead", dead.url, backoff_base_s=0.2, backoff_max_s=0.5),
            hook("healthy", healthy.url),
        ]
        run(settings, body)
        assert max(r.at for r in healthy.delivered) - started < 3
        assert sequences(dead) == sequences(healthy) == [f"g{i}" for i in range(5)]


def test_the_circuit_opens_after_consecutive_failures_and_pauses_attempts() -> None:
    with WebhookServer(SECRET) as server:
        server.fail_next(3, 500)
        states: list[LaneStats] = []

        async def body(delivery: Delivery, delivered: list[Any]) -> None:
            delivery.enqueue(notification("hook"))
            # the server counts the second attempt before the lane has read its answer:
            # wait for the lane's own count, not the server's (a race seen under load)
            await until(lambda: delivery.stats()["hook"].consecutive_failures >= 2)
            states.append(LaneStats(**_fields(delivery.stats()["hook"])))
            await until(lambda: len(delivered) == 1)
            states.append(LaneStats(**_fields(delivery.stats()["hook"])))

        policy = {"breaker_failures": 2, "breaker_open_s": 0.3}
        run([hook("hook", server.url, **policy)], body)
        at = [r.at for r in server.requests]
        assert [r.status for r in server.requests] == [500, 500, 500, 200]
        assert at[2] - at[1] >= 0.3  # opened after two: paused, then one probe
        assert at[3] - at[2] >= 0.3  # the probe failed: open again
        assert states[0].breaker in ("open", "half_open")
        assert (states[1].breaker, states[1].consecutive_failures, states[1].sent) == (
            "closed",
            0,
            1,
        )


def _fields(stats: LaneStats) -> dict[str, Any]:
    return {name: getattr(stats, name) for name in LaneStats.__slots__}  # type: ignore[attr-defined]


def test_permanent_failures_are_dropped_counted_and_not_reported_delivered() -> None:
    with WebhookServer(SECRET) as server:
        server.fail_next(1, 400)
        sent = numbered("hook", 2)

        async def body(delivery: Delivery, delivered: list[Any]) -> None:
            for n in sent:
                delivery.enqueue(n)
            assert await delivery.wait_idle(5)
            stats = delivery.stats()["hook"]
            assert (stats.sent, stats.failed, stats.retries) == (1, 1, 0)
            assert stats.last_error.startswith("400")

        dropped: Log = []
        delivered = run([hook("hook", server.url)], body, dropped)
        assert [n for n, _ in delivered] == sent[1:]
        assert [(n, r.status_code, r.permanent) for n, r in dropped] == [(sent[0], 400, True)]


def test_max_attempts_gives_up_and_moves_on() -> None:
    with WebhookServer(SECRET) as server:
        server.fail_next(2, 500)
        sent = numbered("hook", 2)

        async def body(delivery: Delivery, delivered: list[Any]) -> None:
            for n in sent:
                delivery.enqueue(n)
            assert await delivery.wait_idle(5)
            assert delivery.stats()["hook"].failed == 1

        dropped: Log = []
        delivered = run([hook("hook", server.url, max_attempts=2)], body, dropped)
        assert [n for n, _ in delivered] == sent[1:]
        assert [(n, r.status_code) for n, r in dropped] == [(sent[0], 500)]


def test_an_attempt_that_hangs_times_out_and_is_retried() -> None:
    with WebhookServer(SECRET) as server:
        server.stall_next(1, 1.0)

        async def body(delivery: Delivery, delivered: list[Any]) -> None:
            delivery.enqueue(notification("hook"))
            await until(lambda: len(delivered) == 1)
            assert delivery.stats()["hook"].retries == 1
            assert delivery.stats()["hook"].last_error == "attempt timed out"

        delivered = run([hook("hook", server.url, attempt_timeout_s=0.3)], body)
        assert len(delivered) == 1


def test_slack_resolve_threads_under_the_firing_message_through_delivery() -> None:
    with SlackApiServer() as api:
        slack = {"channel": "C0ALERTS", "base_url": api.url}
        settings = ReceiverSettings(name="slack", kind="slack", slack=slack, **FAST)
        api.fail_next(1, 500)

        async def body(delivery: Delivery, delivered: list[Any]) -> None:
            delivery.enqueue(notification("slack", sequence=1))
            delivery.enqueue(notification("slack", alert_item("resolved"), sequence=2))
            await until(lambda: len(delivered) == 2)

        delivered = run([settings], body)
        post, update, reply = api.delivered
        ts = delivered[0][1].refs["ts"]
        assert post.path == "/api/chat.postMessage" and "thread_ts" not in post.json()
        assert update.path == "/api/chat.update" and update.json()["ts"] == ts
        assert reply.json()["thread_ts"] == ts


def test_refs_come_from_the_notification_log_after_a_restart() -> None:
    with SlackApiServer() as api:
        slack = {"channel": "C0ALERTS", "base_url": api.url}
        settings = ReceiverSettings(name="slack", kind="slack", slack=slack, **FAST)
        logged = {"channel": "C0ALERTS", "ts": "1699999999.000009"}

        async def go() -> None:
            delivery = Delivery.from_settings([settings], ENV, refs_for=lambda n: logged)
            await delivery.start()
            delivery.enqueue(notification("slack", alert_item("resolved")))
            assert await delivery.wait_idle(5)
            await delivery.stop()

        asyncio.run(go())
        assert api.calls("chat.update")[0].json()["ts"] == logged["ts"]


def test_pagerduty_events_are_retried_until_accepted() -> None:
    with PagerDutyServer() as pd:
        pd.fail_next(2, 502)
        settings = ReceiverSettings(name="pd", kind="pagerduty", pagerduty={"url": pd.url}, **FAST)

        async def body(delivery: Delivery, delivered: list[Any]) -> None:
            delivery.enqueue(notification("pd"))
            await until(lambda: len(delivered) == 1)

        delivered = run([settings], body)
        assert [r.status for r in pd.requests] == [502, 502, 202]
        assert delivered[0][1].status_code == 202


def test_a_full_queue_drops_the_oldest_and_unknown_receivers_are_refused() -> None:
    settings = hook("hook", "http://127.0.0.1:9/", max_queue=2)
    dropped: list[Notification] = []
    delivery = Delivery.from_settings([settings], ENV, on_dropped=lambda n, r: dropped.append(n))
    sent = numbered("hook", 3)
    assert all(delivery.enqueue(n) for n in sent)
    assert not delivery.enqueue(notification("nobody"))
    stats = delivery.stats()["hook"]
    assert (stats.dropped, stats.queue_depth, delivery.unknown_receiver) == (1, 2, 1)
    assert dropped == sent[:1]


def test_counters_are_exported_as_metrics_per_receiver() -> None:
    with WebhookServer(SECRET) as server:
        server.fail_next(1, 500)
        metrics = Metrics()

        async def body(delivery: Delivery, delivered: list[Any]) -> None:
            delivery.enqueue(notification("hook"))
            assert await delivery.wait_idle(5)
            delivery.export(metrics)

        run([hook("hook", server.url)], body)
        assert metrics.value("spendwatch_notifications_sent_total", receiver="hook") == 1
        assert metrics.value("spendwatch_notification_retries_total", receiver="hook") == 1
        assert metrics.value("spendwatch_notification_queue_depth", receiver="hook") == 0
        assert metrics.value("spendwatch_receiver_circuit_open", receiver="hook") == 0
        rendered = metrics.render()
        assert all(name in rendered for name in METRIC_HELP)


class _HeldReceiver:
    """A receiver whose one send the test completes by hand, to time a stop against it.

    A loopback server can't put an answer and a cancel in the same turn of the event loop;
    this is the one case here that needs that exact timing."""

    def __init__(self) -> None:
        self.answer: asyncio.Future[DeliveryResult] | None = None
        self.closed = False

    async def send(self, notification: Notification, refs: dict[str, str]) -> DeliveryResult:
        self.answer = asyncio.get_running_loop().create_future()
        return await self.answer

    async def close(self) -> None:
        self.closed = True


def test_stop_returns_when_the_answer_and_the_cancel_come_in_the_same_turn() -> None:
    # Python 3.11's asyncio.wait_for returns the inner result when it completed in the
    # turn the waiter was cancelled, swallowing the cancel: the lane then waited for work
    # for ever and stop() (and the worker's shutdown, and CI) hung.
    receiver = _HeldReceiver()

    async def go() -> tuple[bool, bool]:
        delivery = Delivery({"held": receiver}, [hook("held", "http://127.0.0.1:9/")])
        await delivery.start()
        delivery.enqueue(notification("held"))
        await until(lambda: receiver.answer is not None)
        assert receiver.answer is not None
        receiver.answer.set_result(DeliveryResult(ok=True))
        stopped = asyncio.ensure_future(delivery.stop())  # cancels in this same turn
        done, _ = await asyncio.wait([stopped], timeout=2)
        return stopped in done, receiver.closed

    assert asyncio.run(go()) == (True, True)
