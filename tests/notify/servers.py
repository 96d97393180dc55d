"""Real HTTP servers on loopback standing in for Slack, a webhook receiver and PagerDuty.

Each runs an aiohttp app on its own event loop in a background thread, so sync and async
tests use it alike::

    with PagerDutyServer() as pd:
        ... send to pd.url ...
        pd.wait_for(2)                      # sync: block until 2 requests answered 2xx
        await pd.until(2)                   # async: the same without blocking the loop

Programmable faults, consumed one per request in order: ``fail_next(n, status=500)``,
``rate_limit_next(n, retry_after=1)``, ``stall_next(n, seconds)``. ``down()`` stops
listening (connections are then refused) and ``up()`` listens again on the same port.
Every request is recorded in ``requests`` with the status it was answered with;
``delivered`` holds the 2xx ones.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Self
from urllib.parse import parse_qsl

from aiohttp import web

from detectors.decision import Decision
from stream.core.alerts import build_alert
from stream.notify.model import Notification
from stream.notify.receivers.webhook import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify


@dataclass(frozen=True, slots=True)
class Recorded:
    """One request as received, and how it was answered."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    status: int
    at: float  # time.monotonic() on arrival
    verified: bool | None = None  # webhook signature check, when the server has a secret
    fault: bool = False  # answered by an injected fault

    def json(self) -> Any:
        """The body parsed as JSON (or form fields, as Slack clients may send)."""
        try:
            return json.loads(self.body)
        except ValueError:
            return dict(parse_qsl(self.body.decode()))


@dataclass(slots=True)
class _Fault:
    status: int  # 0: answer normally, after stall_s
    headers: dict[str, str] = field(default_factory=dict)
    stall_s: float = 0.0


class LoopbackServer:
    """Base: lifecycle, fault injection and recording; subclasses add routes."""

    def __init__(self) -> None:
        self.port = 0
        self.requests: list[Recorded] = []
        self._faults: deque[_Fault] = deque()
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._runner: web.AppRunner | None = None

    # lifecycle -------------------------------------------------------------------------
    def __enter__(self) -> Self:
        self._thread.start()
        self.up()
        return self

    def __exit__(self, *exc: object) -> None:
        self.down()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()

    def _call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(10)

    def up(self) -> None:
        """Listen (again, on the same port after ``down()``)."""
        self._call(self._start())

    def down(self) -> None:
        """Stop listening and drop open connections: clients get connection refused."""
        self._call(self._stop())

    async def _start(self) -> None:
        if self._runner is not None:
            return
        app = web.Application(middlewares=[self._record])
        self.routes(app)
        runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", self.port, reuse_address=True)
        await site.start()
        self.port = runner.addresses[0][1]
        self._runner = runner

    async def _stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # faults ----------------------------------------------------------------------------
    def fail_next(self, n: int, status: int = 500) -> None:
        """Answer the next ``n`` requests with ``status``."""
        with self._lock:
            self._faults.extend(_Fault(status) for _ in range(n))

    def rate_limit_next(self, n: int, retry_after: float = 1) -> None:
        """Answer the next ``n`` requests 429 with ``Retry-After``."""
        headers = {"Retry-After": f"{retry_after:g}"}
        with self._lock:
            self._faults.extend(_Fault(429, headers) for _ in range(n))

    def stall_next(self, n: int, seconds: float) -> None:
        """Hold the next ``n`` requests ``seconds`` before answering them normally."""
        with self._lock:
            self._faults.extend(_Fault(0, stall_s=seconds) for _ in range(n))

    # recording -------------------------------------------------------------------------
    @property
    def delivered(self) -> list[Recorded]:
        """Requests answered with a 2xx (and no injected error), in arrival order."""
        with self._lock:
            return [r for r in self.requests if 200 <= r.status < 300 and not r.fault]

    def wait_for(self, count: int, timeout_s: float = 10.0) -> list[Recorded]:
        """Block until ``count`` requests were answered 2xx (AssertionError at the deadline)."""
        deadline = time.monotonic() + timeout_s
        while len(got := self.delivered) < count:
            assert time.monotonic() < deadline, f"{len(got)}/{count} delivered: {self.requests}"
            time.sleep(0.01)
        return got

    async def until(self, count: int, timeout_s: float = 10.0) -> list[Recorded]:
        """:meth:`wait_for` for async tests."""
        deadline = time.monotonic() + timeout_s
        while len(got := self.delivered) < count:
            assert time.monotonic() < deadline, f"{len(got)}/{count} delivered: {self.requests}"
            await asyncio.sleep(0.01)
        return got

    @web.middleware
    async def _record(self, request: web.Request, handler: Any) -> web.StreamResponse:
        body = await request.read()
        with self._lock:
            fault = self._faults.popleft() if self._faults else None
        if fault is not None and fault.stall_s:
            await asyncio.sleep(fault.stall_s)
        if fault is not None and fault.status:
            response: web.StreamResponse = self.fault_response(fault.status, fault.headers)
        else:
            response = await handler(request)
        verified = self.check(request, body)
        record = Recorded(
            request.method,
            request.path,
            dict(request.headers),
            body,
            response.status,
            time.monotonic(),
            verified,
            fault is not None and bool(fault.status),
        )
        with self._lock:
            self.requests.append(record)
        return response

    def fault_response(self, status: int, headers: dict[str, str]) -> web.Response:
        return web.Response(status=status, text="fault injected", headers=headers)

    def check(self, request: web.Request, body: bytes) -> bool | None:
        return None

    def routes(self, app: web.Application) -> None:
        raise NotImplementedError


