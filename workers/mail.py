"""Sending one email through `SMTP_URL` (TLS as workers/smtp_server.py says), and the one
check of an address that every mail bindery sends goes through."""

from __future__ import annotations

import hashlib
import re
from email.message import EmailMessage
from email.utils import formatdate, make_msgid

import aiosmtplib

from workers.errors import JobError
from workers.settings import Settings
from workers.smtp_server import quit_or_close

# What an address may not hold outside a quoted local part, which no customer address
# needs: whitespace, and the characters that separate, comment or quote in a header
# (`a@x.fr, b@y.org` is two mailboxes; `x <a@b>` is a display name).
_NOT_IN_MAILBOX = re.compile(r'[\s<>(),;:"\[\]\\]')


class NotAMailbox(JobError):
    """The address is not exactly one mailbox; it is never sent to. Names no address."""


class MailRefused(JobError):
    """The server refused the message for good (5xx); the reply code, never the address."""

    def __init__(self, code: int) -> None:
        super().__init__(f"the mail server refused the message ({code})")
        self.code = code


def mailbox(address: str, what: str = "the address") -> str:
    """`address` when it is exactly one mailbox (local@domain, nothing else), else NotAMailbox."""
    local, at, domain = address.rpartition("@")
    if (
        not at
        or not local
        or not domain
        or "@" in local
        or _NOT_IN_MAILBOX.search(address)
        or not address.isprintable()
    ):
        raise NotAMailbox(f"{what} is not exactly one mail address")
    return address


def permanent_refusal(error: Exception) -> int | None:
    """The 5xx reply code when the server refused the recipient or the message for good;
    None for what is worth trying again (4xx, a lost connection, our sender refused)."""
    if isinstance(error, aiosmtplib.SMTPRecipientsRefused):
        codes = [refused.code for refused in error.recipients]
        return codes[0] if codes and all(500 <= code < 600 for code in codes) else None
    if isinstance(error, aiosmtplib.SMTPRecipientRefused | aiosmtplib.SMTPDataError):
        return error.code if 500 <= error.code < 600 else None
    return None


def customer_message(settings: Settings, to: str, subject: str, body: str, key: str) -> EmailMessage:
    """A plain-text message to a customer. Its Message-ID is derived from `key` (what it is
    for, e.g. `erasure-done-7`): a message sent again is recognisably the same one."""
    message = EmailMessage()  # refuses CR/LF in header values
    message["From"] = settings.mail_from
    message["To"] = to
    message["Subject"] = subject
    message["Date"] = formatdate(localtime=False)
    message["Auto-Submitted"] = "auto-generated"
    domain = settings.mail_from.rsplit("@", 1)[-1].rstrip(">") or "bindery.localhost"
    message["Message-ID"] = make_msgid(idstring=hashlib.sha256(key.encode()).hexdigest()[:24], domain=domain)
    message.set_content(body)
    return message


def operator_alert(settings: Settings, to: str, subject: str, body: str) -> EmailMessage:
    """A plain-text alert to an operator's address (ids only in it, never a customer's data)."""
    message = EmailMessage()  # refuses CR/LF in header values
    message["From"] = settings.mail_from
    message["To"] = to
    message["Subject"] = f"bindery: {subject}"
    message["Date"] = formatdate()
    message["Auto-Submitted"] = "auto-generated"  # RFC 3834: no vacation replies
    message.set_content(body)
    return message


async def send_message(settings: Settings, message: EmailMessage) -> None:
    """Send one message to its one `To` mailbox. Raises NotAMailbox or MailRefused for what
    will never be delivered, MailNotProtected when TLS cannot be had; 4xx replies and
    connection errors raise as aiosmtplib's."""
    mailbox(str(message["To"] or ""), "the recipient's address")
    client = await settings.smtp_server().connected()
    try:
        await client.send_message(message)
    except aiosmtplib.SMTPException as error:
        code = permanent_refusal(error)
        if code is None:
            raise
        # aiosmtplib's exception names the address: it stays here.
        raise MailRefused(code) from None
    finally:
        await quit_or_close(client)
