"""bench/columnar.py's engines give replay's bucket sums, rejections and duplicates.

On tiny simulated traffic (dense and sparse, with the bench's injected bad lines), and on
hand-written lines that a typed columnar reader alone would read differently from the
models (repeated keys, explicit nulls, numbers in string fields, odd tags, blank lines).
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

pytest.importorskip("polars")
pytest.importorskip("pyarrow")

from bench.columnar import ENGINES, Case, compare, current, engine, make_case  # noqa: E402
from stream.settings import Settings  # noqa: E402

BASE = {
    "event_id": "e0",
    "ts": "2026-11-02T00:00:01Z",
    "customer_id": "c1",
    "endpoint": "chat",
    "provider": "openai",
    "model": "gpt-4o",
    "input_tokens": 100,
    "output_tokens": 10,
    "tags": {"region": "eu"},
}


def line(n: int, **fields: object) -> str:
    event = {**BASE, "event_id": f"e{n}", **fields}
    return json.dumps({k: v for k, v in event.items() if v is not ...}, separators=(",", ":"))


def raw(n: int, text: str) -> str:
    """A line with ``text`` spliced in before the closing brace of an event."""
    return line(n)[:-1] + "," + text + "}"


EDGES = [
    line(1),
    line(2, ts=1793577602.5),  # epoch seconds
    line(3, ts=1793577603250),  # epoch milliseconds
    line(4, ts="2026-11-02T01:00:04.123+01:00"),
    line(5, ts="1793577605"),  # a string of digits is not a date
    line(6, ts="2026-02-30T00:00:00Z"),  # no such day
    line(7, ts="2026-11-02T00:00:07"),  # no offset
    line(8, ts=True),
    line(9, customer_id=5),
    line(10, endpoint=None),
    line(11, request_id=None),
    line(12, input_tokens=None),
    line(13, input_tokens=12.0),  # a whole float is an int to the models
    line(14, input_tokens=1.5),
    line(15, input_tokens="12"),
    line(16, cost_usd=None),
    line(17, cost_usd=0.25),
    line(18, tags={"region": 5}),
    line(19, tags={"region": "x" * 300}),
    line(20, tags={f"k{i}": "v" for i in range(33)}),
    line(21, tags={"ts": "2026-11-02T09:00:00Z"}),  # a nested ts is not the event's
    line(22, tags=["a"]),
    line(23, tags=None),
    line(24, extra_field="ignored"),
    line(25, extra_field={"nested": 1}),
    raw(26, '"customer_id":"c2"'),  # repeated key: the models keep the last
    raw(27, '"cost_usd":null'),  # cost 1.0, then null: the table prices it
    line(28, cost_usd=1.0)[:-1] + ',"cost_usd":null}',
    line(29, status="rate_limited", attempt=2),
    line(30, status="bogus"),
    line(31, model="gpt-4o-2024-08-06", cached_input_tokens=50),
    line(32, endpoint="caf\u00e9"),
    '{"event_id":"e33","ts":NaN,"customer_id":"c1","endpoint":"chat","provider":"openai",'
    '"model":"gpt-4o"}',
    line(34, customer_id="a\ud800b"),  # a lone surrogate, escaped
    line(42).replace('"chat"', '"caf\u00e9 \u6f22"'),  # UTF-8, unescaped
    "",
    "   ",
    line(35) + line(36),  # two objects on one line
    json.dumps({**BASE, "event_id": "e37"}),  # json.dumps' default spacing
    line(1),  # a duplicate
    "[1, 2]",
    '{"event_id": "e38"',
    line(39, attempt=0),
    line(40, latency_ms=-1),
    line(41, customer_id="x" * 257),
]


@pytest.fixture(scope="module")
def settings() -> Settings:
    return Settings()


def write(path: Path, lines: list[str]) -> Path:
    path.write_bytes(gzip.compress(("\n".join(lines) + "\n").encode(), mtime=0))
    return path


@pytest.mark.parametrize("name", sorted(ENGINES))
def test_engine_reads_hand_written_edge_lines_as_replay_does(tmp_path, settings, name):
    usage = write(tmp_path / "usage.jsonl.gz", EDGES)
    errors = write(tmp_path / "errors.jsonl.gz", [
        '{"event_id":"x1","ts":1793577601,"customer_id":"c1","endpoint":"chat",'
        '"provider":"openai","model":"gpt-4o","error_type":"timeout","cost_usd":null}',
        '{"event_id":"x2","ts":1793577602,"customer_id":"c1","endpoint":"chat",'
        '"provider":"openai","model":"gpt-4o","error_type":"nope"}',
        '{"event_id":"x3","ts":1793577603,"customer_id":"c1","endpoint":"chat",'
        '"provider":"openai","model":"gpt-4o","error_type":"rate_limited","will_retry":1}',
    ])  # fmt: skip
    case = Case("edges", usage, errors, 0, 1, {})
    result = compare(current(case, settings), engine(name, case, settings, 1.0))
    assert result["agree"], result
    assert result["rejected"] > 15


@pytest.mark.parametrize("customers", [3, 300])
def test_engines_agree_with_replay_on_tiny_simulated_traffic(tmp_path, settings, customers):
    case = make_case(tmp_path, f"c{customers}", customers, 3_000, seed=5)
    expected = current(case, settings)
    for name in ENGINES:
        # small chunks: several per file, so bad lines land in some and not others
        result = compare(expected, engine(name, case, settings, 0.25))
        assert result["agree"], (name, result)
        assert result["rejected"] >= 12 and result["duplicates"][0] >= 5
