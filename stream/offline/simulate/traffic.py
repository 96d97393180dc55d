"""Traffic: the events of each simulated minute (Poisson arrivals, lognormal tokens, prompt
caching, failed attempts and their retries, producer duplicates, mixed timestamp formats),
as incidents change them, in event-time order."""

from __future__ import annotations

import heapq
import math
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from operator import itemgetter
from typing import Any, NamedTuple

import numpy as np

from stream.core.pricing import PriceTable
from stream.offline.simulate.catalog import Burst, plan_bursts, plan_catalog
from stream.offline.simulate.incidents import (
    BACKGROUND,
    OUTAGE,
    RETRY_LOOP,
    RUNAWAY_MULTIPLIER,
    FailureMode,
    plan_incidents,
)
from stream.offline.simulate.world import (
    CACHE_READ_SHARE,
    CACHE_WRITE_SHARE,
    DAY_MS,
    DEFAULT_PRICES,
    MINUTE_MS,
    MODELS,
    SimConfig,
    build_world,
    diurnal,
    weekly,
)

USAGE = "usage"
ERRORS = "errors"
DUPLICATE_SHARE = 0.002
REPORTED_COST_SHARE = 0.02  # usage events whose producer reports cost_usd (a gateway)
EPOCH_S_SHARE, EPOCH_MS_SHARE, OFFSET_SHARE = 0.05, 0.05, 0.25  # else RFC 3339 with 'Z'
MAX_INPUT_TOKENS, MAX_OUTPUT_TOKENS = 100_000, 16_000

FMT_EPOCH_S, FMT_EPOCH_MS, FMT_OFFSET, FMT_Z = range(4)
FORMAT_EDGES = np.cumsum([EPOCH_S_SHARE, EPOCH_MS_SHARE, OFFSET_SHARE])
HTTP_STATUS = {"rate_limited": 429, "timeout": 504, "server_error": 500, "overloaded": 503}
MESSAGES = {
    "rate_limited": "Rate limit reached for requests per minute. Please retry after a moment.",
    "timeout": "Request timed out.",
    "server_error": "The server had an error while processing your request.",
    "overloaded": "Overloaded",
}
Emitted = tuple[str, dict[str, Any], bool]  # kind, event, is a producer duplicate
Timed = tuple[int, str, dict[str, Any], bool]  # emit time (epoch ms) first


class Call(NamedTuple):
    """One logical request: what every attempt of it sends."""

    endpoint: int
    model: int
    request_id: str
    input_tokens: int
    output_tokens: int
    cached_input_tokens: int
    cache_write_tokens: int
    latency_ms: float  # of a successful attempt


class Shape(NamedTuple):
    """What catalog incidents change per endpoint besides rate, model and failures."""

    log_tokens: Any  # (2, endpoints): log of the input and output token multipliers
    cache_lost: Any  # (endpoints,): share of cache reads that become plain input


