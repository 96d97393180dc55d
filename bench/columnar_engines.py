"""Columnar ingest for issue 13, item 1: raw JSON lines -> per-(bucket, key) sums, two ways.

Both engines do the same steps on a chunk of raw lines (bench/columnar.py times them):

1. decode the chunk in one call of the engine's JSON reader, against a typed schema; a
   chunk the reader refuses is halved until the lines it refuses stand alone;
2. validate with the contracts' limits as vectorised expressions, plus literal counts over
   the raw lines for what a typed reader cannot tell (see the comment at ``KEY``: an explicit
   null from an absent field, a repeated key, a number in a string field, tags); a line
   that fails any check is only *suspect*: it goes through ``Ingest.parse`` (the msgspec /
   pydantic path of stream.core.events), which accepts it or refuses it with the exact
   reason. The vectorised checks never refuse;
3. de-duplicate by event_id within the batch and against a bounded memory of the ids of
   the last two ``ingest.dedup_horizon_s`` generations of event time;
4. price by a join on the price table (one ``PriceTable.lookup`` per distinct pair);
5. sum into rows per (bucket, customer, endpoint, provider, model), the columns of
   stream.core.buckets' rows.

Not done here, unlike replay: the ``ts_in_future`` rule, and dropping events later than
the allowed lateness (all buckets stay open to the end). Usage and error files are read
one after the other, not merged in event time, so an event_id repeated across the two
kinds keeps its first copy in that order.
"""

from __future__ import annotations

import gzip
import io
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from stream.core.buckets import ROW_FIELDS, RowKey
from stream.core.events import MAX_TOKENS_PER_EVENT, TS_MAX, TS_MIN, EventRecord, UsageStatus
from stream.core.ingest import ERRORS, USAGE, DeadLetter, Ingest
from stream.core.pricing import TOKENS_PER_PRICE_UNIT, PriceTable

KEYS = ["bucket", "customer_id", "endpoint", "provider", "model"]
# The columns of a bucket row, in stream.core.buckets' order (COST .. CACHED_TOKENS).
SUMS = [
    "cost",
    "requests",
    "failures",
    "retries",
    "rate_limited",
    "wasted",
    "first_failures",
    "retried",
    "input_tokens",
    "output_tokens",
    "cached_tokens",
]
assert len(SUMS) == ROW_FIELDS
# What a validated event carries into pricing and bucketing.
EVENT = [
    "line",
    "event_id",
    "ts",
    "customer_id",
    "endpoint",
    "provider",
    "model",
    "input_tokens",
    "output_tokens",
    "cached_input_tokens",
    "cache_write_tokens",
    "cost_usd",
    "attempt",
    "failed",
    "rate_limited",
]
STATUSES = list(UsageStatus.__args__)  # type: ignore[attr-defined]
ERROR_TYPES = [
    "rate_limited", "timeout", "server_error", "overloaded", "client_error", "network", "other",
]  # fmt: skip
# String fields, by kind, with their (min, max) length in characters (stream.core.events).
REQUIRED = {"event_id": (1, 128), "customer_id": (1, 256), "endpoint": (1, 256),
            "provider": (1, 64), "model": (1, 128)}  # fmt: skip
OPTIONAL = {"request_id": 128, "message": 2000}
TOKENS = {USAGE: ["input_tokens", "output_tokens", "cached_input_tokens", "cache_write_tokens"],
          ERRORS: ["input_tokens", "output_tokens"]}  # fmt: skip

# Raw-line checks, by literal counts (a pass of memchr-like search each; regular
# expressions with alternatives cost 5-10 times as much). A JSON string cannot hold an
# unescaped quote, so where no quote is followed by whitespace (ODD below), every key at
# any depth is counted once by KEY, and every key whose value is a string by STRING (or
# STRING_SPACED: json.dumps' default separators). The decoded row says which keys of the
# schema are present and which of them hold strings; the rest ("extra") must be string
# values alone, no more than tags may hold: then there is no repeated key (polars keeps the
# first copy, the models the last), no explicit null (a typed reader reads it as absent),
# no number or bool in a string field (polars reads them as their text), no nesting beyond
# tags and no unknown field but a string. Any doubt only sends the line to the model.
KEY, STRING, STRING_SPACED = '":', '":"', '": "'
COST_NULL = ('"cost_usd":null', '"cost_usd": null')  # the one field where null is valid
# NaN/Infinity: not JSON (pyarrow reads NaN). A backslash: an escape, whose decoded length
# and surrogates are the model's to judge. A quote then whitespace: a key the counts miss.
ODD = ("NaN", "Infinity", "\\", '" ', '"\t', '"\r')
MAX_TAGS = 32
LONG_TAG = r'[^"]{257}'  # a tag's value is at most 256 characters
# RFC 3339 as datetime.fromisoformat reads it and the engines parse it the same way;
# anything else (other fraction widths, leap seconds, no offset) goes to the model.
RFC3339 = (
    r"^\d{4}-\d{2}-\d{2}T(?:[01]\d|2[0-3]):[0-5]\d:[0-5]\d(?:\.\d{3}|\.\d{6})?"
    r"(?:Z|[+-](?:[01]\d|2[0-3]):[0-5]\d)$"
)
JSON_NUMBER = r"^-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?$"
EPOCH_MS_THRESHOLD = 1e11
NO_LINES = np.zeros(0, dtype=np.int64)


