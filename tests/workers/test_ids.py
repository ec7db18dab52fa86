"""Ids drawn in bulk are real random UUIDs, interchangeable with `uuid.UUID` everywhere."""

from __future__ import annotations

import uuid

from workers.ids import uuid4_batch


def test_ids_are_distinct_version_4_uuids_that_print_and_parse_back() -> None:
    ids = uuid4_batch(2_000)
    assert len(set(ids)) == 2_000
    for value in ids:
        parsed = uuid.UUID(str(value))
        assert isinstance(value, uuid.UUID)
        assert (value.version, value.variant) == (4, uuid.RFC_4122)
        assert (parsed, hash(parsed)) == (value, hash(value))  # same key in any set or dict


def test_the_random_bits_vary_beyond_the_fixed_ones() -> None:
    ids = uuid4_batch(256)
    fixed = {6, 8}  # the version and variant bytes keep their top bits
    for position in set(range(16)) - fixed:
        assert len({value.bytes[position] for value in ids}) > 100, position
    assert {value.bytes[6] >> 4 for value in ids} == {4}
    assert {value.bytes[8] >> 6 for value in ids} == {0b10}
    assert len({value.bytes[6] & 0x0F for value in ids}) == 16
