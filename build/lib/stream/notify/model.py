"""Types shared by the notify pieces: what routing/grouping hands to delivery and receivers."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Notification:
    """One message for one receiver: the alerts of one aggregation group at one flush.

    ``alerts`` are items of the webhook contract (``Alert.to_payload()``), firing ones
    first. ``status`` is "firing" when any alert in it fires, else "resolved".
    ``group_key`` identifies the group (route path + group labels) and is stable across
    processes; ``sequence`` grows by one per notification of (receiver, group_key), so
    a receiver's queue and the notification log can keep order and refuse stale ones.
    """

    receiver: str
    group_key: str
    status: str
    group_labels: dict[str, str]
    common_labels: dict[str, str]
    common_annotations: dict[str, str]
    alerts: tuple[dict[str, Any], ...]
    sequence: int = 0
    external_url: str = ""
    truncated_alerts: int = 0

    def webhook_body(self) -> dict[str, Any]:
        """The Alertmanager v4 webhook body (contracts/alert-webhook.schema.json)."""
        body: dict[str, Any] = {
            "version": "4",
            "groupKey": self.group_key,
            "status": self.status,
            "receiver": self.receiver,
            "groupLabels": dict(self.group_labels),
            "commonLabels": dict(self.common_labels),
            "commonAnnotations": dict(self.common_annotations),
            "externalURL": self.external_url,
            "alerts": [dict(a) for a in self.alerts],
        }
        if self.truncated_alerts:
            body["truncatedAlerts"] = self.truncated_alerts
        return body


@dataclass(slots=True)
class DeliveryResult:
    """What one attempt to send a notification to a receiver gave.

    ``ok`` only on a 2xx. ``retry_after`` is the receiver's requested wait (429
    Retry-After), seconds. ``refs`` is what the receiver wants remembered for later
    notifications of the same group, e.g. Slack's channel and message ts so a resolve
    is posted in the firing message's thread.
    """

    ok: bool
    status_code: int | None = None
    detail: str = ""
    retry_after: float | None = None
    permanent: bool = False  # a 4xx other than 408/429: retrying will not help
    refs: dict[str, str] = field(default_factory=dict)
