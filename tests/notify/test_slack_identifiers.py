"""Identifiers in a Slack message copy exactly, and stay inert when they are hostile."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stream.notify.receivers.slack_blocks import blocks, fallback_text
from stream.notify.slack_text import escape, mrkdwn_with_code
from tests.notify.servers import alert_item, notification


def label_texts(message_blocks: list[dict]) -> list[str]:
    return [f["text"] for b in message_blocks for f in b.get("fields", [])]


def outside_code(text: str) -> str:
    return re.sub(r"`[^`]*`", "", text)


def test_customer_id_and_endpoint_appear_byte_for_byte_in_fallback_text_and_blocks() -> None:
    n = notification("slack", alert_item(customer_id="cus_acme_01", endpoint="chat_v2"))
    text = fallback_text(n)
    assert "`cus_acme_01`" in text and "`chat_v2`" in text
    assert text.startswith("[FIRING · WARNING · spend_spike] ")
    labels = label_texts(blocks(n))
    assert "Customer: cus_acme_01" in labels and "Endpoint: chat_v2" in labels


def test_markup_outside_identifiers_is_still_neutralised_in_fallback_text() -> None:
    n = notification("slack", alert_item(customer_id="cus_a", summary="*bold* for cus_a _x_"))
    text = fallback_text(n)
    assert "`cus_a`" in text
    assert not set("*_~") & set(outside_code(text).split("] ", 1)[1])


@pytest.mark.parametrize(
    "payload", ["<!channel>", "<!channel>_x", "<@U123>", "<http://evil|bank>", "<http://a_b|c>"]
)
def test_a_hostile_label_is_still_escaped_in_fallback_text(payload: str) -> None:
    n = notification("slack", alert_item(customer_id=payload, endpoint="chat_v2"))
    text = fallback_text(n)
    assert payload not in text and "<" not in text and ">" not in text
    assert escape(payload) in text  # whole, as entities Slack shows as the characters


def test_a_backtick_in_a_label_cannot_close_its_code_span() -> None:
    n = notification("slack", alert_item(customer_id="a_`b", endpoint="chat"))
    text = fallback_text(n)
    assert "`a_ˋb`" in text and text.count("`") % 2 == 0


@given(st.text(), st.lists(st.text(min_size=1), max_size=3))
def test_mrkdwn_with_code_formats_nothing_and_parses_nothing(
    text: str, identifiers: list[str]
) -> None:
    out = mrkdwn_with_code(text, identifiers)
    assert "<" not in out and ">" not in out
    assert out.count("`") % 2 == 0
    assert not set("*_~") & set(outside_code(out))
