"""An aiosmtpd SMTP server that keeps every message it receives as a file.

`python -m workers.devstack.smtp_sink --port 8025 --dir .dev/mail` — one `.eml` file
per message and one log line (its Message-ID and size; never an address).

For the tests of mass mail it can also misbehave like a real provider: `--tempfail-once
TEXT` answers 451 to the first RCPT of each address containing TEXT, `--reject TEXT`
answers 550 to every address containing it, `--reject-data-once TEXT` answers 550 to the
first message whose content holds TEXT (a filter refusing it once), `--stall-data-once
TEXT:SECONDS` answers the first such message's DATA only after SECONDS (a provider that
hangs), `--no-smtputf8` does not offer SMTPUTF8.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import time
from email.parser import BytesHeaderParser
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller


class MaildirHandler:
    def __init__(
        self,
        directory: Path,
        tempfail_once: str | None = None,
        reject: str | None = None,
        reject_data_once: str | None = None,
        stall_data_once: tuple[bytes, float] | None = None,
    ) -> None:
        self.directory = directory
        self.directory.mkdir(parents=True, exist_ok=True)
        self.count = 0
        self.tempfail_once, self.reject = tempfail_once, reject
        self.tempfailed: set[str] = set()
        self.reject_data_once = reject_data_once.encode() if reject_data_once else None
        self.stall_data_once = stall_data_once

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]
    ) -> str:
        if self.reject and self.reject in address:
            return "550 5.1.1 mailbox unavailable"
        if self.tempfail_once and self.tempfail_once in address and address not in self.tempfailed:
            self.tempfailed.add(address)
            return "451 4.3.0 try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        data: bytes = envelope.original_content or envelope.content
        if self.reject_data_once and self.reject_data_once in data:
            self.reject_data_once = None
            print("smtp-sink: refused a message (550) once", flush=True)
            return "550 5.7.1 message refused"
        if self.stall_data_once and self.stall_data_once[0] in data:
            seconds = self.stall_data_once[1]
            self.stall_data_once = None
            print(f"smtp-sink: stalling a message's DATA for {seconds} s once", flush=True)
            await asyncio.sleep(seconds)
        self.count += 1
        name = f"{time.time_ns()}-{self.count}.eml"
        temporary = self.directory / (name + ".tmp")
        temporary.write_bytes(data)
        temporary.rename(self.directory / name)  # readers never see half a message
        message_id = BytesHeaderParser().parsebytes(data).get("Message-ID", "-")
        print(f"smtp-sink: received {message_id} ({len(data)} bytes) -> {name}", flush=True)
        return "250 OK"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8025)
    parser.add_argument("--dir", type=Path, default=Path(".dev/mail"))
    parser.add_argument("--tempfail-once", metavar="TEXT")
    parser.add_argument("--reject", metavar="TEXT")
    parser.add_argument("--reject-data-once", metavar="TEXT")
    parser.add_argument("--stall-data-once", metavar="TEXT:SECONDS")
    parser.add_argument("--no-smtputf8", action="store_true")
    args = parser.parse_args()
    stall = None
    if args.stall_data_once:
        text, _, seconds = args.stall_data_once.rpartition(":")
        stall = (text.encode(), float(seconds))
    controller = Controller(
        MaildirHandler(args.dir, args.tempfail_once, args.reject, args.reject_data_once, stall),
        hostname=args.host,
        port=args.port,
        enable_SMTPUTF8=not args.no_smtputf8,
    )
    controller.start()
    print(f"smtp-sink: listening on {args.host}:{args.port}, writing to {args.dir}", flush=True)
    stop = asyncio.Event()

    async def wait() -> None:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        await stop.wait()

    try:
        asyncio.run(wait())
    finally:
        controller.stop()


if __name__ == "__main__":
    main()
