"""The backtest HTML report: opened in headless Chromium, and the bands it draws."""

from __future__ import annotations

import io
import re
from pathlib import Path

import numpy as np

from stream.core.alerts import rfc3339
from stream.core.customers import load_customers
from stream.core.pricing import PriceTable
from stream.offline.backtest import Episode, alerted_keys
from stream.offline.keyseries import dense, params_at, record, spend_band
from stream.offline.replay import replay_files
from stream.settings import load_settings
from tests.stream.test_backtest import backtest_run, simulated_days

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def alerted(result: dict) -> set[str]:
    short = {"customer_id": "cus", "endpoint": "ep", "provider": "provider", "model": "model"}
    return {
        ",".join(f"{short[k]}={v}" for k, v in e["labels"].items())
        for run in result["runs"]
        for e in run["episodes"]
    }


def test_report_is_self_contained_and_small(tmp_path_factory):
    result, report, _, _ = backtest_run(tmp_path_factory)
    text = report.read_text()
    assert report.stat().st_size < 3_000_000
    # Nothing is fetched: no script, no external stylesheet, image or font.
    assert "<script" not in text
    assert not re.search(r"""(src|href)=["']?(https?:|//)""", text)
    assert len(re.findall(r'<figure class="chart" data-key="', text)) == len(alerted(result))


def test_report_renders_in_chromium_with_one_chart_per_alerted_key(tmp_path_factory):
    assert CHROMIUM.exists(), f"{CHROMIUM} missing: `make chromium` installs it (make test does)"
    from PIL import Image
    from playwright.sync_api import sync_playwright

    result, report, _, _ = backtest_run(tmp_path_factory)
    errors: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(report.resolve().as_uri(), wait_until="load")
            keys = page.eval_on_selector_all("figure.chart", "els => els.map(e => e.dataset.key)")
            svgs = page.locator("figure.chart svg").count()
            png = page.screenshot(full_page=False)
            chart_png = page.locator("figure.chart").first.screenshot()
        finally:
            browser.close()
    assert sorted(keys) == sorted(alerted(result))
    assert svgs == len(keys)
    assert errors == []
    for shot in (png, chart_png):
        image = Image.open(io.BytesIO(shot)).convert("RGB")
        colours = image.getcolors(maxcolors=1 << 20)
        assert colours is not None and len(colours) > 20, "the page looks blank"


def test_band_is_what_spend_spike_saw_it_fires_where_the_replay_fired(tmp_path_factory):
    """The second pass and the baseline recomputation reproduce the detector exactly: fed
    through the same update, every spend_spike episode of the replay fires again."""
    result, _, base, _ = backtest_run(tmp_path_factory)
    sim = simulated_days(tmp_path_factory)
    settings = load_settings(base)
    prices = PriceTable.load(settings.resolve(settings.prices_file))
    spikes = [
        Episode(e["alertname"], tuple(e["labels"].items()), e["severity"], 0.0, None)
        for e in result["runs"][0]["episodes"]
        if e["alertname"] == "spend_spike"
    ]
    assert spikes
    recording = record(
        lambda p: replay_files(p, [sim / "usage.jsonl.gz"], [sim / "errors.jsonl.gz"], False),
        settings,
        prices,
        load_customers(sim / "customers.jsonl"),
        set(alerted_keys(spikes)),
    )
    starts = {
        (tuple(e["labels"].items()), e["start"])
        for e in result["runs"][0]["episodes"]
        if e["alertname"] == "spend_spike"
    }
    fired = set()
    for key in alerted_keys(spikes):
        series = dense(recording, key)
        assert series is not None
        band = spend_band(series, params_at(settings, "spend_spike", key, None))
        fired |= {(key, rfc3339(t)) for t in band.fired}
        judged = ~np.isnan(band.mean)
        assert judged.any() and (band.threshold[judged] >= band.mean[judged]).all()
    assert fired == starts
