"""Block Kit layout of a notification: pure, so its contents are tested without Slack.

Untrusted text (labels, annotations) only ever appears escaped: in ``plain_text`` objects
through :func:`~stream.notify.slack_text.escape`, in the mrkdwn fallback text through
:func:`~stream.notify.slack_text.mrkdwn_with_code` (identifiers mrkdwn would format as
inline code, so they copy exactly; the rest without markup), in the silence code block
through :func:`~stream.notify.slack_text.escape_code`. The runbook is a link button, whose URL is a
field Slack does not parse, and only http(s) URLs are drawn.

>>> from stream.notify.model import Notification
>>> a = {"status": "firing", "fingerprint": "f1", "startsAt": "2026-11-02T10:00:00Z",
...      "endsAt": "0001-01-01T00:00:00Z", "annotations": {"observed": "3", "baseline": "1",
...      "ratio": "3", "money_at_risk_usd_per_hour": "120.00", "recent": "1,1,3"},
...      "labels": {"alertname": "spend_spike", "severity": "warning", "customer_id": "acme"}}
>>> n = Notification("slack", "g", "firing", {}, a["labels"], {}, (a,))
>>> b = blocks(n)
>>> b[0]["text"]["text"]
'🔴 FIRING · WARNING · spend_spike'
>>> [f["text"] for f in b[1]["fields"]][:3]
['Customer: acme', 'Observed: $3.00 vs baseline $1.00 (3.0×)', 'Money at risk: $120.00/h']
>>> b[2]["elements"][0]["text"]
'Recent: ▁▁█'
"""

from __future__ import annotations

from typing import Any

from stream.notify.model import Notification
from stream.notify.slack_text import (
    escape,
    escape_code,
    mrkdwn_with_code,
    silence_command,
    sparkline,
    truncate,
)

# Labels whose values are identifiers someone copies: inline code in mrkdwn (if need be).
IDENTIFIERS = ("alertname", "customer_id", "endpoint", "provider", "model")

HEADER_LIMIT = 150
TEXT_LIMIT = 2900
_EMOJI = {"firing": "🔴", "resolved": "✅"}


def _plain(text: str, limit: int = TEXT_LIMIT) -> dict[str, Any]:
    return {"type": "plain_text", "text": truncate(escape(text), limit), "emoji": False}


def _float(text: str | None) -> float | None:
    try:
        return float(text) if text is not None else None
    except ValueError:
        return None


def _amount(alertname: str, value: float) -> str:
    if alertname == "retry_storm":
        return f"{100 * value:.0f}%"
    if alertname in ("spend_spike", "margin_breach"):
        return f"${value:,.2f}"
    if alertname == "cost_shift":  # USD per request: cents and below
        return f"${value:,.4g}"
    return f"{value:.4g}"


def _title(n: Notification, emoji: bool = True) -> str:
    first = n.alerts[0]["labels"] if n.alerts else n.common_labels
    name = n.common_labels.get("alertname") or first.get("alertname", "alert")
    severity = n.common_labels.get("severity") or first.get("severity", "")
    count = f" ({len(n.alerts) + n.truncated_alerts})" if len(n.alerts) > 1 else ""
    mark = f"{_EMOJI.get(n.status, '')} " if emoji else ""
    parts = [f"{mark}{n.status.upper()}{count}"]
    if severity:
        parts.append(severity.upper())
    parts.append(name)
    return " · ".join(parts)


def _fields(alert: dict[str, Any]) -> list[dict[str, Any]]:
    labels, notes = alert["labels"], alert["annotations"]
    name = labels.get("alertname", "")
    lines = []
    if "customer_id" in labels:
        lines.append(f"Customer: {labels['customer_id']}")
    if "provider" in labels or "model" in labels:
        lines.append(f"Model: {labels.get('provider', '?')}/{labels.get('model', '?')}")
    if "endpoint" in labels:
        lines.append(f"Endpoint: {labels['endpoint']}")
    observed, baseline = _float(notes.get("observed")), _float(notes.get("baseline"))
    if observed is not None and baseline is not None:
        line = f"Observed: {_amount(name, observed)} vs baseline {_amount(name, baseline)}"
        ratio = _float(notes.get("ratio"))
        lines.append(line + (f" ({ratio:.1f}×)" if ratio is not None else ""))
    elif observed is not None:  # e.g. a spend_spike in warm-up: nothing to compare with
        lines.append(f"Observed: {_amount(name, observed)} (no baseline yet)")
    money = _float(notes.get("money_at_risk_usd_per_hour"))
    if money is not None:
        month = _float(notes.get("excess_usd_per_month"))
        per_month = f" (${month:,.0f}/month)" if month is not None else ""
        lines.append(f"Money at risk: ${money:,.2f}/h{per_month}")
    lines.append(f"Started: {alert.get('startsAt', '?')}")
    if alert.get("status") == "resolved":
        lines.append(f"Resolved: {alert.get('endsAt', '?')}")
    return [_plain(line, 1900) for line in lines[:10]]


