"""PagerDuty Events API v2: one event per alert, keyed by the alert's fingerprint.

A firing alert sends ``trigger`` and a resolved one ``resolve``, both with ``dedup_key`` =
the fingerprint, so PagerDuty opens one incident per alert episode, folds repeats into it
and closes it on resolve. A retry re-sends every event of the notification, which the
dedup_key makes harmless. PagerDuty answers 202 when it accepted an event.

>>> a = {"status": "firing", "fingerprint": "f1", "startsAt": "2026-11-02T10:00:00Z",
...      "labels": {"alertname": "spend_spike", "severity": "warning"},
...      "annotations": {"summary": "Spend spike for acme"}}
>>> s = ReceiverSettings(name="pd", kind="pagerduty")
>>> e = event(s.pagerduty, "key", a)
>>> e["event_action"], e["dedup_key"], e["payload"]["severity"], e["payload"]["summary"]
('trigger', 'f1', 'warning', 'Spend spike for acme')
>>> event(s.pagerduty, "key", {**a, "status": "resolved"})
{'routing_key': 'key', 'event_action': 'resolve', 'dedup_key': 'f1'}
"""

from __future__ import annotations

from typing import Any

import orjson

from stream.notify.model import DeliveryResult, Notification
from stream.notify.receivers.base import HttpSession, http_result
from stream.settings.receivers import PagerDutySettings, ReceiverSettings

SUMMARY_LIMIT = 1024  # PagerDuty's limit on payload.summary


def event(pd: PagerDutySettings, routing_key: str, alert: dict[str, Any]) -> dict[str, Any]:
    """The Events v2 body for one contract alert item."""
    base = {"routing_key": routing_key, "dedup_key": alert["fingerprint"]}
    if alert["status"] == "resolved":
        return {"routing_key": routing_key, "event_action": "resolve", **base}
    labels, annotations = alert["labels"], alert["annotations"]
    summary = annotations.get("summary") or labels["alertname"]
    body: dict[str, Any] = {
        "routing_key": routing_key,
        "event_action": "trigger",
        **base,
        "payload": {
            "summary": summary[:SUMMARY_LIMIT],
            "severity": pd.severity.get(labels.get("severity", ""), pd.default_severity),
            "source": pd.source,
            "timestamp": alert["startsAt"],
            "component": labels.get("endpoint") or labels.get("model") or labels["alertname"],
            "group": labels.get("customer_id") or labels.get("provider", ""),
            "class": labels["alertname"],
            "custom_details": {"labels": labels, "annotations": annotations},
        },
    }
    if runbook := annotations.get("runbook_url"):
        body["links"] = [{"href": runbook, "text": "Runbook"}]
    return body


class PagerDutyReceiver:
    """Enqueues one Events v2 event per alert of a notification."""

    def __init__(self, settings: ReceiverSettings, routing_key: str) -> None:
        assert settings.pagerduty is not None
        self.name = settings.name
        self._pd = settings.pagerduty
        self._routing_key = routing_key
        self._http = HttpSession(settings.timeout_s)

    async def send(self, notification: Notification, refs: dict[str, str]) -> DeliveryResult:
        result = DeliveryResult(ok=True, status_code=202)
        for alert in notification.alerts:
            body = orjson.dumps(event(self._pd, self._routing_key, alert))
            headers = {"Content-Type": "application/json"}
            async with self._http.client().post(self._pd.url, data=body, headers=headers) as resp:
                text = await resp.text(errors="replace")
                result = http_result(resp.status, text, resp.headers.get("Retry-After"))
            if not result.ok:
                return result
        return result

    async def close(self) -> None:
        await self._http.close()
