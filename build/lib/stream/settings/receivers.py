"""Receivers: where notifications go (Slack, a signed generic webhook, PagerDuty) and how hard
delivery tries.

Secrets never live in the YAML: each receiver names the environment variable that holds its
Slack webhook URL, bot token, HMAC secret or PagerDuty routing key, and
:meth:`ReceiverSettings.secret` reads it at start-up.

>>> r = ReceiverSettings(name="oncall", kind="slack", slack={"channel": "#spend"})
>>> r.slack.mode, r.slack.token_env, r.breaker_failures
('bot', 'SPENDWATCH_SLACK_BOT_TOKEN', 5)
>>> ReceiverSettings(name="hook", kind="webhook", webhook={"url": "http://127.0.0.1:1/x"}).webhook.secret_env
'SPENDWATCH_WEBHOOK_SECRET'
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

SLACK_API = "https://slack.com/api/"
PAGERDUTY_EVENTS_URL = "https://events.pagerduty.com/v2/enqueue"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SlackSettings(_Section):
    """Slack: an incoming webhook, or a bot token posting to a channel (threads resolves)."""

    mode: Annotated[
        Literal["webhook", "bot"],
        Field(description="webhook: incoming-webhook URL; bot: chat.postMessage with a token."),
    ] = "bot"
    webhook_url_env: Annotated[
        str,
        Field(min_length=1, description="Env var holding the incoming-webhook URL (webhook mode)."),
    ] = "SPENDWATCH_SLACK_WEBHOOK_URL"
    token_env: Annotated[
        str, Field(min_length=1, description="Env var holding the xoxb- bot token (bot mode).")
    ] = "SPENDWATCH_SLACK_BOT_TOKEN"
    channel: Annotated[
        str, Field(description="Channel id or #name to post to (bot mode; required there).")
    ] = ""
    base_url: Annotated[
        str, Field(min_length=1, description="Slack Web API base URL (tests point it at loopback).")
    ] = SLACK_API
    username: Annotated[
        str, Field(description="Display name for the message (needs chat:write.customize).")
    ] = ""
    mention: Annotated[
        str,
        Field(description="Trusted mention added to firing messages, e.g. <!here> or <@U123>."),
    ] = ""
    rate_limit_retries: Annotated[
        int,
        Field(ge=0, le=10, description="429s the Web API client waits out itself (Retry-After)."),
    ] = 1
    max_alerts: Annotated[
        int, Field(ge=1, le=20, description="Alerts drawn in one message; the rest are counted.")
    ] = 5

    @model_validator(mode="after")
    def _bot_needs_channel(self) -> SlackSettings:
        if self.mode == "bot" and not self.channel:
            raise ValueError("slack.channel is required when slack.mode is 'bot'")
        return self


class WebhookSettings(_Section):
    """A generic receiver: the Alertmanager v4 body, HMAC-SHA256 signed."""

    url: Annotated[str, Field(min_length=1, description="URL the body is POSTed to.")]
    secret_env: Annotated[
        str, Field(min_length=1, description="Env var holding the HMAC-SHA256 signing secret.")
    ] = "SPENDWATCH_WEBHOOK_SECRET"
    headers: Annotated[
        dict[str, str], Field(description="Extra request headers (no secrets: they are logged).")
    ] = {}


class PagerDutySettings(_Section):
    """PagerDuty Events API v2: one trigger/resolve event per alert, dedup_key = fingerprint."""

    url: Annotated[str, Field(min_length=1, description="Events API v2 enqueue URL.")] = (
        PAGERDUTY_EVENTS_URL
    )
    routing_key_env: Annotated[
        str, Field(min_length=1, description="Env var holding the integration's routing key.")
    ] = "SPENDWATCH_PAGERDUTY_ROUTING_KEY"
    severity: Annotated[
        dict[str, Literal["critical", "error", "warning", "info"]],
        Field(description="Alert severity label -> PagerDuty severity."),
    ] = {"critical": "critical", "warning": "warning", "info": "info"}
    default_severity: Annotated[
        Literal["critical", "error", "warning", "info"],
        Field(description="PagerDuty severity for labels the mapping does not name."),
    ] = "error"
    source: Annotated[
        str, Field(min_length=1, description="payload.source: where the alerts come from.")
    ] = "spendwatch"


class ReceiverSettings(_Section):
    """One named receiver: its kind, its kind's settings, and the delivery policy for it."""

    name: Annotated[str, Field(min_length=1, description="Name routes refer to.")]
    kind: Annotated[
        Literal["slack", "webhook", "pagerduty"], Field(description="Which integration.")
    ]
    slack: Annotated[SlackSettings | None, Field(description="When kind is slack.")] = None
    webhook: Annotated[WebhookSettings | None, Field(description="When kind is webhook.")] = None
    pagerduty: Annotated[PagerDutySettings | None, Field(description="When kind is pagerduty.")] = (
        None
    )
    timeout_s: Annotated[
        float, Field(gt=0, le=300, description="Timeout of one HTTP request, s.")
    ] = 10.0
    attempt_timeout_s: Annotated[
        float,
        Field(gt=0, le=3600, description="Deadline of one attempt (may be several requests), s."),
    ] = 60.0
    max_attempts: Annotated[
        int | None,
        Field(ge=1, description="Give a notification up after this many attempts; null: never."),
    ] = None
    backoff_base_s: Annotated[
        float, Field(gt=0, description="First retry waits up to this, doubling each time, s.")
    ] = 1.0
    backoff_max_s: Annotated[
        float, Field(gt=0, description="Longest wait between retries (full jitter below it), s.")
    ] = 300.0
    breaker_failures: Annotated[
        int, Field(ge=1, description="Consecutive failed attempts that open the circuit.")
    ] = 5
    breaker_open_s: Annotated[
        float, Field(gt=0, description="How long an open circuit pauses attempts, s.")
    ] = 60.0
    max_queue: Annotated[
        int, Field(ge=1, description="Pending notifications kept; beyond it the oldest is dropped.")
    ] = 10_000

    @model_validator(mode="after")
    def _kind_settings(self) -> ReceiverSettings:
        if self.kind == "slack" and self.slack is None:
            raise ValueError(f"receiver {self.name!r}: kind slack needs a 'slack' section")
        if self.kind == "webhook" and self.webhook is None:
            raise ValueError(f"receiver {self.name!r}: kind webhook needs a 'webhook' section")
        if self.kind == "pagerduty" and self.pagerduty is None:
            self.pagerduty = PagerDutySettings()
        others = {"slack", "webhook", "pagerduty"} - {self.kind}
        extra = sorted(k for k in others if getattr(self, k) is not None)
        if extra:
            raise ValueError(f"receiver {self.name!r} is kind {self.kind}, not {extra[0]}")
        if self.backoff_max_s < self.backoff_base_s:
            raise ValueError(f"receiver {self.name!r}: backoff_max_s < backoff_base_s")
        return self

    def secret_env(self) -> str:
        """The name of the environment variable this receiver's secret comes from."""
        if self.kind == "slack":
            assert self.slack is not None
            return (
                self.slack.webhook_url_env if self.slack.mode == "webhook" else self.slack.token_env
            )
        if self.kind == "webhook":
            assert self.webhook is not None
            return self.webhook.secret_env
        assert self.pagerduty is not None
        return self.pagerduty.routing_key_env

    def secret(self, env: Mapping[str, str]) -> str:
        """The secret from ``env``; a clear error naming receiver and variable when unset."""
        name = self.secret_env()
        value = env.get(name, "")
        if not value:
            raise ValueError(
                f"receiver {self.name!r} ({self.kind}): environment variable {name} is not set"
            )
        return value
