"""The small interface every receiver kind implements, and the HTTP status rules they share.

A receiver turns one :class:`~stream.notify.model.Notification` into one or more HTTP
requests and reports a :class:`~stream.notify.model.DeliveryResult`: ``ok`` only on 2xx;
otherwise ``permanent`` says retrying cannot help (a 4xx other than 408 and 429), and
``retry_after`` carries the receiver's requested wait. Exceptions (refused connections,
timeouts) are left to :mod:`stream.notify.delivery`, which treats them as worth retrying.

>>> is_permanent(400), is_permanent(429), is_permanent(503)
(True, False, False)
>>> retry_after_s("7"), retry_after_s("soon"), retry_after_s(None)
(7.0, None, None)
"""

from __future__ import annotations

from typing import Protocol

import aiohttp

from stream.notify.model import DeliveryResult, Notification


class Receiver(Protocol):
    """Sends notifications to one configured destination."""

    name: str

    async def send(self, notification: Notification, refs: dict[str, str]) -> DeliveryResult:
        """Deliver once; ``refs`` are what an earlier delivery of the group returned."""
        ...

    async def close(self) -> None:
        """Release connections (the receiver may be used again and reopens them)."""
        ...


def is_permanent(status: int) -> bool:
    """A 4xx other than 408 (timeout) and 429 (rate limited): the request itself is wrong."""
    return 400 <= status < 500 and status not in (408, 429)


def retry_after_s(value: str | None) -> float | None:
    """A Retry-After header in seconds (the HTTP-date form is not used by our receivers)."""
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    return max(0.0, seconds)


def http_result(status: int, detail: str = "", retry_after: str | None = None) -> DeliveryResult:
    """The result of one HTTP response by status code alone."""
    return DeliveryResult(
        ok=200 <= status < 300,
        status_code=status,
        detail=detail[:500],
        retry_after=retry_after_s(retry_after) if status in (429, 503) else None,
        permanent=is_permanent(status),
    )


class HttpSession:
    """One aiohttp session per receiver, opened on first use and again after close()."""

    def __init__(self, timeout_s: float) -> None:
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session: aiohttp.ClientSession | None = None

    def client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
