"""retry_storm.update_many judges a bucket's keys together, with update() as the reference.

Keys that decide nothing are written as rows of one matrix; the rest go through update()
on their own. The reference here is update() key by key on a copy of the same fleet: the
decisions must be the same, and every key's state the same bit for bit, after every
bucket, whatever the traffic (steady keys, sparse keys with gaps shorter and longer than
the window, keys that storm, keys under min_requests) and the parameters.
"""

from __future__ import annotations

import random
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from detectors import retry_storm
from detectors.retry_storm import BucketCounts, RetryStormParams, RetryStormState

MINUTE = 60.0
T0 = 1_793_577_600.0  # 2026-11-02T00:00:00Z

BASE = RetryStormParams(warmup_buckets=20, min_requests=8)
VARIANTS = {
    "defaults": RetryStormParams(),
    "short warm-up": BASE,
    "window of one": replace(BASE, window_buckets=1),
    "long window": replace(BASE, window_buckets=12, consecutive=1),
    "low floors": replace(BASE, error_rate=0.02, retry_share=0.03, significance=0.01),
    "high minimum": replace(BASE, min_requests=60),
    "no warm-up": replace(BASE, warmup_buckets=0, baseline_factor=1.0),
}


def traffic(rng: random.Random, keys: int, buckets: int) -> list[list[list[float] | None]]:
    """Per bucket, per key: the bucket's counts (ring field order) or None (no data).

    Each key has its own shape: its volume, how often it has data at all (1 = every
    bucket, down to a bucket in 40), its usual failure and retry rates, and storms (a
    stretch of buckets failing at 30-90 %) at random places."""
    shapes = []
    for _ in range(keys):
        shapes.append(
            (
                rng.choice([1, 3, 12, 60, 400]),  # requests per bucket
                rng.choice([1.0, 1.0, 0.5, 0.2, 0.05, 0.025]),  # share of buckets with data
                rng.choice([0.0, 0.005, 0.02, 0.08]),  # usual failure rate
                {rng.randrange(buckets) for _ in range(rng.choice([0, 0, 1, 3]))},
            )
        )
    out: list[list[list[float] | None]] = []
    storming: dict[int, int] = {}
    for b in range(buckets):
        row: list[list[float] | None] = []
        for k, (volume, presence, rate, storms) in enumerate(shapes):
            if b in storms:
                storming[k] = b + rng.randint(2, 15)
            if rng.random() >= presence and storming.get(k, -1) < b:
                row.append(None)
                continue
            requests = max(1, round(volume * rng.uniform(0.5, 1.5)))
            bad = rng.uniform(0.3, 0.9) if storming.get(k, -1) >= b else rate
            failures = sum(rng.random() < bad for _ in range(min(requests, 500)))
            retries = min(requests - 1, round(failures * rng.uniform(0.3, 1.0)))
            first = min(failures, requests - retries)
            wasted = failures * rng.choice([0.0, 0.002, 0.4])
            top = failures  # per customer: the key is its own top customer
            row.append(
                [
                    requests,
                    failures,
                    retries,
                    failures * rng.random() // 1,
                    wasted,
                    top,
                    first,
                    min(retries, requests - retries),
                    requests,
                ]  # fmt: skip
            )
        out.append(row)
    return out


def run_both(
    params: RetryStormParams,
    rows: list[list[list[float] | None]],
    keys: int,
    min_batch: int = 1,
) -> tuple[int, int]:
    """Feed the same traffic to a fleet through update_many and to a copy key by key;
    assert both agree after every bucket. Returns (decisions, keys that went alone)."""
    batch = [RetryStormState.new(params) for _ in range(keys)]
    alone = [RetryStormState.new(params) for _ in range(keys)]
    judged: set[int] = set()  # keys with data or an open episode, as detect judges them
    decided = 0
    for b, row in enumerate(rows):
        t = T0 + b * MINUTE
        fresh = [k for k in range(keys) if row[k] is not None]
        open_ = [k for k in judged if batch[k].episode is not None and row[k] is None]
        order = fresh + sorted(open_)
        counts = np.array([row[k] or [0.0] * 9 for k in order], dtype=np.float64).reshape(-1, 9)
        got = retry_storm.update_many(
            [batch[k] for k in order], t, MINUTE, counts, params, min_batch=min_batch
        )
        want = {}
        for j, k in enumerate(order):
            if decisions := retry_storm.update(
                alone[k], t, MINUTE, BucketCounts(*counts[j].tolist()), params
            ):
                want[j] = decisions
        assert got == want, f"bucket {b}"
        for k in order:
            assert batch[k].stats.tobytes() == alone[k].stats.tobytes(), f"bucket {b}, key {k}"
            assert (batch[k].episode, batch[k].last_t) == (alone[k].episode, alone[k].last_t)
        judged.update(order)
        decided += sum(len(d) for d in got.values())
    return decided, len(judged)