def _alert_blocks(alert: dict[str, Any]) -> list[dict[str, Any]]:
    summary = alert["annotations"].get("summary") or alert["labels"].get("alertname", "alert")
    out: list[dict[str, Any]] = [
        {"type": "section", "text": _plain(summary), "fields": _fields(alert)}
    ]
    if bars := sparkline(alert["annotations"].get("recent", "")):
        out.append({"type": "context", "elements": [_plain(f"Recent: {bars}")]})
    if why := alert["annotations"].get("attribution"):  # why spend moved, by driver
        out.append({"type": "context", "elements": [_plain(f"Why: {why}", 1900)]})
    if rule := alert["annotations"].get("rule"):  # a rule other than the main one fired
        out.append({"type": "context", "elements": [_plain(f"Rule: {rule}", 300)]})
    return out


def _runbook(n: Notification) -> str:
    urls = [n.common_annotations.get("runbook_url", "")]
    urls += [a["annotations"].get("runbook_url", "") for a in n.alerts]
    for url in urls:
        if url.startswith(("https://", "http://")) and len(url) <= 3000:
            return url
    return ""


def silence_labels(n: Notification) -> dict[str, str]:
    """The labels a silence for this notification matches: the alert's, or the common ones."""
    if len(n.alerts) == 1:
        return dict(n.alerts[0]["labels"])
    return dict(n.common_labels or n.group_labels)


def blocks(n: Notification, max_alerts: int = 5, mention: str = "") -> list[dict[str, Any]]:
    """The message for a notification: header, one section per alert, runbook, silence."""
    out: list[dict[str, Any]] = [{"type": "header", "text": _plain(_title(n), HEADER_LIMIT)}]
    if mention and n.status == "firing":
        # Configured by the operator, so trusted: the one place a mention may appear.
        out.append({"type": "section", "text": {"type": "mrkdwn", "text": mention}})
    for alert in n.alerts[:max_alerts]:
        out.extend(_alert_blocks(alert))
    hidden = len(n.alerts[max_alerts:]) + n.truncated_alerts
    if hidden:
        out.append({"type": "context", "elements": [_plain(f"… and {hidden} more alerts")]})
    if url := _runbook(n):
        button = {"type": "button", "text": _plain("Runbook", 75), "url": url}
        out.append({"type": "actions", "elements": [button]})
    if n.status == "firing" and (labels := silence_labels(n)):
        command = escape_code(silence_command(labels))
        text = truncate(f"*Silence:*\n```{command}```", TEXT_LIMIT)
        out.append({"type": "section", "text": {"type": "mrkdwn", "text": text}})
    return out


def fallback_text(n: Notification) -> str:
    """The notification line shown where blocks are not: title and first summary, in mrkdwn.

    The summary is untrusted, so it is escaped; the first alert's identifying label values
    in it that hold ``_`` (or ``* ~ ```) are inline code, where mrkdwn formats nothing, so
    ``cus_acme_01`` stays exact instead of getting look-alike characters.
    """
    first = n.alerts[0] if n.alerts else {"annotations": {}, "labels": {}}
    summary = first["annotations"].get("summary", "")
    ids = [first["labels"][k] for k in IDENTIFIERS if k in first["labels"]]
    title = escape(_title(n, emoji=False))
    return truncate(f"[{title}] {mrkdwn_with_code(summary, ids)}", TEXT_LIMIT)


def resolved_reply(n: Notification) -> list[dict[str, Any]]:
    """The thread reply when a group resolves."""
    ends = sorted(a.get("endsAt", "") for a in n.alerts)
    when = f" at {ends[-1]}" if ends else ""
    name = n.common_labels.get("alertname") or "alerts"
    return [{"type": "section", "text": _plain(f"✅ Resolved{when}: {name}")}]
