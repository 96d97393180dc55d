"""Generic webhook: the Alertmanager v4 body, POSTed as JSON and signed with HMAC-SHA256.

Signing scheme (what a receiver checks):

- ``X-Spendwatch-Timestamp``: the send time, integer epoch seconds.
- ``X-Spendwatch-Signature``: ``sha256=`` + hex HMAC-SHA256 keyed with the shared secret
  over ``f"{timestamp}.".encode() + body``, where ``body`` is the exact request bytes.

A receiver recomputes the HMAC over the raw body it got, compares in constant time, and
refuses timestamps more than five minutes from its clock (replays). :func:`verify` does
all three. Each retry is signed afresh with its own timestamp.

>>> body = b'{"version":"4"}'
>>> sig = sign("s3cret", 1700000000, body)
>>> sig[:7], verify("s3cret", "1700000000", body, sig, now=1700000100)
('sha256=', True)
>>> verify("wrong", "1700000000", body, sig, now=1700000100)
False
>>> verify("s3cret", "1700000000", body, sig, now=1700000400)
False
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable

import orjson

from stream.notify.model import DeliveryResult, Notification
from stream.notify.receivers.base import HttpSession, http_result
from stream.settings.receivers import ReceiverSettings, WebhookSettings

TIMESTAMP_HEADER = "X-Spendwatch-Timestamp"
SIGNATURE_HEADER = "X-Spendwatch-Signature"


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """``sha256=<hex>`` over ``f"{timestamp}.".encode() + body``."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify(
    secret: str,
    timestamp: str | int,
    body: bytes,
    signature: str,
    now: float,
    tolerance_s: float = 300,
) -> bool:
    """True when ``signature`` is ours for this body and timestamp, and the timestamp is
    within ``tolerance_s`` seconds of ``now`` (epoch seconds)."""
    try:
        ts = int(timestamp)
    except (TypeError, ValueError):
        return False
    if abs(now - ts) > tolerance_s:
        return False
    return hmac.compare_digest(sign(secret, ts, body), signature)


class WebhookReceiver:
    """POSTs ``notification.webhook_body()`` to one URL, signed."""

    def __init__(
        self,
        settings: ReceiverSettings,
        secret: str,
        clock: Callable[[], float] = time.time,
    ) -> None:
        assert settings.webhook is not None
        self.name = settings.name
        self._hook: WebhookSettings = settings.webhook
        self._secret = secret
        self._http = HttpSession(settings.timeout_s)
        self._clock = clock

    async def send(self, notification: Notification, refs: dict[str, str]) -> DeliveryResult:
        body = orjson.dumps(notification.webhook_body())
        timestamp = int(self._clock())
        headers = {
            **self._hook.headers,
            "Content-Type": "application/json",
            TIMESTAMP_HEADER: str(timestamp),
            SIGNATURE_HEADER: sign(self._secret, timestamp, body),
        }
        async with self._http.client().post(self._hook.url, data=body, headers=headers) as resp:
            text = await resp.text(errors="replace")
            return http_result(resp.status, text, resp.headers.get("Retry-After"))

    async def close(self) -> None:
        await self._http.close()
