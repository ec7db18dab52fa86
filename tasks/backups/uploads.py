"""S3 multipart uploads for the backup pipeline: parts sent from its thread on the event
loop, a few at once, and aborts that never hide the failure that led to them."""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from concurrent.futures import Future
from typing import IO, Any

from botocore.exceptions import BotoCoreError, ClientError

from workers.logs import get_logger
from workers.s3 import describe_s3_error

log = get_logger(__name__)
IN_FLIGHT = 2  # parts sent to S3 at once while the pipeline writes the next


async def abort_upload(client: Any, bucket: str, key: str, upload_id: str) -> None:
    """Abort a multipart upload; one S3 cannot abort now is left to the sweeper and the
    bucket's lifecycle rule, and must not hide the failure that led here."""
    try:
        await client.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") != "NoSuchUpload":
            log.warning("multipart upload not aborted", error=describe_s3_error(error))
    except BotoCoreError as error:
        log.warning("multipart upload not aborted", error=describe_s3_error(error))


class PartUploader:
    """`upload_part` for the pipeline, called from its thread: each part goes to S3 on the
    event loop while the pipeline writes the next; at most IN_FLIGHT wait at once."""

    def __init__(self, client: Any, bucket: str, key: str, upload_id: str, loop: asyncio.AbstractEventLoop):
        self.client, self.bucket, self.key, self.upload_id, self.loop = client, bucket, key, upload_id, loop
        self.in_flight: deque[tuple[int, Future[Any], IO[bytes]]] = deque()
        self.etags: dict[int, str] = {}

    def __call__(self, number: int, body: IO[bytes], size: int) -> None:
        while len(self.in_flight) >= IN_FLIGHT:
            self._wait_oldest()
        call = self.client.upload_part(
            Bucket=self.bucket,
            Key=self.key,
            UploadId=self.upload_id,
            PartNumber=number,
            Body=body,
            ContentLength=size,
        )
        self.in_flight.append((number, asyncio.run_coroutine_threadsafe(call, self.loop), body))

    def _wait_oldest(self) -> None:
        number, sent, body = self.in_flight.popleft()
        try:
            self.etags[number] = sent.result()["ETag"]
        finally:
            body.close()

    def finish(self) -> None:
        """Wait for every part; raise the first failure."""
        while self.in_flight:
            self._wait_oldest()

    def drain(self) -> None:
        """After a failure: let what is in flight end, whatever it says."""
        while self.in_flight:
            with contextlib.suppress(BaseException):
                self._wait_oldest()

    def listing(self) -> list[dict[str, Any]]:
        return [{"PartNumber": number, "ETag": self.etags[number]} for number in sorted(self.etags)]
