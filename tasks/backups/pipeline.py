"""`pg_dump -Fc` → zstd → age → S3 multipart upload, streamed in bounded memory.

The blocking part runs in one thread: pg_dump writes to a pipe, `_Compressing` reads it
and compresses on demand, pyrage encrypts from that reader into `_Parts`, which cuts the
ciphertext into parts and hands each to `upload_part` (S3 calls made on the event loop,
a few parts in flight while the next is written). Memory holds a few chunks and those
parts, each at most SPOOL_IN_MEMORY (larger ones wait on disk), whatever the database size.

zstd and age succeed happily on a truncated input, so pg_dump's exit status decides:
a dump that did not exit 0 fails the backup, and the caller aborts the upload.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO, Protocol

import pyrage
import zstandard

from workers.libpq import tool_connection

CHUNK = 1 << 20
MIN_PART = 5 << 20  # S3's smallest part (but the last)
MAX_PARTS = 1000  # Scaleway's limit per multipart upload
SPOOL_IN_MEMORY = 8 << 20  # a part larger than this waits on disk
# pg_dump's pipe: room for a whole chunk and more, so that pg_dump goes on writing while
# this thread compresses, encrypts and hands over a part, instead of stopping every 64 KiB
# (the kernel's default) for it. Linux's limit for an unprivileged process is 1 MiB.
DUMP_PIPE_BYTES = 1 << 20


class BackupFailed(Exception):
    """A stage failed; the message says which (no data, no connection string)."""


def _age_recipients(recipients: list[str]) -> list[pyrage.x25519.Recipient]:
    return [pyrage.x25519.Recipient.from_str(recipient) for recipient in recipients]


def seal(data: bytes, recipients: list[str]) -> bytes:
    """`data` age-encrypted to the backup recipients, as the dumps are."""
    sealed: bytes = pyrage.encrypt(data, _age_recipients(recipients))
    return sealed


def part_size_for(database_bytes: int) -> int:
    """Parts large enough that even an incompressible dump stays under MAX_PARTS, with room."""
    needed = -(-int(database_bytes * 1.2) // (MAX_PARTS - 100))
    return max(MIN_PART, -(-needed // (1 << 20)) * (1 << 20))


class _Compressing:
    """A file-like reader: pg_dump's output, zstd-compressed, as pyrage asks for it."""

    def __init__(self, source: IO[bytes], progress: Callable[[int], None] | None) -> None:
        self.source = source
        self.progress = progress
        # Level 1: it keeps up with pg_dump on two cores; higher levels store a little less
        # and slow the whole backup down to their own speed.
        self.compressor = zstandard.ZstdCompressor(level=1).compressobj()
        self.pending = bytearray()  # deleting from its front is cheap, unlike bytes slicing
        self.raw_bytes = 0
        self.finished = False

    def read(self, size: int = -1) -> bytes:
        while not self.finished and (size < 0 or len(self.pending) < size):
            chunk = self.source.read(CHUNK)
            if chunk:
                self.raw_bytes += len(chunk)
                self.pending += self.compressor.compress(chunk)
                if self.progress is not None:
                    self.progress(self.raw_bytes)
            else:
                self.pending += self.compressor.flush()
                self.finished = True
        if size < 0:
            size = len(self.pending)
        out = bytes(self.pending[:size])
        del self.pending[:size]
        return out


UploadPart = Callable[[int, IO[bytes], int], None]


class _Parts:
    """A file-like writer: the ciphertext, hashed and cut into parts.

    Each part is written to a spool that stays in memory up to SPOOL_IN_MEMORY and moves to
    a temporary file beyond: parts of a large database must be large (1,000 at most), and
    memory stays bounded whatever the size. `upload_part(number, spool, size)` takes the
    spool over (and closes it once sent)."""

    def __init__(self, part_size: int, upload_part: UploadPart) -> None:
        self.part_size = part_size
        self.upload_part = upload_part
        self.spool: IO[bytes] | None = None  # the part being written
        self.spooled = 0
        self.sha256 = hashlib.sha256()
        self.size = 0
        self.parts = 0
        # What `upload_part` raised: pyrage reports any writer error as its own EncryptError.
        self.failure: BaseException | None = None

    def write(self, data: bytes) -> int:
        self.sha256.update(data)
        self.size += len(data)
        view = memoryview(data)
        while view:
            piece = view[: self.part_size - self.spooled]
            if self.spool is None:
                self.spool = _new_spool()
            self.spool.write(piece)
            self.spooled += len(piece)
            view = view[len(piece) :]
            if self.spooled == self.part_size:
                self._send()
        return len(data)

    def flush(self) -> None:
        """pyrage flushes as it goes; parts are cut only at `close`."""

    def close(self) -> None:
        if self.spooled or self.parts == 0:
            self._send()

    def discard(self) -> None:
        """After a failure: the part being written will never be sent."""
        if self.spool is not None:
            self.spool.close()
            self.spool = None

    def _send(self) -> None:
        self.parts += 1
        if self.parts > MAX_PARTS:
            raise BackupFailed(f"more than {MAX_PARTS} parts: the part size was too small")
        spool, size = self.spool or _new_spool(), self.spooled
        self.spool, self.spooled = None, 0
        spool.seek(0)
        try:
            self.upload_part(self.parts, spool, size)
        except BaseException as error:
            self.failure = error
            raise


