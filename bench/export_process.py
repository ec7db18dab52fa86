"""One account's access export in a process of its own, as a worker runs it: timed, with
the process's peak RSS (VmHWM). JSON on stdout.

Usage: python -m bench.export_process ACCOUNT_ID [nowhere]

`nowhere`: only build the archive, into a sink that counts its bytes (no S3, no email):
where the time goes before the upload.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

from bench.backup_process import peak_rss_bytes
from tasks.privacy.export import Exporting, export_account, write_archive
from tasks.privacy.register import open_request
from workers.db import create_pool
from workers.settings import load_settings
from workers.stripe_calls import RateLimitedStripe
from workers.stripe_client import make_stripe_client


class Nowhere:
    def __init__(self) -> None:
        self.size = 0

    def write(self, data: bytes) -> int:
        self.size += len(data)
        return len(data)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


async def main(account_id: int, nowhere: bool) -> dict[str, float]:
    settings = load_settings()
    pool = await create_pool(settings.database_url, max_size=2)
    client, http = make_stripe_client(settings)
    try:
        clients = Exporting(settings, pool, client, RateLimitedStripe(None))
        async with pool.acquire() as conn:
            request_id = await open_request(conn, "export", account_id, received_by="bench")
        started = time.perf_counter()
        if nowhere:
            sink = Nowhere()
            await write_archive(clients, sink, account_id, with_instances=True)
            size = sink.size
        else:
            size = (await export_account(clients, account_id, request_id, with_instances=True))[
                "archive_bytes"
            ]
        seconds = time.perf_counter() - started
    finally:
        await http.close_async()
        await pool.close()
    return {"seconds": seconds, "archive_bytes": size, "peak_rss": peak_rss_bytes()}


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(int(sys.argv[1]), sys.argv[2:] == ["nowhere"]))))
