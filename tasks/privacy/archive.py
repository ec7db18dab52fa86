"""The access-export archive: a ZIP of one JSON file per category, CSV copies of the
tabular ones, the instance databases as plain SQL, and a README in French and English.

Written forward only, never held in memory: a dump streams from pg_dump's pipe into its
entry; rows arrive from Postgres's COPY already written as JSON or CSV, into entries
deflated aside (`Deflated`) while the dumps run, copied in after.
"""

from __future__ import annotations

import codecs
import json
import subprocess  # nosec B404: pg_dump, fixed argv
from dataclasses import dataclass, field
from typing import Any, Protocol

from tasks.privacy.zip_stream import Deflated, Entry, ZipStream
from workers.data_map import Statement, Subject
from workers.db import Connection
from workers.errors import JobError
from workers.libpq import tool_connection

CHUNK = 1 << 20  # bytes read from pg_dump at a time


class ExportFailed(JobError):
    """The archive could not be built; the message says which part, never what it held."""


class _JsonArray:
    """COPY's lines (one JSON object each) into a JSON array: the newline that ends a row
    becomes a comma and a newline once another row follows."""

    def __init__(self, entry: Entry) -> None:
        self.entry, self.rows, self.owed = entry, 0, False
        entry.write(b"[\n")

    async def feed(self, data: bytes) -> None:
        if not data:
            return
        self.rows += data.count(b"\n")
        if self.owed:
            self.entry.write(b",\n")
        self.owed = data.endswith(b"\n")
        self.entry.write((data[:-1] if self.owed else data).replace(b"\n", b",\n"))

    def close(self) -> int:
        self.entry.write(b"\n]\n" if self.owed else b"]\n")
        return self.rows


class Writable(Protocol):
    """Where an archive is written: a file, or an upload (tasks/privacy/spooled_upload.py)."""

    def write(self, data: bytes, /) -> int: ...
    def flush(self) -> None: ...
    def close(self) -> None: ...


@dataclass
class Archive:
    zip: ZipStream
    # (file name, what it is in French, in English), in the order written: the README.
    contents: list[tuple[str, str, str]] = field(default_factory=list)

    @classmethod
    def into(cls, file: Writable) -> Archive:
        # Deflated by ISA-L (tasks/privacy/zip_stream.py): with zlib, compressing a dump
        # costs more CPU than pg_dump itself; stored uncompressed, the upload costs more.
        return cls(ZipStream(file))

    def json_document(self, name: str, document: Any) -> None:
        with self.zip.open(name) as entry:
            entry.write(json.dumps(document, ensure_ascii=False, indent=2).encode() + b"\n")

    def describe(self, name: str, about_fr: str, about_en: str) -> None:
        self.contents.append((name, about_fr, about_en))

    def add(self, name: str, deflated: Deflated) -> None:
        """An entry deflated aside, copied in. Blocking: run it in a thread."""
        self.zip.add(name, deflated)

    def dump_databases(self, databases: list[tuple[str, str]]) -> dict[str, int]:
        """A plain-SQL `pg_dump` of each (entry name, database URL), streamed into its entry,
        one after the other; the bytes of each. Blocking: run it in a thread."""
        return {name: self._dump(name, url) for name, url in databases}

    def _dump(self, name: str, database_url: str) -> int:
        url, env = tool_connection(database_url)
        # bandit: fixed argv, no shell; pg_dump from PATH as installed
        dump = subprocess.Popen(  # nosec B603, B607
            ["pg_dump", "--format=plain", "--no-owner", "--no-privileges", "--dbname", url],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,  # its messages may quote the database's contents
        )
        assert dump.stdout is not None
        try:
            with self.zip.open(name) as entry:
                while chunk := dump.stdout.read(CHUNK):
                    entry.write(chunk)
            if dump.wait() != 0:
                raise ExportFailed(f"pg_dump of {name} exited with status {dump.returncode}")
        finally:
            if dump.poll() is None:
                dump.kill()
                dump.wait()
            dump.stdout.close()
        return entry.size

    def close(self) -> None:
        """The README (last: it lists every file written) and the ZIP's directory."""
        with self.zip.open("README.txt") as entry:
            entry.write(readme(self.contents).encode())
        self.zip.close()


async def json_rows(entry: Entry, conn: Connection, query: Statement, subject: Subject) -> int:
    """The query's rows as a JSON array, one object a line, written by Postgres
    (`row_to_json`, streamed by COPY); how many rows."""
    # CSV mode with a quote and a delimiter JSON text never holds raw (it escapes every
    # control character): each row's JSON comes out as it is, one a line.
    sql = "SELECT row_to_json(r) FROM (" + query.sql + ") r"  # nosec B608: the data map's own query
    rows = _JsonArray(entry)
    await conn.copy_from_query(
        sql, *query.bind(subject), output=rows.feed, format="csv", quote="\x01", delimiter="\x02"
    )
    return rows.close()


async def csv_rows(entry: Entry, conn: Connection, query: Statement, subject: Subject) -> None:
    """The query's rows as CSV with a header line, written by Postgres, in UTF-8 with a
    byte-order mark (what spreadsheets need to read accents right)."""
    entry.write(codecs.BOM_UTF8)

    async def write(data: bytes) -> None:
        entry.write(data)

    await conn.copy_from_query(query.sql, *query.bind(subject), output=write, format="csv", header=True)


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
