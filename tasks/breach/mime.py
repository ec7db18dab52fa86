"""Writing a message as bytes: header values, quoted-printable bodies, the `Date:` line."""

from __future__ import annotations

import binascii
import time
from email.header import Header
from email.utils import formatdate


def header_value(value: str) -> str:
    """A header value, RFC 2047-encoded when it is not ASCII."""
    return value if value.isascii() else Header(value, "utf-8").encode(linesep="\r\n")


def quoted_printable_line(line: str) -> bytes:
    """One line and its CRLF. Each line is encoded with its line end, so that b2a_qp
    writes CRLF soft breaks too (it follows the first line end it finds)."""
    return binascii.b2a_qp((line + "\r\n").encode("utf-8"), istext=True, header=False)


def quoted_printable(text: str) -> bytes:
    """The whole text quoted-printable, CRLF line ends."""
    crlf = text.replace("\r\n", "\n").replace("\n", "\r\n")
    return binascii.b2a_qp(crlf.encode("utf-8"), istext=True, header=False)


_date: tuple[int, bytes] = (0, b"")


def date_header() -> bytes:
    """`Date:` for now, formatted once a second."""
    global _date
    now = int(time.time())
    if _date[0] != now:
        _date = (now, f"Date: {formatdate(now, usegmt=True)}\r\n".encode("ascii"))
    return _date[1]
