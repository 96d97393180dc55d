"""Hypothesis strategies for the fuzz suite: raw messages, good and bad, with their verdict.

:func:`messages` draws one raw message for a topic ("usage" or "errors"): arbitrary bytes,
odd JSON, or a valid event (fields and limits from the shipped contracts) put through
mutations: deep nesting (1..50,000 levels) as an extra field or as the value of any
field, numbers at and beyond float range and literals JSON does not have (NaN,
Infinity), a field's JSON type swapped, duplicate keys, strings at their maximum length
and one past it, invalid UTF-8, escaped lone surrogates, a BOM, NUL and control bytes,
timestamps far in the past or future, and the whole message padded to the size limit
and one byte either side. Every message carries the contracts' verdict
(:mod:`tests.fuzz.contract`), so a test can ask for bad ones only.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import orjson
from hypothesis import strategies as st

from stream.core.events import MAX_TOKENS_PER_EVENT, TS_MAX, TS_MIN
from tests.fuzz.contract import (
    ACCEPT,
    EITHER,
    FIELDS,
    KINDS,
    MAX_EVENT_BYTES,
    NAN_LITERAL,
    NOW,
    REFUSE,
    REQUIRED,
    SKEW_S,
    T0,
    judge_body,
    judge_bytes,
)


@dataclass(frozen=True)
class Raw:
    """A JSON value (or key) written as ``text``; ``like`` stands in for it when judged."""

    text: bytes
    like: Any = None
    broken: str = ""  # why a message holding it is not JSON at all
    unsure: str = ""  # why an implementation may refuse it although it is JSON


@dataclass(frozen=True)
class Message:
    """One raw message for topic ``kind`` and what the contracts make of it."""

    kind: str
    raw: bytes
    verdict: str  # ACCEPT | REFUSE | EITHER
    why: str

    def __repr__(self) -> str:  # falsifying examples stay readable at 64 KiB
        raw = self.raw if len(self.raw) <= 200 else self.raw[:100] + b"..." + self.raw[-100:]
        return f"Message({self.kind!r}, {len(self.raw)} B {raw!r}, {self.verdict}: {self.why})"


Pairs = list[tuple[str | Raw, Any]]


@dataclass
class Frame:
    """What surrounds the pairs: bytes before and after, separators, a target size."""

    prefix: bytes = b""
    suffix: bytes = b""
    comma: bytes = b","
    size: int | None = None
    broken: str = ""


# -- valid values, per the contracts ------------------------------------------------------

_OFFSETS = [UTC, timezone(timedelta(hours=5, minutes=30)), timezone(timedelta(hours=-8))]


def _text(min_size: int = 0, max_size: int = 12) -> st.SearchStrategy[str]:
    return st.text(st.characters(codec="utf-8"), min_size=min_size, max_size=max_size)


@st.composite
def _rfc3339(draw: st.DrawFn, low: float, high: float) -> str:
    seconds = draw(st.integers(int(low), int(high) - 1))
    stamp = datetime.fromtimestamp(seconds, draw(st.sampled_from(_OFFSETS)))
    stamp = stamp.replace(microsecond=draw(st.sampled_from([0, 250_000, 123_456])))
    text = stamp.isoformat()
    return text.replace("+00:00", "Z") if draw(st.booleans()) else text


_LOW, _HIGH = T0 - 2 * 86_400, NOW + SKEW_S - 2  # accepted by the worker's clock at NOW
_GOOD_TS = st.one_of(
    st.floats(_LOW, _HIGH),
    st.integers(int(_LOW), int(_HIGH)),
    st.integers(int(_LOW), int(_HIGH)).map(lambda s: s * 1000),  # epoch milliseconds
    _rfc3339(_LOW, _HIGH),
)
_NAME = st.one_of(st.sampled_from(["acme", "beta", "cus_0001", "chat", "/v1/summarize"]), _text(1))
_TOKENS = st.one_of(st.integers(0, 5000), st.integers(0, MAX_TOKENS_PER_EVENT))
_COMMON: dict[str, st.SearchStrategy[Any]] = {
    "event_id": st.one_of(st.uuids().map(str), _text(1)),
    "ts": _GOOD_TS,
    "customer_id": _NAME,
    "endpoint": _NAME,
    "provider": st.one_of(st.sampled_from(["openai", "anthropic"]), _text(1)),
    "model": st.one_of(st.sampled_from(["gpt-4o", "gpt-4o-mini"]), _text(1)),
    "input_tokens": _TOKENS,
    "output_tokens": _TOKENS,
    "cost_usd": st.one_of(st.none(), st.floats(0, 1e6)),
    "request_id": _text(),
    "attempt": st.integers(1, 1000),
    "latency_ms": st.floats(0, 1e12),
    "tags": st.dictionaries(_text(), _text(), max_size=4),
}
_VALID: dict[str, dict[str, st.SearchStrategy[Any]]] = {
    "usage": {
        **_COMMON,
        "cached_input_tokens": _TOKENS,
        "cache_write_tokens": _TOKENS,
        "status": st.sampled_from(FIELDS["usage"]["status"]["enum"]),
    },
    "errors": {
        **_COMMON,
        "error_type": st.sampled_from(FIELDS["errors"]["error_type"]["enum"]),
        "http_status": st.integers(100, 599),
        "will_retry": st.booleans(),
        "retry_after_s": st.floats(0, 1e6),
        "message": _text(max_size=40),
    },
}
# A contract that gains a field must gain a strategy here.
assert {kind: set(v) for kind, v in _VALID.items()} == {k: set(FIELDS[k]) for k in KINDS}


@st.composite
def valid_pairs(draw: st.DrawFn, kind: str) -> Pairs:
    """A valid event of ``kind`` as (name, value) pairs, in any order, with up to five of
    its optional fields (more cost time to draw and find nothing more)."""
    optional = sorted(set(FIELDS[kind]) - set(REQUIRED[kind]))
    names = list(REQUIRED[kind])
    names += draw(st.lists(st.sampled_from(optional), unique=True, max_size=5))
    return [(name, draw(_VALID[kind][name])) for name in draw(st.permutations(names))]


# -- mutations ------------------------------------------------------------------------------

_DEPTHS = st.one_of(
    st.sampled_from([1, 2, 64, 199, 200, 201, 995, 996, 10_000, 32_766, 32_767, 50_000]),
    st.integers(1, 50_000),
)


def nest(depth: int, shape: str) -> Raw:
    """``depth`` levels of ``[`` (shape "array") or ``{"a":`` (shape "object")."""
    if shape == "array":
        text, like = b"[" * depth + b"]" * depth, [[]] if depth > 1 else []
    else:
        text = b'{"a":' * (depth - 1) + b"{}" + b"}" * (depth - 1)
        like = {"a": {}} if depth > 1 else {}
    return Raw(text, like, unsure="nested more than 64 levels" if depth > 64 else "")


_NUMBERS = [
    Raw(b"1e308", 1e308),
    Raw(b"-1e308", -1e308),
    Raw(b"1e-320", 1e-320),
    Raw(b"-0.0", -0.0),
    Raw(b"9223372036854775808", 2**63),
    Raw(b"18446744073709551617", 2**64 + 1),
    Raw(b"1" + b"0" * 400, 10**400, unsure="an integer of 401 digits"),
    Raw(b"1e400", float("inf"), unsure="a number beyond float range"),
    Raw(b"-1e400", float("-inf"), unsure="a number beyond float range"),
    Raw(b"1E2", 100.0),
    Raw(b"12.0", 12.0),
    *(Raw(t, float(t), broken=NAN_LITERAL) for t in (b"NaN", b"Infinity", b"-Infinity")),
    *(Raw(t, 0, broken=f"{t.decode()} is not a JSON number") for t in (b"01", b"+1", b".5")),
    Raw(b"0x10", 0, broken="0x10 is not a JSON number"),
]
# fmt: off
_OTHER_TYPES = st.sampled_from(
    ["", "x", "12", "1.5", "true", "null", "2026-11-02T01:00:00Z", 0, 1, -1, 1.5, 12, True,
     False, None, [], [1], ["x"], {}, {"a": 1}, {"a": "b"}]
)
_ODD_TS = st.one_of(
    st.sampled_from(
        [0, 1, -1, 946_684_799, TS_MIN, TS_MIN - 0.001, TS_MAX - 0.001, TS_MAX, 1e11, 1e11 + 1,
         99_999_999_999, NOW * 1000, NOW + SKEW_S - 1, NOW + SKEW_S + 1, NOW + SKEW_S + 3600,
         "1970-01-01T00:00:00Z", "0001-01-01T00:00:00Z", "1999-12-31T23:59:59.999Z",
         "2099-12-31T23:59:59Z", "9999-12-31T23:59:59Z", "9999-12-31T23:59:59-23:59",
         "2026-11-02T01:00:00", "2026-11-02", "2026-11-02 01:00:00+00:00", "20261102T010000Z",
         "2026-11-02T01:00:00,5Z", "2026-11-02T23:59:60Z", "2026-13-02T00:00:00Z", "", "now"]
    ),
    # fmt: on
    _rfc3339(TS_MIN - 86_400 * 365, TS_MAX + 86_400 * 365),
    st.floats(allow_nan=False, allow_infinity=False),
    st.integers(-(2**70), 2**70),
)
_UNITS = st.sampled_from(["a", "\u00e9", "\u20ac", "\U0001f600", "\x00", "\ufeff", " "])
_BAD_UTF8 = [b"\xff", b"\xfe", b"\x80", b"\xc0\xaf", b"\xc3\x28", b"\xe2\x82", b"\xed\xa0\x80"]
_ESCAPES = [  # escaped surrogates: lone ones are not text; a pair is one character
    Raw(b'"\\ud800"', "x", broken="a lone surrogate"),
    Raw(b'"x\\udfff"', "x", broken="a lone surrogate"),
    Raw(b'"\\udc00\\ud800"', "x", broken="a lone surrogate"),
    Raw(b'"\\ud800\\u0041"', "x", broken="a lone surrogate"),
    Raw(b'"\\ud83d\\ude00"', "\U0001f600"),
]
_CONTROLS = [
    Raw(b'"a' + bytes([c]) + b'b"', "x", broken="a raw control character") for c in b"\x00\n\t\x1f"
]
_CONTROLS.append(Raw(b'"a\\u0000b"', "a\x00b"))
_PREFIXES = [b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff", b"\x00"]
_SUFFIXES = [b"\x00", b"x", b"}", b",", b"{}"]


def put(pairs: Pairs, name: str | Raw, value: Any) -> Pairs:
    """``pairs`` with ``name`` set to ``value`` (once, at the end)."""
    return [(k, v) for k, v in pairs if k != name] + [(name, value)]


def _limit_value(draw: st.DrawFn, kind: str, name: str) -> Any:
    """A value at one of ``name``'s limits or one step past it."""
    spec = FIELDS[kind][name]
    if "maxLength" in spec or name == "message":
        unit = draw(_UNITS)
        low, high = spec.get("minLength", 0), spec.get("maxLength", 2000)
        return unit * draw(st.sampled_from([max(low - 1, 0), low, high, high + 1]))
    if name == "tags":
        if draw(st.booleans()):
            return {f"k{i}": "v" for i in range(draw(st.sampled_from([32, 33])))}
        return {draw(_UNITS) * draw(st.sampled_from([256, 257])): draw(_UNITS) * 256}
    caps = {"attempt": (1, 1000), "http_status": (100, 599), "cost_usd": (0, 1e6)}
    low, high = caps.get(name, (0, MAX_TOKENS_PER_EVENT))
    return draw(st.sampled_from([low - 1, low, high, high + 1, high + 0.0001]))


# fmt: off
_MUTATIONS = ["nest", "number", "swap", "duplicate", "limit", "utf8", "escape", "control", "ts",
              "drop", "null", "key", "prefix", "suffix", "whitespace", "size"]
# fmt: on


@st.composite
def mutated_pairs(draw: st.DrawFn, kind: str, frame: Frame, count: int) -> Pairs:
    """A valid event of ``kind`` put through ``count`` mutations (some change ``frame``)."""
    pairs = draw(valid_pairs(kind))
    names = sorted(FIELDS[kind])
    for _ in range(count):
        name = draw(st.sampled_from([*names, "x_extra"]))
        what = draw(st.sampled_from(_MUTATIONS))
        if what == "nest":
            pairs = put(
                pairs, name, nest(draw(_DEPTHS), draw(st.sampled_from(["array", "object"])))
            )
        elif what == "number":
            pairs = put(pairs, name, draw(st.sampled_from(_NUMBERS)))
        elif what == "swap":
            pairs = put(pairs, name, draw(_OTHER_TYPES))
        elif what == "duplicate":
            at = draw(st.integers(0, len(pairs)))
            again = draw(st.one_of(_VALID[kind].get(name, _text()), _OTHER_TYPES))
            pairs = [*pairs[:at], (name, again), *pairs[at:]]
        elif what == "limit" and name in FIELDS[kind] and name != "ts":
            pairs = put(pairs, name, _limit_value(draw, kind, name))
        elif what == "utf8":
            bad = b'"ok' + draw(st.sampled_from(_BAD_UTF8)) + b'"'
            pairs = put(pairs, name, Raw(bad, "x", broken="invalid UTF-8"))
        elif what == "escape":
            pairs = put(pairs, name, draw(st.sampled_from(_ESCAPES)))
        elif what == "control":
            pairs = put(pairs, name, draw(st.sampled_from(_CONTROLS)))
        elif what == "ts":
            pairs = put(pairs, "ts", draw(_ODD_TS))
        elif what == "drop":
            pairs = [(k, v) for k, v in pairs if k != name]
        elif what == "null":
            pairs = put(pairs, name, None)
        elif what == "key":  # a key that is not text
            key = draw(
                st.sampled_from([*_ESCAPES[:2], Raw(b'"k\xff"', "k", broken="invalid UTF-8")])
            )
            pairs = put(pairs, key, 1)
        elif what == "prefix":
            frame.prefix = draw(st.sampled_from(_PREFIXES))
            frame.broken = "bytes before the JSON text"
        elif what == "suffix":
            frame.suffix = draw(st.sampled_from(_SUFFIXES))
            frame.broken = "bytes after the JSON text"
        elif what == "whitespace":
            frame.comma = draw(st.sampled_from([b", ", b",\n  ", b"\t,\r\n"]))
        elif what == "size":
            frame.size = draw(
                st.one_of(
                    st.sampled_from([MAX_EVENT_BYTES - 1, MAX_EVENT_BYTES, MAX_EVENT_BYTES + 1]),
                    st.integers(MAX_EVENT_BYTES - 64, MAX_EVENT_BYTES + 64),
                )
            )
    return pairs


def _encode(item: Any) -> bytes:
    if isinstance(item, Raw):
        return item.text
    try:
        return orjson.dumps(item)
    except TypeError:  # an integer beyond 64 bits
        return json.dumps(item, ensure_ascii=False).encode()


def encode(pairs: Pairs, frame: Frame) -> bytes:
    """The message: ``pairs`` as one JSON object inside ``frame``, padded to its size."""
    body = frame.comma.join(_encode(k) + b":" + _encode(v) for k, v in pairs)
    need = (frame.size or 0) - len(frame.prefix) - len(body) - 2 - len(frame.suffix)
    if need > len(b'"x_pad":"",') + 4:  # an unknown field takes the padding
        body = b'"x_pad":"' + b"p" * (need - len(b'"x_pad":"",')) + b'",' + body
    elif need > 0:  # or whitespace, which JSON allows between tokens
        body = b" " * need + body
    return frame.prefix + b"{" + body + b"}" + frame.suffix


def judge(kind: str, pairs: Pairs, frame: Frame, raw: bytes) -> tuple[str, str]:
    """The contracts' verdict on ``raw``, built from ``pairs`` inside ``frame``."""
    if len(raw) > MAX_EVENT_BYTES:
        return REFUSE, "larger than ingest.max_event_bytes"
    items = [item for pair in pairs for item in pair]
    broken = [i.broken for i in items if isinstance(i, Raw) and i.broken] + [frame.broken]
    if broken[0]:
        return REFUSE, broken[0]
    like = [i.like if isinstance(i, Raw) else i for i in items]
    verdict, why = judge_body(kind, dict(zip(like[::2], like[1::2], strict=True)))
    unsure = [i.unsure for i in items if isinstance(i, Raw) and i.unsure]
    if verdict == ACCEPT and unsure:
        return EITHER, unsure[0]
    return verdict, why


# -- messages -------------------------------------------------------------------------------

# fmt: off
_ODDITIES = [
    b"", b" ", b"\t\r\n ", b"\n", b"\x00", b"\xef\xbb\xbf", b"null", b"true", b"0", b"-0.0",
    b"1e400", b"NaN", b'"x"', b"[]", b"[{}]", b"{}", b'{"event_id":"a","event_id":"b"}',
    b"\xef\xbb\xbf{}", b"{", b"}", b"\x00{}", b'"\\ud800"',
]
# fmt: on
_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | _text(),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(_text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)


@st.composite
def garbage(draw: st.DrawFn, kind: str) -> Message:
    """Bytes that are no event: arbitrary, odd JSON, or nesting at the top level."""
    choice = draw(st.integers(0, 3))
    if choice == 3:
        shape = draw(st.sampled_from(["array", "object"]))
        raw = nest(draw(_DEPTHS), shape).text
        return Message(kind, raw, REFUSE, f"{shape} nesting without the required fields")
    raw = draw([st.binary(max_size=200), st.sampled_from(_ODDITIES), _JSON.map(_encode)][choice])
    return Message(kind, raw, *judge_bytes(kind, raw))


@st.composite
def events(draw: st.DrawFn, kind: str, min_mutations: int = 0) -> Message:
    """A valid event of ``kind`` with ``min_mutations``..3 mutations, and its verdict."""
    frame = Frame()
    pairs = draw(mutated_pairs(kind, frame, draw(st.integers(min_mutations, 3))))
    raw = encode(pairs, frame)
    return Message(kind, raw, *judge(kind, pairs, frame, raw))


def messages(kind: str | None = None, min_mutations: int = 0) -> st.SearchStrategy[Message]:
    """Any message for ``kind`` (both kinds if None): a quarter garbage, the rest events."""
    kinds = [kind] if kind else list(KINDS)
    return st.sampled_from(kinds).flatmap(
        lambda k: st.one_of(
            garbage(k), events(k, min_mutations), events(k, min_mutations), events(k, min_mutations)
        )
    )


def bad_messages(kind: str) -> st.SearchStrategy[Message]:
    """Messages for ``kind`` the contracts refuse."""
    return messages(kind, min_mutations=1).filter(lambda m: m.verdict == REFUSE)
