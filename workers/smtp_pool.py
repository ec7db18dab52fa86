"""Persistent SMTP connections for mass mail, a few per worker process.

A connection is opened when first needed (TLS as workers/smtp_server.py says, login when
`SMTP_URL` has credentials), reused for message after message, and dropped after any
error: the next user opens a fresh one.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiosmtplib

from workers.settings import Settings
from workers.smtp_server import quit_or_close


class SmtpPool:
    def __init__(self, settings: Settings, size: int) -> None:
        self.server = settings.smtp_server()
        self.slots = asyncio.Semaphore(size)
        self.idle: list[aiosmtplib.SMTP] = []

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[aiosmtplib.SMTP]:
        """A connected client for one message or more; back to the pool afterwards, or
        closed if anything went wrong with it."""
        async with self.slots:
            client = self.idle.pop() if self.idle else await self.server.connected()
            try:
                yield client
            except BaseException:
                client.close()
                raise
            if client.is_connected:
                self.idle.append(client)

    async def close(self) -> None:
        while self.idle:
            await quit_or_close(self.idle.pop())
