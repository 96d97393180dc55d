"""The notify path on a real broker: notifications/s and alert -> receiver latency.

    python bench/notify.py [--bootstrap 127.0.0.1:9092] [--alerts 2000] [--rate 500]
    make bench-notify          # starts the local broker first (make kafka-up)

A ``spendwatch worker`` runs with one webhook receiver (a real HTTP server on loopback,
started here) and a route with ``group_wait_s: 0`` that groups by every label, so each
alert is its own notification. ``--alerts`` firing alerts are produced onto the alerts
topic at ``--rate`` per second; for each, latency = its arrival at the receiver minus the
moment it was acknowledged by the broker. Throughput = alerts received / (last arrival -
first arrival). Prints the figures and writes bench/results/notify.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web
from aiokafka import AIOKafkaProducer

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.kafka_e2e import percentile, settings_for, start_worker  # noqa: E402
from stream.core.alerts import fingerprint  # noqa: E402
from stream.kafka.connection import ensure_topics  # noqa: E402


def config_file(folder: Path, url: str) -> Path:
    config = {
        "prices_file": str(ROOT / "config" / "prices.yaml"),
        "notify": {
            "route": {
                "receivers": ["bench"],
                "group_by": ["..."],
                "group_wait_s": 0,
                "group_interval_s": 60,
                "repeat_interval_s": 86400,
            },
            "receivers": [
                {
                    "name": "bench",
                    "kind": "webhook",
                    "webhook": {"url": url, "secret_env": "BENCH_SECRET"},
                }
            ],
        },
    }
    path = folder / "notify.yaml"
    path.write_text(json.dumps(config))
    return path


def alert(n: int, now: float) -> dict[str, Any]:
    labels = {
        "alertname": "spend_spike",
        "severity": "warning",
        "customer_id": f"bench-{n:06d}",
        "scope": "customer",
    }
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))
    return {
        "status": "firing",
        "labels": labels,
        "annotations": {"summary": f"bench alert {n}", "observed": "3", "baseline": "1"},
        "startsAt": stamp,
        "endsAt": "0001-01-01T00:00:00Z",
        "fingerprint": fingerprint(labels),
    }


def notifier_ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/alerts", timeout=2) as response:
            return bool(json.loads(response.read()).get("owner"))
    except OSError:
        return False


async def run(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    arrivals: dict[str, float] = {}

    async def receive(request: web.Request) -> web.Response:
        body = await request.json()
        now = time.time()
        for item in body["alerts"]:
            arrivals.setdefault(item["fingerprint"], now)
        return web.Response(status=200)

    app = web.Application()
    app.router.add_post("/hook", receive)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    url = f"http://127.0.0.1:{port}/hook"

    run_id = f"bench-{uuid.uuid4().hex[:8]}"
    settings = settings_for(args.bootstrap, run_id, args.partitions)
    await ensure_topics(settings.kafka)
    web_port = 20000 + random.randrange(20000)
    proc = start_worker(
        settings,
        web_port,
        tmp / "data",
        tmp / "worker.log",
        env={"BENCH_SECRET": "bench-secret", "SPENDWATCH_WORKER__BATCH_WITHIN_S": "0.05"},
        args=("--config", str(config_file(tmp, url))),
    )
    sent: dict[str, float] = {}
    try:
        deadline = time.monotonic() + 120
        while not notifier_ready(web_port):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(
                    f"worker not ready; log: {(tmp / 'worker.log').read_text()[-2000:]}"
                )
            await asyncio.sleep(0.2)
        producer = AIOKafkaProducer(bootstrap_servers=args.bootstrap, linger_ms=0)
        await producer.start()
        try:
            began = time.monotonic()
            for n in range(args.alerts):
                item = alert(n, time.time())
                fp = item["fingerprint"]
                await producer.send_and_wait(
                    settings.kafka.topics.alerts, orjson.dumps(item), fp.encode()
                )
                sent[fp] = time.time()
                ahead = began + (n + 1) / args.rate - time.monotonic()
                if ahead > 0:
                    await asyncio.sleep(ahead)
        finally:
            await producer.stop()
        deadline = time.monotonic() + 120
        while len(arrivals) < len(sent) and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
        await runner.cleanup()
    latencies = [arrivals[fp] - t for fp, t in sent.items() if fp in arrivals]
    span = max(arrivals.values()) - min(arrivals.values()) if len(arrivals) > 1 else float("nan")
    return {
        "alerts": len(sent),
        "received": len(latencies),
        "offered_rate_per_s": args.rate,
        "notifications_per_s": len(latencies) / span if span else float("nan"),
        "p50_s": percentile(latencies, 0.5),
        "p99_s": percentile(latencies, 0.99),
        "max_s": max(latencies, default=float("nan")),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bootstrap", default=os.environ.get("KAFKA_BOOTSTRAP", "127.0.0.1:9092"))
    parser.add_argument("--alerts", type=int, default=2000)
    parser.add_argument("--rate", type=float, default=500.0, help="alerts produced per second")
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "notify.json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        result = asyncio.run(run(args, Path(tmp)))
    result.update(
        {
            "bench": "notify",
            "target_p99_s": 1.0,
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
        }
    )
    print(
        f"notify: {result['received']}/{result['alerts']} alerts delivered, "
        f"{result['notifications_per_s']:,.0f} notifications/s (offered {args.rate:,.0f}/s); "
        f"alerts topic -> receiver p50 {result['p50_s'] * 1000:.0f} ms, "
        f"p99 {result['p99_s'] * 1000:.0f} ms"
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