def read_chunks(path: Path, block_bytes: int) -> Iterator[bytes]:
    """The decompressed file in chunks of whole lines, about ``block_bytes`` each."""
    opener: Callable[..., Any] = gzip.open if path.suffix == ".gz" else open
    rest = b""
    with opener(path, "rb") as handle:
        while True:
            block = handle.read(block_bytes)
            if not block:
                break
            data = rest + block
            cut = data.rfind(b"\n") + 1
            if cut == 0:
                rest = data
                continue
            rest = data[cut:]
            yield data[:cut]
    if rest:
        yield rest


def line_offsets(data: bytes) -> np.ndarray:
    """Start of each line and the end of the last (n + 1 offsets; newlines included)."""
    ends = np.flatnonzero(np.frombuffer(data, np.uint8) == 10) + 1
    if data and data[-1] != 10:
        ends = np.append(ends, len(data))
    return np.concatenate(([0], ends)).astype(np.int64)


def bad_utf8_lines(data: bytes, offsets: np.ndarray) -> list[int]:
    """Lines that are not UTF-8 (checked line by line only when the chunk is not)."""
    if data.isascii():
        return []
    try:
        data.decode()
        return []
    except UnicodeDecodeError:
        pass
    bad = []
    for i in range(len(offsets) - 1):
        try:
            data[offsets[i] : offsets[i + 1]].decode()
        except UnicodeDecodeError:
            bad.append(i)
    return bad


def decode_ranges(
    decode: Callable[[memoryview], Any], rows: Callable[[Any], int], data: bytes,
    offsets: np.ndarray,
) -> tuple[list[tuple[int, Any]], list[int]]:  # fmt: skip
    """Decode the chunk's lines in one call; where the reader refuses, halve the range.

    Returns (start line, table) of each decoded range, whose rows are its lines in order,
    and the lines the reader refused alone (or read as other than one row: blank lines,
    two objects on a line). One bad line costs about log2(lines) extra decodes.
    """
    view = memoryview(data)
    done: list[tuple[int, Any]] = []
    refused: list[int] = []
    todo = [(0, len(offsets) - 1)]
    while todo:
        a, b = todo.pop()
        try:
            table = decode(view[offsets[a] : offsets[b]])
            if rows(table) != b - a:
                raise ValueError("a line is not one object")
            done.append((a, table))
            continue
        except Exception:  # noqa: BLE001 - the reader's errors have no common type
            if b - a == 1:
                refused.append(a)
                continue
        middle = (a + b) // 2
        todo += [(middle, b), (a, middle)]
    done.sort(key=lambda item: item[0])
    return done, sorted(refused)


@dataclass(frozen=True)
class RawPlan:
    """Which per-line literal passes a chunk needs: a literal absent from the chunk (one
    fast search of its bytes) is absent from each of its lines."""

    odd: tuple[str, ...]
    spaced: bool
    cost_null: tuple[str, ...]
    tags: bool

    @classmethod
    def of(cls, data: bytes) -> RawPlan:
        def present(literals: tuple[str, ...]) -> tuple[str, ...]:
            # its first byte first: a memchr, much faster than a search for the whole
            return tuple(lit for lit in literals
                         if lit[0].encode() in data and lit.encode() in data)  # fmt: skip

        # A quote then whitespace, by numpy: bytes.find is slow where the first byte of
        # what it looks for is as common as a quote.
        text = np.frombuffer(data, np.uint8)
        after = text[1:][text[:-1] == 34]
        spaced = bool(np.isin(after, (32, 9, 13)).any())
        odd = present(ODD[:3]) + (ODD[3:] if spaced else ())
        return cls(odd, spaced and STRING_SPACED.encode() in data, present(COST_NULL),
                   b'"tags":' in data)  # fmt: skip


@dataclass
class PerLine:
    """The per-line path for suspect lines: ``Ingest.parse``, which gives the exact reason."""

    ingest: Ingest
    dead_letters: list[DeadLetter] = field(default_factory=list)
    blank: int = 0

    def judge(self, kind: str, data: bytes, offsets: np.ndarray, lines: np.ndarray) -> list[Any]:
        """Accepted events of the suspect ``lines``, as rows in :data:`EVENT` order."""
        accepted = []
        for line in lines.tolist():
            raw = data[offsets[line] : offsets[line + 1]]
            if raw.isspace():
                self.blank += 1  # replay skips such lines without counting them
                continue
            event = self.ingest.parse(kind, raw)
            if isinstance(event, DeadLetter):
                event.raw = raw.rstrip(b"\r\n")
                self.dead_letters.append(event)
                continue
            accepted.append(_row(line, event))
        return accepted


def _row(line: int, e: EventRecord) -> tuple[Any, ...]:
    return (line, e.event_id, e.ts, e.customer_id, e.endpoint, e.provider, e.model,
            e.input_tokens, e.output_tokens, e.cached_input_tokens, e.cache_write_tokens,
            e.cost_usd, e.attempt, e.failed, e.rate_limited)  # fmt: skip


def price_rows(prices: PriceTable, pairs: list[tuple[str, str]]) -> dict[str, list[Any]]:
    """Prices per (provider, model) pair, USD per token, for a join; ``known`` False where
    the fallback prices it."""
    out: dict[str, list[Any]] = {k: [] for k in
        ("provider", "model", "p_in", "p_out", "p_cached", "p_write", "known")}  # fmt: skip
    for provider, model in pairs:
        price, known = prices.lookup(provider, model)
        values = (provider, model, price.input, price.output, price.cached_input,
                  price.cache_write, known)  # fmt: skip
        for key, value in zip(out, values, strict=True):
            out[key].append(value)
    return out


