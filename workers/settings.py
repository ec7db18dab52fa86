"""One `Settings` object, read from the environment, for every bindery process.

A missing or invalid value stops the process at start with one line naming the
variable (`SettingsError`, exit status 2). Production refuses the development
defaults, so a forgotten variable cannot ship a test key.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import BeforeValidator, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from workers.development_defaults import (
    DEV_AWS_ACCESS_KEY_ID,
    DEV_AWS_SECRET_ACCESS_KEY,
    DEV_BACKUP_IDENTITY_FILE,
    DEV_BACKUP_RECIPIENT,
    DEV_ERASURE_LEDGER_KEY,
    DEV_STRIPE_API_KEY,
    DEV_STRIPE_WEBHOOK_SECRET,
)
from workers.production_rules import production_problems
from workers.smtp_server import SmtpServer, smtp_server

_DURATION = re.compile(r"^\s*(\d+)\s*(s|m|h|d)\s*$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


class SettingsError(Exception):
    """A setting is missing or invalid; the message names the variable, never its value."""


def parse_duration(value: object) -> timedelta:
    """Accept `90s`, `15m`, `24h`, `7d` (or a timedelta / number of seconds)."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, int | float):
        return timedelta(seconds=value)
    match = _DURATION.match(str(value))
    if not match:
        raise ValueError("expected a duration such as 90s, 15m, 24h or 7d")
    return timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})


def split_list(value: object) -> object:
    """Comma-separated environment values become lists."""
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return value


