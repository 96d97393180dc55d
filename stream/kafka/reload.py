"""Hot reload: the worker notices a changed config file (or SIGHUP) and applies it live.

:class:`ConfigWatcher` looks at the config file every ``worker.config_poll_s`` (its size
and modification time, then the sha256 of its bytes when either moved; SIGHUP reads and
hashes at once). A changed file is loaded as at start (``load_settings``: environment
overrides still apply) and then either

- **refused**: the file does not validate, or it changes a setting only read at start
  (:data:`RESTART_FIELDS`). One log line ``config refused file=... error=...``, a count in
  ``spendwatch_config_reload_total{result="refused"}``, and the settings in force stay;
- or **applied**: handed to the worker's ``apply`` (which swaps thresholds, overrides,
  windows, plans, alert links, routes, receivers and silences, keeping detector state and
  open alerts), then ``config applied version=...`` and ``result="applied"``.

The version is the first 12 hex digits of the sha256 of the file's bytes; ``reloads``
counts the configs applied since start. The files the config names (price table,
customers file) are read at start only.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from stream.metrics import Metrics
from stream.settings import Settings, load_settings
from stream.settings.yamlsource import ConfigFileError

log = logging.getLogger("spendwatch.config")

# Settings read once at start (clients, topics, the web port, bucket geometry, ingest,
# the files the config names): a change to any of them is refused until a restart.
RESTART_FIELDS: tuple[str, ...] = (
    "kafka",
    "worker",
    "buckets",
    "ingest",
    "prices_file",
    "customers_file",
)


def version_of(data: bytes) -> str:
    """The config version: the first 12 hex digits of the sha256 of the file's bytes."""
    return hashlib.sha256(data).hexdigest()[:12]


def needs_restart(old: Settings, new: Settings) -> list[str]:
    """Dotted paths of the settings that differ between ``old`` and ``new`` and are only
    read at start (sorted; empty when the change can be applied live)."""
    changed: list[str] = []
    for name in RESTART_FIELDS:
        before = old.model_dump(mode="json", include={name})
        after = new.model_dump(mode="json", include={name})
        changed += _differences(before.get(name), after.get(name), name)
    return sorted(changed)


def _differences(a: Any, b: Any, path: str) -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out: list[str] = []
        for key in sorted(set(a) | set(b)):
            out += _differences(a.get(key), b.get(key), f"{path}.{key}")
        return out
    return [] if a == b else [path]


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a look at the file found: ``result`` is "applied", "refused" or "unchanged"."""

    result: str
    version: str
    detail: str = ""
    settings: Settings | None = None


class ConfigWatcher:
    """The config file in force, and the reload of a changed one (see the module doc)."""

    def __init__(
        self,
        path: Path,
        settings: Settings,
        metrics: Metrics,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = path.absolute()
        self.settings = settings
        self.metrics = metrics
        self.clock = clock
        data = _read(path)
        self.version = version_of(data) if data is not None else "unknown"
        self.reloads = 0
        self.loaded_at = clock()
        self.refused: str | None = None  # version of the last refused file, if any
        self._seen = _stamp(path)
        self._seen_version = self.version
        self.wake = asyncio.Event()
        metrics.set("spendwatch_config_info", 1, version=self.version)

    def hangup(self) -> None:
        """SIGHUP: look at the file now, even if its size and time did not move."""
        self.wake.set()

    def check(self, force: bool = False) -> Outcome:
        """Look at the file; load and judge it when it changed. Does not apply anything:
        a returned "applied" outcome carries the settings for :meth:`applied`."""
        stamp = _stamp(self.path)
        if not force and stamp == self._seen:
            return Outcome("unchanged", self.version)
        self._seen = stamp
        data = _read(self.path)
        if data is None:
            return self._refuse("unknown", f"cannot read {self.path}")
        version = version_of(data)
        if not force and version == self._seen_version:
            return Outcome("unchanged", self.version)  # touched, or rewritten the same
        self._seen_version = version
        if version == self.version:
            self.refused = None  # back to the file in force
            return Outcome("unchanged", self.version)
        try:
            new = load_settings(self.path)
        except ConfigFileError as exc:
            return self._refuse(version, " | ".join(str(exc).splitlines()))
        restart = needs_restart(self.settings, new)
        if restart:
            return self._refuse(
                version,
                f"needs a restart to change {', '.join(restart)} (read at start only); "
                "nothing was applied",
            )
        return Outcome("applied", version, settings=new)

    def applied(self, outcome: Outcome) -> None:
        """Record that the worker now runs ``outcome.settings``."""
        assert outcome.settings is not None
        self.metrics.set("spendwatch_config_info", 0, version=self.version)
        self.settings = outcome.settings
        self.version = outcome.version
        self.reloads += 1
        self.loaded_at = self.clock()
        self.refused = None
        self.metrics.set("spendwatch_config_info", 1, version=self.version)
        self.metrics.inc("spendwatch_config_reload_total", result="applied")
        log.info(
            "config applied version=%s file=%s reloads=%s", self.version, self.path, self.reloads
        )

    def _refuse(self, version: str, error: str) -> Outcome:
        self.refused = version
        self.metrics.inc("spendwatch_config_reload_total", result="refused")
        log.error(
            "config refused file=%s version=%s error=%s; version %s stays in force",
            self.path,
            version,
            error,
            self.version,
        )
        return Outcome("refused", version, error)

    async def run(self, apply: Callable[[Settings], Awaitable[None]], poll_s: float) -> None:
        """Look every ``poll_s`` seconds (at once on :meth:`hangup`) and apply changes."""
        while True:
            with contextlib.suppress(TimeoutError):  # not wait_for: it can swallow a cancel
                async with asyncio.timeout(poll_s):
                    await self.wake.wait()
            forced = self.wake.is_set()
            self.wake.clear()
            if forced:
                log.info("config reload requested (SIGHUP) file=%s", self.path)
            outcome = self.check(force=forced)
            if outcome.result == "applied" and outcome.settings is not None:
                try:
                    await apply(outcome.settings)
                except Exception as exc:  # the old settings stay; the worker goes on
                    log.exception("config apply failed version=%s", outcome.version)
                    self._refuse(outcome.version, f"apply failed: {exc!r}")
                    continue
                self.applied(outcome)

    def info(self) -> dict[str, Any]:
        """For ``/health``: the file and version in force, when loaded, reloads so far."""
        return {
            "config_file": str(self.path),
            "config_version": self.version,
            "config_loaded_at": datetime.fromtimestamp(self.loaded_at, UTC).isoformat(
                timespec="seconds"
            ),
            "config_reloads": self.reloads,
            "config_refused": self.refused,
        }


def _stamp(path: Path) -> tuple[int, int] | None:
    try:
        stat = path.stat()
    except OSError:
        return None
    return stat.st_mtime_ns, stat.st_size


def _read(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except OSError:
        return None
