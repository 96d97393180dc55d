"""Fuzzing file replay: lines of any bytes -> replay_files -> alerts.

No line makes a replay raise; every line read is counted once (accepted, refused or a
duplicate); and bad lines among good traffic change no alert. Budgets:
tests/fuzz/conftest.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stream.core.ingest import ERRORS, USAGE
from stream.kafka.stages import Priced
from tests.fuzz.contract import MAX_EVENT_BYTES
from tests.fuzz.strategies import Frame, bad_messages, encode, messages
from tests.fuzz.traffic import GOOD, Replayed, handle, replay, traffic, write_lines

FUZZ = settings.get_profile("fuzz")
HEAVY = settings(FUZZ, max_examples=max(FUZZ.max_examples // 5, 10))  # a 4-hour replay each

USAGE_LINES = [raw for kind, raw in traffic() if kind == USAGE]
ERROR_LINES = [raw for kind, raw in traffic() if kind == ERRORS]


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz-replay")


def lines_in(content: bytes) -> int:
    """The lines replay reads in ``content``: up to each newline, blank ones skipped."""
    pieces = content.split(b"\n")
    lines = [piece + b"\n" for piece in pieces[:-1]] + [pieces[-1]]
    return sum(1 for line in lines if line and not line.isspace())


def assert_counted_once(replayed: Replayed, lines: int) -> None:
    stats, report = replayed.stats, replayed.report
    assert report.lines == lines
    assert lines == stats.accepted.total() + stats.rejected.total() + stats.duplicates
    assert report.dead_letters == stats.rejected.total() == len(replayed.dead)


@FUZZ
@given(
    st.lists(messages(USAGE), max_size=8),
    st.lists(messages(ERRORS), max_size=8),
    st.sampled_from([".jsonl", ".jsonl.gz"]),
    st.sampled_from([b"\n", b"\r\n", b""]),
)
def test_replay_survives_any_lines_and_counts_each_once(folder, usage, errors, suffix, newline):
    # newline b"": everything on one line, as a file that lost its line breaks
    u = write_lines(folder / f"usage{suffix}", [m.raw for m in usage], newline)
    e = write_lines(folder / f"errors{suffix}", [m.raw for m in errors], newline)
    replayed = replay(folder / f"usage{suffix}", folder / f"errors{suffix}")
    assert_counted_once(replayed, lines_in(u) + lines_in(e))
    for letter in replayed.dead:
        (letter.rejection.reason + letter.rejection.field + letter.rejection.detail).encode()


@pytest.mark.parametrize(
    "size",
    [
        MAX_EVENT_BYTES - 1,
        MAX_EVENT_BYTES,
        MAX_EVENT_BYTES + 1,
    ],
)
def test_an_event_at_the_size_limit_is_judged_alike_by_replay_and_the_worker(folder, size):
    raw = encode(GOOD["usage"], Frame(size=size))
    assert len(raw) == size
    worker_accepts = isinstance(handle(raw), Priced)
    assert worker_accepts == (size <= MAX_EVENT_BYTES)
    write_lines(folder / "limit.jsonl", [raw])
    write_lines(folder / "none.jsonl", [])
    replayed = replay(folder / "limit.jsonl", folder / "none.jsonl")
    assert (replayed.stats.accepted.total() == 1) == worker_accepts, replayed.dead


# -- good traffic with bad lines among it ---------------------------------------------------


@pytest.fixture(scope="module")
def clean(folder) -> Replayed:
    write_lines(folder / "clean-usage.jsonl", USAGE_LINES)
    write_lines(folder / "clean-errors.jsonl", ERROR_LINES)
    replayed = replay(folder / "clean-usage.jsonl", folder / "clean-errors.jsonl")
    assert not replayed.dead
    assert {a.labels["alertname"] for a in replayed.report.alerts if a.status == "firing"} == {
        "spend_spike",
        "retry_storm",
    }
    return replayed


def _bad_lines(kind: str, count: int) -> st.SearchStrategy[list[tuple[int, bytes]]]:
    """(position, line) of bad lines to put among ``count`` good ones, one line each;
    positions favour the start and the end of the file."""
    position = st.one_of(st.just(0), st.just(count), st.integers(0, count))
    line = bad_messages(kind).filter(lambda m: b"\n" not in m.raw)
    bad = st.lists(st.tuples(position, line), max_size=6)
    return bad.map(lambda bad: [(p, m.raw) for p, m in bad])


def among(good: list[bytes], bad: list[tuple[int, bytes]]) -> list[bytes]:
    lines = list(good)
    for position, raw in sorted(bad, key=lambda b: b[0], reverse=True):
        lines.insert(position, raw)
    return lines


@pytest.mark.parametrize("kind", [USAGE, ERRORS])
@pytest.mark.parametrize("count", [1, 2, 5])
def test_lines_from_2099_before_the_first_good_one_change_no_alert(folder, clean, kind, count):
    good = {USAGE: USAGE_LINES, ERRORS: ERROR_LINES}
    future = [
        encode(
            [*GOOD[kind][2:], ("event_id", f"ev-2099-{n}"), ("ts", "2099-01-01T00:00:00Z")], Frame()
        )
        for n in range(count)
    ]
    files = {k: folder / f"first-{k}.jsonl" for k in good}
    for k, path in files.items():
        write_lines(path, [*future, *good[k]] if k == kind else good[k])
    replayed = replay(files[USAGE], files[ERRORS])
    assert dict(replayed.stats.rejected) == {"ts_in_future": count}
    assert replayed.alerts == clean.alerts


@HEAVY
@given(_bad_lines(USAGE, len(USAGE_LINES)), _bad_lines(ERRORS, len(ERROR_LINES)))
def test_bad_lines_among_good_traffic_change_no_alert_of_a_replay(folder, clean, usage, errors):
    write_lines(folder / "usage.jsonl", among(USAGE_LINES, usage))
    write_lines(folder / "errors.jsonl", among(ERROR_LINES, errors))
    replayed = replay(folder / "usage.jsonl", folder / "errors.jsonl")
    refused = sum(1 for _, raw in usage + errors if not raw.isspace() and raw)  # blank: skipped
    assert replayed.stats.rejected.total() == refused
    assert replayed.stats.accepted == clean.stats.accepted
    assert replayed.stats.duplicates == clean.stats.duplicates
    assert replayed.alerts == clean.alerts
