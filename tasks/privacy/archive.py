"""The access-export archive: a ZIP of one JSON file per category, CSV copies of the
tabular ones, the instance databases as plain SQL, and a README in French and English.

Written entry by entry into a file (a temporary one, on disk), never held in memory:
rows arrive from a cursor, a dump from pg_dump's pipe.
"""

from __future__ import annotations

import csv
import io
import json
import subprocess  # nosec B404: pg_dump, fixed argv
import zipfile
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import IO, Any
from uuid import UUID

from workers.errors import JobError
from workers.libpq import tool_connection

CHUNK = 1 << 20  # bytes read from pg_dump at a time


class ExportFailed(JobError):
    """The archive could not be built; the message says which part, never what it held."""


def plain(value: Any) -> Any:
    """A value as JSON can hold it: dates in ISO 8601, ids and amounts as text."""
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, UUID | Decimal):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not exportable")


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False, default=plain)
    if isinstance(value, datetime | date):
        return value.isoformat()
    return str(value)


@dataclass
class Archive:
    zip: zipfile.ZipFile
    # (file name, what it is in French, in English), in the order written: the README.
    contents: list[tuple[str, str, str]] = field(default_factory=list)

    @classmethod
    def into(cls, file: IO[bytes]) -> Archive:
        return cls(zipfile.ZipFile(file, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=6))

    def _entry(self, name: str) -> IO[bytes]:
        return self.zip.open(name, "w", force_zip64=True)

    async def json_rows(self, name: str, rows: AsyncIterator[dict[str, Any]]) -> int:
        """A JSON array of the rows, one per line; how many."""
        count = 0
        with self._entry(name) as entry:
            entry.write(b"[")
            async for row in rows:
                entry.write(
                    (b",\n" if count else b"\n") + json.dumps(row, ensure_ascii=False, default=plain).encode()
                )
                count += 1
            entry.write(b"\n]\n")
        return count

    async def csv_rows(self, name: str, columns: list[str], rows: AsyncIterator[dict[str, Any]]) -> None:
        """The rows as CSV with a header line, in UTF-8 with a byte-order mark (what
        spreadsheets need to read accents right); JSON values as JSON text."""
        with self._entry(name) as entry, io.TextIOWrapper(entry, encoding="utf-8-sig", newline="") as text:
            writer = csv.writer(text)
            writer.writerow(columns)
            async for row in rows:
                writer.writerow([_cell(row[column]) for column in columns])

    def json_document(self, name: str, document: Any) -> None:
        with self._entry(name) as entry:
            entry.write(json.dumps(document, ensure_ascii=False, indent=2, default=plain).encode() + b"\n")

    def describe(self, name: str, about_fr: str, about_en: str) -> None:
        self.contents.append((name, about_fr, about_en))

    def dump_database(
        self, name: str, database_url: str, progress: Callable[[int], None] | None = None
    ) -> int:
        """A plain-SQL `pg_dump` of the database, streamed into the entry; its size.
        Blocking: run it in a thread."""
        url, env = tool_connection(database_url)
        # bandit: fixed argv, no shell; pg_dump from PATH as installed
        dump = subprocess.Popen(  # nosec B603, B607
            ["pg_dump", "--format=plain", "--no-owner", "--no-privileges", "--dbname", url],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,  # its messages may quote the database's contents
        )
        assert dump.stdout is not None
        size = 0
        try:
            with self._entry(name) as entry:
                while chunk := dump.stdout.read(CHUNK):
                    entry.write(chunk)
                    size += len(chunk)
                    if progress is not None:
                        progress(size)
            if dump.wait() != 0:
                raise ExportFailed(f"pg_dump of {name} exited with status {dump.returncode}")
        finally:
            if dump.poll() is None:
                dump.kill()
                dump.wait()
            dump.stdout.close()
        return size

    def close(self) -> None:
        """The README (last: it lists every file written) and the ZIP's directory."""
        with self._entry("README.txt") as entry:
            entry.write(readme(self.contents).encode())
        self.zip.close()


def readme(contents: list[tuple[str, str, str]]) -> str:
    french = "\n".join(f"- {name} : {about_fr}" for name, about_fr, _ in contents)
    english = "\n".join(f"- {name}: {about_en}" for name, _, about_en in contents)
    return f"""Vos données / Your data
=======================

Français
--------
Cette archive contient toutes les données que nous détenons sur votre compte, en réponse
à votre demande d'accès (RGPD, articles 15 et 20). Chaque catégorie est un fichier JSON ;
les catégories en tableau ont aussi une copie CSV (lisible par un tableur). Les données
viennent de notre base de données, sauf mention contraire (Stripe, notre prestataire de
paiement ; les bases de vos instances, copiées avec pg_dump).

{french}

English
-------
This archive holds all the data we keep about your account, in answer to your access
request (GDPR, articles 15 and 20). Each category is a JSON file; the tabular ones also
have a CSV copy (readable by a spreadsheet). The data comes from our database unless
said otherwise (Stripe, our payment provider; your instances' databases, copied with
pg_dump).

{english}
"""
