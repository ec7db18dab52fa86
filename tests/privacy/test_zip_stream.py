"""Property: whatever entries are written, forward only, Python's zipfile reads every one
back byte for byte, its CRC checked."""

from __future__ import annotations

import io
import zipfile

from hypothesis import given, settings
from hypothesis import strategies as st

from tasks.privacy.zip_stream import ZipStream

names = st.text(
    st.characters(blacklist_categories=["Cs", "Cc"], blacklist_characters="/\\"), min_size=1, max_size=30
)
contents = st.lists(st.binary(max_size=70_000), max_size=5)  # each written in these pieces


@settings(max_examples=60, deadline=None)
@given(entries=st.dictionaries(names, contents, max_size=6))
def test_every_entry_reads_back_as_written(entries: dict[str, list[bytes]]) -> None:
    out = io.BytesIO()
    archive = ZipStream(out)
    for name, pieces in entries.items():
        with archive.open(name) as entry:
            for piece in pieces:
                entry.write(piece)
    archive.close()
    with zipfile.ZipFile(io.BytesIO(out.getvalue())) as read:
        assert read.testzip() is None
        assert read.namelist() == list(entries)
        for name, pieces in entries.items():
            assert read.read(name) == b"".join(pieces)


def test_a_large_entry_and_its_offsets_are_zip64() -> None:
    out = io.BytesIO()
    archive = ZipStream(out)
    with archive.open("instances/instance-1.sql") as entry:
        for _ in range(40):
            entry.write(b"INSERT INTO orders VALUES (1, 'a');\n" * 30_000)
    archive.close()
    with zipfile.ZipFile(io.BytesIO(out.getvalue())) as read:
        [info] = read.infolist()
        assert info.file_size == 40 * 30_000 * 36 and info.compress_type == zipfile.ZIP_DEFLATED
        assert info.compress_size < info.file_size / 10
