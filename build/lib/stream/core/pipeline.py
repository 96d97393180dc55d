"""The whole detection path in one process: ingest -> buckets -> detectors -> alerts.

Replay drives it with recorded events; the Kafka worker runs the same pieces split across
agents. Everything is driven by event time, so the same events give the same alerts.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from stream.core.alerts import Alert, build_alert
from stream.core.buckets import Buckets
from stream.core.detect import CustomerDetection, GlobalDetection, Keyed
from stream.core.events import Customer, EventRecord
from stream.core.ingest import DeadLetter, Ingest
from stream.core.pricing import PriceTable
from stream.settings import Settings


@dataclass
class PipelineResult:
    """What one message produced: alerts now due, and a dead letter if it was refused."""

    alerts: list[Alert]
    dead_letter: DeadLetter | None = None


class Pipeline:
    """Ingest, bucket and judge events in event-time order; emit alert transitions."""

    def __init__(
        self,
        settings: Settings,
        prices: PriceTable,
        customers: dict[str, Customer] | None = None,
        on_dead_letter: Callable[[DeadLetter], None] | None = None,
    ) -> None:
        self.settings = settings
        self.customers: dict[str, Customer] = dict(customers or {})
        self.ingest = Ingest(settings.ingest, prices)
        self.buckets = Buckets(settings.buckets.width_s, settings.buckets.allowed_lateness_s)
        self.per_customer = CustomerDetection(settings, self.customers.get)
        self.global_ = GlobalDetection(settings)
        self.on_dead_letter = on_dead_letter
        self._next_close = 0.0  # watermark at which the oldest open bucket can close

    def upsert_customer(self, customer: Customer) -> None:
        self.customers[customer.customer_id] = customer

    def feed(self, kind: str, raw: bytes) -> list[Alert]:
        """Process one raw message of ``kind`` ("usage" or "errors")."""
        event = self.ingest.parse(kind, raw)
        if isinstance(event, DeadLetter):
            if self.on_dead_letter:
                self.on_dead_letter(event)
            return []
        return self.add(kind, event, raw)

    def add(self, kind: str, event: EventRecord, raw: bytes = b"") -> list[Alert]:
        """Process one parsed event; returns the alerts of any buckets it closed."""
        cost = self.ingest.admit(kind, event, raw)
        if cost is None:
            return []
        if isinstance(cost, DeadLetter):
            if self.on_dead_letter:
                self.on_dead_letter(cost)
            return []
        self.buckets.add(event, cost)
        if self.buckets.watermark >= self._next_close:
            return self._close_due()
        return []

    def _close_due(self) -> list[Alert]:
        buckets = self.buckets
        alerts: list[Alert] = []
        for index in buckets.closable():
            alerts += self._close(index)
        oldest = min(buckets.open, default=None)
        width = buckets.width
        self._next_close = (
            (oldest + 1) * width + buckets.lateness if oldest is not None else buckets.watermark
        )
        return alerts

    def _close(self, index: int) -> list[Alert]:
        rows = self.buckets.pop(index)
        keyed, rollup = self.per_customer.close(index, rows)
        keyed += self.global_.close(index, rollup)
        return self._alerts(keyed)

    def flush(self) -> list[Alert]:
        """Close every open bucket (end of a replay); open episodes stay open."""
        alerts: list[Alert] = []
        for index in sorted(self.buckets.open):
            alerts += self._close(index)
        return alerts

    def _alerts(self, keyed: Iterable[Keyed]) -> list[Alert]:
        runbook = self.settings.alerts.runbook_url
        external = self.settings.alerts.external_url
        return [build_alert(k.key, k.decision, runbook, external) for k in keyed]
