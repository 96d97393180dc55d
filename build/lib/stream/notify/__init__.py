"""Alert delivery: routing, grouping, inhibition, silences, receivers, at-least-once delivery.

Modelled on Prometheus Alertmanager's semantics. The pieces, and who calls whom:

- :mod:`stream.notify.model`: the types shared by every piece (Notification, Delivery).
- :mod:`stream.settings.notify`: routes, inhibition rules, static silences, receivers.
- :mod:`stream.notify.routing` / ``grouping`` / ``inhibit`` / ``silences``: pure, clock
  injected; alerts in, :class:`~stream.notify.model.Notification` objects out.
- :mod:`stream.notify.receivers`: Slack, generic webhook, PagerDuty over HTTP.
- :mod:`stream.notify.delivery`: one ordered queue per receiver with retries, backoff,
  a circuit breaker and the notification log (what was delivered where).
"""
