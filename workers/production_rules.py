"""What production refuses: every development default still in force, plain transports
(S3 over http, a loopback SMTP sink) and HTTP served without TLS or a trusted proxy."""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from workers import development_defaults as dev
from workers.smtp_server import is_loopback

if TYPE_CHECKING:
    from workers.settings import Settings


def production_problems(settings: Settings) -> list[tuple[str, str]]:
    """(VARIABLE, reason) for every development default still in force in production."""
    problems: list[tuple[str, str]] = []

    def refuse(variable: str, condition: bool, reason: str) -> None:
        if condition:
            problems.append((variable, reason))

    refuse(
        "STRIPE_API_KEY",
        settings.stripe_api_key.get_secret_value() == dev.DEV_STRIPE_API_KEY,
        "the development key is refused in production",
    )
    refuse(
        "STRIPE_WEBHOOK_SECRET",
        dev.DEV_STRIPE_WEBHOOK_SECRET in settings.webhook_secrets,
        "the development secret is refused in production",
    )
    refuse(
        "AWS_SECRET_ACCESS_KEY",
        settings.aws_secret_access_key.get_secret_value() == dev.DEV_AWS_SECRET_ACCESS_KEY,
        "the development credentials are refused in production",
    )
    refuse(
        "BACKUP_RECIPIENTS",
        dev.DEV_BACKUP_RECIPIENT in settings.backup_recipients,
        "the development key is refused in production (anyone can decrypt with it)",
    )
    refuse(
        "BACKUP_IDENTITY_FILE",
        settings.backup_identity_file.resolve() == dev.DEV_BACKUP_IDENTITY_FILE.resolve(),
        "the development identity is refused in production",
    )
    refuse(
        "ERASURE_LEDGER_KEY",
        settings.erasure_ledger_key.get_secret_value() == dev.DEV_ERASURE_LEDGER_KEY,
        "the development key is refused in production",
    )
    refuse(
        "S3_ENDPOINT_URL",
        urlsplit(settings.s3_endpoint_url or "https://").scheme != "https",
        "only https:// is accepted in production",
    )
    refuse(
        "EXPORT_S3_ENDPOINT_URL",
        urlsplit(settings.export_s3_endpoint_url or "https://").scheme != "https",
        "only https:// is accepted in production",
    )
    refuse(
        "SMTP_URL",
        is_loopback(settings.smtp_server().hostname),
        "the local development sink is refused in production",
    )
    refuse(
        "TLS_CERT_FILE",
        not settings.trust_proxy and not (settings.tls_cert_file and settings.tls_key_file),
        "production serves HTTPS only: set TLS_CERT_FILE and TLS_KEY_FILE, or TRUST_PROXY=1 "
        "behind a proxy that terminates TLS",
    )
    return problems
