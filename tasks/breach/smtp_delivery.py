"""One message through the worker's SMTP pool: the server's reply code, or a connection error."""

from __future__ import annotations

import asyncio

import aiosmtplib

from workers.smtp_pool import SmtpPool

CONNECTION_ERRORS = (
    OSError,
    asyncio.TimeoutError,
    aiosmtplib.SMTPConnectError,
    aiosmtplib.SMTPServerDisconnected,
    aiosmtplib.SMTPTimeoutError,
)


async def deliver(smtp: SmtpPool, sender: str, recipient: str, message: bytes) -> int:
    """The server's reply code for the message (its only recipient's, if refused there).

    MAIL, RCPT and DATA are sent one by one rather than through `sendmail`, which parses
    both addresses twice and rewrites the message's line ends twice more: a tenth of a
    lane's CPU, for a message already written with CRLF and addresses already checked
    (`check_address`)."""
    async with smtp.connection() as client:
        if client.is_ehlo_or_helo_needed:
            await client.ehlo()
        options, encoding = [], "ascii"
        if not recipient.isascii():
            if not client.supports_extension("smtputf8"):
                raise aiosmtplib.SMTPNotSupported("SMTPUTF8 is not offered")
            options, encoding = ["SMTPUTF8"], "utf-8"
        if client.supports_extension("size"):
            options.append(f"SIZE={len(message)}")  # RFC 1870: lets the server refuse it early
        try:
            await client.mail(sender, options=options, encoding=encoding)
            await client.rcpt(recipient, encoding=encoding)
            await client.data(message)
        except aiosmtplib.SMTPResponseException as error:
            await client.rset()  # the connection stays usable for the next message
            return int(error.code)
        return 250  # anything but a 2xx to DATA raises
