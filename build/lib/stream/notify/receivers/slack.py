"""Slack through slack-sdk: an incoming webhook, or a bot token with threaded resolves.

Bot mode posts a firing notification with ``chat.postMessage`` and returns refs
``{"channel", "ts"}``; the delivery layer hands them back with the group's resolve, which
updates the original message (``chat.update``, drawn resolved) and then replies in its
thread. The update goes first because it is idempotent: if the reply fails, the retry
redoes both without a second reply. A 429 is waited out inside the Web API client
(slack-sdk's rate-limit retry handler honours Retry-After); a 429 that outlasts it, and
any 429 from an incoming webhook, is returned as ``retry_after`` for the delivery layer.
"""

from __future__ import annotations

import math
from typing import Any

from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.async_handler import AsyncRetryHandler
from slack_sdk.http_retry.builtin_async_handlers import AsyncRateLimitErrorRetryHandler
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.webhook.async_client import AsyncWebhookClient

from stream.notify.model import DeliveryResult, Notification
from stream.notify.receivers.base import http_result, retry_after_s
from stream.notify.receivers.slack_blocks import blocks, fallback_text, resolved_reply
from stream.settings.receivers import ReceiverSettings, SlackSettings

# chat.update answers meaning the firing message is gone: post the resolve on its own.
MESSAGE_GONE = {"message_not_found", "cant_update_message", "edit_window_closed"}
# ok:false answers (HTTP 200) that a later attempt may get past; the rest are permanent.
TRANSIENT_ERRORS = {
    "internal_error",
    "fatal_error",
    "service_unavailable",
    "request_timeout",
    "ratelimited",
}


def _api_error(err: SlackApiError) -> DeliveryResult:
    response = err.response
    status = int(response.status_code)
    data = response.data if isinstance(response.data, dict) else {}
    code = str(data.get("error", ""))
    if status != 200:
        return http_result(status, code or str(err), response.headers.get("Retry-After"))
    return DeliveryResult(
        ok=False, status_code=status, detail=code, permanent=code not in TRANSIENT_ERRORS
    )


class SlackReceiver:
    """Posts notifications as Block Kit messages."""

    def __init__(self, settings: ReceiverSettings, secret: str) -> None:
        assert settings.slack is not None
        self.name = settings.name
        self._slack: SlackSettings = settings.slack
        timeout = max(1, math.ceil(settings.timeout_s))
        self._webhook: AsyncWebhookClient | None = None
        self._web: AsyncWebClient | None = None
        if self._slack.mode == "webhook":
            self._webhook = AsyncWebhookClient(url=secret, timeout=timeout, retry_handlers=[])
        else:
            handlers: list[AsyncRetryHandler] = [
                AsyncRateLimitErrorRetryHandler(max_retry_count=self._slack.rate_limit_retries)
            ]
            self._web = AsyncWebClient(
                token=secret,
                base_url=self._slack.base_url,
                timeout=timeout,
                retry_handlers=handlers,
            )

    def _message(self, n: Notification) -> dict[str, Any]:
        message: dict[str, Any] = {
            "text": fallback_text(n),
            "blocks": blocks(n, self._slack.max_alerts, self._slack.mention),
            "unfurl_links": False,
            "unfurl_media": False,
        }
        if self._slack.username:
            message["username"] = self._slack.username
        return message

    async def send(self, notification: Notification, refs: dict[str, str]) -> DeliveryResult:
        if self._webhook is not None:
            return await self._send_webhook(notification)
        try:
            return await self._send_web(notification, refs)
        except SlackApiError as err:
            return _api_error(err)

    async def _send_webhook(self, n: Notification) -> DeliveryResult:
        assert self._webhook is not None
        resp = await self._webhook.send_dict(self._message(n))
        result = http_result(resp.status_code, resp.body)
        if resp.status_code == 429:
            result.retry_after = retry_after_s(resp.headers.get("Retry-After"))
        return result

    async def _send_web(self, n: Notification, refs: dict[str, str]) -> DeliveryResult:
        assert self._web is not None
        message = self._message(n)
        if n.status == "resolved" and refs.get("channel") and refs.get("ts"):
            channel, ts = refs["channel"], refs["ts"]
            try:
                await self._web.chat_update(
                    channel=channel, ts=ts, text=message["text"], blocks=message["blocks"]
                )
            except SlackApiError as err:
                if not isinstance(err.response.data, dict):
                    raise
                if err.response.data.get("error") not in MESSAGE_GONE:
                    raise
                return await self._send_web(n, {})
            reply = await self._web.chat_postMessage(
                channel=channel,
                thread_ts=ts,
                text=message["text"],
                blocks=resolved_reply(n),
                username=self._slack.username or None,
            )
            return DeliveryResult(
                ok=True, status_code=reply.status_code, refs={"channel": channel, "ts": ts}
            )
        posted = await self._web.chat_postMessage(channel=self._slack.channel, **message)
        refs_out = {"channel": str(posted["channel"]), "ts": str(posted["ts"])}
        return DeliveryResult(ok=True, status_code=posted.status_code, refs=refs_out)

    async def close(self) -> None:
        # slack-sdk opens and closes an aiohttp session per request when given none.
        return None
