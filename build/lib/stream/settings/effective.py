"""The parameters in force for one key at one bucket: defaults, overrides and open windows.

Precedence, per parameter: the first open window (list order) that matches the key and
sets it; else the first override (list order) that matches the key and sets it; else
the detector section's value, where a ``SPENDWATCH_DETECTORS__<DETECTOR>__<PARAM>``
environment variable wins over the file, and the file over the built-in default.

Resolving is done once per key (and set of open windows) and cached; a new settings
object means a new :class:`Resolver` (see ``CustomerDetection.reload``).

>>> from stream.settings import DetectorSettings
>>> det = DetectorSettings(overrides=[
...     {"match": {"customer_id": "acme", "endpoint": "batch"},
...      "spend_spike": {"relative_margin": 2.0}},
...     {"match": {"customer_id": "acme"}, "spend_spike": {"relative_margin": 0.5, "min_z": 4}},
... ])
>>> r = Resolver(det)
>>> e = r.effective("spend_spike", 0.0, customer_id="acme", endpoint="batch")
>>> e.params.relative_margin, e.params.min_z, e.params.consecutive
(2.0, 4.0, 3)
>>> e.threshold_source
'overrides[0] (customer_id=acme, endpoint=batch); overrides[1] (customer_id=acme)'
>>> r.effective("spend_spike", 0.0, customer_id="globex").threshold_source
'default'
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from stream.settings.overrides import DETECTORS, MATCH_FIELDS

if TYPE_CHECKING:
    from stream.settings import DetectorSettings
    from stream.settings.overrides import Override
    from stream.settings.windows import Window


@dataclass(frozen=True, slots=True)
class Effective:
    """A detector's parameters for one key, and where those not from its section came from."""

    params: Any
    sources: Mapping[str, str] = field(default_factory=dict)  # parameter -> rule
    muted_by: str = ""  # the window muting the detector for this key, if any

    @property
    def muted(self) -> bool:
        return bool(self.muted_by)

    @property
    def threshold_source(self) -> str:
        """``default``, or the rules that set parameters, in precedence order."""
        return "; ".join(dict.fromkeys(self.sources.values())) or "default"


class Resolver:
    """Effective parameters per detector and key, cached; pure (time comes in as ``t``)."""

    max_cached = 200_000  # entries; cleared when exceeded (keys come back cheaply)

    def __init__(self, detectors: DetectorSettings) -> None:
        self.defaults: dict[str, Any] = {name: getattr(detectors, name) for name in DETECTORS}
        self.overrides = list(detectors.overrides)
        self.windows = list(detectors.windows)
        rules: list[Override | Window] = [*self.overrides, *self.windows]
        self.trivial = not rules
        self.uses_plan = any(rule.match.plan is not None for rule in rules)
        self._plain = {name: Effective(p) for name, p in self.defaults.items()}
        self._cache: dict[tuple[Any, ...], Effective] = {}
        self._open: tuple[float, tuple[int, ...]] = (float("nan"), ())

    def enabled(self, detector: str) -> bool:
        """Whether the detector runs for any key (its section, or a rule turning it on)."""
        rules = [*self.overrides, *self.windows]
        return self.defaults[detector].enabled or any(
            r.patch(detector).get("enabled") for r in rules
        )

    def open_windows(self, t: float) -> tuple[int, ...]:
        """Indexes of the windows open at event time ``t`` (cached for the last ``t``)."""
        if self._open[0] != t:
            self._open = (t, tuple(i for i, w in enumerate(self.windows) if w.active(t)))
        return self._open[1]

    def effective(
        self,
        detector: str,
        t: float,
        customer_id: str | None = None,
        endpoint: str | None = None,
        provider: str | None = None,
        model: str | None = None,
        plan: str | None = None,
    ) -> Effective:
        """The parameters in force for ``detector`` on this key in the bucket at ``t``."""
        if self.trivial:
            return self._plain[detector]
        opened = self.open_windows(t) if self.windows else ()
        key = (detector, customer_id, endpoint, provider, model, plan, opened)
        hit = self._cache.get(key)
        if hit is None:
            if len(self._cache) >= self.max_cached:
                self._cache.clear()
            labels = dict(zip(MATCH_FIELDS, key[1:6], strict=True))
            hit = self._cache[key] = self.resolve(detector, labels, opened)
        return hit

    def resolve(
        self, detector: str, labels: Mapping[str, str | None], opened: tuple[int, ...] = ()
    ) -> Effective:
        """Uncached resolution; ``opened`` are the indexes of the open windows."""
        chosen: dict[str, Any] = {}
        sources: dict[str, str] = {}
        muted_by = ""
        ordered: list[tuple[str, Override | Window]]
        ordered = [(f"windows[{i}]", self.windows[i]) for i in opened]
        ordered += [(f"overrides[{i}]", o) for i, o in enumerate(self.overrides)]
        for where, rule in ordered:
            if not rule.match.matches(labels):
                continue
            name = getattr(rule, "name", "")  # only windows have one
            name = f" {name}" if name else ""
            label = f"{where}{name} ({rule.match.describe()})"
            if not muted_by and detector in getattr(rule, "mute", ()):
                muted_by = label
            for param, value in rule.patch(detector).items():
                if param not in chosen:
                    chosen[param], sources[param] = value, label
        default = self.defaults[detector]
        params = dataclasses.replace(default, **chosen) if chosen else default
        return Effective(params, sources, muted_by)