def count_unknown(prices: PriceTable, pairs: list[tuple[str, str, int]]) -> None:
    """Count fallback-priced events as ``PriceTable.cost_usd`` does, a pair at a time."""
    for provider, model, n in pairs:
        for _ in range(n):
            prices._count_unknown(provider, model)


class HashMemory:
    """Hashes (uint64) of recent event ids, per generation of ``horizon_s`` event time;
    the two newest generations are kept, each as sorted blocks (one per batch)."""

    def __init__(self, horizon_s: float, max_ids: int = 8_000_000) -> None:
        self.horizon = max(horizon_s, 1e-9)
        self.max_ids = max_ids  # a bound whatever the traffic: oldest blocks go first
        self.blocks: dict[int, list[np.ndarray]] = {}

    def seen(self, hashes: np.ndarray) -> np.ndarray:
        out = np.zeros(len(hashes), dtype=bool)
        for blocks in self.blocks.values():
            for block in blocks:
                at = np.minimum(np.searchsorted(block, hashes), len(block) - 1)
                out |= block[at] == hashes
        return out

    def remember(self, hashes: np.ndarray, ts: np.ndarray) -> None:
        if not len(hashes):
            return
        generations = (ts // self.horizon).astype(np.int64)
        for g in np.unique(generations).tolist():
            self.blocks.setdefault(g, []).append(np.sort(hashes[generations == g]))
        newest = max(self.blocks)
        for g in [g for g in self.blocks if g < newest - 1]:
            del self.blocks[g]
        while sum(len(b) for bs in self.blocks.values() for b in bs) > self.max_ids:
            oldest = min(self.blocks)
            self.blocks[oldest].pop(0)
            if not self.blocks[oldest]:
                del self.blocks[oldest]


def first_in_order(codes: np.ndarray) -> np.ndarray:
    """True where a dictionary code (assigned in order of first appearance) first appears."""
    if not len(codes):
        return np.zeros(0, dtype=bool)
    before = np.maximum.accumulate(np.concatenate(([-1], codes[:-1])))
    return codes > before


def exact_bucket(ts: np.ndarray, width: float) -> np.ndarray:
    """``int(ts // width)`` for each ts, as Python's float floor division gives it."""
    q = np.floor(ts / width)
    q -= q * width > ts
    q += (q + 1) * width <= ts
    return q.astype(np.int64)


def rows_of(table: dict[str, list[Any]]) -> dict[tuple[int, RowKey], list[float]]:
    """Sums as {(bucket, (customer, endpoint, provider, model)): row}, to compare."""
    keys = zip(*(table[k] for k in KEYS), strict=True)
    values = zip(*(table[s] for s in SUMS), strict=True)
    return {(b, (c, e, p, m)): [float(v) for v in row] for (b, c, e, p, m), row in
            zip(keys, values, strict=True)}  # fmt: skip


class Stages:
    """Seconds per stage of an engine: each ``mark`` charges the time since the last one
    to the stage it names (a few marks a chunk: no cost worth counting)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.last = time.perf_counter()

    def mark(self, stage: str) -> None:
        now = time.perf_counter()
        self.seconds[stage] = self.seconds.get(stage, 0.0) + now - self.last
        self.last = now


@dataclass
class Outcome:
    """What an engine read: per-(bucket, key) sums (columns ``KEYS + SUMS``), dead letters,
    duplicates dropped and lines read."""

    sums: Any
    dead_letters: list[DeadLetter]
    duplicates: int
    lines: int
    suspects: int
    stages: dict[str, float] = field(default_factory=dict)


# ---------------------------------------------------------------------------------------
# polars


def _polars_schema(kind: str) -> dict[str, Any]:
    import polars as pl

    schema: dict[str, Any] = {name: pl.String for name in REQUIRED}
    schema["ts"] = pl.String  # a number or a string: polars' String reads both
    schema["tags"] = pl.String  # an object, read as its JSON text
    schema.update({name: pl.Int64 for name in TOKENS[kind]})
    schema.update(cost_usd=pl.Float64, attempt=pl.Int64, latency_ms=pl.Float64,
                  request_id=pl.String)  # fmt: skip
    if kind == USAGE:
        schema["status"] = pl.String
    else:
        schema.update(error_type=pl.String, http_status=pl.Int64, will_retry=pl.Boolean,
                      retry_after_s=pl.Float64, message=pl.String)  # fmt: skip
    return schema


class ChunkEngine:
    """What both engines share: read each file in chunks, decode and sum each chunk into
    partial rows, merge the partials. An engine gives its de-duplication memory and the
    steps that differ: the schema, the chunk's events, their row count, sums and merge."""

    name = ""
    memory_type: type[HashMemory] = HashMemory

    def __init__(self, ingest: Ingest, width_s: float, chunk_bytes: int) -> None:
        self.ingest = ingest
        self.prices = ingest.prices
        self.width = width_s
        self.chunk_bytes = chunk_bytes
        self.limit = ingest.settings.max_event_bytes
        self.memory = self.memory_type(ingest.settings.dedup_horizon_s)
        self.per_line = PerLine(ingest)
        self.duplicates = self.lines = self.suspects = 0
        self.stages = Stages()

    def run(self, sources: list[tuple[str, Path]]) -> Outcome:
        partials = []
        for kind, path in sources:
            schema = self._schema(kind)
            for data in read_chunks(path, self.chunk_bytes):
                self.stages.mark("gunzip")
                events = self._events(kind, schema, data)
                if self._height(events):
                    partials.append(self._sums(events))
        sums = self._merge(partials) if partials else None
        self.stages.mark("merge")
        return Outcome(sums, self.per_line.dead_letters, self.duplicates,
                       self.lines - self.per_line.blank, self.suspects,
                       self.stages.seconds)  # fmt: skip

    def _schema(self, kind: str) -> Any:
        raise NotImplementedError

    def _events(self, kind: str, schema: Any, data: bytes) -> Any:
        raise NotImplementedError

    def _height(self, events: Any) -> int:
        raise NotImplementedError

    def _sums(self, events: Any) -> Any:
        raise NotImplementedError

    def _merge(self, partials: list[Any]) -> Any:
        raise NotImplementedError


class PolarsEngine(ChunkEngine):
    """Columnar ingest with polars alone (``read_ndjson`` per chunk, expressions after)."""

    name = "polars"

    def _schema(self, kind: str) -> Any:
        return _polars_schema(kind)

    def _height(self, events: Any) -> int:
        return int(events.height)

    def _merge(self, partials: list[Any]) -> Any:
        import polars as pl

        return pl.concat(partials).group_by(KEYS).agg(pl.col(SUMS).sum())

    def _events(self, kind: str, schema: dict[str, Any], data: bytes) -> Any:
        """The chunk's accepted events (columns :data:`EVENT`), in file order."""
        import polars as pl

        offsets = line_offsets(data)
        n = len(offsets) - 1
        self.lines += n
        pieces, refused = decode_ranges(
            # ignore_errors: a value of another type reads as null (the counts then send the
            # line to the model); only what is not JSON fails the read.
            lambda buf: pl.read_ndjson(io.BytesIO(buf), schema=schema, ignore_errors=True),
            len,
            data,
            offsets,
        )
        decoded = pl.concat([t for _, t in pieces]) if pieces else pl.DataFrame(schema=schema)
        self.stages.mark("decode")
        line = np.concatenate([np.arange(a, a + len(t)) for a, t in pieces] or [NO_LINES])
        line = line.astype(np.int64)
        raw = _polars_lines(data, offsets).select(_polars_counts(RawPlan.of(data)))
        if len(line) != n:
            raw = raw[line]
        self.stages.mark("raw counts")
        decoded = decoded.hstack(raw).with_columns(
            line=pl.Series(line, dtype=pl.Int64), _ts=_polars_ts()
        )
        good = decoded.select(_polars_valid(kind, self.limit)).to_series()
        self.stages.mark("validate")
        bad_utf8 = bad_utf8_lines(data, offsets)
        if bad_utf8:
            good = good & ~pl.Series(np.isin(line, bad_utf8))
        suspects = np.sort(np.concatenate([line[~good.to_numpy()], refused]).astype(np.int64))
        self.suspects += len(suspects)
        events = _polars_events(kind, decoded.filter(good))
        self.stages.mark("validate")
        accepted = self.per_line.judge(kind, data, offsets, suspects)
        if accepted:
            extra = pl.DataFrame(accepted, schema=events.schema, orient="row")
            events = pl.concat([events, extra]).sort("line")
        self.stages.mark("per-line path")
        return events

    def _sums(self, events: Any) -> Any:
        """De-duplicate, price and sum one chunk's events."""
        import polars as pl

        events = events.with_columns(h=pl.col("event_id").hash(7))
        hashes = events["h"].to_numpy()
        first = events.select(pl.col("h").is_first_distinct()).to_series().to_numpy()
        fresh = first & ~self.memory.seen(hashes)
        self.duplicates += int((~fresh).sum())
        events = events.filter(pl.Series(fresh))
        self.memory.remember(hashes[fresh], events["ts"].to_numpy())
        self.stages.mark("dedup")
        pairs = events.select("provider", "model").unique().rows()
        table = pl.DataFrame(price_rows(self.prices, pairs))
        events = events.join(table, on=["provider", "model"], how="left")
        self.stages.mark("price join")
        unknown = events.filter(~pl.col("known") & pl.col("cost_usd").is_null())
        if unknown.height:
            count_unknown(self.prices, unknown.group_by("provider", "model").len().rows())
        tokens = (
            pl.col("input_tokens") * pl.col("p_in")
            + pl.col("output_tokens") * pl.col("p_out")
            + pl.col("cached_input_tokens") * pl.col("p_cached")
            + pl.col("cache_write_tokens") * pl.col("p_write")
        ) / float(TOKENS_PER_PRICE_UNIT)
        cost = pl.coalesce(pl.col("cost_usd"), tokens)
        failed, attempt = pl.col("failed"), pl.col("attempt")
        bucket = pl.Series(exact_bucket(events["ts"].to_numpy(), self.width))
        sums = (
            events.with_columns(bucket=bucket, cost=cost)
            .group_by(KEYS)
            .agg(
                pl.col("cost").sum(),
                pl.len().cast(pl.Float64).alias("requests"),
                failed.sum().alias("failures"),
                (attempt > 1).sum().alias("retries"),
                pl.col("rate_limited").sum(),
                pl.col("cost").filter(failed).sum().alias("wasted"),
                (failed & (attempt == 1)).sum().alias("first_failures"),
                (attempt == 2).sum().alias("retried"),
                pl.col("input_tokens").sum(),
                pl.col("output_tokens").sum(),
                pl.col("cached_input_tokens").sum().alias("cached_tokens"),
            )
            .with_columns(pl.col(SUMS).cast(pl.Float64))
        )
        self.stages.mark("sum")
        return sums


def _polars_lines(data: bytes, offsets: np.ndarray) -> Any:
    """The chunk's raw lines as one String column ``raw`` (newlines dropped)."""
    import polars as pl

    n = len(offsets) - 1
    try:
        # \x01 never occurs unescaped in JSON: one field per line, read without quoting.
        lines = pl.read_csv(io.BytesIO(data), has_header=False, separator="\x01",
                            quote_char=None, schema={"raw": pl.String})  # fmt: skip
        if lines.height == n:
            return lines.with_columns(pl.col("raw").fill_null(""))
    except Exception:  # noqa: BLE001, S110 - any refusal: split in Python (rare)
        pass
    text = [data[offsets[i] : offsets[i + 1]].decode(errors="replace") for i in range(n)]
    return pl.DataFrame({"raw": text})


def _polars_counts(plan: RawPlan) -> list[Any]:
    """The raw line's literal counts (the comment at ``KEY``), its size and ``odd``."""
    import polars as pl

    raw = pl.col("raw")

    def count(literal: str) -> Any:
        return raw.str.count_matches(literal, literal=True).cast(pl.Int64)

    strings = count(STRING) + count(STRING_SPACED) if plan.spaced else count(STRING)
    cost_nulls = (pl.sum_horizontal([count(c) for c in plan.cost_null]) if plan.cost_null
                  else pl.lit(0, pl.Int64))  # fmt: skip
    odd = raw.str.contains_any(list(plan.odd)) if plan.odd else pl.lit(False)
    return [count(KEY).alias("_keys"), strings.alias("_strings"),
            cost_nulls.alias("_cost_nulls"), odd.alias("_odd"),
            raw.str.len_bytes().alias("_size")]  # fmt: skip


def _polars_counts_agree(kind: str) -> Any:
    """True where the keys counted in the raw line are the schema's present fields plus
    string-valued tags (see the comment at ``KEY``)."""
    import polars as pl

    schema = _polars_schema(kind)
    present = pl.sum_horizontal([pl.col(k).is_not_null().cast(pl.Int64) for k in schema])
    present += pl.when(pl.col("cost_usd").is_null()).then(pl.col("_cost_nulls")).otherwise(0)
    text_fields = [k for k, t in schema.items() if t == pl.String and k not in ("ts", "tags")]
    held = pl.sum_horizontal([pl.col(k).is_not_null().cast(pl.Int64) for k in text_fields])
    held += pl.col("ts").str.contains(RFC3339).fill_null(False).cast(pl.Int64)
    extra = pl.col("_keys") - present
    tags = pl.col("tags")
    is_object = tags.str.starts_with("{").fill_null(False)
    # polars writes an object read as text back as JSON with ": " after each key: its
    # entries, which must be all the extra keys (polars reads a string in a number field
    # as null, and keeps the first of a repeated key: either leaves an extra key).
    entries = pl.when(is_object).then(tags.str.count_matches('": ', literal=True)).otherwise(0)
    return (
        (extra == entries)
        & (pl.col("_strings") - held == entries)
        & (entries <= MAX_TAGS)
        & (tags.is_null() | (is_object & ~tags.str.contains(LONG_TAG)))
        & ~pl.col("_odd")
    )


def _polars_ts() -> Any:
    """Event time, epoch s, from the ts column (text of a JSON string or number)."""
    import polars as pl

    ts = pl.col("ts")
    as_date = (
        ts.str.replace("Z$", "+00:00")
        .str.to_datetime("%Y-%m-%dT%H:%M:%S%.f%:z", strict=False, time_unit="us")
        .dt.epoch("us")
        .cast(pl.Float64)
        / 1e6
    )
    number = ts.cast(pl.Float64, strict=False)
    number = pl.when(number > EPOCH_MS_THRESHOLD).then(number / 1000.0).otherwise(number)
    # polars reads a JSON number into a String column as its text: which one it was is
    # told by the raw line, through _polars_valid's match of the shapes.
    return (
        pl.when(ts.str.contains(RFC3339))
        .then(as_date)
        .otherwise(pl.when(ts.str.contains(JSON_NUMBER)).then(number))
    )


def _polars_valid(kind: str, limit: int) -> Any:
    """True where the decoded fields are within the contract's limits and the raw line's
    counts agree with them."""
    import polars as pl

    checks = [_polars_counts_agree(kind), pl.col("_size") < limit]
    checks += [pl.col(k).str.len_chars().is_between(lo, hi) for k, (lo, hi) in REQUIRED.items()]
    checks += [pl.col(k).is_null() | (pl.col(k).str.len_chars() <= hi)
               for k, hi in OPTIONAL.items() if k in _polars_schema(kind)]  # fmt: skip
    checks += [pl.col(k).is_null() | pl.col(k).is_between(0, MAX_TOKENS_PER_EVENT)
               for k in TOKENS[kind]]  # fmt: skip
    cost, latency = pl.col("cost_usd"), pl.col("latency_ms")
    checks += [
        cost.is_null() | (cost.is_finite() & cost.is_between(0, 1e6)),
        latency.is_null() | (latency.is_finite() & (latency >= 0)),
        pl.col("attempt").is_null() | pl.col("attempt").is_between(1, 1000),
        pl.col("_ts").is_between(TS_MIN, TS_MAX, closed="left").fill_null(False),
    ]
    if kind == USAGE:
        checks.append(pl.col("status").is_null() | pl.col("status").is_in(STATUSES))
    else:
        retry = pl.col("retry_after_s")
        checks += [
            pl.col("error_type").is_in(ERROR_TYPES).fill_null(False),
            pl.col("http_status").is_null() | pl.col("http_status").is_between(100, 599),
            retry.is_null() | (retry.is_finite() & (retry >= 0)),
        ]
    return pl.all_horizontal(checks).fill_null(False)


def _polars_events(kind: str, decoded: Any) -> Any:
    import polars as pl

    zero = pl.lit(0, pl.Int64)
    tokens = {k: pl.col(k).fill_null(0) if k in TOKENS[kind] else zero for k in TOKENS[USAGE]}
    if kind == USAGE:
        status = pl.col("status").fill_null("ok")
        failed = ~status.is_in(["ok", "cancelled"])
        limited = status == "rate_limited"
    else:
        failed = pl.lit(True)
        limited = pl.col("error_type") == "rate_limited"
    return decoded.select(
        "line", "event_id", pl.col("_ts").alias("ts"), "customer_id", "endpoint", "provider",
        "model", *(v.alias(k) for k, v in tokens.items()), "cost_usd",
        pl.col("attempt").fill_null(1), failed.alias("failed"), limited.alias("rate_limited"),
    )  # fmt: skip


# ---------------------------------------------------------------------------------------
# pyarrow

TS_VALUE = r'"ts"\s*:\s*(?:"(?P<s>[^"\\]*)"|(?P<n>-?[0-9][0-9.eE+-]*))'


def _arrow_schema(kind: str) -> Any:
    """The reader's schema; no ts, which is a string or a number (the reader takes one
    type per column): it is read from the raw line."""
    import pyarrow as pa

    fields = [(name, pa.string()) for name in REQUIRED]
    fields += [(name, pa.int64()) for name in TOKENS[kind]]
    fields += [("cost_usd", pa.float64()), ("attempt", pa.int64()),
               ("latency_ms", pa.float64()), ("request_id", pa.string()),
               ("tags", pa.struct([]))]  # an object; its entries are ignored  # fmt: skip
    if kind == USAGE:
        fields.append(("status", pa.string()))
    else:
        fields += [("error_type", pa.string()), ("http_status", pa.int64()),
                   ("will_retry", pa.bool_()), ("retry_after_s", pa.float64()),
                   ("message", pa.string())]  # fmt: skip
    return pa.schema(fields)


class StringMemory(HashMemory):
    """:class:`HashMemory` holding the ids themselves: pyarrow has no hash kernel."""

    def seen(self, ids: Any) -> np.ndarray:  # type: ignore[override]
        import pyarrow.compute as pc

        out = np.zeros(len(ids), dtype=bool)
        for blocks in self.blocks.values():
            for block in blocks:
                out |= pc.is_in(ids, value_set=block).to_numpy(zero_copy_only=False)
        return out

    def remember(self, ids: Any, ts: np.ndarray) -> None:  # type: ignore[override]
        import pyarrow as pa

        if not len(ids):
            return
        generations = (ts // self.horizon).astype(np.int64)
        for g in np.unique(generations).tolist():
            self.blocks.setdefault(g, []).append(ids.filter(pa.array(generations == g)))
        newest = max(self.blocks)
        for g in [g for g in self.blocks if g < newest - 1]:
            del self.blocks[g]


class ArrowEngine(ChunkEngine):
    """Columnar ingest with pyarrow (``pyarrow.json.read_json`` per chunk, compute after)."""

    name = "pyarrow"
    memory_type = StringMemory

    def _schema(self, kind: str) -> Any:
        return _arrow_schema(kind)

    def _height(self, events: Any) -> int:
        return int(events.num_rows)

    def _merge(self, partials: list[Any]) -> Any:
        import pyarrow as pa

        total = pa.concat_tables(partials).group_by(KEYS, use_threads=False)
        return total.aggregate([(s, "sum") for s in SUMS]).rename_columns(
            {f"{s}_sum": s for s in SUMS}
        )

    def _events(self, kind: str, schema: Any, data: bytes) -> Any:
        import pyarrow as pa
        import pyarrow.compute as pc
        import pyarrow.json as pj

        offsets = line_offsets(data)
        n = len(offsets) - 1
        self.lines += n
        options = pj.ParseOptions(explicit_schema=schema, unexpected_field_behavior="ignore")
        pieces, refused = decode_ranges(
            lambda buf: pj.read_json(pa.py_buffer(buf), parse_options=options),
            lambda t: t.num_rows, data, offsets,
        )  # fmt: skip
        decoded = (pa.concat_tables([t for _, t in pieces]) if pieces
                   else schema.empty_table())  # fmt: skip
        self.stages.mark("decode")
        line = np.concatenate([np.arange(a, a + t.num_rows) for a, t in pieces] or [NO_LINES])
        line = line.astype(np.int64)
        # The raw lines as a string array over the chunk's bytes, no copy (newlines kept).
        raw = pa.StringArray.from_buffers(n, pa.py_buffer(offsets.astype(np.int32)),
                                          pa.py_buffer(data))  # fmt: skip
        if len(line) != n:
            raw = raw.take(pa.array(line))
        ts, ts_text, ts_present = _arrow_ts(raw, data.count(b'"ts":') == n)
        self.stages.mark("validate")
        counts = _arrow_counts_agree(decoded, raw, ts_text, ts_present, RawPlan.of(data))
        self.stages.mark("raw counts")
        checks = [counts, pc.less(pc.binary_length(raw), self.limit + 1)]  # + its newline
        good = pc.and_kleene(pc.and_kleene(*checks), _arrow_valid(kind, decoded, ts))
        good = good.fill_null(False).to_numpy(zero_copy_only=False)
        bad_utf8 = bad_utf8_lines(data, offsets)
        if bad_utf8:
            good &= ~np.isin(line, bad_utf8)
        suspects = np.sort(np.concatenate([line[~good], refused]).astype(np.int64))
        self.suspects += len(suspects)
        events = _arrow_events(kind, decoded, ts, line).filter(pa.array(good))
        self.stages.mark("validate")
        accepted = self.per_line.judge(kind, data, offsets, suspects)
        if accepted:
            extra = pa.Table.from_pylist(
                [dict(zip(EVENT, row, strict=True)) for row in accepted], schema=events.schema
            )
            events = pa.concat_tables([events, extra]).sort_by("line")
        self.stages.mark("per-line path")
        return events

    def _sums(self, events: Any) -> Any:
        import pyarrow as pa
        import pyarrow.compute as pc

        ids = events["event_id"].combine_chunks()
        codes = ids.dictionary_encode().indices.to_numpy()
        fresh = first_in_order(codes) & ~self.memory.seen(ids)
        self.duplicates += int((~fresh).sum())
        keep = pa.array(fresh)
        events = events.filter(keep)
        ts = events["ts"].to_numpy()
        self.memory.remember(ids.filter(keep), ts)
        self.stages.mark("dedup")
        pairs = (
            events.select(["provider", "model"])
            .group_by(["provider", "model"])
            .aggregate([([], "count_all")])
        )
        pair_rows = list(zip(pairs["provider"].to_pylist(), pairs["model"].to_pylist(),
                             strict=True))  # fmt: skip
        table = pa.table(price_rows(self.prices, pair_rows))
        events = events.join(table, keys=["provider", "model"], join_type="left outer")
        self.stages.mark("price join")
        unknown = events.filter(pc.and_(pc.invert(events["known"]), pc.is_null(events["cost_usd"])))
        if unknown.num_rows:
            counted = unknown.group_by(["provider", "model"]).aggregate([([], "count_all")])
            count_unknown(self.prices, list(zip(*counted.to_pydict().values(), strict=True)))
        col = events.column
        tokens = pc.add(pc.add(pc.add(
            pc.multiply(col("input_tokens"), col("p_in")),
            pc.multiply(col("output_tokens"), col("p_out"))),
            pc.multiply(col("cached_input_tokens"), col("p_cached"))),
            pc.multiply(col("cache_write_tokens"), col("p_write")))  # fmt: skip
        cost = pc.coalesce(col("cost_usd"), pc.divide(tokens, float(TOKENS_PER_PRICE_UNIT)))
        failed, attempt = col("failed"), col("attempt")
        count = pa.float64()
        columns = {
            "bucket": pa.array(exact_bucket(events["ts"].to_numpy(), self.width)),
            "customer_id": col("customer_id"), "endpoint": col("endpoint"),
            "provider": col("provider"), "model": col("model"),
            "cost": cost,
            "requests": pa.array(np.ones(events.num_rows)),
            "failures": failed.cast(count),
            "retries": pc.greater(attempt, 1).cast(count),
            "rate_limited": col("rate_limited").cast(count),
            "wasted": pc.if_else(failed, cost, 0.0),
            "first_failures": pc.and_(failed, pc.equal(attempt, 1)).cast(count),
            "retried": pc.equal(attempt, 2).cast(count),
            "input_tokens": col("input_tokens").cast(count),
            "output_tokens": col("output_tokens").cast(count),
            "cached_tokens": col("cached_input_tokens").cast(count),
        }  # fmt: skip
        grouped = pa.table(columns).group_by(KEYS, use_threads=False)
        sums = grouped.aggregate([(s, "sum") for s in SUMS]).rename_columns(
            {f"{s}_sum": s for s in SUMS}
        )
        self.stages.mark("sum")
        return sums


def _arrow_ts(raw: Any, once: bool) -> tuple[Any, Any, Any]:
    """Event time, epoch s, from the raw lines' one ``"ts":`` (null: ask the model), the
    text of a string ts and whether there is one ts. ``once``: the chunk holds as many
    ``"ts":`` as lines."""
    import pyarrow as pa
    import pyarrow.compute as pc

    parts = pc.extract_regex(raw, TS_VALUE)
    text, number = parts.field("s"), parts.field("n")
    if not once or parts.null_count:
        # Lines without a ts, or with two (one nested): those go to the model.
        parts = pc.if_else(pc.equal(pc.count_substring(raw, '"ts":'), 1), parts, None)
        text, number = parts.field("s"), parts.field("n")
    is_date = pc.match_substring_regex(text, RFC3339).fill_null(False)
    is_number = pc.match_substring_regex(number, JSON_NUMBER).fill_null(False)
    stamps = pc.if_else(is_date, text, "2000-01-01T00:00:00Z")
    try:
        micros = pc.cast(stamps, pa.timestamp("us", tz="UTC")).cast(pa.int64())
    except pa.ArrowInvalid:  # an impossible date (Feb 30): those lines go to the model
        micros = pa.array([_micros(s) for s in stamps.to_pylist()], pa.int64())
    as_date = pc.divide(micros.cast(pa.float64()), 1e6)
    value = pc.cast(pc.if_else(is_number, number, "0"), pa.float64())
    value = pc.if_else(pc.greater(value, EPOCH_MS_THRESHOLD), pc.divide(value, 1000.0), value)
    ts = pc.if_else(is_date, as_date, pc.if_else(is_number, value, None))
    return ts, text, pc.is_valid(parts)


def _micros(stamp: str) -> int | None:
    from datetime import datetime

    try:
        moment = datetime.fromisoformat(stamp)
    except ValueError:
        return None
    return round(moment.timestamp() * 1_000_000)


def _arrow_counts_agree(t: Any, raw: Any, ts_text: Any, ts_present: Any, plan: RawPlan) -> Any:
    """True where the keys counted in the raw line are the schema's present fields (with
    ts) plus string-valued tags (see the comment at ``KEY``)."""
    import pyarrow.compute as pc

    def count(literal: str) -> Any:
        return pc.count_substring(raw, literal)

    def total(values: list[Any]) -> Any:
        out = values[0]
        for value in values[1:]:
            out = pc.add(out, value)
        return out

    def present(name: str) -> Any:
        return pc.is_valid(t[name]).cast("int32")

    keys = count(KEY)
    strings = pc.add(count(STRING), count(STRING_SPACED)) if plan.spaced else count(STRING)
    is_date = pc.match_substring_regex(ts_text, RFC3339).fill_null(False)
    fields = total([present(k) for k in t.column_names] + [ts_present.cast("int32")])
    if plan.cost_null:
        nulls = total([count(c) for c in plan.cost_null])
        fields = pc.add(fields, pc.if_else(pc.is_null(t["cost_usd"]), nulls, 0))
    texts = [k for k, f in zip(t.column_names, t.schema, strict=True) if f.type == "string"]
    held = pc.add(total([present(k) for k in texts]), is_date.cast("int32"))
    extra = pc.subtract(keys, fields)
    checks = [
        pc.equal(extra, pc.subtract(strings, held)),
        pc.less_equal(extra, MAX_TAGS),
        pc.or_(pc.equal(extra, 0), pc.is_valid(t["tags"])),
    ]
    if plan.odd:
        checks += [pc.invert(pc.match_substring(raw, lit)) for lit in plan.odd]
    if plan.tags:
        checks.append(pc.invert(pc.match_substring_regex(raw, LONG_TAG)))
    out = checks[0]
    for check in checks[1:]:
        out = pc.and_kleene(out, check)
    return out


def _arrow_valid(kind: str, t: Any, ts: Any) -> Any:
    import pyarrow.compute as pc

    def between(values: Any, lo: float, hi: float) -> Any:
        return pc.and_(pc.greater_equal(values, lo), pc.less_equal(values, hi))

    def absent_or(name: str, check: Any) -> Any:
        return pc.or_kleene(pc.is_null(t[name]), check)

    checks = [between(pc.utf8_length(t[k]), lo, hi) for k, (lo, hi) in REQUIRED.items()]
    checks += [absent_or(k, pc.less_equal(pc.utf8_length(t[k]), hi))
               for k, hi in OPTIONAL.items() if k in t.column_names]  # fmt: skip
    checks += [absent_or(k, between(t[k], 0, MAX_TOKENS_PER_EVENT)) for k in TOKENS[kind]]
    finite = pc.is_finite
    checks += [
        absent_or("cost_usd", pc.and_(finite(t["cost_usd"]), between(t["cost_usd"], 0, 1e6))),
        absent_or("latency_ms", pc.and_(finite(t["latency_ms"]),
                                        pc.greater_equal(t["latency_ms"], 0))),
        absent_or("attempt", between(t["attempt"], 1, 1000)),
        pc.and_(pc.greater_equal(ts, TS_MIN), pc.less(ts, TS_MAX)),
    ]  # fmt: skip
    if kind == USAGE:
        checks.append(absent_or("status", pc.is_in(t["status"], value_set=_values(STATUSES))))
    else:
        retry = t["retry_after_s"]
        checks += [
            pc.is_in(t["error_type"], value_set=_values(ERROR_TYPES)),
            absent_or("http_status", between(t["http_status"], 100, 599)),
            absent_or("retry_after_s", pc.and_(finite(retry), pc.greater_equal(retry, 0))),
        ]
    out = checks[0]
    for check in checks[1:]:
        out = pc.and_kleene(out, check)
    return out


def _values(names: list[str]) -> Any:
    import pyarrow as pa

    return pa.array(names)


def _arrow_events(kind: str, t: Any, ts: Any, line: np.ndarray) -> Any:
    import pyarrow as pa
    import pyarrow.compute as pc

    zero = pa.array(np.zeros(t.num_rows, dtype=np.int64))

    def tokens(name: str) -> Any:
        return pc.fill_null(t[name], 0) if name in TOKENS[kind] else zero

    if kind == USAGE:
        status = pc.fill_null(t["status"], "ok")
        failed = pc.invert(pc.is_in(status, value_set=_values(["ok", "cancelled"])))
        limited = pc.equal(status, "rate_limited")
    else:
        failed = pa.array(np.ones(t.num_rows, dtype=bool))
        limited = pc.equal(t["error_type"], "rate_limited")
    columns = [pa.array(line), t["event_id"], ts, t["customer_id"], t["endpoint"],
               t["provider"], t["model"], *(tokens(k) for k in TOKENS[USAGE]), t["cost_usd"],
               pc.fill_null(t["attempt"], 1), failed, limited]  # fmt: skip
    return pa.table(columns, names=EVENT)
