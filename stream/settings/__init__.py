"""Settings: one YAML file (config/spendwatch.yaml) plus SPENDWATCH_* environment overrides.

The pydantic models here (and the detectors' parameter dataclasses they embed) are the one
description of every field: default, range and a line of text. Environment variables win
over the file and nest with ``__``: ``SPENDWATCH_DETECTORS__SPEND_SPIKE__MIN_Z=6``.
Secrets (tokens, passwords, signing keys) are read from the environment only.

This package is the settings layer that every other layer reads: the root model here,
its parts beside it (``yamlsource``, ``overrides``, ``windows``, ``cron``, ``effective``,
and notify's ``notify`` and ``receivers`` models). It imports nothing above it.

>>> s = Settings()
>>> s.buckets.width_s, s.detectors.spend_spike.relative_margin
(60.0, 0.2)
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from detectors.cost_shift import CostShiftParams
from detectors.margin_breach import MarginBreachParams
from detectors.retry_storm import RetryStormParams
from detectors.spend_spike import SpendSpikeParams
from stream.settings.notify import NotifySettings
from stream.settings.overrides import Override
from stream.settings.windows import Window
from stream.settings.yamlsource import ConfigFileError, describe_errors, load_yaml

CONFIG_DIR = Path(__file__).resolve().parents[2] / "config"
DEFAULT_CONFIG = CONFIG_DIR / "spendwatch.yaml"


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class BucketSettings(Section):
    width_s: Annotated[float, Field(gt=0, le=86_400, description="Event-time bucket width, s.")] = (
        60.0
    )
    allowed_lateness_s: Annotated[
        float, Field(ge=0, le=3600, description="How late an event may be and still count, s.")
    ] = 30.0


class IngestSettings(Section):
    dedup_horizon_s: Annotated[
        float, Field(ge=0, description="event_id duplicates within this event time are dropped, s.")
    ] = 3600.0
    max_event_bytes: Annotated[
        int, Field(ge=256, description="Larger messages go to the dead-letter topic, bytes.")
    ] = 65_536
    max_future_skew_s: Annotated[
        float, Field(ge=0, description="Events this far ahead of stream time are refused, s.")
    ] = 3600.0


class PlanSettings(Section):
    overhead_ratio: Annotated[
        float, Field(ge=0, description="Infra, monitoring, storage cost per $1 of API cost.")
    ] = 0.65
    margin_target: Annotated[
        float,
        Field(ge=-1, le=1, description="Gross margin to keep (customer record may override)."),
    ] = 0.5
    cost_cap_usd: Annotated[
        float | None,
        Field(ge=0, description="For free plans: cost-to-serve allowed per month, USD."),
    ] = None


def _default_plans() -> dict[str, PlanSettings]:
    return {"default": PlanSettings(), "free": PlanSettings(margin_target=0.0, cost_cap_usd=25.0)}


class DetectorSettings(Section):
    spend_spike: SpendSpikeParams = SpendSpikeParams()
    cost_shift: CostShiftParams = Field(
        default=CostShiftParams(),
        description="Unit cost (USD per successful request) per customer and per customer "
        "+ endpoint: model switches, longer prompts or outputs, cache misses, at any $/h.",
    )
    retry_storm: RetryStormParams = Field(
        default=RetryStormParams(),
        description="Per customer and endpoint.",
    )
    retry_storm_global: RetryStormParams = Field(
        default=RetryStormParams(min_requests=50, max_customer_share=0.5),
        description="Per provider and model across all customers (provider outages).",
    )
    margin_breach: MarginBreachParams = MarginBreachParams()
    overrides: list[Override] = Field(
        default_factory=list,
        description="Per-key parameters: for each parameter the first matching override "
        "that sets it wins (README: Overrides and planned windows).",
    )
    windows: list[Window] = Field(
        default_factory=list,
        description="Planned windows muting a detector or relaxing its parameters for "
        "matching keys, on event time.",
    )


class AlertSettings(Section):
    runbook_url: Annotated[
        str, Field(description="Runbook link; {alertname} is replaced by the alert's name.")
    ] = "https://github.com/spendwatch/spendwatch/blob/main/README.md#{alertname}"
    external_url: Annotated[str, Field(description="Where spendwatch's UI or docs live.")] = ""


class TopicSettings(Section):
    usage: Annotated[str, Field(min_length=1, description="Usage events (producers write).")] = (
        "spendwatch.usage"
    )
    errors: Annotated[str, Field(min_length=1, description="Error events (producers write).")] = (
        "spendwatch.errors"
    )
    customers: Annotated[
        str, Field(min_length=1, description="Customer records, compacted, key = customer_id.")
    ] = "spendwatch.customers"
    alerts: Annotated[
        str, Field(min_length=1, description="Alert transitions (firing/resolved).")
    ] = "spendwatch.alerts"
    deadletter: Annotated[
        str, Field(min_length=1, description="Refused input with its reason and original bytes.")
    ] = "spendwatch.deadletter"
    silences: Annotated[
        str, Field(min_length=1, description="Silences, compacted, key = silence id.")
    ] = "spendwatch.silences"
    partitions: Annotated[
        int, Field(ge=1, le=1024, description="Partitions of the topics spendwatch creates.")
    ] = 4
    replication_factor: Annotated[
        int, Field(ge=1, le=16, description="Replication factor of the topics spendwatch creates.")
    ] = 1


class KafkaSettings(Section):
    bootstrap_servers: Annotated[
        str, Field(min_length=1, description="Comma-separated host:port list.")
    ] = "127.0.0.1:9092"
    client_id: Annotated[str, Field(min_length=1, description="Kafka client id.")] = "spendwatch"
    app_id: Annotated[
        str, Field(min_length=1, description="Worker group id; prefixes internal topics.")
    ] = "spendwatch"
    security_protocol: Annotated[
        Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"],
        Field(description="How to talk to the brokers."),
    ] = "PLAINTEXT"
    ssl_cafile: Annotated[Path | None, Field(description="CA bundle to verify brokers (TLS).")] = (
        None
    )
    ssl_certfile: Annotated[Path | None, Field(description="Client certificate (mutual TLS).")] = (
        None
    )
    ssl_keyfile: Annotated[Path | None, Field(description="Client private key (mutual TLS).")] = (
        None
    )
    sasl_mechanism: Annotated[
        Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"], Field(description="SASL mechanism.")
    ] = "PLAIN"
    sasl_username: Annotated[str | None, Field(description="SASL user name.")] = None
    sasl_password: Annotated[
        SecretStr | None,
        Field(description="SASL password: environment only (SPENDWATCH_KAFKA__SASL_PASSWORD)."),
    ] = None
    topics: TopicSettings = TopicSettings()


class WorkerSettings(Section):
    web_host: Annotated[
        str, Field(description="Host name the worker advertises for its web port.")
    ] = "127.0.0.1"
    web_bind: Annotated[
        str,
        Field(
            description="Address the web port listens on (0.0.0.0: every interface; "
            "then set a token, see web_token_env)."
        ),
    ] = "127.0.0.1"
    web_token_env: Annotated[
        str,
        Field(
            description="Environment variable holding a bearer token; when it is set, "
            "every page but /health needs 'Authorization: Bearer <token>'."
        ),
    ] = "SPENDWATCH_WEB_TOKEN"
    web_port: Annotated[int, Field(ge=1, le=65535, description="/health and /metrics port.")] = 6066
    data_dir: Annotated[Path, Field(description="Worker scratch directory (faust datadir).")] = (
        Path("/tmp/spendwatch-worker")
    )
    batch_size: Annotated[int, Field(ge=1, description="Events taken per batch.")] = 5000
    batch_within_s: Annotated[
        float, Field(gt=0, description="Longest wait to fill a batch, seconds.")
    ] = 0.5
    source_idle_s: Annotated[
        float,
        Field(
            gt=0,
            description="A source partition with no events for this long (wall "
            "clock) no longer holds the event-time watermark back, seconds.",
        ),
    ] = 10.0
    tick_s: Annotated[
        float,
        Field(gt=0, description="How often buckets are closed when no events arrive, seconds."),
    ] = 5.0
    session_timeout_s: Annotated[
        float,
        Field(
            gt=0,
            description="Kafka group session timeout (how fast a dead worker's "
            "partitions move), seconds.",
        ),
    ] = 10.0
    config_poll_s: Annotated[
        float,
        Field(
            gt=0,
            description="How often the worker looks for a changed config file to "
            "hot-reload (SIGHUP reloads at once), seconds.",
        ),
    ] = 2.0
    broker_probe_s: Annotated[
        float,
        Field(gt=0, description="How often the worker asks the cluster for metadata, seconds."),
    ] = 3.0
    ready_broker_s: Annotated[
        float,
        Field(
            gt=0,
            description="/health says not ready when the cluster has not answered for "
            "this long, seconds.",
        ),
    ] = 15.0
    ready_max_lag_s: Annotated[
        float,
        Field(
            gt=0,
            description="/health says not ready when the intake has been behind (unread "
            "records on its partitions) for longer than this, seconds.",
        ),
    ] = 300.0
    dead_letter_max_bytes: Annotated[
        int,
        Field(
            ge=4096,
            le=1_000_000,
            description="A dead letter larger than this (value, key and reason headers) "
            "is cut to fit and marked x-spendwatch-truncated; at most the producer's "
            "1 MiB request limit less framing, bytes.",
        ),
    ] = 1_000_000


class Settings(BaseSettings):
    """Everything a spendwatch process needs, validated."""

    model_config = SettingsConfigDict(
        env_prefix="SPENDWATCH_", env_nested_delimiter="__", extra="forbid"
    )

    prices_file: Annotated[
        Path, Field(description="Model price table, relative to this config file.")
    ] = Path("prices.yaml")
    customers_file: Annotated[
        Path | None, Field(description="Customer records (YAML list or JSONL), optional.")
    ] = None
    buckets: BucketSettings = BucketSettings()
    ingest: IngestSettings = IngestSettings()
    plans: Annotated[
        dict[str, PlanSettings],
        Field(description="Per plan name; 'default' applies to plans not listed."),
    ] = Field(default_factory=_default_plans)
    detectors: DetectorSettings = DetectorSettings()
    alerts: AlertSettings = AlertSettings()
    kafka: KafkaSettings = KafkaSettings()
    worker: WorkerSettings = WorkerSettings()
    notify: NotifySettings = NotifySettings()

    # Where the file came from, to resolve relative paths; not a setting.
    source_path: Path | None = Field(default=None, exclude=True)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The environment wins over the file (passed as init values).
        return env_settings, init_settings

    def resolve(self, path: Path) -> Path:
        """A path from the config, relative to the config file's folder."""
        if path.is_absolute() or self.source_path is None:
            return path if path.is_absolute() else CONFIG_DIR / path
        return self.source_path.parent / path

    def plan(self, name: str) -> PlanSettings:
        return self.plans.get(name) or self.plans.get("default") or PlanSettings()


