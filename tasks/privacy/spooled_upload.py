"""An archive uploaded while it is being written: bytes go to a temporary file on disk,
and every full part is sent to S3 (a multipart upload) as soon as it is there.

The writer never waits for the network (the disk absorbs what the upload has not sent
yet) and memory holds the parts in flight only. What is written is never rewritten: the
archive's writer (tasks/privacy/zip_stream.py) goes forward only, each entry's sizes
after its data.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import threading
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from workers.logs import get_logger

log = get_logger(__name__)
PART_SIZE = 8 << 20  # S3 wants 5 MB at least, but the last part
IN_FLIGHT = 2


class SpooledUpload:
    """A write-only file (for the archive's writer) whose bytes end up in `bucket/key`.
    `write` may be called from any thread, one writer at a time; `finish` runs on the
    event loop."""

    def __init__(self, client: Any, bucket: str, key: str) -> None:
        self.client, self.bucket, self.key = client, bucket, key
        # Closed by `finish` or `abandon`, which every use ends with.
        self._file = tempfile.TemporaryFile(prefix="bindery-export-")  # noqa: SIM115
        self._written = 0
        self._announced = 0  # bytes written when the sender was last woken
        self._lock = threading.Lock()
        self._loop = asyncio.get_running_loop()
        self._more = asyncio.Event()
        self._done_writing = False
        self._upload_id: str | None = None
        self._sender: asyncio.Task[list[dict[str, Any]]] | None = None
        self._in_flight: set[asyncio.Task[None]] = set()

    # The file interface the archive's writer uses.
    def write(self, data: bytes | bytearray | memoryview) -> int:
        with self._lock:
            view = memoryview(data)
            while view:  # a write to a file may take less than it was given
                view = view[os.write(self._file.fileno(), view) :]
            self._written += len(data)
            full = self._written - self._announced >= PART_SIZE
            if full:
                self._announced = self._written
        if full:  # the sender is woken once a part, not once a write
            self._loop.call_soon_threadsafe(self._more.set)
        return len(data)

    def flush(self) -> None:
        pass  # every write is in the file already

    def close(self) -> None:
        pass  # `finish` ends the upload

    @property
    def size(self) -> int:
        return self._written

    async def start(self) -> None:
        created = await self.client.create_multipart_upload(Bucket=self.bucket, Key=self.key)
        self._upload_id = created["UploadId"]
        self._sender = asyncio.create_task(self._send_parts())

    async def _send_parts(self) -> list[dict[str, Any]]:
        parts: list[dict[str, Any]] = []
        sent = 0
        while True:
            await self._more.wait()
            self._more.clear()
            while self._written - sent >= PART_SIZE or (self._done_writing and self._written > sent):
                length = min(PART_SIZE, self._written - sent)
                if len(self._in_flight) >= IN_FLIGHT:
                    finished, self._in_flight = await asyncio.wait(
                        self._in_flight, return_when=asyncio.FIRST_COMPLETED
                    )
                    for task in finished:
                        task.result()  # a failed part fails the upload
                part = {"PartNumber": len(parts) + 1}
                parts.append(part)
                self._in_flight.add(asyncio.create_task(self._send(part, sent, length)))
                sent += length
            if self._done_writing and sent == self._written:
                await asyncio.gather(*self._in_flight)
                return parts

    async def _send(self, part: dict[str, Any], offset: int, length: int) -> None:
        body = os.pread(self._file.fileno(), length, offset)
        answer = await self.client.upload_part(
            Bucket=self.bucket,
            Key=self.key,
            UploadId=self._upload_id,
            PartNumber=part["PartNumber"],
            Body=body,
        )
        part["ETag"] = answer["ETag"]

    async def finish(self) -> None:
        """Send what is left and complete the upload."""
        assert self._sender is not None
        self._done_writing = True
        self._more.set()
        parts = await self._sender
        await self.client.complete_multipart_upload(
            Bucket=self.bucket, Key=self.key, UploadId=self._upload_id, MultipartUpload={"Parts": parts}
        )
        self._file.close()

    async def abandon(self) -> None:
        """Stop sending, abort the upload (S3 frees its parts) and drop the file."""
        for task in (*self._in_flight, *([self._sender] if self._sender else [])):
            task.cancel()
        await asyncio.gather(
            *self._in_flight, *([self._sender] if self._sender else []), return_exceptions=True
        )
        self._file.close()
        if self._upload_id is not None:
            try:
                await self.client.abort_multipart_upload(
                    Bucket=self.bucket, Key=self.key, UploadId=self._upload_id
                )
            except (ClientError, BotoCoreError):
                # The error that led here matters more; the bucket's lifecycle rule aborts
                # an upload left behind after a day.
                log.warning("export upload not aborted", error_type="S3")
