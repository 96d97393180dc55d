"""``spendwatch replay`` over files holding the payloads that once crashed it."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from tests.stream.test_cli import spendwatch

GOOD = {
    "event_id": "g1",
    "ts": "2026-11-02T10:00:00Z",
    "customer_id": "acme",
    "endpoint": "chat",
    "provider": "openai",
    "model": "gpt-4o-mini",
    "input_tokens": 100,
}


def line(**changes: object) -> bytes:
    return orjson.dumps({**GOOD, **changes})


def nested(depth: int, **changes: object) -> bytes:
    return line(deep=orjson.Fragment(b"[" * depth + b"]" * depth), **changes)


@pytest.mark.parametrize("depth", [1_000, 20_000])
def test_replay_refuses_deep_nesting_and_reads_on(tmp_path: Path, depth: int) -> None:
    usage, errors = tmp_path / "usage.jsonl", tmp_path / "errors.jsonl"
    usage.write_bytes(
        b"\n".join([line(), nested(depth, event_id="g2"), line(event_id="g3")]) + b"\n"
    )
    errors.write_bytes(nested(depth, event_id="x1", error_type="timeout") + b"\n")
    done = spendwatch("replay", str(usage), "--errors", str(errors))
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    assert "2 events" in done.stderr and "2 bad" in done.stderr
    assert "json_invalid: 2" in done.stderr
