"""``spendwatch silence ...`` and ``spendwatch alert ...``: the on-call side of alert delivery.

- ``silence add MATCHER... (--duration 2h | --end TIME) [--start TIME]``: writes a silence
  to the compacted silences topic (the worker follows it) and prints its id.
- ``silence list [--all] [--json]``: the topic's silences and the config's static ones.
- ``silence expire ID``: ends a silence now.
- ``alert test --receiver NAME``: sends one sample alert through a configured receiver.
- ``alert list [--url URL] [--json]``: the worker's active alerts (its ``/alerts`` page).

Matchers are Alertmanager's (``label="v"``, ``!=``, ``=~``, ``!~``); times are RFC 3339
(UTC if no offset) or epoch seconds; durations are like ``30m``, ``2h``, ``1d``, ``1h30m``.
As everywhere in the CLI, ``--json`` output goes to stdout alone and messages for
people go to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import os
import re
import sys
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import orjson

from stream.core.alerts import rfc3339
from stream.core.events import to_epoch_seconds
from stream.notify.silences import Silence
from stream.settings import Settings, load_settings
from stream.settings.notify import parse_matchers

_DURATION = re.compile(r"(\d+(?:\.\d+)?)([wdhms])")
_UNIT_S = {"w": 604_800.0, "d": 86_400.0, "h": 3_600.0, "m": 60.0, "s": 1.0}


def parse_duration(text: str) -> float:
    """Seconds in a duration like ``30m``, ``2h``, ``1d``, ``1h30m`` (units w d h m s).

    >>> parse_duration("2h"), parse_duration("1h30m"), parse_duration("1d"), parse_duration("45s")
    (7200.0, 5400.0, 86400.0, 45.0)
    >>> parse_duration("2 hours")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: bad duration '2 hours': expected a number and a unit (w, d, h, m, s), e.g. ...
    """
    compact = text.strip().lower()
    parts = _DURATION.findall(compact)
    if not parts or "".join(n + u for n, u in parts) != compact:
        raise ValueError(
            f"bad duration {text!r}: expected a number and a unit (w, d, h, m, s), "
            "e.g. 30m, 2h, 1d, 1h30m"
        )
    seconds = sum(float(n) * _UNIT_S[u] for n, u in parts)
    if seconds <= 0:
        raise ValueError(f"bad duration {text!r}: must be longer than zero")
    return seconds


def parse_time(text: str, now: float) -> float:
    """Epoch seconds of ``now`` (the word), RFC 3339 (UTC if no offset) or epoch seconds.

    >>> parse_time("2026-11-02T10:00", 0.0), parse_time("1793613600", 0.0), parse_time("now", 5.0)
    (1793613600.0, 1793613600.0, 5.0)
    """
    value = text.strip()
    if value.lower() == "now":
        return now
    try:
        if value.replace(".", "", 1).isdigit():
            return to_epoch_seconds(float(value))
        tail = value[10:]
        if "T" in value and not (value.endswith(("Z", "z")) or "+" in tail or "-" in tail):
            value += "+00:00"
        return to_epoch_seconds(value)
    except ValueError as err:
        raise ValueError(
            f"bad time {text!r}: expected RFC 3339 (2026-11-02T10:00Z), epoch seconds or now "
            f"({err})"
        ) from None


def when(t: float) -> str:
    """A time for tables: UTC, to the second.

    >>> when(1793613600.5)
    '2026-11-02 10:00:00'
    """
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M:%S")


def print_table(rows: Sequence[Sequence[str]], out: Any = None) -> None:
    """Left-aligned columns, two spaces apart; the first row is the header."""
    out = out or sys.stdout
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        out.write("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() + "\n")


def _kafka_failure(settings: Settings, err: BaseException) -> int:
    print(
        f"spendwatch: cannot read or write silences on Kafka at "
        f"{settings.kafka.bootstrap_servers} (topic {settings.kafka.topics.silences}): "
        f"{type(err).__name__}: {err}",
        file=sys.stderr,
    )
    return 1


def _kafka_errors() -> tuple[type[BaseException], ...]:
    from aiokafka.errors import KafkaError

    return (KafkaError, TimeoutError, OSError)


# -- silence add / list / expire ---------------------------------------------------------


def build_silence(args: argparse.Namespace, now: float) -> Silence:
    """The silence ``silence add`` asked for; ValueError naming what is wrong."""
    matchers = tuple(args.matchers)
    parsed = parse_matchers(matchers)  # "bad matcher '...': expected ..."
    if all(m.matches({}) for m in parsed):
        raise ValueError(
            "these matchers would silence every alert: at least one must need a label "
            'to be present, e.g. alertname="spend_spike" or customer_id=~"acme-.*"'
        )
    starts = parse_time(args.start, now) if args.start else now
    ends = starts + parse_duration(args.duration) if args.duration else parse_time(args.end, now)
    if ends <= starts:
        raise ValueError(f"--end {when(ends)} must be after the start {when(starts)}")
    if ends <= now:
        raise ValueError(f"the silence would end at {when(ends)}, which is already past")
    return Silence(
        id=str(uuid.uuid4()),
        matchers=matchers,
        starts_at=round(starts, 3),
        ends_at=round(ends, 3),
        created_by=args.author or getpass.getuser(),
        comment=args.comment,
    )


def cmd_silence_add(args: argparse.Namespace) -> int:
    from stream.kafka.silence_topic import write_silence

    settings = load_settings(args.config)
    now = round(time.time(), 3)
    silence = build_silence(args, now)
    try:
        asyncio.run(write_silence(settings.kafka, silence))
    except _kafka_errors() as err:
        return _kafka_failure(settings, err)
    print(silence.id)
    print(
        f"silence {silence.id} {silence.state(now)} from {when(silence.starts_at)} "
        f"until {when(silence.ends_at)} UTC: {' '.join(silence.matchers)}",
        file=sys.stderr,
    )
    return 0


def all_silences(settings: Settings, stored: dict[str, dict[str, Any]]) -> dict[str, tuple]:
    """id -> (Silence, source): the topic's silences and the config's static ones; the
    config wins where both have an id (as the worker seeds them)."""
    found: dict[str, tuple[Silence, str]] = {}
    for sid, data in stored.items():
        found[sid] = (Silence.from_dict(data), "topic")
    for spec in settings.notify.silences:
        silence = Silence.from_spec(spec)
        found[silence.id] = (silence, "config")
    return found


def cmd_silence_list(args: argparse.Namespace) -> int:
    from stream.kafka.silence_topic import read_silences

    settings = load_settings(args.config)
    try:
        stored = asyncio.run(read_silences(settings.kafka))
    except _kafka_errors() as err:
        return _kafka_failure(settings, err)
    now = time.time()
    silences = sorted(
        all_silences(settings, stored).values(), key=lambda p: (p[0].ends_at, p[0].id)
    )
    if not args.all:
        silences = [(s, src) for s, src in silences if not s.expired(now)]
    if args.json:
        out = sys.stdout.buffer
        for silence, source in silences:
            item = {
                **silence.to_dict(),
                "state": silence.state(now),
                "source": source,
                "startsAt": rfc3339(silence.starts_at),
                "endsAt": rfc3339(silence.ends_at),
            }
            out.write(orjson.dumps(item) + b"\n")
        out.flush()
        return 0
    rows = [("ID", "STATE", "MATCHERS", "STARTS (UTC)", "ENDS (UTC)", "AUTHOR", "COMMENT")]
    for silence, source in silences:
        author = silence.created_by + (" (config)" if source == "config" else "")
        rows.append(
            (
                silence.id,
                silence.state(now),
                " ".join(silence.matchers),
                when(silence.starts_at),
                when(silence.ends_at),
                author,
                silence.comment.replace("\n", " "),
            )
        )
    print_table(rows)
    hidden = "" if args.all else " (expired ones hidden: --all shows them)"
    print(f"{len(silences)} silences{hidden}", file=sys.stderr)
    return 0


def cmd_silence_expire(args: argparse.Namespace) -> int:
    from stream.kafka.silence_topic import read_silences, write_silence

    settings = load_settings(args.config)
    static = {Silence.from_spec(spec).id for spec in settings.notify.silences}
    if args.id in static:
        print(
            f"spendwatch: silence {args.id} is defined in {settings.source_path} "
            "(notify.silences): edit or remove it there",
            file=sys.stderr,
        )
        return 1
    try:
        stored = asyncio.run(read_silences(settings.kafka))
        data = stored.get(args.id)
        if data is None:
            print(
                f"spendwatch: no silence {args.id!r} in topic {settings.kafka.topics.silences} "
                "(spendwatch silence list --all shows the ids)",
                file=sys.stderr,
            )
            return 1
        silence = Silence.from_dict(data)
        now = round(time.time(), 3)
        if silence.expired(now):
            print(f"silence {args.id} already expired at {when(silence.ends_at)} UTC")
            return 0
        expired = Silence(
            silence.id,
            silence.matchers,
            min(silence.starts_at, now),
            now,
            silence.created_by,
            silence.comment,
        )
        asyncio.run(write_silence(settings.kafka, expired))
    except _kafka_errors() as err:
        return _kafka_failure(settings, err)
    print(f"silence {args.id} expired at {when(now)} UTC")
    return 0


# -- alert test / list -------------------------------------------------------------------


def sample_alert(
    now: float, status: str = "firing", severity: str = "warning", runbook_url: str = ""
) -> dict[str, Any]:
    """A realistic spend_spike for ``example-customer`` (an alert-webhook contract item),
    with the annotations the pipeline adds, ``recent`` included (Slack's sparkline)."""
    from detectors.decision import Decision
    from stream.core.alerts import build_alert

    starts = now // 60 * 60 - 180
    values = {
        "observed": 1.84597,
        "baseline": 0.133701,
        "ratio": 13.8066,
        "z": 41.2,
        "threshold": 0.160441,
        "money_at_risk_usd_per_hour": 102.74,
        "bucket_s": 60.0,
    }
    notes = {
        "threshold_source": "defaults",
        "recent": ",".join(
            ["0.1213", "0.1402", "0.1187", "0.1355", "0.1299", "0.1251"]
            + ["0.1308", "0.1337", "0.9821", "1.412", "1.704", "1.846"]
        ),
        "description": "Test notification sent by `spendwatch alert test`; no action needed.",
    }
    ends = now if status == "resolved" else None
    decision = Decision("spend_spike", status, severity, starts, ends, values, notes)
    key = {"customer_id": "example-customer", "endpoint": "chat"}
    return build_alert(key, decision, runbook_url).to_payload()


def sample_notification(receiver: str, alert: dict[str, Any], sequence: int = 1):
    """``alert`` as the one alert of a notification for ``receiver``."""
    from stream.notify.model import Notification

    labels = dict(alert["labels"])
    return Notification(
        receiver=receiver,
        group_key='{}/spendwatch-alert-test:{customer_id="example-customer"}',
        status=alert["status"],
        group_labels={"customer_id": labels["customer_id"]},
        common_labels=labels,
        common_annotations=dict(alert["annotations"]),
        alerts=(alert,),
        sequence=sequence,
    )


async def send_test(settings: Settings, name: str, severity: str, resolve: bool) -> list[Any]:
    """Send the sample alert (and its resolve) once through receiver ``name``; the results."""
    from stream.notify.model import DeliveryResult
    from stream.notify.receivers import build_receiver

    config = next(r for r in settings.notify.receivers if r.name == name)
    receiver = build_receiver(config, os.environ)
    now = time.time()
    results: list[DeliveryResult] = []
    refs: dict[str, str] = {}
    try:
        for seq, status in enumerate(["firing", "resolved"] if resolve else ["firing"], 1):
            alert = sample_alert(now, status, severity, settings.alerts.runbook_url)
            n = sample_notification(name, alert, seq)
            try:
                result = await asyncio.wait_for(receiver.send(n, refs), config.attempt_timeout_s)
            except TimeoutError:
                result = DeliveryResult(ok=False, detail="attempt timed out")
            except Exception as err:  # refused, DNS, TLS: what the user needs to see
                result = DeliveryResult(ok=False, detail=f"{type(err).__name__}: {err}")
            results.append(result)
            if not result.ok:
                break
            refs = {**refs, **result.refs}
    finally:
        await receiver.close()
    return results


def cmd_alert_test(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    names = [r.name for r in settings.notify.receivers]
    if args.receiver not in names:
        defined = ", ".join(names) or "none (add them under notify.receivers)"
        print(
            f"spendwatch: no receiver {args.receiver!r} in {settings.source_path}; "
            f"defined: {defined}",
            file=sys.stderr,
        )
        return 2
    kind = next(r.kind for r in settings.notify.receivers if r.name == args.receiver)
    results = asyncio.run(send_test(settings, args.receiver, args.severity, args.resolve))
    for status, result in zip(["firing", "resolved"], results, strict=False):
        verdict = "ok" if result.ok else "FAILED"
        code = f"HTTP {result.status_code}" if result.status_code is not None else "no response"
        detail = " ".join(result.detail.split())[:300]
        print(
            f"{args.receiver} ({kind}): {status} test alert {verdict}, {code}"
            + (f": {detail}" if detail else "")
        )
    return 0 if all(r.ok for r in results) else 1


def default_alerts_url(settings: Settings) -> str:
    host = settings.worker.web_host
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{settings.worker.web_port}"


def fetch_alerts(url: str, timeout_s: float = 10.0, token: str = "") -> dict[str, Any]:
    """The worker's ``GET /alerts`` document: ``{"owner": bool, "alerts": [...],
    "groups": [...]}``; ``token``: the worker's bearer token, if it asks for one."""
    import urllib.error
    import urllib.request

    target = url.rstrip("/") + "/alerts"
    request = urllib.request.Request(target)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as resp:  # noqa: S310
            body = resp.read()
    except urllib.error.HTTPError as err:
        raise ConnectionError(f"{target} answered HTTP {err.code}") from None
    except (urllib.error.URLError, TimeoutError) as err:
        reason = getattr(err, "reason", err)
        raise ConnectionError(f"cannot reach the worker at {target}: {reason}") from None
    document = orjson.loads(body)
    if not isinstance(document, dict) or not isinstance(document.get("alerts"), list):
        raise ConnectionError(f"{target} did not answer with an alerts document")
    return document


def alert_rows(alerts: Sequence[dict[str, Any]]) -> list[tuple[str, ...]]:
    """Table rows (header first) for ``AlertStatus.to_dict()`` items."""
    rows: list[tuple[str, ...]] = [
        ("STATE", "ALERT", "SEVERITY", "CUSTOMER", "ENDPOINT", "STARTS", "MUTED BY")
    ]
    for a in alerts:
        labels, status = a.get("labels", {}), a.get("status", {})
        state = status.get("state", "active") if isinstance(status, dict) else str(status)
        muted = [*status.get("silencedBy", []), *status.get("inhibitedBy", [])]
        rows.append(
            (
                state,
                labels.get("alertname", ""),
                labels.get("severity", ""),
                labels.get("customer_id", ""),
                labels.get("endpoint", ""),
                str(a.get("startsAt", ""))[:16].replace("T", " "),
                ",".join(muted),
            )
        )
    return rows


def cmd_alert_list(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    url = args.url or default_alerts_url(settings)
    token = os.environ.get(settings.worker.web_token_env, "")
    try:
        document = fetch_alerts(url, token=token)
    except ConnectionError as err:
        print(f"spendwatch: {err}", file=sys.stderr)
        return 1
    alerts = document["alerts"]
    if args.json:
        out = sys.stdout.buffer
        for alert in alerts:
            out.write(orjson.dumps(alert) + b"\n")
        out.flush()
    else:
        print_table(alert_rows(alerts))
        states = [a.get("status", {}).get("state", "active") for a in alerts]
        counts = ", ".join(f"{states.count(s)} {s}" for s in ("active", "silenced", "inhibited"))
        print(f"{len(alerts)} firing alerts ({counts})", file=sys.stderr)
    if document.get("owner") is False:
        print(
            "note: this worker does not run alert delivery; its list may be incomplete "
            "(ask the worker that does)",
            file=sys.stderr,
        )
    return 0


# -- the parsers -------------------------------------------------------------------------


def add_parsers(sub: Any) -> None:
    """Add the ``silence`` and ``alert`` commands to the CLI's subparsers."""
    config_help = "config file (default config/spendwatch.yaml)"
    silence = sub.add_parser("silence", help="mute alerts for a while (Alertmanager matchers)")
    silence_sub = silence.add_subparsers(dest="silence_command", required=True)
    add = silence_sub.add_parser("add", help="add a silence; prints its id")
    add.add_argument(
        "matchers", nargs="+", metavar="MATCHER", help="e.g. 'customer_id=~\"acme-.*\"'"
    )
    span = add.add_mutually_exclusive_group(required=True)
    span.add_argument("--duration", help="how long, from the start: 30m, 2h, 1d, 1h30m")
    span.add_argument("--end", help="when it ends (RFC 3339 or epoch s)")
    add.add_argument("--start", help="when it starts (RFC 3339 or epoch s; default now)")
    add.add_argument("--author", help="who (default: your login name)")
    add.add_argument("--comment", required=True, help="why")
    add.add_argument("--config", help=config_help)
    add.set_defaults(func=cmd_silence_add)
    listing = silence_sub.add_parser("list", help="active and pending silences")
    listing.add_argument("--all", action="store_true", help="expired ones too")
    listing.add_argument("--json", action="store_true", help="one silence JSON object per line")
    listing.add_argument("--config", help=config_help)
    listing.set_defaults(func=cmd_silence_list)
    expire = silence_sub.add_parser("expire", help="end a silence now")
    expire.add_argument("id")
    expire.add_argument("--config", help=config_help)
    expire.set_defaults(func=cmd_silence_expire)

    alert = sub.add_parser("alert", help="alert delivery tools")
    alert_sub = alert.add_subparsers(dest="alert_command", required=True)
    test = alert_sub.add_parser("test", help="send a sample alert through one receiver")
    test.add_argument("--receiver", required=True, help="a name from notify.receivers")
    test.add_argument("--severity", default="warning", choices=["warning", "critical"])
    test.add_argument(
        "--resolve", action="store_true", help="then resolve it (closes a PagerDuty incident)"
    )
    test.add_argument("--config", help=config_help)
    test.set_defaults(func=cmd_alert_test)
    active = alert_sub.add_parser("list", help="the worker's firing alerts and their state")
    active.add_argument("--url", help="the worker's web address (default: worker.web_host/port)")
    active.add_argument("--json", action="store_true", help="one alert JSON object per line")
    active.add_argument("--config", help=config_help)
    active.set_defaults(func=cmd_alert_list)