Duration = Annotated[timedelta, BeforeValidator(parse_duration)]
CommaList = Annotated[list[str], NoDecode, BeforeValidator(split_list)]
CommaSecrets = Annotated[list[SecretStr], NoDecode, BeforeValidator(split_list)]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(case_sensitive=False, extra="ignore")

    bindery_env: Literal["development", "production"] = "development"

    database_url: str = "postgresql://postgres@127.0.0.1:5432/bindery"
    broker_url: str = "redis://127.0.0.1:6379/0"

    stripe_api_key: SecretStr = SecretStr(DEV_STRIPE_API_KEY)
    stripe_webhook_secret: CommaSecrets = Field(
        default_factory=lambda: [SecretStr(DEV_STRIPE_WEBHOOK_SECRET)], min_length=1
    )
    stripe_api_base: str | None = None
    # When processing asks Stripe for an object's current state (tasks/billing/refetch.py).
    stripe_refetch: Literal["always", "when-needed", "never"] = "when-needed"
    # Stripe allows ~100 requests/s in live mode and 25 in test mode, across all our processes.
    stripe_requests_per_second: float = Field(default=20.0, gt=0, le=1000)
    # Where the shared rate limiter keeps its buckets; default: BROKER_URL when it is Redis.
    rate_limit_redis_url: str | None = None

    s3_endpoint_url: str | None = "http://127.0.0.1:8333"
    s3_bucket: str = "bindery-backups"
    s3_region: str = "fr-par"
    aws_access_key_id: SecretStr = SecretStr(DEV_AWS_ACCESS_KEY_ID)
    aws_secret_access_key: SecretStr = SecretStr(DEV_AWS_SECRET_ACCESS_KEY)

    # Access-export archives (tasks/privacy/export.py): a bucket of their own, kept 7 days.
    # Unset, the endpoint, region and keys are the backup storage's; in production the
    # bucket belongs at the provider that hosts the servers (the policy names the backup
    # provider for backups only).
    export_s3_bucket: str = "bindery-exports"
    export_s3_endpoint_url: str | None = None
    export_s3_region: str | None = None
    export_aws_access_key_id: SecretStr | None = None
    export_aws_secret_access_key: SecretStr | None = None
    # How long the emailed link to an archive works; S3 signs for 7 days at most.
    export_link_lifetime: Duration = Field(default=timedelta(days=7), gt=timedelta(0), le=timedelta(days=7))

    backup_recipients: CommaList = Field(default_factory=lambda: [DEV_BACKUP_RECIPIENT], min_length=1)
    backup_retention_days: int = Field(default=30, ge=1, le=3650)
    # The age identity that decrypts backups: each run reads its backup back with it, as do
    # `backup verify` and `restore`. The worker that holds it also reads the instances'
    # databases, so it learns nothing it could not already read.
    backup_identity_file: Path = DEV_BACKUP_IDENTITY_FILE
    # Nightly backups running at once, across every worker (a slot per live catalog lease).
    backup_concurrency: int = Field(default=2, ge=1, le=100)

    smtp_url: SecretStr = SecretStr("smtp://127.0.0.1:8025")
    # The certificate authorities SMTP servers are checked against (default: the system's).
    smtp_ca_file: Path | None = None
    mail_from: str = "bindery <no-reply@bindery.localhost>"
    # Where customers write about their data (the policy names the GDPR referral contact).
    privacy_contact: str = "privacy@bindery.localhost"
    # Who is told when a paid instance has no verified backup of the last 26 hours.
    ops_email: str = "ops@bindery.localhost"

    erasure_grace: Duration = timedelta(hours=24)

    # Breach notification mail (tasks/breach/).
    # The provider's limit, shared by every worker (a token bucket in Redis).
    breach_messages_per_second: float = Field(default=20.0, gt=0, le=100_000)
    breach_batch_size: int = Field(default=100, ge=1, le=10_000)
    # Batches of a campaign in flight at once (`breach.send` messages on the `mail` queue).
    breach_lanes: int = Field(default=8, ge=1, le=1000)
    # Persistent SMTP connections per worker process.
    smtp_connections: int = Field(default=4, ge=1, le=100)
    # The campaign pauses itself when this share of the messages tried so far failed (5xx),
    # once at least breach_failure_minimum have failed.
    breach_failure_threshold: float = Field(default=0.05, gt=0, le=1)
    breach_failure_minimum: int = Field(default=20, ge=1)
    # Tries of one message through 4xx replies and connection errors before `failed`.
    breach_max_attempts: int = Field(default=8, ge=1, le=100)
    # Addresses are scrubbed from a campaign's rows this long after it ends; counts stay.
    breach_recipient_retention: Duration = timedelta(days=90)
    erasure_ledger_key: SecretStr = SecretStr(DEV_ERASURE_LEDGER_KEY)

    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    trust_proxy: bool = False
    # With TRUST_PROXY: the peers whose X-Forwarded-Proto is believed (IP networks); by
    # default a proxy on the same machine.
    trusted_proxies: CommaList = Field(default_factory=lambda: ["127.0.0.1/32", "::1/128"], min_length=1)

    # How long a verified API token is trusted without asking the database again
    # (a revocation takes at most this long to bite).
    api_token_cache_seconds: float = Field(default=5.0, ge=0, le=300)
    # Prometheus exposition port of `bindery worker` (one per machine).
    worker_metrics_port: int = Field(default=9191, ge=0, le=65535)

    # Per scheduled job: {"name": {"enabled": true, "cron": "…", "timezone": "…",
    # "catchup": "all", "catchup_window_seconds": 3600}} (JSON).
    scheduler_overrides: dict[str, dict[str, Any]] = Field(default_factory=dict)
    # A claimed slot whose message was not recorded as sent after this long is sent again.
    scheduler_sweep_after_seconds: float = Field(default=30.0, gt=0, le=3600)
    # Prometheus exposition port of `bindery scheduler` (0: none).
    scheduler_metrics_port: int = Field(default=9192, ge=0, le=65535)

    @field_validator("database_url")
    @classmethod
    def _postgres_url(cls, value: str) -> str:
        if urlsplit(value).scheme not in ("postgresql", "postgres"):
            raise ValueError("expected a postgresql:// URL")
        return value

    @field_validator("broker_url")
    @classmethod
    def _broker_url(cls, value: str) -> str:
        if urlsplit(value).scheme not in ("redis", "rediss", "amqp", "amqps"):
            raise ValueError("expected a redis://, rediss://, amqp:// or amqps:// URL")
        return value

    @field_validator("smtp_url")
    @classmethod
    def _smtp_url(cls, value: SecretStr) -> SecretStr:
        smtp_server(value.get_secret_value(), development=True)
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        for network in value:
            try:
                ipaddress.ip_network(network, strict=False)
            except ValueError:
                raise ValueError(f"not an IP network: {network}") from None
        return value

    @field_validator("backup_recipients")
    @classmethod
    def _age_recipients(cls, value: list[str]) -> list[str]:
        for recipient in value:
            if not recipient.startswith(("age1", "ssh-ed25519 ", "ssh-rsa ")):
                raise ValueError("each recipient must be an age public key (age1…)")
        return value

    @property
    def is_production(self) -> bool:
        return self.bindery_env == "production"

    def smtp_server(self) -> SmtpServer:
        """SMTP_URL read as every sender reads it (a method: `model_copy` may change the URL)."""
        return smtp_server(
            self.smtp_url.get_secret_value(), development=not self.is_production, ca_file=self.smtp_ca_file
        )

    @property
    def limiter_redis_url(self) -> str | None:
        if self.rate_limit_redis_url:
            return self.rate_limit_redis_url
        return self.broker_url if self.broker_url.startswith(("redis://", "rediss://")) else None

    @functools.cached_property  # read on every webhook delivery
    def webhook_secrets(self) -> list[str]:
        return [secret.get_secret_value() for secret in self.stripe_webhook_secret]


def load_settings() -> Settings:
    """Read the environment; raise `SettingsError` naming the first bad variable."""
    try:
        settings = Settings()
    except ValidationError as error:
        first = error.errors(include_input=False)[0]
        variable = str(first["loc"][0]).upper() if first["loc"] else "settings"
        raise SettingsError(f"invalid setting {variable}: {first['msg']}") from None
    if settings.tls_cert_file and not settings.tls_key_file:
        raise SettingsError("invalid setting TLS_KEY_FILE: required with TLS_CERT_FILE")
    for path_variable in ("tls_cert_file", "tls_key_file", "smtp_ca_file"):
        path = getattr(settings, path_variable)
        if path is not None and not path.is_file():
            raise SettingsError(f"invalid setting {path_variable.upper()}: no such file")
    if settings.is_production:
        problems = production_problems(settings)
        if problems:
            variable, reason = problems[0]
            raise SettingsError(f"invalid setting {variable}: {reason}")
    return settings
