"""Receiver kinds and the registry that builds one from its settings.

Adding a kind: a module here with a class implementing
:class:`~stream.notify.receivers.base.Receiver`, and one line in :data:`KINDS`.

>>> from stream.settings.receivers import ReceiverSettings
>>> s = ReceiverSettings(name="hook", kind="webhook", webhook={"url": "http://127.0.0.1:9/"})
>>> build_receiver(s, {"SPENDWATCH_WEBHOOK_SECRET": "s"}).name
'hook'
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

from stream.notify.receivers.base import Receiver
from stream.notify.receivers.pagerduty import PagerDutyReceiver
from stream.notify.receivers.slack import SlackReceiver
from stream.notify.receivers.webhook import WebhookReceiver
from stream.settings.receivers import ReceiverSettings

KINDS: dict[str, Callable[[ReceiverSettings, str], Receiver]] = {
    "slack": SlackReceiver,
    "webhook": WebhookReceiver,
    "pagerduty": PagerDutyReceiver,
}


def build_receiver(settings: ReceiverSettings, env: Mapping[str, str]) -> Receiver:
    """The receiver for ``settings``, its secret read from ``env`` (e.g. ``os.environ``).

    Raises ValueError naming the receiver and the variable when the secret is unset.
    """
    return KINDS[settings.kind](settings, settings.secret(env))


def build_receivers(
    settings: Iterable[ReceiverSettings], env: Mapping[str, str]
) -> dict[str, Receiver]:
    """Receivers by name; every missing secret is reported before any receiver is built."""
    settings = list(settings)
    missing = []
    for s in settings:
        try:
            s.secret(env)
        except ValueError as err:
            missing.append(str(err))
    if missing:
        raise ValueError("; ".join(missing))
    return {s.name: build_receiver(s, env) for s in settings}


__all__ = ["KINDS", "Receiver", "build_receiver", "build_receivers"]
