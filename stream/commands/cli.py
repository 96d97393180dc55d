"""The ``spendwatch`` command: replay, simulate and config checks.

Machine-readable output (``--json``) goes to stdout alone; everything for people
(summaries, progress, errors) goes to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import orjson

from stream.core.alerts import Alert
from stream.core.customers import load_customers
from stream.core.events import Customer, to_epoch_seconds
from stream.core.pipeline import Pipeline
from stream.core.pricing import PriceConfigError, PriceTable
from stream.kafka.connection import topic_name
from stream.kafka.produce import MAX_LINE_BYTES
from stream.offline.replay import read_series, replay_files, replay_series
from stream.settings import Settings, load_settings
from stream.settings.yamlsource import ConfigFileError


def _load(config: str | None) -> tuple[Settings, PriceTable]:
    settings = load_settings(config)
    prices = PriceTable.load(settings.resolve(settings.prices_file))
    return settings, prices


def print_alert_table(alerts: Sequence[Alert], out=sys.stdout) -> None:
    """Alerts as a readable table, one line per transition."""
    header = (
        "STATUS",
        "SEVERITY",
        "ALERT",
        "KEY",
        "STARTS",
        "ENDS",
        "OBSERVED",
        "BASELINE",
        "$/H AT RISK",
    )
    rows = [header]
    for a in alerts:
        p = a.to_payload()
        labels = a.labels
        key = "/".join(
            labels[k] for k in ("customer_id", "endpoint", "provider", "model") if k in labels
        )
        rows.append(
            (
                a.status,
                labels["severity"],
                labels["alertname"],
                key,
                p["startsAt"][:16].replace("T", " "),
                "" if a.ends_at is None else p["endsAt"][:16].replace("T", " "),
                a.annotations.get("observed", ""),
                a.annotations.get("baseline", ""),
                a.annotations.get("money_at_risk_usd_per_hour", ""),
            )
        )
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(header))]
    for r in rows:
        out.write(
            "  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() + "\n"
        )


def _epoch_ms(value: str) -> int:
    """A --from/--to time: RFC 3339 (UTC if no offset) or epoch seconds."""
    text = value.strip()
    if text.replace(".", "", 1).isdigit():
        return int(to_epoch_seconds(float(text)) * 1000)
    if "T" in text and not (text.endswith(("Z", "z")) or "+" in text[10:] or "-" in text[10:]):
        text += "+00:00"
    return int(to_epoch_seconds(text) * 1000)


def _deliver(args: argparse.Namespace, settings: Settings, alerts: Sequence[Alert]) -> int:
    """``replay --deliver``: the replayed alerts to the configured receivers, in event time."""
    if not args.deliver:
        return 0
    import os

    from stream.notify.replay_delivery import deliver_replayed

    payloads = [a.to_payload() for a in alerts]
    notify, external = settings.notify, settings.alerts.external_url
    report = asyncio.run(deliver_replayed(payloads, notify, os.environ, external_url=external))
    print(report.summary(), file=sys.stderr)
    return 0 if report.ok else 1


def cmd_replay(args: argparse.Namespace) -> int:
    settings, prices = _load(args.config)
    if args.deliver:  # missing secrets fail before the replay, not after it
        import os

        from stream.notify.replay_delivery import check_deliverable

        check_deliverable(settings.notify, os.environ)
    if args.topic and not (args.start and args.end):
        print("spendwatch replay --topic needs --from and --to", file=sys.stderr)
        return 2
    if args.series and not args.topic:
        alerts = replay_series(
            read_series(Path(args.series)), settings, args.key, args.direction, args.usd
        )
        _emit(alerts, args.json)
        print(f"replayed series {args.series}: {len(alerts)} alert transitions", file=sys.stderr)
        return _deliver(args, settings, alerts)
    if not (args.topic or args.usage):
        print("spendwatch replay: give USAGE.jsonl[.gz] or --series METRIC.csv", file=sys.stderr)
        return 2
    pipeline = Pipeline(settings, prices, _customers(args, settings))
    started = time.perf_counter()
    report = _source(args, settings, progress=True)(pipeline)
    elapsed = time.perf_counter() - started
    _emit(report.alerts, args.json)
    _summary(pipeline, report.lines, report.dead_letters, len(report.alerts), elapsed)
    return _deliver(args, settings, report.alerts)


def _customers(args: argparse.Namespace, settings: Settings) -> dict[str, Customer]:
    path = (
        Path(args.customers)
        if args.customers
        else (settings.resolve(settings.customers_file) if settings.customers_file else None)
    )
    return load_customers(path) if path and path.exists() else {}


def _source(args: argparse.Namespace, settings: Settings, progress: bool = False):
    """Replays the input (files, or a topic range) into a given pipeline."""
    if not args.topic:
        return lambda p: replay_files(p, args.usage, args.errors or [], progress=progress)
    from stream.kafka.topic_replay import replay_topics

    topics = (
        topic_name(settings, args.topic),
        topic_name(settings, args.errors_topic) if args.errors_topic else None,
    )
    span = (_epoch_ms(args.start), _epoch_ms(args.end))
    return lambda p: asyncio.run(replay_topics(p, settings.kafka, *topics, *span))


def cmd_backtest(args: argparse.Namespace) -> int:
    from stream.offline.backtest import Run, compare, episodes, format_text, to_json

    if not (args.usage or (args.topic and args.start and args.end)):
        print(
            "spendwatch backtest: give USAGE files, or --topic with --from and --to",
            file=sys.stderr,
        )
        return 2
    runs, configs = [], []
    for config in [args.config] + ([args.against] if args.against else []):
        settings, prices = _load(config)
        pipeline = Pipeline(settings, prices, _customers(args, settings))
        started = time.perf_counter()
        report = _source(args, settings)(pipeline)
        _summary(
            pipeline,
            report.lines,
            report.dead_letters,
            len(report.alerts),
            time.perf_counter() - started,
        )
        runs.append(Run(config, episodes(report.alerts), pipeline.buckets.watermark))
        configs.append((settings, prices))
    diff = compare(runs[0].episodes, runs[1].episodes) if args.against else None
    if args.json:
        sys.stdout.buffer.write(
            orjson.dumps(to_json(runs, diff), option=orjson.OPT_INDENT_2) + b"\n"
        )
    else:
        sys.stdout.write(format_text(runs, diff))
    if args.report:
        from stream.offline.keyseries import record
        from stream.offline.report import write_report

        settings, prices = configs[0]
        keys = {e.key for run in runs for e in run.episodes}
        recording = record(
            _source(args, settings), settings, prices, _customers(args, settings), keys
        )
        size = write_report(Path(args.report), runs, diff, recording, [s for s, _ in configs])
        print(
            f"wrote {args.report} ({size / 1e6:.2f} MB, {len(keys)} alerted keys)", file=sys.stderr
        )
    return 0


def cmd_produce(args: argparse.Namespace) -> int:
    from stream.kafka.produce import produce

    settings = load_settings(args.config)
    topic = topic_name(settings, args.topic)
    report = asyncio.run(
        produce(settings.kafka, Path(args.file), topic, args.rate, args.max_bytes)
    )
    for number, size in report.too_large:
        print(
            f"{args.file}:{number}: {size:,} bytes > --max-bytes {args.max_bytes:,}: not sent",
            file=sys.stderr,
        )
    print(
        f"sent {report.sent:,} records to {topic} in {report.seconds:.1f} s"
        f" ({report.unkeyed:,} without a customer_id key, {report.failed:,} refused by the broker,"
        f" {len(report.too_large):,} too large to send)",
        file=sys.stderr,
    )
    return 1 if report.failed or report.too_large else 0


def _emit(alerts: Sequence[Alert], as_json: bool) -> None:
    if as_json:
        out = sys.stdout.buffer
        for alert in alerts:
            out.write(orjson.dumps(alert.to_payload()) + b"\n")
        out.flush()
    else:
        print_alert_table(alerts)


def _summary(pipeline: Pipeline, lines: int, dead: int, alerts: int, elapsed: float) -> None:
    stats = pipeline.ingest.stats
    err = sys.stderr
    rate = lines / elapsed if elapsed > 0 else 0.0
    err.write(
        f"replayed {lines:,} lines in {elapsed:.1f} s ({rate:,.0f}/s): "
        f"{sum(stats.accepted.values()):,} events, {stats.duplicates:,} duplicates, "
        f"{dead:,} bad, {pipeline.buckets.stats.late_events:,} late; {alerts} alert transitions\n"
    )
    if stats.rejected:
        reasons = ", ".join(f"{r}: {n}" for r, n in stats.rejected.most_common())
        err.write(f"bad lines by reason: {reasons}\n")
        for kind, rejection in stats.first_rejections:
            err.write(f"  {kind}: {rejection.reason} at {rejection.field}: {rejection.detail}\n")
    unknown = pipeline.ingest.prices.unknown_models
    if unknown:
        models = ", ".join(f"{p}/{m} ({n})" for (p, m), n in unknown.most_common(5))
        err.write(f"priced by fallback (unknown models): {models}\n")
    if pipeline.per_customer.unknown_customers:
        n = len(pipeline.per_customer.unknown_customers)
        err.write(f"{n} customers without a customer record (no margin check)\n")


def cmd_simulate(args: argparse.Namespace) -> int:
    from stream.offline.simulate import SimConfig, simulate

    cfg = SimConfig(
        days=args.days,
        customers=args.customers,
        seed=args.seed,
        incidents=args.incidents,
        rate_per_min=args.rate,
    )
    summary = simulate(Path(args.outdir), cfg)
    print(summary, file=sys.stderr)
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    from stream.kafka.worker import run

    run(load_settings(args.config), loglevel=args.loglevel)
    return 0


def cmd_config_check(args: argparse.Namespace) -> int:
    from stream.commands.configcheck import check

    report = check(Path(args.path) if args.path else None)
    for finding in report.findings:
        print(f"{finding.level}: {finding.text}", file=sys.stderr)
    name = args.path or "config/spendwatch.yaml"
    errors, warnings = len(report.errors), len(report.warnings)
    verdict = "OK" if not errors else "refused"
    print(f"{name}: {verdict} ({errors} errors, {warnings} warnings)", file=sys.stderr)
    return 2 if errors else 0


def cmd_config_explain(args: argparse.Namespace) -> int:
    from stream.commands.explain import explain
    from stream.settings.yamlsource import load_yaml

    settings = load_settings(args.config)
    file = settings.source_path
    lines = load_yaml(file)[1] if file else {}
    plan = args.plan
    if plan is None and args.customer:
        record = _customers(argparse.Namespace(customers=None), settings).get(args.customer)
        plan = record.plan if record else None
    labels = {
        "customer_id": args.customer,
        "endpoint": args.endpoint,
        "provider": args.provider,
        "model": args.model,
        "plan": plan,
    }
    at = _epoch_ms(args.at) / 1000 if args.at else None
    sys.stdout.write(explain(settings, labels, at, file, lines))
    return 0


def cmd_config_schema(args: argparse.Namespace) -> int:
    from stream.commands.schema import schema_text

    if args.out:
        Path(args.out).write_text(schema_text())
        print(f"wrote {args.out}", file=sys.stderr)
    else:
        sys.stdout.write(schema_text())
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="spendwatch", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    replay = sub.add_parser("replay", help="run recorded events through the detectors")
    replay.add_argument("usage", nargs="*", help="usage events, JSON lines (.jsonl or .jsonl.gz)")
    replay.add_argument("--errors", action="append", help="error events, JSON lines")
    replay.add_argument("--customers", help="customer records (JSONL or YAML list)")
    replay.add_argument("--config", help="config file (default config/spendwatch.yaml)")
    replay.add_argument("--json", action="store_true", help="one alert JSON object per line")
    replay.add_argument("--series", help="a timestamp,value CSV to run the spend detector on")
    replay.add_argument("--key", default="series", help="the key (customer_id) for --series")
    replay.add_argument(
        "--direction",
        choices=("up", "down", "both"),
        help="--series: which way a value may breach (default both; USD spend is up-only)",
    )
    replay.add_argument(
        "--usd",
        action="store_true",
        help="--series: the values are USD per interval; keep the config's USD rules",
    )
    replay.add_argument("--topic", help="replay a Kafka topic (usage, errors or a name) ...")
    replay.add_argument("--errors-topic", help="... merged with this error topic")
    replay.add_argument("--from", dest="start", help="start of the range (RFC 3339 or epoch s)")
    replay.add_argument("--to", dest="end", help="end of the range, exclusive")
    replay.add_argument(
        "--deliver", action="store_true", help="send the alerts to notify's receivers"
    )
    replay.set_defaults(func=cmd_replay)

    back = sub.add_parser("backtest", help="replay under one or two configs; compare; report")
    back.add_argument("usage", nargs="*", help="usage events, JSON lines (.jsonl or .jsonl.gz)")
    back.add_argument("--errors", action="append", help="error events, JSON lines")
    back.add_argument("--customers", help="customer records (JSONL or YAML list)")
    back.add_argument("--config", required=True, help="the config to backtest ...")
    back.add_argument("--against", help="... and compare with this one")
    back.add_argument("--report", help="write a self-contained HTML report here")
    back.add_argument("--json", action="store_true", help="the result as one JSON document")
    back.add_argument("--topic", help="replay a Kafka topic (usage, errors or a name) ...")
    back.add_argument("--errors-topic", help="... merged with this error topic")
    back.add_argument("--from", dest="start", help="start of the range (RFC 3339 or epoch s)")
    back.add_argument("--to", dest="end", help="end of the range, exclusive")
    back.set_defaults(func=cmd_backtest)

    prod = sub.add_parser("produce", help="publish JSON lines to a topic, keyed by customer")
    prod.add_argument("file", help="JSON lines, .jsonl or .jsonl.gz")
    prod.add_argument("--topic", required=True, help="usage, errors, customers or a topic name")
    prod.add_argument("--rate", type=float, help="at most this many records per second")
    prod.add_argument(
        "--max-bytes",
        type=int,
        default=MAX_LINE_BYTES,
        help=f"lines longer than this are not sent (default {MAX_LINE_BYTES:,})",
    )
    prod.add_argument("--config", help="config file (default config/spendwatch.yaml)")
    prod.set_defaults(func=cmd_produce)

    sim = sub.add_parser("simulate", help="write realistic traffic in the contract formats")
    sim.add_argument("outdir")
    sim.add_argument("--days", type=float, default=2.0)
    sim.add_argument("--customers", type=int, default=20)
    sim.add_argument("--seed", type=int, default=1)
    sim.add_argument("--rate", type=float, default=120.0, help="mean requests per minute")
    sim.add_argument("--incidents", action="store_true", help="inject labelled incidents")
    sim.set_defaults(func=cmd_simulate)

    worker = sub.add_parser("worker", help="run the streaming worker on Kafka")
    worker.add_argument("--config", help="config file (default config/spendwatch.yaml)")
    worker.add_argument("--loglevel", default="info", choices=["debug", "info", "warning", "error"])
    worker.set_defaults(func=cmd_worker)

    config = sub.add_parser("config", help="configuration tools")
    config_sub = config.add_subparsers(dest="config_command", required=True)
    check = config_sub.add_parser("check", help="validate the config files")
    check.add_argument("path", nargs="?", help="config file (default config/spendwatch.yaml)")
    check.set_defaults(func=cmd_config_check)
    explain = config_sub.add_parser("explain", help="the effective thresholds for one key")
    explain.add_argument("--customer", help="customer_id")
    explain.add_argument("--endpoint")
    explain.add_argument("--provider")
    explain.add_argument("--model")
    explain.add_argument("--plan", help="default: the plan of the customer's record")
    explain.add_argument("--at", help="event time (RFC 3339 or epoch s): show open windows")
    explain.add_argument("--config", help="config file (default config/spendwatch.yaml)")
    explain.set_defaults(func=cmd_config_explain)
    schema = config_sub.add_parser("schema", help="JSON Schema of the config file")
    schema.add_argument("--out", help="write it here (default: stdout)")
    schema.set_defaults(func=cmd_config_schema)

    from stream.commands.notify_commands import add_parsers

    add_parsers(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code: int = args.func(args)
    except (ConfigFileError, PriceConfigError, ValueError, OSError) as exc:
        print(f"spendwatch: {exc}", file=sys.stderr)
        return 2
    return code


if __name__ == "__main__":
    raise SystemExit(main())
