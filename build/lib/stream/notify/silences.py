"""Silences: mute alerts matching some labels between two times (maintenance, batch windows).

The store keeps each silence as a JSON-able dict in a plain ``MutableMapping`` keyed by
id, so the worker can back it with a Faust table or a compacted topic and a restart
keeps them. Times are epoch seconds and always passed in (``now``), never read here.

>>> store = SilenceStore({})
>>> sid = store.add(Silence("s1", ('customer_id="acme"',), 100.0, 200.0, "ana", "batch job"))
>>> store.mutes({"customer_id": "acme"}, 150.0), store.mutes({"customer_id": "acme"}, 250.0)
(['s1'], [])
>>> store.expire("s1", 120.0); store.get("s1").state(130.0)
'expired'
"""

from __future__ import annotations

import builtins
import uuid
from collections.abc import Iterable, Mapping, MutableMapping
from dataclasses import asdict, dataclass, replace
from typing import Any, Literal

from stream.settings.notify import SilenceSpec, matches_all, parse_matchers

SilenceState = Literal["pending", "active", "expired"]


@dataclass(frozen=True, slots=True)
class Silence:
    """Mutes alerts whose labels match every matcher while ``starts_at <= now < ends_at``."""

    id: str
    matchers: tuple[str, ...]
    starts_at: float
    ends_at: float
    created_by: str
    comment: str

    def __post_init__(self) -> None:
        parse_matchers(self.matchers)  # a bad matcher fails here, naming it
        if self.ends_at < self.starts_at:
            raise ValueError(f"silence {self.id}: ends_at is before starts_at")

    def active(self, now: float) -> bool:
        return self.starts_at <= now < self.ends_at

    def expired(self, now: float) -> bool:
        return now >= self.ends_at

    def state(self, now: float) -> SilenceState:
        if self.expired(now):
            return "expired"
        return "active" if self.active(now) else "pending"

    def matches(self, labels: Mapping[str, str]) -> bool:
        return matches_all(parse_matchers(self.matchers), labels)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["matchers"] = list(self.matchers)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Silence:
        return cls(
            id=str(data["id"]),
            matchers=tuple(data["matchers"]),
            starts_at=float(data["starts_at"]),
            ends_at=float(data["ends_at"]),
            created_by=str(data.get("created_by", "")),
            comment=str(data.get("comment", "")),
        )

    @classmethod
    def from_spec(cls, spec: SilenceSpec) -> Silence:
        return cls(
            id=spec.silence_id(),
            matchers=tuple(spec.matchers),
            starts_at=spec.starts_at.timestamp(),
            ends_at=spec.ends_at.timestamp(),
            created_by=spec.created_by,
            comment=spec.comment,
        )


class SilenceStore:
    """Silences kept in ``table`` (id -> dict); a muter for the dispatcher (kind "silenced")."""

    kind = "silenced"

    def __init__(self, table: MutableMapping[str, dict[str, Any]]) -> None:
        self.table = table

    def seed(self, specs: Iterable[SilenceSpec]) -> None:
        """Write the config's static silences (the config wins over a stored copy)."""
        for spec in specs:
            self.add(Silence.from_spec(spec))

    def add(self, silence: Silence) -> str:
        """Store ``silence`` (a new id when it has none) and return its id."""
        if not silence.id:
            silence = replace(silence, id=uuid.uuid4().hex)
        self.table[silence.id] = silence.to_dict()
        return silence.id

    def get(self, silence_id: str) -> Silence | None:
        data = self.table.get(silence_id)
        return None if data is None else Silence.from_dict(data)

    def expire(self, silence_id: str, now: float) -> None:
        """End the silence at ``now`` (a pending one never starts). KeyError if unknown."""
        silence = self.get(silence_id)
        if silence is None:
            raise KeyError(f"no silence {silence_id!r}")
        if silence.expired(now):
            return
        starts = min(silence.starts_at, now)
        self.table[silence_id] = replace(silence, starts_at=starts, ends_at=now).to_dict()

    def list(self, now: float, state: SilenceState | None = None) -> list[Silence]:
        """Silences (only those in ``state`` when given), the soonest-ending first."""
        found = [Silence.from_dict(d) for d in self.table.values()]
        if state is not None:
            found = [s for s in found if s.state(now) == state]
        return sorted(found, key=lambda s: (s.ends_at, s.id))

    def mutes(self, labels: Mapping[str, str], now: float) -> builtins.list[str]:
        """Ids of the active silences that mute an alert with ``labels`` (empty: none)."""
        return sorted(
            s.id
            for s in map(Silence.from_dict, self.table.values())
            if s.active(now) and s.matches(labels)
        )

    def gc(self, now: float, retention_s: float) -> builtins.list[str]:
        """Forget silences that expired more than ``retention_s`` ago; their ids."""
        old = [k for k, d in self.table.items() if float(d["ends_at"]) + retention_s <= now]
        for key in old:
            del self.table[key]
        return old