class SlackWebhookServer(LoopbackServer):
    """An incoming webhook: POST /services/T/B/X answers 200 ``ok``."""

    path = "/services/T000/B000/XXXX"

    @property
    def url(self) -> str:
        return self.base + self.path

    def routes(self, app: web.Application) -> None:
        async def hook(request: web.Request) -> web.Response:
            return web.Response(text="ok")

        app.router.add_post(self.path, hook)


class SlackApiServer(LoopbackServer):
    """The Web API's chat.postMessage and chat.update, answering like Slack."""

    def __init__(self) -> None:
        super().__init__()
        self._ts = itertools.count(1)

    @property
    def url(self) -> str:
        """The base_url to give the Web API client."""
        return self.base + "/api/"

    def fault_response(self, status: int, headers: dict[str, str]) -> web.Response:
        error = headers.pop("X-Slack-Error", "")
        error = error or ("ratelimited" if status == 429 else "internal_error")
        return web.json_response({"ok": False, "error": error}, status=status, headers=headers)

    def error_next(self, n: int, error: str) -> None:
        """Answer the next ``n`` calls HTTP 200 ``{"ok": false, "error": error}``."""
        with self._lock:
            self._faults.extend(_Fault(200, {"X-Slack-Error": error}) for _ in range(n))

    def routes(self, app: web.Application) -> None:
        async def post(request: web.Request) -> web.Response:
            data = await request.json()
            ts = f"1700000000.{next(self._ts):06d}"
            return web.json_response({"ok": True, "channel": data["channel"], "ts": ts})

        async def update(request: web.Request) -> web.Response:
            data = await request.json()
            return web.json_response({"ok": True, "channel": data["channel"], "ts": data["ts"]})

        app.router.add_post("/api/chat.postMessage", post)
        app.router.add_post("/api/chat.update", update)

    def calls(self, method: str) -> list[Recorded]:
        """Delivered calls of one API method, e.g. ``chat.update``."""
        return [r for r in self.delivered if r.path == f"/api/{method}"]


class WebhookServer(LoopbackServer):
    """A generic Alertmanager-style receiver that checks the spendwatch signature."""

    path = "/alerts"

    def __init__(self, secret: str = "") -> None:
        super().__init__()
        self.secret = secret

    @property
    def url(self) -> str:
        return self.base + self.path

    def check(self, request: web.Request, body: bytes) -> bool | None:
        if not self.secret:
            return None
        timestamp = request.headers.get(TIMESTAMP_HEADER, "")
        signature = request.headers.get(SIGNATURE_HEADER, "")
        return verify(self.secret, timestamp, body, signature, now=time.time())

    def routes(self, app: web.Application) -> None:
        async def receive(request: web.Request) -> web.Response:
            return web.Response(text="ok")

        app.router.add_post(self.path, receive)


class PagerDutyServer(LoopbackServer):
    """Events API v2: POST /v2/enqueue answers 202 with the dedup_key."""

    @property
    def url(self) -> str:
        return self.base + "/v2/enqueue"

    def routes(self, app: web.Application) -> None:
        async def enqueue(request: web.Request) -> web.Response:
            data = await request.json()
            if "routing_key" not in data or data.get("event_action") not in (
                "trigger",
                "acknowledge",
                "resolve",
            ):
                return web.json_response({"status": "invalid event"}, status=400)
            key = data.get("dedup_key")
            body = {"status": "success", "message": "Event processed", "dedup_key": key}
            return web.json_response(body, status=202)

        app.router.add_post("/v2/enqueue", enqueue)


# Sample payloads to send through them ------------------------------------------------------
def alert_item(
    status: str = "firing",
    customer_id: str = "acme",
    endpoint: str = "chat",
    alertname: str = "spend_spike",
    severity: str = "warning",
    **annotations: str,
) -> dict[str, Any]:
    """A contract alert item (as ``Alert.to_payload()`` gives) for tests."""
    values = {"observed": 3.0, "baseline": 1.0, "ratio": 3.0, "money_at_risk_usd_per_hour": 120.0}
    ends = 1793614200.0 if status == "resolved" else None
    decision = Decision(alertname, status, severity, 1793613600.0, ends, values)
    key = {"customer_id": customer_id, "endpoint": endpoint}
    alert = build_alert(key, decision, runbook_url="https://runbooks.example/{alertname}")
    payload = alert.to_payload()
    payload["annotations"].update(annotations)
    return payload


def notification(
    receiver: str,
    *alerts: dict[str, Any],
    group_key: str = '{}:{customer_id="acme"}',
    sequence: int = 0,
) -> Notification:
    """A notification of ``alerts`` (default: one firing spend_spike for acme)."""
    items = alerts or (alert_item(),)
    status = "firing" if any(a["status"] == "firing" for a in items) else "resolved"
    common = dict(items[0]["labels"])
    for a in items[1:]:
        common = {k: v for k, v in common.items() if a["labels"].get(k) == v}
    return Notification(
        receiver=receiver,
        group_key=group_key,
        status=status,
        group_labels={k: common[k] for k in ("alertname", "customer_id") if k in common},
        common_labels=common,
        common_annotations={},
        alerts=tuple(items),
        sequence=sequence,
    )
