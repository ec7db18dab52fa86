"""A ZIP archive written forward only, its entries deflated by ISA-L.

Why not `zipfile`: it deflates with zlib, and deflating an instance's dump with zlib
costs more CPU than pg_dump writing it; ISA-L's deflate (the `isal` package) writes the
same format several times faster. Writing forward only also suits an upload that sends
each part as soon as it is written: nothing is ever rewritten.

The format (PKWARE's APPNOTE): each entry is a local header, its deflated data, and a
data descriptor carrying its CRC-32 and sizes (known only once the data is written);
the central directory lists every entry at the end. ZIP64 throughout, so no size or
offset is too large; names in UTF-8 (flag bit 11).
"""

from __future__ import annotations

import struct
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Protocol

from isal import isal_zlib

LEVEL = 1  # ISA-L's levels are 0-3; 1 is its fast default, smaller than zlib's 1 on dumps
VERSION = 45  # 4.5: ZIP64
FLAGS = 0x0008 | 0x0800  # sizes in a data descriptor; UTF-8 names
DEFLATED = 8
UNKNOWN = 0xFFFFFFFF  # "see the ZIP64 field"
COPY_CHUNK = 1 << 20


class Writable(Protocol):
    def write(self, data: bytes, /) -> int: ...


@dataclass(frozen=True)
class _Written:
    name: bytes
    offset: int
    crc: int
    compressed: int
    size: int
    dos_time: int
    dos_date: int


def _dos_moment(moment: float) -> tuple[int, int]:
    t = time.localtime(moment)
    return (t.tm_hour << 11) | (t.tm_min << 5) | (t.tm_sec // 2), ((t.tm_year - 1980) << 9) | (
        t.tm_mon << 5
    ) | t.tm_mday


class Entry:
    """One entry's data, deflated and counted as it is written; the deflated bytes go to
    `out` (the archive, or a file of their own: `Deflated`)."""

    def __init__(self, out: Callable[[bytes], object]) -> None:
        self._out = out
        self._deflate = isal_zlib.compressobj(LEVEL, isal_zlib.DEFLATED, -15)
        self.crc = 0
        self.size = 0
        self.compressed = 0

    def write(self, data: bytes) -> int:
        self.crc = isal_zlib.crc32(data, self.crc)
        self.size += len(data)
        self._emit(self._deflate.compress(data))
        return len(data)

    def _emit(self, data: bytes) -> None:
        if data:
            self._out(data)
            self.compressed += len(data)

    def finish(self) -> None:
        self._emit(self._deflate.flush())


class Deflated:
    """An entry deflated ahead, into a temporary file, while others are written: what
    `ZipStream.add` then copies in. Close it when done."""

    def __init__(self) -> None:
        self.file = tempfile.TemporaryFile(prefix="bindery-entry-")  # noqa: SIM115 (closed by close())
        self.entry = Entry(self.file.write)

    def close(self) -> None:
        self.file.close()


class ZipStream:
    def __init__(self, out: Writable) -> None:
        self._out = out
        self._offset = 0
        self._entries: list[_Written] = []

    def emit(self, data: bytes) -> None:
        self._out.write(data)
        self._offset += len(data)

    @contextmanager
    def open(self, name: str) -> Iterator[Entry]:
        """Write one entry: what the block writes to the entry is its content."""
        start = self._begin(name)
        entry = Entry(self.emit)
        yield entry
        entry.finish()
        self._end(start, entry)

    def add(self, name: str, deflated: Deflated) -> None:
        """An entry deflated ahead, copied in as it is. Blocking: run it in a thread."""
        deflated.entry.finish()
        start = self._begin(name)
        deflated.file.seek(0)
        while chunk := deflated.file.read(COPY_CHUNK):
            self.emit(chunk)
        self._end(start, deflated.entry)

    def _begin(self, name: str) -> tuple[bytes, int, int, int]:
        """The entry's local header; (its name, its offset, its DOS time and date)."""
        encoded = name.encode()
        offset = self._offset
        dos_time, dos_date = _dos_moment(time.time())
        zip64 = struct.pack("<HHQQ", 0x0001, 16, 0, 0)  # sizes follow the data
        self.emit(
            struct.pack(
                "<4sHHHHHIIIHH",
                b"PK\x03\x04",
                VERSION,
                FLAGS,
                DEFLATED,
                dos_time,
                dos_date,
                0,
                UNKNOWN,
                UNKNOWN,
                len(encoded),
                len(zip64),
            )
            + encoded
            + zip64
        )
        return encoded, offset, dos_time, dos_date

    def _end(self, start: tuple[bytes, int, int, int], entry: Entry) -> None:
        """The entry's data descriptor, and its line of the central directory to come."""
        encoded, offset, dos_time, dos_date = start
        self.emit(struct.pack("<4sIQQ", b"PK\x07\x08", entry.crc, entry.compressed, entry.size))
        self._entries.append(
            _Written(encoded, offset, entry.crc, entry.compressed, entry.size, dos_time, dos_date)
        )

    def close(self) -> None:
        """The central directory, and the records that say where it is."""
        start = self._offset
        for e in self._entries:
            zip64 = struct.pack("<HHQQQ", 0x0001, 24, e.size, e.compressed, e.offset)
            self.emit(
                struct.pack(
                    "<4sHHHHHHIIIHHHHHII",
                    b"PK\x01\x02",
                    VERSION,
                    VERSION,
                    FLAGS,
                    DEFLATED,
                    e.dos_time,
                    e.dos_date,
                    e.crc,
                    UNKNOWN,
                    UNKNOWN,
                    len(e.name),
                    len(zip64),
                    0,
                    0,
                    0,
                    0,
                    UNKNOWN,
                )
                + e.name
                + zip64
            )
        size, count, end = self._offset - start, len(self._entries), self._offset
        self.emit(
            struct.pack("<4sQHHIIQQQQ", b"PK\x06\x06", 44, VERSION, VERSION, 0, 0, count, count, size, start)
        )
        self.emit(struct.pack("<4sIQI", b"PK\x06\x07", 0, end, 1))
        self.emit(
            struct.pack(
                "<4sHHHHIIH", b"PK\x05\x06", 0, 0, min(count, 0xFFFF), min(count, 0xFFFF), UNKNOWN, UNKNOWN, 0
            )
        )
