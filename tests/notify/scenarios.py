"""Building blocks for the dispatcher tests: alerts, JSON-only tables, a clock-driven loop."""

from __future__ import annotations

import json
from collections.abc import Iterator, MutableMapping
from typing import Any

import jsonschema

from stream.core.alerts import Alert, fingerprint
from stream.notify.grouping import Dispatcher
from stream.notify.model import DeliveryResult, Notification
from stream.settings.notify import NotifySettings
from tests.contracts import schema

T0 = 1793613600.0  # 2026-11-02T10:00:00Z, event time of the alerts
OK = DeliveryResult(ok=True, status_code=200)


class JsonTable(MutableMapping[str, Any]):
    """A mapping that keeps values only as JSON text, like a Faust table's changelog.

    Reading gives a fresh copy, so code that mutates a value in place without assigning
    it back (a change the changelog would never see) is caught.
    """

    def __init__(self) -> None:
        self.data: dict[str, str] = {}

    def __getitem__(self, key: str) -> Any:
        return json.loads(self.data[key])

    def __setitem__(self, key: str, value: Any) -> None:
        self.data[key] = json.dumps(value)

    def __delitem__(self, key: str) -> None:
        del self.data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(list(self.data))

    def __len__(self) -> int:
        return len(self.data)


def alert(
    customer: str = "acme",
    name: str = "spend_spike",
    severity: str = "warning",
    status: str = "firing",
    **labels: str,
) -> dict[str, Any]:
    """A webhook-contract alert item for ``customer``, with extra labels."""
    all_labels = {"alertname": name, "severity": severity, "customer_id": customer, **labels}
    ends = T0 + 600 if status == "resolved" else None
    annotations = {"summary": f"{name} for {customer}", "runbook_url": "https://runbooks/x"}
    return Alert(status, all_labels, annotations, T0, ends, fingerprint(all_labels)).to_payload()


def resolved(item: dict[str, Any]) -> dict[str, Any]:
    return {**item, "status": "resolved", "endsAt": "2026-11-02T10:10:00Z"}


def notify_settings(route: dict[str, Any], *receivers: str, **extra: Any) -> NotifySettings:
    """Settings with generic webhook receivers of the given names."""
    hooks = [
        {"name": r, "kind": "webhook", "webhook": {"url": f"http://127.0.0.1:9/{r}"}}
        for r in receivers
    ]
    return NotifySettings(route=route, receivers=hooks, **extra)


def dispatcher(settings: NotifySettings, **kwargs: Any) -> Dispatcher:
    return Dispatcher(settings, JsonTable(), JsonTable(), **kwargs)


def check(notification: Notification) -> Notification:
    """The notification's webhook body satisfies the shared contract."""
    jsonschema.validate(notification.webhook_body(), schema("alert-webhook"))
    return notification


def drive(
    d: Dispatcher, start: float, until: float, deliver: bool = True
) -> list[tuple[float, Notification]]:
    """Wake the dispatcher whenever it asks (next_due) from ``start`` to ``until``.

    Each notification is checked against the contract and, when ``deliver``, reported
    delivered at once. Returns (time, notification) in order.
    """
    sent: list[tuple[float, Notification]] = []
    t = start
    while True:
        wake = d.next_due(t)
        if wake is None or wake > until:
            return sent
        t = max(t, wake)
        for n in d.due(t):
            sent.append((t, check(n)))
            if deliver:
                d.delivered(n, OK, t)
