"""Slack text: escaping cannot be bypassed, sparklines are faithful, silence commands parse."""

from __future__ import annotations

import re
import shlex

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stream.notify.receivers.slack_blocks import blocks, fallback_text
from stream.notify.slack_text import (
    BARS,
    escape,
    escape_code,
    escape_mrkdwn,
    matcher,
    parse_series,
    silence_command,
    sparkline,
    truncate,
)
from tests.notify.servers import alert_item, notification

MARKUP = set("*_~`")
# Slack decodes exactly these three entities; decoding must give the input back.
UNESCAPE = (("&lt;", "<"), ("&gt;", ">"), ("&amp;", "&"))


def unescape(text: str) -> str:
    for entity, char in UNESCAPE:
        text = text.replace(entity, char)
    return text


@given(st.text())
def test_escaped_text_has_no_control_characters_and_decodes_back(text: str) -> None:
    out = escape(text)
    assert "<" not in out and ">" not in out
    assert re.search(r"&(?!amp;|lt;|gt;)", out) is None
    assert unescape(out) == text


@given(st.text())
def test_escaped_mrkdwn_has_no_markup_characters(text: str) -> None:
    out = escape_mrkdwn(text)
    assert not MARKUP & set(out) and "<" not in out and ">" not in out


@given(st.text())
def test_code_text_cannot_close_its_code_block(text: str) -> None:
    out = escape_code(text)
    assert "`" not in out and "<" not in out and ">" not in out


@pytest.mark.parametrize(
    "payload", ["<!channel>", "<!here>", "<!everyone>", "<@U123>", "<#C1>", "<http://evil|bank>"]
)
def test_mentions_and_links_are_inert_everywhere_in_the_message(payload: str) -> None:
    alert = alert_item(customer_id=payload, endpoint=payload, summary=payload, recent="1,2")
    n = notification("slack", alert)
    rendered = repr(blocks(n)) + fallback_text(n)
    assert payload not in rendered and "<" not in rendered


@given(st.lists(st.floats(-1e9, 1e9), min_size=1, max_size=80))
def test_sparkline_draws_one_bar_per_recent_value_from_min_to_max(values: list[float]) -> None:
    line = sparkline(",".join(repr(v) for v in values), width=60)
    shown = values[-60:]
    assert len(line) == len(shown) and set(line) <= set(BARS)
    if max(shown) > min(shown):
        assert line[shown.index(min(shown))] == BARS[0]
        assert line[shown.index(max(shown))] == BARS[-1]


@pytest.mark.parametrize(
    "recent, expected",
    [("", ""), ("abc", ""), ("3", "▁"), ("0,7", "▁█"), ("1,nan,inf,2", "▁█"), (" 1 , 2 ", "▁█")],
)
def test_sparkline_edge_cases(recent: str, expected: str) -> None:
    assert sparkline(recent) == expected


def test_parse_series_skips_what_is_not_a_number() -> None:
    assert parse_series("1,,x,2e3,-4") == [1.0, 2000.0, -4.0]


@given(
    st.dictionaries(
        st.sampled_from(["alertname", "customer_id", "endpoint", "provider", "model", "scope"]),
        st.text(min_size=1),
        min_size=1,
    )
)
def test_silence_command_round_trips_through_the_shell(labels: dict[str, str]) -> None:
    argv = shlex.split(silence_command(labels))
    assert argv[:3] == ["spendwatch", "silence", "add"]
    assert argv[-4:] == ["--duration", "2h", "--comment", "..."]
    wanted = [
        k for k in ("alertname", "customer_id", "endpoint", "provider", "model") if k in labels
    ]
    assert argv[3:-4] == [matcher(k, labels[k]) for k in wanted]


def test_truncate_keeps_short_text_and_marks_cuts() -> None:
    assert truncate("abc", 3) == "abc"
    assert truncate("abcd", 3) == "ab…"
