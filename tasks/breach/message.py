"""One breach notice as one email: `multipart/alternative`, text then HTML, French first.

Every value filled in is the customer's own data, so: line breaks in it become spaces
(a name is one line), the HTML part escapes everything (the operator's text is text too),
and no such value goes into a header — the only per-recipient header is `To`, the bare
address, checked for line breaks. The `Message-ID` is the same for a (campaign, account)
however many times the message is rendered, so a duplicate is visible as one.

The message is written as bytes, because building and flattening one with the email
package costs more CPU than a mass mailing can spend: both parts are
quoted-printable (7-bit, lines within limits), and the boundary holds `=_`, which
quoted-printable text can never contain. Each campaign's message is compiled once (see
`CompiledMessage`): per recipient only the few lines that hold their values are filled in and
encoded.
"""

from __future__ import annotations

import html
import re
import secrets
from dataclasses import dataclass
from email.utils import formataddr, parseaddr
from string import Template

from tasks.breach.mime import date_header, header_value, quoted_printable, quoted_printable_line
from tasks.breach.notice import Notice, NoticeError, refuse_line_breaks
from workers.mail import NotAMailbox, mailbox

FALLBACK_NAME = {"fr": "Madame, Monsieur", "en": "customer"}
SEPARATOR = "\n\n— English version —\n\n"


@dataclass(frozen=True)
class Recipient:
    account_id: int
    email: str
    first_name: str | None = None
    last_name: str | None = None
    business_name: str | None = None


def _one_line(value: str | None) -> str:
    return " ".join((value or "").split())


# What a notice may say of the recipient (tasks/breach/notice.py checks the placeholders).
_RECIPIENT_KEYS = ("name", "first_name", "last_name", "business_name")


def _values(recipient: Recipient, language: str, privacy_contact: str) -> dict[str, str]:
    """What fills the recipient's notice: each name on one line, without whitespace at
    its ends (what `CompiledMessage`'s compiled message relies on)."""
    first, last, business = (
        _one_line(recipient.first_name),
        _one_line(recipient.last_name),
        _one_line(recipient.business_name),
    )
    return {
        "name": f"{first} {last}".strip() or business or FALLBACK_NAME[language],
        "first_name": first,
        "last_name": last,
        "business_name": business,
        "privacy_contact": privacy_contact,
    }


def _paragraphs(text: str) -> list[str]:
    return [part.strip() for part in text.split("\n\n") if part.strip()]


def _paragraph_html(paragraph: str) -> str:
    return "<p>" + html.escape(paragraph).replace("\n", "<br>\n") + "</p>"


def _id_domain(sender: str) -> str:
    return parseaddr(sender)[1].rpartition("@")[2] or "bindery.localhost"


def message_id(campaign_id: int, account_id: int, sender: str) -> str:
    """The Message-ID of a (campaign, account): the same however often it is rendered."""
    return f"<breach.{campaign_id}.{account_id}@{_id_domain(sender)}>"


def check_address(email: str) -> str:
    """The shared check of every address bindery mails (`workers.mail.mailbox`)."""
    refuse_line_breaks(email, "the recipient's address")
    try:
        return mailbox(email)
    except NotAMailbox:
        raise NoticeError("the recipient's address is not a mail address") from None


# A recipient's value, (language, placeholder), while the campaign's message is compiled:
# a NUL and the value's number, which no notice holds (Postgres text never holds NUL).
_VALUES = [(language, key) for language in ("fr", "en") for key in _RECIPIENT_KEYS]
_MARK = re.compile("\x00([0-9]+)\x00")


def _mark(number: int) -> str:
    return f"\x00{number}\x00"


class _Line:
    """A line of a part that holds recipients' values: its text between the values, and
    which value goes in each gap."""

    def __init__(self, line: str, last: bool) -> None:
        pieces = _MARK.split(line)
        self.texts, self.values = pieces[0::2], [int(number) for number in pieces[1::2]]
        self.last = last  # the part's last line: no line end of its own

    def encoded(self, values: list[str]) -> bytes:
        filled = [self.texts[0]]
        for number, text in zip(self.values, self.texts[1:], strict=True):
            filled += (values[number], text)
        encoded = quoted_printable_line("".join(filled))
        return encoded[:-2] if self.last else encoded


def _compile(text: str) -> list[bytes | _Line]:
    """A part, encoded once where no value goes (quoted-printable works line by line)."""
    lines = text.replace("\r\n", "\n").split("\n")
    if not lines[-1]:  # the text ends with a line end, the encoding with that line's CRLF
        lines.pop()
        last = None
    else:
        last = len(lines) - 1
    compiled: list[bytes | _Line] = []
    for number, line in enumerate(lines):
        if _MARK.search(line):
            compiled.append(_Line(line, number == last))
        else:
            encoded = quoted_printable_line(line)
            compiled.append(encoded[:-2] if number == last else encoded)
    return compiled


def _fill(compiled: list[bytes | _Line], values: list[str]) -> bytes:
    return b"".join(piece if isinstance(piece, bytes) else piece.encoded(values) for piece in compiled)


