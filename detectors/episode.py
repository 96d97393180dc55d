"""From per-bucket verdicts to alert episodes: fire after N bad buckets, resolve with hysteresis.

Scoring is separate from deciding (as in river's anomaly filters): a detector judges each
bucket (``breach``: bad enough to start an alert; ``elevated``: still bad enough to keep
one open) and :class:`Episode` turns that sequence into transitions. An episode fires once,
may escalate once from warning to critical (the warning resolves, a critical alert fires:
severity is a label, so they are two alerts, as in Alertmanager), and resolves once.

>>> ep = Episode()
>>> verdicts = [(True, True), (True, True), (False, True), (False, False), (False, False)]
>>> for i, (breach, elevated) in enumerate(verdicts):
...     out = ep.step(i * 60.0, 60.0, breach, elevated, "warning", consecutive=2, calm_needed=2)
...     for tr in out:
...         print(tr.status, tr.severity, tr.starts_at, tr.ends_at)
firing warning 0.0 None
resolved warning 0.0 180.0

Flap damping (``rearm_buckets``): once calm enough to resolve, the episode is held open for
that many buckets counted from the start of the calm; a new breach that would start an
episode in that time continues this one instead (one alert, its flaps counted), and the
resolve, when it comes, ends the episode where its last calm began.

>>> ep = Episode()
>>> verdicts = [True, True, False, False, True, True, False, False, False, False, False]
>>> for i, breach in enumerate(verdicts):
...     out = ep.step(i * 60.0, 60.0, breach, breach, "warning", consecutive=2, calm_needed=2,
...                   rearm_buckets=4)
...     for tr in out:
...         print(tr.status, tr.starts_at, tr.ends_at, tr.flaps)
firing 0.0 None 0
resolved 0.0 360.0 1
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import Field

WARNING = "warning"
CRITICAL = "critical"


@dataclass(frozen=True, slots=True)
class Transition:
    """An alert starting or ending. Times are event times in epoch seconds."""

    status: str  # "firing" | "resolved"
    severity: str
    starts_at: float
    ends_at: float | None = None
    flaps: int = 0  # breaches held into this episode by flap damping


@dataclass(slots=True)
class Episode:
    """The alert state of one key for one detector: a handful of fields."""

    firing: bool = False
    severity: str = ""
    started_at: float = 0.0
    streak: int = 0
    calm: int = 0
    flaps: int = 0

    @property
    def active(self) -> bool:
        """True while the key needs judging even when it has no new data."""
        return self.firing or self.streak > 0

    def step(
        self,
        t: float,
        width: float,
        breach: bool,
        elevated: bool,
        severity: str,
        *,
        consecutive: int,
        calm_needed: int,
        began_at: float | None = None,
        rearm_buckets: int = 0,
    ) -> list[Transition]:
        """Advance by the bucket starting at ``t`` (seconds) of ``width`` seconds.

        An episode starts at its first breaching bucket, or at ``began_at`` when the
        detector knows the condition began earlier than it could be sure of it (a window
        that needed a few bad buckets to become significant). It resolves after
        ``calm_needed`` calm buckets, held for ``rearm_buckets`` from the start of the
        calm: a new episode's worth of breaches in that time is a flap of this one.
        """
        self.streak = self.streak + 1 if breach else 0
        if not self.firing:
            if self.streak >= consecutive:
                self.firing, self.severity, self.calm, self.flaps = True, severity, 0, 0
                self.started_at = t - (self.streak - 1) * width
                if began_at is not None:
                    self.started_at = min(self.started_at, began_at)
                return [Transition("firing", severity, self.started_at)]
            return []
        if self.calm >= calm_needed:  # held: what would start an episode continues this one
            if self.streak >= consecutive:
                self.flaps += 1
                self.calm = 0
                return []
            self.calm += 1
        elif elevated:
            self.calm = 0
        else:
            self.calm += 1
        if self.calm >= calm_needed and self.calm >= rearm_buckets:
            self.firing = False
            ended = t - (self.calm - 1) * width
            self.calm = 0
            return [Transition("resolved", self.severity, self.started_at, ended, self.flaps)]
        return []

    def close(self, t: float) -> list[Transition]:
        """End an open episode at ``t`` (a billing period rolled over, a key went away)."""
        self.streak = self.calm = 0
        if not self.firing:
            return []
        self.firing = False
        return [Transition("resolved", self.severity, self.started_at, t, self.flaps)]

    def to_dict(self) -> dict[str, Any]:
        return {
            "firing": self.firing,
            "severity": self.severity,
            "started_at": self.started_at,
            "streak": self.streak,
            "calm": self.calm,
            "flaps": self.flaps,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Episode:
        return cls(**data)


def advance(
    episode: Episode | None,
    t: float,
    width: float,
    breach: bool,
    elevated: bool,
    severity: str,
    *,
    consecutive: int,
    calm_needed: int,
    began_at: float | None = None,
    rearm_buckets: int = 0,
) -> tuple[Episode | None, list[Transition]]:
    """Step an episode that exists only while it is active: idle keys (most of them, most
    of the time) store ``None`` instead of an object, which keeps 100k keys small.

    >>> ep, out = advance(None, 0.0, 60.0, False, False, WARNING, consecutive=2, calm_needed=2)
    >>> ep, out
    (None, [])
    """
    if episode is None and not breach:
        return None, []  # idle and nothing to start: the common case, no object needed
    current = episode or Episode()
    transitions = current.step(
        t,
        width,
        breach,
        elevated,
        severity,
        consecutive=consecutive,
        calm_needed=calm_needed,
        began_at=began_at,
        rearm_buckets=rearm_buckets,
    )
    return (current if current.active else None), transitions


# The detectors' flap-damping setting (``rearm_s``), declared once; each gives its default.
RearmSeconds = Annotated[
    float,
    Field(
        ge=0,
        le=86_400,
        description="Flap damping: a new breach within this long of the calm that "
        "would resolve an alert continues it (one alert, flaps counted); 0: off. Seconds.",
    ),
]


def whole_buckets(seconds: float, width: float) -> int:
    """Buckets of ``width`` seconds that cover ``seconds`` (a float's last bit forgiven).

    >>> whole_buckets(1800.0, 60.0), whole_buckets(90.0, 60.0), whole_buckets(0.0, 60.0)
    (30, 2, 0)
    """
    return math.ceil(seconds / width - 1e-9)


def rearm_buckets(rearm_s: float, width: float) -> int:
    """Buckets of ``width`` seconds that cover a re-arm time of ``rearm_s`` seconds.

    >>> rearm_buckets(1800.0, 60.0), rearm_buckets(90.0, 60.0), rearm_buckets(0.0, 60.0)
    (30, 2, 0)
    """
    return max(0, whole_buckets(rearm_s, width))


def firing(episode: Episode | None) -> bool:
    return episode is not None and episode.firing


def to_dict(episode: Episode | None) -> dict[str, Any] | None:
    return None if episode is None else episode.to_dict()


def from_dict(data: dict[str, Any] | None) -> Episode | None:
    return None if data is None else Episode.from_dict(data)
