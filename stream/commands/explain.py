"""``spendwatch config explain``: the parameters one key gets, and where each came from.

Sources, in precedence order: an open window (with ``--at``), an override
(``overrides[2] (customer_id=acme)``), an environment variable, the config file (with
its line), the built-in default.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path

from stream.settings import Settings
from stream.settings.effective import Resolver
from stream.settings.overrides import DETECTORS, KEY_FIELDS
from stream.settings.yamlsource import Lines


def _env_source(detector: str, param: str, environ: Mapping[str, str]) -> str | None:
    upper = {k.upper() for k in environ}
    for name in (
        f"SPENDWATCH_DETECTORS__{detector}__{param}".upper(),
        f"SPENDWATCH_DETECTORS__{detector}".upper(),
        "SPENDWATCH_DETECTORS",
    ):
        if name in upper:
            return f"environment {name}"
    return None


def default_source(
    detector: str, param: str, file: Path | None, lines: Lines, environ: Mapping[str, str]
) -> str:
    """Where the section value of ``detector.param`` came from: env, file:line or built-in."""
    env = _env_source(detector, param, environ)
    if env:
        return env
    line = lines.get(("detectors", detector, param))
    if line is not None and file is not None:
        return f"{file}:{line}"
    return "built-in default"


def explain(
    settings: Settings,
    labels: Mapping[str, str | None],
    t: float | None = None,
    file: Path | None = None,
    lines: Lines | None = None,
    environ: Mapping[str, str] | None = None,
) -> str:
    """A table per detector of the effective parameters for the key described by ``labels``
    (customer_id, endpoint, provider, model, plan), at event time ``t`` if given."""
    resolver = Resolver(settings.detectors)
    opened = resolver.open_windows(t) if t is not None else ()
    environ = os.environ if environ is None else environ
    out: list[str] = []
    for detector in DETECTORS:
        key = {f: labels.get(f) for f in KEY_FIELDS[detector] if labels.get(f) is not None}
        shown = ", ".join(f"{k}={v}" for k, v in key.items()) or "no key labels given"
        scope = {
            "spend_spike": "per customer, and per customer + endpoint",
            "cost_shift": "per customer, and per customer + endpoint",
            "retry_storm": "per customer + endpoint",
            "retry_storm_global": "per provider + model",
            "margin_breach": "per customer",
        }[detector]
        eff = resolver.resolve(detector, key, opened)
        head = f"{detector} ({scope}; key: {shown})"
        if eff.muted:
            head += f" - MUTED by {eff.muted_by}"
        out.append(head)
        rows = []
        for f in dataclasses.fields(eff.params):
            value = getattr(eff.params, f.name)
            source = eff.sources.get(f.name) or default_source(
                detector, f.name, file, lines or {}, environ
            )
            rows.append((f.name, repr(value), source))
        width = [max(len(r[i]) for r in rows) for i in range(2)]
        out += [f"  {a.ljust(width[0])}  {b.ljust(width[1])}  {c}" for a, b, c in rows]
        out.append("")
    windows = [(i, w) for i, w in enumerate(resolver.windows) if w.match.matches({**labels})]
    if windows:
        out.append("windows for this key:")
        for i, w in windows:
            when = f"cron {w.cron!r} for {w.duration:g}s" if w.cron else f"{w.start} to {w.end}"
            state = "" if t is None else (" (open)" if i in opened else " (closed)")
            what = f"mutes {', '.join(w.mute)}" if w.mute else "relaxes parameters"
            out.append(f"  windows[{i}] {w.name}: {when} {w.timezone}, {what}{state}")
    return "\n".join(out).rstrip() + "\n"