class CompiledMessage:
    """A campaign's message, ready to be written for each recipient.

    It is compiled once: the notice rendered with a mark in place of each recipient's
    value, then each part's lines without a mark encoded. For a recipient, the marked
    lines are filled in and encoded, and nothing else is done again: several times faster
    than rendering each message whole (`reference_parts`), which matters because the
    worker's CPU is shared with the SMTP server's on a small machine.

    That is exact because a value is one line without whitespace at its ends (see
    `_values`): in a line, in a paragraph, in HTML escaping (character by character) it
    acts as the mark did. An empty value may not (a paragraph that ends with it loses the
    space before it), so for each way the names can be empty the compiled parts are
    compared once with the reference; the ways that differ are rendered whole.
    """

    def __init__(self, campaign_id: int, notice: Notice, *, sender: str, privacy_contact: str) -> None:
        self.campaign_id, self.notice, self.privacy_contact = campaign_id, notice, privacy_contact
        name, self.envelope_from = parseaddr(sender)
        self.id_domain = _id_domain(sender)  # once: the Message-ID of every recipient ends with it
        self.templates = {
            language: Template(getattr(notice, f"body_{language}")) for language in ("fr", "en")
        }
        self.boundary = f"=_bindery_{campaign_id}_{secrets.token_hex(8)}"
        subject = refuse_line_breaks(f"{notice.subject_fr} / {notice.subject_en}", "the subject")
        self.head = (
            f"From: {formataddr((name, self.envelope_from), charset='utf-8')}\r\n"
            f"Subject: {header_value(subject)}\r\n"
            "Auto-Submitted: auto-generated\r\n"  # RFC 3834: no vacation replies, please
            "Content-Language: fr, en\r\n"
            "MIME-Version: 1.0\r\n"
            f'Content-Type: multipart/alternative; boundary="{self.boundary}"\r\n'
        ).encode("ascii")
        marked = {
            language: {
                **{key: _mark(_VALUES.index((language, key))) for key in _RECIPIENT_KEYS},
                "privacy_contact": privacy_contact,
            }
            for language in ("fr", "en")
        }
        self.compiled: tuple[list[bytes | _Line], list[bytes | _Line]] | None = None
        self.exact: set[tuple[bool, bool, bool]] = set()
        if "\x00" not in notice.body_fr + notice.body_en:
            text, page = self._texts(marked)
            self.compiled = (_compile(text), _compile(page))
            self.exact = {empty for empty in _EMPTY_NAMES if self._compiles_exactly(empty)}

    def message_id(self, account_id: int) -> str:
        return f"<breach.{self.campaign_id}.{account_id}@{self.id_domain}>"

    def _texts(self, values: dict[str, dict[str, str]]) -> tuple[str, str]:
        filled = {
            language: template.substitute(values[language]) for language, template in self.templates.items()
        }
        text = filled["fr"].strip() + SEPARATOR + filled["en"].strip() + "\n"
        page = (
            '<!DOCTYPE html>\n<html lang="fr"><head><meta charset="utf-8"></head><body>\n'
            + _html(filled["fr"])
            + '\n<hr>\n<div lang="en">\n'
            + _html(filled["en"])
            + "\n</div></body></html>\n"
        )
        return text, page

    def _values_of(self, recipient: Recipient) -> dict[str, dict[str, str]]:
        return {language: _values(recipient, language, self.privacy_contact) for language in ("fr", "en")}

    def texts(self, recipient: Recipient) -> tuple[str, str]:
        """The text and the HTML of the recipient's message."""
        return self._texts(self._values_of(recipient))

    def reference_parts(self, recipient: Recipient) -> tuple[bytes, bytes]:
        """The two parts encoded, rendered whole: what the compiled parts must equal."""
        text, page = self.texts(recipient)
        return quoted_printable(text), quoted_printable(page)

    def parts(self, recipient: Recipient) -> tuple[bytes, bytes]:
        """The two parts encoded: from the compiled message when that is exact."""
        values = self._values_of(recipient)
        fr = values["fr"]
        if (not fr["first_name"], not fr["last_name"], not fr["business_name"]) not in self.exact:
            return self.reference_parts(recipient)
        return self._compiled_parts(values)

    def _compiled_parts(self, values: dict[str, dict[str, str]]) -> tuple[bytes, bytes]:
        assert self.compiled is not None  # else no way of being empty is exact
        plain = [values[language][key] for language, key in _VALUES]
        text, page = self.compiled
        return _fill(text, plain), _fill(page, [html.escape(value) for value in plain])

    def _compiles_exactly(self, empty: tuple[bool, bool, bool]) -> bool:
        """Whether the compiled parts equal the reference for names empty in this way."""
        first, last, business = ("" if blank else "x" for blank in empty)
        probe = Recipient(0, "", first, last, business)
        return self._compiled_parts(self._values_of(probe)) == self.reference_parts(probe)

    def message(self, recipient: Recipient) -> bytes:
        """The whole message, CRLF line ends. The `To` header holds the bare address, raw
        UTF-8 when it is not ASCII (sent only with SMTPUTF8)."""
        to = check_address(recipient.email)
        text, page = self.parts(recipient)
        boundary = self.boundary.encode("ascii")
        part_head = b"Content-Transfer-Encoding: quoted-printable\r\n\r\n"
        return b"".join(
            (
                f"To: {to}\r\n".encode(),
                date_header(),
                f"Message-ID: {self.message_id(recipient.account_id)}\r\n".encode(),
                self.head,
                b"\r\n--" + boundary + b"\r\n",
                b'Content-Type: text/plain; charset="utf-8"\r\n' + part_head,
                text,
                b"\r\n--" + boundary + b"\r\n",
                b'Content-Type: text/html; charset="utf-8"\r\n' + part_head,
                page,
                b"\r\n--" + boundary + b"--\r\n",
            )
        )


# Whether the first name, the last name and the business name are empty: every way.
_EMPTY_NAMES = [
    (first, last, business) for first in (False, True) for last in (False, True) for business in (False, True)
]


def _html(filled: str) -> str:
    return "\n".join(_paragraph_html(paragraph) for paragraph in _paragraphs(filled))


__all__ = ["CompiledMessage", "NoticeError", "Recipient", "check_address", "message_id"]