class Traffic:
    """Draws events minute by minute and keeps the books (spend per customer, duplicates).

    Each minute has its own generator seeded by (seed, minute): an incident changes only
    the minutes it covers, and the rest of the run stays the same as without it.
    """

    def __init__(self, cfg: SimConfig, prices: PriceTable | None = None) -> None:
        if cfg.start.tzinfo is None:
            raise ValueError(f"SimConfig.start must be timezone-aware (UTC), got {cfg.start}")
        self.cfg = cfg
        self.prices = prices or PriceTable.load(cfg.prices_path or DEFAULT_PRICES)
        self.world = world = build_world(cfg, self.prices)
        self.start_ms = round(cfg.start.timestamp() * 1000)
        self.minutes = max(1, round(cfg.days * 1440))
        self.end_ms = self.start_ms + self.minutes * MINUTE_MS
        if cfg.incident_kinds:
            self.incidents = plan_catalog(world, self.start_ms, self.end_ms, cfg)
        else:
            self.incidents = (
                plan_incidents(world, self.start_ms, self.end_ms, cfg.seed) if cfg.incidents else []
            )
        self.bursts: list[Burst] = (
            plan_bursts(world, self.start_ms, self.end_ms, cfg, self.incidents)
            if cfg.bursts > 0
            else []
        )
        # Catalog incidents and bursts take the general path; the plain one stays as it was.
        self._shaped = bool(self.bursts) or any(inc.effect is not None for inc in self.incidents)
        self.spend_usd = np.zeros(len(world.customers))  # as ingest prices it, duplicates once
        # The same per simulated day (catalog runs price customers from the first day).
        self.spend_day_usd = np.zeros((len(world.customers), math.ceil(self.minutes / 1440)))
        self._day = 0
        self.duplicates = 0
        eps = world.endpoints
        self._customer = np.array([ep.customer for ep in eps])
        self._rate = np.array([ep.rate_per_min for ep in eps])
        self._model = np.array([ep.model for ep in eps])
        self._shift = np.array([world.customers[ep.customer].peak_shift_h for ep in eps])
        self._mu = np.log([[ep.input_median, ep.output_median] for ep in eps]).T
        self._sigma = np.array([[ep.input_sigma, ep.output_sigma] for ep in eps]).T
        self._prefix = np.array([ep.cache_prefix for ep in eps])
        self._first_token = np.log([spec.first_token_ms for spec in MODELS])
        self._ms_per_token = np.array([spec.ms_per_token for spec in MODELS])
        self._labels = [
            (
                world.customers[ep.customer].customer_id,
                ep.name,
                world.customers[ep.customer].tags,
                ep.cache_prefix > 0,
            )
            for ep in eps
        ]
        self._background = [BACKGROUND] * len(eps)
        self._ts_prefix: dict[int, str] = {}
        self._later: list[tuple[int, int, str, dict[str, Any], bool]] = []  # a heap
        self._seq = 0

    def emissions(self) -> Iterator[Emitted]:
        """Every event in event-time order; a duplicate follows its original a moment later."""
        for m in range(self.minutes):
            batch: Any = self._minute(m)
            due = self._due(self.start_ms + (m + 1) * MINUTE_MS)
            if due:
                batch = heapq.merge(batch, due, key=itemgetter(0))
            for _, kind, event, copy in batch:
                yield kind, event, copy
        for _, kind, event, copy in self._due(math.inf):
            yield kind, event, copy

    def _due(self, until_ms: float) -> list[Timed]:
        out = []
        while self._later and self._later[0][0] < until_ms:
            ms, _, kind, event, copy = heapq.heappop(self._later)
            out.append((ms, kind, event, copy))
        return out

    def _push(self, ms: int, kind: str, event: dict[str, Any], copy: bool = False) -> None:
        self._seq += 1
        heapq.heappush(self._later, (ms, self._seq, kind, event, copy))

    def _effects(self, t_ms: int) -> tuple[Any, Any, list[FailureMode]]:
        """(rate multiplier, model, failure mode) per endpoint for the minute at ``t_ms``."""
        active = [
            inc
            for inc in self.incidents
            if inc.start_ms <= t_ms < inc.end_ms and inc.kind != "plan_overgrowth"
        ]
        if not active:
            return 1.0, self._model, self._background
        mult, model, modes = np.ones(len(self._model)), self._model.copy(), list(self._background)
        # The model switch goes first: an outage fails whatever model an endpoint now calls.
        for inc in sorted(active, key=lambda inc: inc.kind != "model_switch"):
            e = inc.endpoint if inc.endpoint is not None else -1
            if inc.kind == "runaway_loop":
                mult[e] = RUNAWAY_MULTIPLIER
            elif inc.kind == "model_switch":
                model[e] = inc.model
            elif inc.kind == "retry_loop":
                modes[e] = replace(RETRY_LOOP, until_ms=inc.end_ms)
            elif inc.kind == "provider_outage":
                for failing in np.flatnonzero(model == inc.model).tolist():
                    modes[failing] = replace(OUTAGE, until_ms=inc.end_ms)
        return mult, model, modes

    def _shaped_effects(self, t_ms: int) -> tuple[Any, Any, list[FailureMode], Shape | None]:
        """:meth:`_effects` for catalog incidents and bursts, and their :class:`Shape`
        (None when no token or cache change is active at ``t_ms``)."""
        n = len(self._model)
        mult, model, modes = np.ones(n), self._model.copy(), list(self._background)
        log_tokens, lost = np.zeros((2, n)), np.zeros(n)
        active = [inc for inc in self.incidents if inc.start_ms <= t_ms < inc.end_ms]
        # Switches go first: an outage fails whatever model an endpoint now calls.
        for inc in sorted(active, key=lambda inc: inc.effect is None or inc.effect.model is None):
            effect = inc.effect
            if effect is None:
                continue
            mine = list(effect.endpoints)
            reached = effect.level(t_ms, inc.start_ms)
            if effect.model is not None:
                model[mine] = effect.model
            mult[mine] *= 1 + (effect.rate - 1) * reached
            log_tokens[0, mine] += math.log(effect.input)
            log_tokens[1, mine] += math.log(effect.output)
            lost[mine] = np.maximum(lost[mine], effect.cache_lost)
            if effect.failure is not None:
                failing = (
                    mine
                    if effect.failing_model is None
                    else np.flatnonzero(model == effect.failing_model).tolist()
                )
                for e in failing:
                    modes[e] = replace(effect.failure, until_ms=inc.end_ms)
        for burst in self.bursts:
            if burst.start_ms <= t_ms < burst.end_ms:
                mult[burst.endpoint] *= burst.multiplier
        changed = log_tokens.any() or lost.any()
        return mult, model, modes, Shape(log_tokens, lost) if changed else None

    def _minute(self, m: int) -> list[Timed]:
        """The first attempts of minute ``m`` in time order, with failed ones' retries queued."""
        rng = np.random.default_rng([self.cfg.seed, 1, m])
        t = self.start_ms + m * MINUTE_MS
        self._day = (t - self.start_ms) // DAY_MS
        shape: Shape | None = None
        if self._shaped:
            mult, model_now, modes, shape = self._shaped_effects(t)
        else:
            mult, model_now, modes = self._effects(t)
        hour = ((t + MINUTE_MS / 2) / 3_600_000) % 24
        level = self.world.day_level[self._customer, (t - self.start_ms) // DAY_MS]
        lam = self._rate * diurnal(hour - self._shift) * weekly(t / 1000) * level * mult
        counts = rng.poisson(lam)
        n = int(counts.sum())
        if n == 0:
            return []
        offsets = rng.integers(0, MINUTE_MS, n)
        order = np.argsort(offsets, kind="stable")
        e = np.repeat(np.arange(len(lam)), counts)[order]
        z = rng.standard_normal((3, n))
        u = rng.random((5, n))
        mu = self._mu[:, e] if shape is None else self._mu[:, e] + shape.log_tokens[:, e]
        tokens = np.clip(
            np.rint(np.exp(mu + self._sigma[:, e] * z[:2])),
            1,
            [[MAX_INPUT_TOKENS], [MAX_OUTPUT_TOKENS]],
        ).astype(np.int64)
        prefix = self._prefix[e]
        cached = np.where(u[0] < CACHE_READ_SHARE, prefix, 0)
        written = np.where(
            (u[0] >= CACHE_READ_SHARE) & (u[0] < CACHE_READ_SHARE + CACHE_WRITE_SHARE), prefix, 0
        )
        if shape is not None:  # lost cache reads: the prefix is sent as plain input
            lost = (cached > 0) & (u[0] >= CACHE_READ_SHARE * (1 - shape.cache_lost[e]))
            tokens[0] += np.where(lost, prefix, 0)
            cached = np.where(lost, 0, cached)
        model = model_now[e]
        latency = np.round(
            np.exp(self._first_token[model] + 0.35 * z[2]) + tokens[1] * self._ms_per_token[model],
            1,
        )
        fail_share = np.array([mode.fail_share for mode in modes])
        failed = u[1] < fail_share[e]
        self._book(
            e[~failed], model[~failed], tokens[:, ~failed], cached[~failed], written[~failed]
        )
        request_ids = rng.integers(0, 2**63, n, dtype=np.int64)
        formats = np.searchsorted(FORMAT_EDGES, u[2])
        columns = zip(
            e.tolist(),
            (t + offsets[order]).tolist(),
            model.tolist(),
            tokens[0].tolist(),
            tokens[1].tolist(),
            cached.tolist(),
            written.tolist(),
            latency.tolist(),
            failed.tolist(),
            formats.tolist(),
            (u[3] < REPORTED_COST_SHARE).tolist(),
            (u[4] < DUPLICATE_SHARE).tolist(),
            request_ids.tolist(),
            strict=True,
        )
        return self._events(rng, m, columns, modes)

    def _events(
        self, rng: np.random.Generator, m: int, columns: Any, modes: list[FailureMode]
    ) -> list[Timed]:
        out: list[Timed] = []
        prefix = f"ev_{self.cfg.seed}_{m}_"
        for i, (e, ms, model, it, ot, cr, cw, lat, failed, fmt, reported, dup, rid) in enumerate(
            columns
        ):
            call = Call(e, model, f"req_{rid:016x}", it, ot, cr, cw, lat)
            if failed:
                chain = self._failure(rng, f"{prefix}{i}", call, ms, fmt, modes[e])
                out.append(chain[0])
                for later in chain[1:]:
                    self._push(*later)
                continue
            event = self._usage(f"{prefix}{i}", ms, fmt, call, 1, reported)
            out.append((ms, USAGE, event, False))
            if dup:
                self._duplicate(rng, ms, event)
        return out

    def _duplicate(self, rng: np.random.Generator, ms: int, event: dict[str, Any]) -> None:
        """Re-send ``event`` (the same object: an identical body) 50 ms to 3 s later."""
        self.duplicates += 1
        self._push(ms + int(rng.integers(50, 3000)), USAGE, event, True)

    def _book(self, e: Any, model: Any, tokens: Any, cached: Any, written: Any) -> None:
        """Add successful first attempts' price-table cost to their customers' spend, USD."""
        unit = self.world.unit_cost[model]
        cost = (
            tokens[0] * unit[:, 0]
            + tokens[1] * unit[:, 1]
            + cached * unit[:, 2]
            + written * unit[:, 3]
        )
        booked = np.bincount(self._customer[e], cost, minlength=len(self.spend_usd))
        self.spend_usd += booked
        self.spend_day_usd[:, self._day] += booked

    def _attempt(
        self, event_id: str, ms: int, fmt: int, call: Call, attempt: int
    ) -> dict[str, Any]:
        """The fields every event of one attempt has, usage or error, in contract order."""
        customer_id, endpoint, _, _ = self._labels[call.endpoint]
        spec = MODELS[call.model]
        return {
            "event_id": event_id,
            "ts": self._ts(ms, fmt),
            "customer_id": customer_id,
            "endpoint": endpoint,
            "provider": spec.provider,
            "model": spec.model,
            "request_id": call.request_id,
            "attempt": attempt,
        }

    def _usage(
        self, event_id: str, ms: int, fmt: int, call: Call, attempt: int, reported: bool
    ) -> dict[str, Any]:
        _, _, tags, caches = self._labels[call.endpoint]
        spec = MODELS[call.model]
        event = self._attempt(event_id, ms, fmt, call, attempt)
        event.update(
            {
                "status": "ok",
                "input_tokens": call.input_tokens,
                "output_tokens": call.output_tokens,
            }
        )
        if caches:
            event["cached_input_tokens"] = call.cached_input_tokens
            event["cache_write_tokens"] = call.cache_write_tokens
        event["latency_ms"] = call.latency_ms
        if reported:  # as a gateway bills it: exactly the price-table cost
            event["cost_usd"] = self.prices.cost_usd(
                spec.provider,
                spec.model,
                call.input_tokens,
                call.output_tokens,
                call.cached_input_tokens,
                call.cache_write_tokens,
            )
        if tags:
            event["tags"] = tags
        return event

    def _failure(
        self,
        rng: np.random.Generator,
        event_id: str,
        call: Call,
        ms: int,
        fmt: int,
        mode: FailureMode,
    ) -> list[Timed]:
        """A failed first attempt's error event, then its retries (attempt + 1, the same
        request_id, seconds later) until one succeeds or the client gives up."""
        out: list[Timed] = []
        attempt, error_type = 1, mode.error_type(rng)
        latency = _error_latency_ms(rng, error_type)
        while True:
            will_retry = attempt < mode.max_attempt and rng.random() < mode.retry_share
            event, wait_s = self._error(
                rng, event_id, ms, fmt, call, attempt, error_type, latency, will_retry
            )
            out.append((ms, ERRORS, event, False))
            if not will_retry:
                return out
            attempt += 1
            event_id = f"{event_id.rsplit('.', 1)[0]}.{attempt}"
            fmt = int(np.searchsorted(FORMAT_EDGES, rng.random()))
            started = ms + round(1000 * wait_s)
            if started >= mode.until_ms:
                mode = BACKGROUND  # the incident is over; this retry meets normal service
            if rng.random() >= mode.fail_share:
                ms = started + round(call.latency_ms)
                usage = self._usage(
                    event_id, ms, fmt, call, attempt, rng.random() < REPORTED_COST_SHARE
                )
                self._book_event(call, usage)
                out.append((ms, USAGE, usage, False))
                if rng.random() < DUPLICATE_SHARE:
                    self._duplicate(rng, ms, usage)
                return out
            error_type = mode.error_type(rng)
            latency = _error_latency_ms(rng, error_type)
            ms = started + round(latency)

    def _error(
        self,
        rng: np.random.Generator,
        event_id: str,
        ms: int,
        fmt: int,
        call: Call,
        attempt: int,
        error_type: str,
        latency_ms: float,
        will_retry: bool,
    ) -> tuple[dict[str, Any], float]:
        """(error event ending at ``ms``, seconds the client waits before retrying)."""
        tags = self._labels[call.endpoint][2]
        spec = MODELS[call.model]
        status = (
            529
            if error_type == "overloaded" and spec.provider == "anthropic"
            else HTTP_STATUS[error_type]
        )
        event = self._attempt(event_id, ms, fmt, call, attempt)
        event.update({"error_type": error_type, "http_status": status, "will_retry": will_retry})
        wait_s = 0.5 * 2 ** (attempt - 1) * rng.uniform(1.0, 2.0)  # exponential backoff
        if error_type == "rate_limited":
            event["retry_after_s"] = retry_after = int(rng.choice([1, 2, 3, 5]))
            wait_s = retry_after + rng.uniform(0.0, 0.5)
        elif error_type == "timeout":  # the prompt was read and some output produced
            event["input_tokens"] = call.input_tokens
            event["output_tokens"] = int(call.output_tokens * rng.uniform(0.2, 0.9))
            event["cost_usd"] = (
                self.prices.cost_usd(
                    spec.provider, spec.model, call.input_tokens, event["output_tokens"]
                )
                if rng.random() < 0.6
                else None
            )
        elif error_type == "server_error" and rng.random() < 0.5:
            event["input_tokens"] = call.input_tokens
            event["cost_usd"] = None
        event["latency_ms"] = round(latency_ms, 1)
        event["message"] = MESSAGES[error_type]
        if tags:
            event["tags"] = tags
        self._book_event(call, event)
        return event, wait_s

    def _book_event(self, call: Call, event: dict[str, Any]) -> None:
        """Spend as ingest counts it: the event's cost_usd, else its tokens priced, USD."""
        cost = event.get("cost_usd")
        if cost is None:
            cost = self.prices.cost_usd(
                event["provider"],
                event["model"],
                event.get("input_tokens", 0),
                event.get("output_tokens", 0),
                event.get("cached_input_tokens", 0),
                event.get("cache_write_tokens", 0),
            )
        customer = self.world.endpoints[call.endpoint].customer
        self.spend_usd[customer] += cost
        self.spend_day_usd[customer, self._day] += cost

    def _ts(self, ms: int, fmt: int) -> str | int | float:
        """Event time in one of the contract's forms: RFC 3339 ('Z' or '+00:00', ms), epoch s
        or epoch ms."""
        if fmt == FMT_EPOCH_S:
            return ms / 1000
        if fmt == FMT_EPOCH_MS:
            return ms
        minute, rest = divmod(ms, MINUTE_MS)
        prefix = self._ts_prefix.get(minute)
        if prefix is None:
            prefix = datetime.fromtimestamp(minute * 60, UTC).strftime("%Y-%m-%dT%H:%M:")
            self._ts_prefix[minute] = prefix
        return f"{prefix}{rest // 1000:02d}.{rest % 1000:03d}{'Z' if fmt == FMT_Z else '+00:00'}"


def _error_latency_ms(rng: np.random.Generator, error_type: str) -> float:
    """How long a failing attempt takes, ms: rate limits answer at once, timeouts at 30/60 s."""
    if error_type == "rate_limited":
        return rng.uniform(30, 250)
    if error_type == "timeout":
        return float(rng.choice([30_000, 60_000])) + rng.uniform(0, 500)
    if error_type == "server_error":
        return rng.lognormal(math.log(1200), 0.8)
    return rng.uniform(100, 1500)


def iter_events(cfg: SimConfig) -> Iterator[tuple[str, dict[str, Any]]]:
    """("usage" | "errors", event) in event-time order, producer duplicates included."""
    for kind, event, _ in Traffic(cfg).emissions():
        yield kind, event