def _new_spool() -> IO[bytes]:
    return tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY, prefix="bindery-part-")


@dataclass(frozen=True)
class Streamed:
    dump_bytes: int
    object_bytes: int
    sha256: str
    parts: int


def stream_backup(
    database_url: str,
    recipients: list[str],
    part_size: int,
    upload_part: UploadPart,
    snapshot: str | None = None,
    progress: Callable[[int], None] | None = None,
) -> Streamed:
    """Dump, compress, encrypt and hand over every part. Blocking: run it in a thread.
    `progress` is told the bytes dumped so far, chunk by chunk (from this thread)."""
    keys = _age_recipients(recipients)
    url, env = tool_connection(database_url)
    # bandit: fixed argv, no shell; pg_dump from PATH as installed
    dump = subprocess.Popen(  # nosec B603, B607
        # -Z0: zstd compresses better and faster than pg_dump's own zlib.
        [
            "pg_dump",
            "-Fc",
            "-Z0",
            "--no-owner",
            *([f"--snapshot={snapshot}"] if snapshot else []),
            "--dbname",
            url,
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,  # its messages may name the database's contents; the status is enough
    )
    assert dump.stdout is not None
    _widen_pipe(dump.stdout)
    reader, writer = _Compressing(dump.stdout, progress), _Parts(part_size, upload_part)
    try:
        try:
            pyrage.encrypt_io(reader, writer, keys)
        except Exception:
            if writer.failure is not None:
                raise writer.failure from None  # the upload's own error, not pyrage's wrapper
            raise
        status = dump.wait()
        if status != 0:
            raise BackupFailed(f"pg_dump exited with status {status}")
        writer.close()
    finally:
        writer.discard()
        if dump.poll() is None:
            dump.kill()
            dump.wait()
        dump.stdout.close()
    return Streamed(reader.raw_bytes, writer.size, writer.sha256.hexdigest(), writer.parts)


def _widen_pipe(pipe: IO[bytes]) -> None:
    # A smaller pipe only makes the dump slower: a refusal (another kernel, a lower
    # fs.pipe-max-size) changes nothing else.
    set_size = getattr(fcntl, "F_SETPIPE_SZ", None)
    if set_size is not None:
        with contextlib.suppress(OSError):
            fcntl.fcntl(pipe.fileno(), set_size, DUMP_PIPE_BYTES)


class Sink(Protocol):
    def write(self, data: bytes, /) -> int: ...
    def flush(self) -> None: ...


def restore_stream(read_chunk: Callable[[], bytes], identity: str, target: Sink) -> None:
    """Decrypt and decompress an object read chunk by chunk into `target` (e.g. pg_restore's stdin)."""

    class _Source:
        """Never more than asked for: pyrage reads into a buffer of `size` bytes."""

        def __init__(self) -> None:
            self.pending = b""

        def read(self, size: int = -1) -> bytes:
            while size < 0 or len(self.pending) < size:
                chunk = read_chunk()
                if not chunk:
                    break
                self.pending += chunk
            if size < 0:
                size = len(self.pending)
            out, self.pending = self.pending[:size], self.pending[size:]
            return out

    class _Decompressing:
        def __init__(self) -> None:
            self.decompressor = zstandard.ZstdDecompressor().decompressobj()

        def write(self, data: bytes) -> int:
            target.write(self.decompressor.decompress(data))
            return len(data)

        def flush(self) -> None:
            target.flush()

    pyrage.decrypt_io(_Source(), _Decompressing(), [pyrage.x25519.Identity.from_str(identity)])
