"""Sending one email through `SMTP_URL` (STARTTLS when the URL says so or in production)."""

from __future__ import annotations

from email.message import EmailMessage
from urllib.parse import unquote, urlsplit

import aiosmtplib

from workers.settings import Settings

SMTP_TIMEOUT_SECONDS = 30.0


async def send_message(settings: Settings, message: EmailMessage) -> None:
    parts = urlsplit(settings.smtp_url.get_secret_value())
    implicit_tls = parts.scheme == "smtps"
    await aiosmtplib.send(
        message,
        hostname=parts.hostname,
        port=parts.port or (465 if implicit_tls else 25),
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
        use_tls=implicit_tls,
        # Production refuses a plaintext SMTP_URL at start (workers/settings.py); here
        # STARTTLS is used whenever the server offers it.
        start_tls=None if not implicit_tls else False,
        timeout=SMTP_TIMEOUT_SECONDS,
    )
