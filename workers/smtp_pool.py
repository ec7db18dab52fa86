"""Persistent SMTP connections for mass mail, a few per worker process.

A connection is opened when first needed (STARTTLS when the server offers it, login when
`SMTP_URL` has credentials; production refuses a plaintext URL at start), reused for
message after message, and dropped after any error: the next user opens a fresh one.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from urllib.parse import unquote, urlsplit

import aiosmtplib

from workers.mail import SMTP_TIMEOUT_SECONDS
from workers.settings import Settings


class SmtpPool:
    def __init__(self, settings: Settings, size: int) -> None:
        self.url = urlsplit(settings.smtp_url.get_secret_value())
        self.slots = asyncio.Semaphore(size)
        self.idle: list[aiosmtplib.SMTP] = []

    async def _open(self) -> aiosmtplib.SMTP:
        implicit_tls = self.url.scheme == "smtps"
        client = aiosmtplib.SMTP(
            hostname=self.url.hostname,
            port=self.url.port or (465 if implicit_tls else 25),
            use_tls=implicit_tls,
            start_tls=None if not implicit_tls else False,
            timeout=SMTP_TIMEOUT_SECONDS,
        )
        await client.connect()
        if self.url.username:
            await client.login(unquote(self.url.username), unquote(self.url.password or ""))
        return client

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[aiosmtplib.SMTP]:
        """A connected client for one message or more; back to the pool afterwards, or
        closed if anything went wrong with it."""
        async with self.slots:
            client = self.idle.pop() if self.idle else await self._open()
            try:
                yield client
            except BaseException:
                client.close()
                raise
            if client.is_connected:
                self.idle.append(client)

    async def close(self) -> None:
        while self.idle:
            client = self.idle.pop()
            try:
                await client.quit()
            except (aiosmtplib.SMTPException, OSError):
                client.close()
