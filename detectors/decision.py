"""What a detector hands to the alert layer: an alert starting or ending, with its figures."""

from __future__ import annotations

from dataclasses import dataclass, field

from detectors.episode import Transition

# 365 x 24 / 12: a rate in USD/h as USD a month, wherever a detector, the simulator or the
# benchmark says "a month (730 h)".
HOURS_PER_MONTH = 730.0


@dataclass(frozen=True, slots=True)
class Decision:
    """An alert transition for one key, with the figures that explain it.

    ``values`` holds plain numbers named for the annotations: ``observed``, ``baseline``,
    ``ratio``, ``z``, ``threshold``, ``money_at_risk_usd_per_hour`` and detector-specific
    ones. Times are event times in epoch seconds.
    """

    alertname: str
    status: str
    severity: str
    starts_at: float
    ends_at: float | None
    values: dict[str, float] = field(default_factory=dict)
    # Text annotations the stream layer adds (where thresholds came from, recent values).
    notes: dict[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, alertname: str, tr: Transition, values: dict[str, float]) -> Decision:
        if tr.flaps:  # breaches that flap damping held in this episode
            values = {**values, "flaps": float(tr.flaps)}
        return cls(alertname, tr.status, tr.severity, tr.starts_at, tr.ends_at, values)
