"""Receivers against real HTTP servers on loopback: what Slack, a webhook and PagerDuty get."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from typing import Any

import jsonschema
import pytest

from stream.notify.model import DeliveryResult, Notification
from stream.notify.receivers import Receiver, build_receiver, build_receivers
from stream.notify.receivers.webhook import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify
from stream.settings.receivers import ReceiverSettings
from tests.contracts import schema
from tests.notify.servers import (
    PagerDutyServer,
    SlackApiServer,
    SlackWebhookServer,
    WebhookServer,
    alert_item,
    notification,
)

SECRET = "test-secret-not-real"
ENV = {
    "SPENDWATCH_WEBHOOK_SECRET": SECRET,
    "SPENDWATCH_SLACK_BOT_TOKEN": "xoxb-test-token",
    "SPENDWATCH_PAGERDUTY_ROUTING_KEY": "R0UT1NGKEY",
}
INJECTIONS = ("<!channel>", "<!here>", "<@U123>", "<http://evil|bank>")


def send(receiver: Receiver, n: Notification, refs: dict[str, str] | None = None) -> DeliveryResult:
    async def go() -> DeliveryResult:
        try:
            return await receiver.send(n, refs or {})
        finally:
            await receiver.close()

    return asyncio.run(go())


@pytest.fixture
def hook() -> Iterator[WebhookServer]:
    with WebhookServer(SECRET) as server:
        yield server


@pytest.fixture
def slack_api() -> Iterator[SlackApiServer]:
    with SlackApiServer() as server:
        yield server


@pytest.fixture
def slack_hook() -> Iterator[SlackWebhookServer]:
    with SlackWebhookServer() as server:
        yield server


@pytest.fixture
def pagerduty() -> Iterator[PagerDutyServer]:
    with PagerDutyServer() as server:
        yield server


def webhook_receiver(url: str) -> Receiver:
    return build_receiver(ReceiverSettings(name="hook", kind="webhook", webhook={"url": url}), ENV)


def slack_bot(base_url: str, **slack: Any) -> Receiver:
    settings = {"channel": "C0ALERTS", "base_url": base_url, **slack}
    return build_receiver(ReceiverSettings(name="slack", kind="slack", slack=settings), ENV)


def slack_webhook(url: str) -> Receiver:
    settings = ReceiverSettings(name="slack", kind="slack", slack={"mode": "webhook"})
    return build_receiver(settings, {"SPENDWATCH_SLACK_WEBHOOK_URL": url})


def texts(blocks: Any) -> list[str]:
    """Every ``text`` string anywhere in a Block Kit structure."""
    if isinstance(blocks, dict):
        found = [blocks["text"]] if isinstance(blocks.get("text"), str) else []
        return found + [t for v in blocks.values() for t in texts(v)]
    if isinstance(blocks, list):
        return [t for v in blocks for t in texts(v)]
    return []


# Generic webhook --------------------------------------------------------------------------
def test_webhook_bodies_follow_the_contract_and_are_signed(hook: WebhookServer) -> None:
    firing = notification("hook", alert_item(), alert_item(customer_id="beta"))
    resolved = notification("hook", alert_item("resolved"))
    for n in (firing, resolved):
        assert send(webhook_receiver(hook.url), n).ok
    got = hook.wait_for(2)
    for request, n in zip(got, (firing, resolved), strict=True):
        body = request.json()
        jsonschema.validate(body, schema("alert-webhook"))
        assert body == n.webhook_body()
        assert request.verified is True
        assert request.headers[SIGNATURE_HEADER].startswith("sha256=")


def test_webhook_signature_fails_with_a_wrong_secret_or_a_stale_timestamp(
    hook: WebhookServer,
) -> None:
    send(webhook_receiver(hook.url), notification("hook"))
    (request,) = hook.wait_for(1)
    ts, sig = request.headers[TIMESTAMP_HEADER], request.headers[SIGNATURE_HEADER]
    now = time.time()
    assert abs(now - int(ts)) < 60
    assert verify(SECRET, ts, request.body, sig, now)
    assert not verify("another-secret", ts, request.body, sig, now)
    assert not verify(SECRET, ts, request.body + b" ", sig, now)
    assert not verify(SECRET, ts, request.body, sig, now + 301)
    assert not verify(SECRET, str(int(ts) + 1), request.body, sig, now)


def test_webhook_4xx_is_permanent_and_5xx_and_429_are_retryable(hook: WebhookServer) -> None:
    hook.fail_next(1, 400)
    hook.fail_next(1, 503)
    hook.rate_limit_next(1, retry_after=7)
    results = [send(webhook_receiver(hook.url), notification("hook")) for _ in range(3)]
    assert [(r.ok, r.status_code, r.permanent) for r in results] == [
        (False, 400, True),
        (False, 503, False),
        (False, 429, False),
    ]
    assert results[2].retry_after == 7.0


# Slack --------------------------------------------------------------------------------------
def test_slack_message_shows_what_broke_for_whom_and_how_to_silence_it(
    slack_hook: SlackWebhookServer,
) -> None:
    alert = alert_item(recent="1,2,3,8,2")
    assert send(slack_webhook(slack_hook.url), notification("slack", alert)).ok
    body = slack_hook.wait_for(1)[0].json()
    blocks = body["blocks"]
    assert blocks[0] == {
        "type": "header",
        "text": {"type": "plain_text", "text": "🔴 FIRING · WARNING · spend_spike", "emoji": False},
    }
    fields = [f["text"] for f in blocks[1]["fields"]]
    assert fields == [
        "Customer: acme",
        "Endpoint: chat",
        "Observed: $3.00 vs baseline $1.00 (3.0×)",
        "Money at risk: $120.00/h",
        "Started: 2026-11-02T10:00:00Z",
    ]
    assert blocks[1]["text"]["text"].startswith("Spend spike for acme on chat")
    assert blocks[2]["elements"][0]["text"] == "Recent: ▁▂▃█▂"
    (button,) = [b for b in blocks if b["type"] == "actions"][0]["elements"]
    assert button["url"] == "https://runbooks.example/spend_spike"
    silence = blocks[-1]["text"]["text"]
    assert "spendwatch silence add 'alertname=\"spend_spike\"' 'customer_id=\"acme\"'" in silence
    assert "--duration 2h --comment" in silence
    assert body["text"].startswith("[FIRING · WARNING · spend_spike] Spend spike for acme")


def test_slack_message_has_no_sparkline_without_recent_buckets(
    slack_hook: SlackWebhookServer,
) -> None:
    send(slack_webhook(slack_hook.url), notification("slack"))
    body = slack_hook.wait_for(1)[0].json()
    assert not any(t.startswith("Recent:") for t in texts(body["blocks"]))


@pytest.mark.parametrize("injection", INJECTIONS)
def test_slack_payload_cannot_ping_or_disguise_links(
    slack_hook: SlackWebhookServer, injection: str
) -> None:
    alert = alert_item(
        customer_id=f"{injection} acme",
        endpoint=f"*{injection}*",
        summary=f"_{injection}_ ~x~ `y`",
        recent="1,2",
    )
    alert["labels"]["model"] = injection
    alert["labels"]["provider"] = "openai"
    send(slack_webhook(slack_hook.url), notification("slack", alert))
    raw = slack_hook.wait_for(1)[0].body.decode()
    body = json.loads(raw)
    decoded = json.dumps(body, ensure_ascii=False)
    for bad in INJECTIONS:
        assert bad not in raw and bad not in decoded
    assert "<" not in decoded and ">" not in decoded
    escaped = injection.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    assert f"Customer: {escaped} acme" in texts(body["blocks"])
    # the mrkdwn fallback has no live markup from the summary either
    assert "_&lt;" not in body["text"] and "`y`" not in body["text"]


def test_slack_bot_posts_then_resolves_in_thread_and_updates_the_original(
    slack_api: SlackApiServer,
) -> None:
    posted = send(slack_bot(slack_api.url), notification("slack"))
    assert posted.ok and posted.refs == {"channel": "C0ALERTS", "ts": "1700000000.000001"}
    resolved = send(
        slack_bot(slack_api.url), notification("slack", alert_item("resolved")), posted.refs
    )
    assert resolved.ok and resolved.refs == posted.refs
    first, update, reply = slack_api.wait_for(3)
    assert first.path == "/api/chat.postMessage"
    assert first.headers["Authorization"] == "Bearer xoxb-test-token"
    assert update.path == "/api/chat.update"
    assert update.json()["ts"] == posted.refs["ts"]
    assert update.json()["blocks"][0]["text"]["text"].startswith("✅ RESOLVED")
    assert reply.path == "/api/chat.postMessage"
    assert reply.json()["thread_ts"] == posted.refs["ts"]
    assert "Resolved at 2026-11-02T10:10:00Z" in texts(reply.json()["blocks"])[0]


def test_slack_bot_resolve_without_refs_posts_a_new_message(slack_api: SlackApiServer) -> None:
    assert send(slack_bot(slack_api.url), notification("slack", alert_item("resolved"))).ok
    (only,) = slack_api.wait_for(1)
    assert only.path == "/api/chat.postMessage" and "thread_ts" not in only.json()


def test_slack_resolve_of_a_deleted_message_is_posted_on_its_own(
    slack_api: SlackApiServer,
) -> None:
    slack_api.error_next(1, "message_not_found")
    refs = {"channel": "C0ALERTS", "ts": "1.0"}
    result = send(slack_bot(slack_api.url), notification("slack", alert_item("resolved")), refs)
    assert result.ok and result.refs["ts"] != "1.0"
    gone, posted = slack_api.requests
    assert (gone.path, gone.status, gone.fault) == ("/api/chat.update", 200, True)
    assert posted.path == "/api/chat.postMessage" and "thread_ts" not in posted.json()


def test_slack_permanent_api_errors_are_not_retried(slack_api: SlackApiServer) -> None:
    slack_api.error_next(1, "channel_not_found")
    result = send(slack_bot(slack_api.url), notification("slack"))
    assert (result.ok, result.permanent, result.detail) == (False, True, "channel_not_found")


def test_slack_web_client_waits_out_a_429_itself(slack_api: SlackApiServer) -> None:
    slack_api.rate_limit_next(1, retry_after=1)
    result = send(slack_bot(slack_api.url, rate_limit_retries=1), notification("slack"))
    assert result.ok
    limited, posted = slack_api.requests
    assert limited.status == 429 and posted.status == 200
    assert posted.at - limited.at >= 1.0


def test_slack_429_beyond_the_clients_retries_is_returned_with_retry_after(
    slack_api: SlackApiServer, slack_hook: SlackWebhookServer
) -> None:
    slack_api.rate_limit_next(1, retry_after=3)
    slack_hook.rate_limit_next(1, retry_after=4)
    web = send(slack_bot(slack_api.url, rate_limit_retries=0), notification("slack"))
    hook = send(slack_webhook(slack_hook.url), notification("slack"))
    assert (web.ok, web.status_code, web.retry_after, web.permanent) == (False, 429, 3.0, False)
    assert (hook.ok, hook.status_code, hook.retry_after, hook.permanent) == (False, 429, 4.0, False)


def test_slack_server_errors_are_retryable_and_bad_requests_permanent(
    slack_api: SlackApiServer, slack_hook: SlackWebhookServer
) -> None:
    slack_api.fail_next(1, 500)
    slack_hook.fail_next(1, 404)
    web = send(slack_bot(slack_api.url), notification("slack"))
    hook = send(slack_webhook(slack_hook.url), notification("slack"))
    assert (web.ok, web.status_code, web.permanent) == (False, 500, False)
    assert (hook.ok, hook.status_code, hook.permanent) == (False, 404, True)


# PagerDuty ------------------------------------------------------------------------------------
def pagerduty_receiver(url: str) -> Receiver:
    settings = ReceiverSettings(name="pd", kind="pagerduty", pagerduty={"url": url})
    return build_receiver(settings, ENV)


def test_pagerduty_triggers_one_event_per_alert_keyed_by_fingerprint(
    pagerduty: PagerDutyServer,
) -> None:
    alerts = (alert_item(severity="critical"), alert_item(customer_id="beta"))
    assert send(pagerduty_receiver(pagerduty.url), notification("pd", *alerts)).ok
    events = [r.json() for r in pagerduty.wait_for(2)]
    assert [e["dedup_key"] for e in events] == [a["fingerprint"] for a in alerts]
    assert {e["event_action"] for e in events} == {"trigger"}
    assert {e["routing_key"] for e in events} == {"R0UT1NGKEY"}
    first = events[0]["payload"]
    assert first["severity"] == "critical" and events[1]["payload"]["severity"] == "warning"
    assert first["summary"].startswith("Spend spike for acme")
    assert first["source"] == "spendwatch"
    assert first["custom_details"]["labels"]["customer_id"] == "acme"
    assert events[0]["links"] == [
        {"href": "https://runbooks.example/spend_spike", "text": "Runbook"}
    ]


def test_pagerduty_resolves_with_the_same_dedup_key(pagerduty: PagerDutyServer) -> None:
    firing, resolved = alert_item(), alert_item("resolved")
    send(pagerduty_receiver(pagerduty.url), notification("pd", firing))
    send(pagerduty_receiver(pagerduty.url), notification("pd", resolved))
    trigger, resolve = (r.json() for r in pagerduty.wait_for(2))
    assert resolve == {
        "routing_key": "R0UT1NGKEY",
        "event_action": "resolve",
        "dedup_key": firing["fingerprint"],
    }
    assert trigger["dedup_key"] == resolve["dedup_key"]


def test_pagerduty_rejection_is_permanent(pagerduty: PagerDutyServer) -> None:
    pagerduty.fail_next(1, 400)
    result = send(pagerduty_receiver(pagerduty.url), notification("pd"))
    assert (result.ok, result.status_code, result.permanent) == (False, 400, True)


# Settings and registry ------------------------------------------------------------------------
def test_missing_secret_names_the_receiver_and_the_variable() -> None:
    settings = [
        ReceiverSettings(name="pd", kind="pagerduty"),
        ReceiverSettings(
            name="team", kind="slack", slack={"channel": "C1", "token_env": "TEAM_TOK"}
        ),
    ]
    with pytest.raises(ValueError) as err:
        build_receivers(settings, {})
    assert "'pd'" in str(err.value) and "SPENDWATCH_PAGERDUTY_ROUTING_KEY" in str(err.value)
    assert "'team'" in str(err.value) and "TEAM_TOK" in str(err.value)


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"kind": "slack"}, "needs a 'slack' section"),
        ({"kind": "slack", "slack": {"mode": "bot"}}, "slack.channel is required"),
        ({"kind": "webhook"}, "needs a 'webhook' section"),
        ({"kind": "pagerduty", "webhook": {"url": "http://x"}}, "is kind pagerduty, not webhook"),
        ({"kind": "webhook", "webhook": {"url": "http://x", "secret": "inline"}}, "Extra inputs"),
    ],
)
def test_receiver_settings_refuse_incomplete_or_mixed_kinds(
    fields: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        ReceiverSettings(name="r", **fields)
