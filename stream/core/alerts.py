"""Alerts: a detector decision for a key, as the alert-webhook contract describes one alert.

Labels identify the alert (``alertname``, ``severity``, ``scope`` and the key's
``customer_id`` / ``endpoint`` / ``provider`` / ``model``); the fingerprint is a stable
hash of the labels, so the firing and the resolved message of an episode share it.
``startsAt`` / ``endsAt`` are event times; ``endsAt`` is ``0001-01-01T00:00:00Z`` while firing.

>>> from detectors.decision import Decision
>>> values = {"observed": 3.0, "baseline": 1.0, "ratio": 3.0, "money_at_risk_usd_per_hour": 120.0}
>>> d = Decision("spend_spike", "firing", "warning", 1793613600.0, None, values)
>>> a = build_alert({"customer_id": "acme", "endpoint": "chat"}, d)
>>> a.labels["scope"], a.fingerprint == fingerprint(a.labels), a.to_payload()["startsAt"]
('endpoint', True, '2026-11-02T10:00:00Z')
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from detectors.decision import Decision

ZERO_TIME = "0001-01-01T00:00:00Z"


def rfc3339(t: float) -> str:
    """Epoch seconds as an RFC 3339 UTC string (milliseconds only when there are some)."""
    moment = datetime.fromtimestamp(t, UTC)
    if moment.microsecond:
        return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def fingerprint(labels: dict[str, str]) -> str:
    """16 hex digits of SHA-256 over the sorted labels (stable across processes and runs)."""
    canonical = "\x1f".join(f"{k}\x1e{labels[k]}" for k in sorted(labels))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:16]


def scope_of(key: dict[str, str]) -> str:
    if "endpoint" in key:
        return "endpoint"
    if "customer_id" in key:
        return "customer"
    return "provider"


@dataclass(frozen=True, slots=True)
class Alert:
    """One alert transition (firing or resolved), ready for the alerts topic and receivers."""

    status: str
    labels: dict[str, str]
    annotations: dict[str, str]
    starts_at: float
    ends_at: float | None
    fingerprint: str
    generator_url: str = ""

    def to_payload(self) -> dict[str, Any]:
        """The alert as an item of the webhook contract's ``alerts`` list."""
        payload: dict[str, Any] = {
            "status": self.status,
            "labels": dict(self.labels),
            "annotations": dict(self.annotations),
            "startsAt": rfc3339(self.starts_at),
            "endsAt": rfc3339(self.ends_at) if self.ends_at is not None else ZERO_TIME,
            "fingerprint": self.fingerprint,
        }
        if self.generator_url:
            payload["generatorURL"] = self.generator_url
        return payload


def _money(x: float) -> str:
    return f"{x:.2f}"


def _figure(x: float) -> str:
    return f"{x:.6g}"


def _summary(labels: dict[str, str], v: dict[str, float]) -> str:
    who = labels.get("customer_id") or f"{labels.get('provider')}/{labels.get('model')}"
    where = f" on {labels['endpoint']}" if "endpoint" in labels else ""
    name = labels["alertname"]
    if name == "spend_spike" and "missing_s" in v:
        return (
            f"No data for {who}{where} for {v['missing_s'] / 60:.0f} min "
            f"({v['missing_s'] / (v.get('bucket_s') or 60):.0f} intervals)"
        )
    if name == "spend_spike" and "sustained_excess_usd_per_hour" in v:
        return (
            f"Lasting spend excess for {who}{where}: +${_money(v['sustained_excess_usd_per_hour'])}"
            f"/h over baseline ({v.get('sustain_s', 0) / 60:.0f}-minute window, "
            f"{v.get('sustained_z', 0):.1f} sd), under the per-bucket floor"
        )
    if name == "spend_spike" and "baseline" not in v:
        # Warm-up: only the absolute limit can fire, and there is no baseline for a ratio.
        observed, bucket_s = v.get("observed", 0), v.get("bucket_s") or 60
        limit = v.get("absolute_usd_per_hour")
        against = f" against the ${_money(limit)}/h limit" if limit is not None else ""
        return (
            f"Spend spike for {who}{where}: ${_money(observed)} per {bucket_s:.0f}s bucket "
            f"= ${_money(observed * 3600 / bucket_s)}/h{against}; no baseline yet (warm-up)"
        )
    if name == "spend_spike":
        return (
            f"Spend spike for {who}{where}: ${_money(v.get('observed', 0))} per "
            f"{v.get('bucket_s', 60):.0f}s bucket, {v.get('ratio', 0):.1f}x baseline"
        )
    if name == "cost_shift":
        return (
            f"Cost shift for {who}{where}: ${v.get('observed', 0):.4g} per request, "
            f"{v.get('ratio', 0):.1f}x the usual ${v.get('baseline', 0):.4g}; "
            f"${v.get('excess_usd_per_month', 0):,.0f}/month more at this volume"
        )
    if name == "retry_storm":
        return (
            f"Retry storm for {who}{where}: {100 * v.get('error_rate', 0):.0f}% of "
            f"{v.get('requests', 0):.0f} attempts failed, "
            f"{100 * v.get('retry_share', 0):.0f}% retries"
        )
    if name == "margin_breach":
        return (
            f"Margin breach for {who}: projected cost-to-serve "
            f"${_money(v.get('projected_cost_to_serve_usd', 0))} this month against "
            f"${_money(v.get('monthly_price_usd', 0))} paid"
        )
    return f"{name} for {who}{where}"


def build_alert(
    key: dict[str, str], decision: Decision, runbook_url: str = "", generator_url: str = ""
) -> Alert:
    """The alert for ``decision`` on the key described by ``key`` (customer_id, endpoint, ...)."""
    labels = {"alertname": decision.alertname, "severity": decision.severity, **key}
    labels["scope"] = scope_of(key)
    annotations = {"summary": _summary(labels, decision.values)}
    for name, value in decision.values.items():
        if name.startswith("period_"):
            annotations[name] = rfc3339(value)
        elif name.endswith("_usd") or "_usd_" in name:
            annotations[name] = _money(value)
        else:
            annotations[name] = _figure(value)
    annotations.update(decision.notes)
    if runbook_url:
        annotations["runbook_url"] = runbook_url.replace("{alertname}", decision.alertname)
    return Alert(
        status=decision.status,
        labels=labels,
        annotations=annotations,
        starts_at=decision.starts_at,
        ends_at=decision.ends_at,
        fingerprint=fingerprint(labels),
        generator_url=generator_url,
    )