# Settings that are secrets: refused in files, read from the environment only.
SECRET_FIELDS: tuple[tuple[str, ...], ...] = (("kafka", "sasl_password"),)


def load_settings(path: Path | str | None = None) -> Settings:
    """Settings from a YAML file (default config/spendwatch.yaml) and the environment.

    Raises :class:`ConfigFileError` naming the file, the line, the field path and why.
    """
    file = Path(path) if path is not None else DEFAULT_CONFIG
    data, lines = load_yaml(file)
    if not isinstance(data, dict):
        raise ConfigFileError(f"{file}: the top level must be a mapping of settings")
    for secret in SECRET_FIELDS:
        node: Any = data
        for part in secret:
            node = node.get(part) if isinstance(node, dict) else None
        if node is not None:
            where = f"{file}:{lines.get(secret, '?')}"
            env = "SPENDWATCH_" + "__".join(p.upper() for p in secret)
            raise ConfigFileError(
                f"{where}: {'.'.join(secret)}: secrets are read from the environment only "
                f"(set {env}); remove it from the file"
            )
    try:
        settings = Settings(**data, source_path=file)
    except ValidationError as exc:
        raise ConfigFileError(describe_errors(file, exc, lines)) from None
    return settings


def settings_from_dict(data: dict[str, Any], base: Path | None = None) -> Settings:
    """Settings from an in-memory mapping (tests, replay of a config given inline)."""
    return Settings(**data, source_path=base)