@pytest.mark.parametrize("name", sorted(VARIANTS))
@pytest.mark.parametrize("seed", [1, 2])
def test_a_fleet_judged_in_batch_decides_and_learns_as_key_by_key(name: str, seed: int) -> None:
    rng = random.Random(seed)
    rows = traffic(rng, keys=60, buckets=240)
    decided, _ = run_both(VARIANTS[name], rows, 60)
    if name in ("short warm-up", "low floors", "window of one"):
        assert decided > 0  # storms fired and resolved: the scalar path was exercised


@settings(max_examples=25, deadline=None, derandomize=True)
@given(
    seed=st.integers(0, 10_000),
    window=st.integers(1, 8),
    min_requests=st.integers(1, 80),
    warmup=st.integers(0, 40),
)
def test_batch_and_key_by_key_agree_on_random_fleets(
    seed: int, window: int, min_requests: int, warmup: int
) -> None:
    params = replace(BASE, window_buckets=window, min_requests=min_requests, warmup_buckets=warmup)
    run_both(params, traffic(random.Random(seed), keys=24, buckets=90), 24)


def test_a_gap_is_drained_from_its_oldest_bucket() -> None:
    """A key back after a gap longer than its window: update() empties the gap's buckets
    oldest first, and judges the first empty bucket if the window still holds enough
    attempts. Buckets 0-4 fill the window (5 slots) with 2, 2, 10, 2 and 2 attempts; the
    key comes back at bucket 12. The gap's first bucket, 5, empties bucket 0's slot: 16
    attempts are left, min_requests 16, so update() judges it (and learns it, nothing
    failing): the batch must leave the key to update(). Emptying the newest five first
    (bucket 7's slot, bucket 2's 10 attempts, first) would leave 8 and judge nothing."""
    params = RetryStormParams(window_buckets=5, min_requests=16, warmup_buckets=0)
    states = [RetryStormState.new(params) for _ in range(3)]
    for state in states:
        for b, requests in enumerate((2, 2, 10, 2, 2)):
            retry_storm.update(state, b * MINUTE, MINUTE, BucketCounts(requests=requests), params)
    assert states[0].baseline_n == 2  # buckets 3 and 4 held 16 and 18 attempts
    reference = [RetryStormState.from_dict(s.to_dict()) for s in states]
    counts = np.zeros((len(states), 9))
    counts[:, 0] = 20.0
    retry_storm.update_many(states, 12 * MINUTE, MINUTE, counts, params, min_batch=1)
    for state, ref in zip(states, reference, strict=True):
        retry_storm.update(ref, 12 * MINUTE, MINUTE, BucketCounts(requests=20.0), params)
        assert state.stats.tobytes() == ref.stats.tobytes()
        assert state.baseline_n == 4  # and buckets 5 (the gap's first) and 12


def test_the_matrix_is_built_from_128_keys_a_bucket(monkeypatch: pytest.MonkeyPatch) -> None:
    """README: update() stays cheaper under 128 keys a bucket (measured in the worker)."""
    sums: list[int] = []
    real = retry_storm._slot_sums

    def counted(ring: np.ndarray, field: int) -> np.ndarray:
        sums.append(len(ring))
        return real(ring, field)

    monkeypatch.setattr(retry_storm, "_slot_sums", counted)
    for keys, batched in ((127, False), (128, True)):
        states = [RetryStormState.new(BASE) for _ in range(keys)]
        counts = np.zeros((keys, 9))
        counts[:, 0] = 20.0
        sums.clear()
        retry_storm.update_many(states, T0, MINUTE, counts, BASE)
        assert bool(sums) is batched, keys
        assert all(state.last_t == T0 for state in states)
