"""`SMTP_URL`, read the same way by every sender: where the server is, who we log in as,
and how the connection is protected.

- `smtps://host[:465]`: TLS from the first byte.
- `smtp://host[:587]`: STARTTLS, mandatory. A server that does not offer it is an error
  (`MailNotProtected`), never a plaintext send: an attacker on the path who strips the
  STARTTLS offer would otherwise read the login and every message.
- plaintext only to a development loopback sink (`bindery dev`'s, the tests'), which
  production refuses at start (workers/settings.py).

Certificates are verified against the system's store, or `SMTP_CA_FILE` when set.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import unquote, urlsplit

import aiosmtplib

from workers.errors import JobError

SMTP_TIMEOUT_SECONDS = 30.0
Security = Literal["implicit-tls", "starttls", "plaintext"]


class MailNotProtected(JobError):
    """The server would have us send in plaintext; nothing was sent."""


def is_loopback(hostname: str) -> bool:
    """`localhost`, 127.0.0.0/8 or ::1, in any spelling."""
    host = hostname.strip("[]").rstrip(".").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class SmtpServer:
    hostname: str
    port: int
    username: str | None
    password: str | None
    security: Security
    ca_file: Path | None = None

    def client(self) -> aiosmtplib.SMTP:
        """A client not yet connected; `connect()` logs in and upgrades as configured."""
        return aiosmtplib.SMTP(
            hostname=self.hostname,
            port=self.port,
            username=self.username,
            password=self.password,
            use_tls=self.security == "implicit-tls",
            start_tls=self.security == "starttls",
            validate_certs=True,
            cert_bundle=str(self.ca_file) if self.ca_file else None,
            timeout=SMTP_TIMEOUT_SECONDS,
        )

    async def connected(self) -> aiosmtplib.SMTP:
        """A connected, logged-in client; MailNotProtected when STARTTLS is not offered."""
        client = self.client()
        try:
            await client.connect()
        except aiosmtplib.SMTPException:
            client.close()
            if self.security == "starttls" and not client.supports_extension("starttls"):
                raise MailNotProtected(
                    f"the mail server {self.hostname}:{self.port} does not offer STARTTLS;"
                    " bindery does not send mail in plaintext (use smtps:// for implicit TLS)"
                ) from None
            raise
        return client


async def quit_or_close(client: aiosmtplib.SMTP) -> None:
    """End the session politely; a connection that is already broken is just closed."""
    try:
        await client.quit()
    except (aiosmtplib.SMTPException, OSError):
        client.close()


def smtp_server(url: str, *, development: bool, ca_file: Path | None = None) -> SmtpServer:
    """The server `url` (an SMTP_URL) names. Raises ValueError for what is not one."""
    parts = urlsplit(url)
    if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
        raise ValueError("expected smtp://[user:pass@]host[:port] or smtps://…")
    security: Security
    if parts.scheme == "smtps":
        security = "implicit-tls"
    elif development and is_loopback(parts.hostname):
        security = "plaintext"
    else:
        security = "starttls"
    return SmtpServer(
        hostname=parts.hostname,
        port=parts.port or (465 if security == "implicit-tls" else 587 if security == "starttls" else 25),
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
        security=security,
        ca_file=ca_file,
    )
