"""Promise: "The full details of your credit card … are not stored by us."

After a scenario full of card numbers in the wrong places (webhook payloads, Stripe
objects, job arguments), a Luhn scan of every text column finds none; the inbox masks
them before storing, and the schema refuses one where only the last 4 digits belong."""

from __future__ import annotations

import json
import re
import secrets
from typing import Any

import asyncpg
import pytest
import stripe
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tasks.billing.inbox import parse_event, store_events
from tasks.billing.processing import process_event
from tests.billing_events import new_id
from tests.privacy.card_detector import card_numbers
from workers.settings import load_settings
from workers.web.app import create_app

CARDS = [
    "4242424242424242",
    "4000 0566 5566 5556",
    "5555-5555-5555-4444",
    "378282246310005",
    "4242 4242 4242 4242 123",  # and its CVC: the whole fails Luhn
    "1 4242424242424242",  # after a lone digit
    "4242  4242  4242  4242",
    "4242.4242.4242.4242",
    "4242/4242/4242/4242",
    "4242\u00a04242\u00a04242\u00a04242",
]


async def text_values(pool: asyncpg.Pool) -> list[tuple[str, str, str]]:
    """(table, column, value) for every text, varchar, json and jsonb value in the schema."""
    columns = await pool.fetch(
        """
        SELECT table_name, column_name FROM information_schema.columns
         WHERE table_schema = 'public' AND data_type IN ('text', 'character varying', 'json', 'jsonb')
           AND table_name IN (SELECT table_name FROM information_schema.tables
                               WHERE table_schema = 'public' AND table_type = 'BASE TABLE')
        """
    )
    values = []
    for column in columns:
        # Identifiers come from the catalogue, never from input.
        query = 'SELECT "{c}"::text AS v FROM "{t}" WHERE "{c}" IS NOT NULL'.format(
            c=column["column_name"], t=column["table_name"]
        )
        values += [(column["table_name"], column["column_name"], row["v"]) for row in await pool.fetch(query)]
    return values


# What bindery composes itself from an instance id, a day and a UUID, with no outside text
# in it: "instances/62/2026-11-20/69550157-…" holds 18 digits across separators, one time
# in ten a Luhn-valid window.
COMPOSED = re.compile(
    r"instances/[0-9]+/[0-9]{4}-[0-9]{2}-[0-9]{2}/[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}"
    r"\.(dump\.zst|manifest\.json)\.age"
)


# The ids bindery makes itself (uuid4, in Python or Postgres), wherever they are copied (a
# job's result names the backup it made): their first groups read as 16 digits across the
# dashes about once in a few thousand, and then as a Luhn-valid run one time in ten.
OWN_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")


def card_like(value: str) -> list[str]:
    return [] if COMPOSED.fullmatch(value) else card_numbers(OWN_ID.sub("<id>", value))


async def test_no_luhn_valid_number_is_stored_anywhere_after_a_hostile_scenario(
    database_url: str, pool: asyncpg.Pool, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = "whsec_scan"
    monkeypatch.setenv("STRIPE_WEBHOOK_SECRET", secret)
    events: list[dict[str, Any]] = []
    for number in CARDS:
        customer = f"cus_{secrets.token_hex(6)}"
        events += [
            {
                "id": new_id("evt"),
                "object": "event",
                "type": "customer.updated",
                "created": 1,
                "data": {
                    "object": {
                        "id": customer,
                        "object": "customer",
                        "description": f"card {number}",
                        "metadata": {
                            "note": number,
                            "n": int("".join(filter(str.isdigit, number))),
                            number: "a card number as a key",
                        },
                    }
                },
            },
            {
                "id": new_id("evt"),
                "object": "event",
                "type": "invoice.paid",
                "created": 2,
                "data": {
                    "object": {
                        "id": f"in_{secrets.token_hex(6)}",
                        "object": "invoice",
                        "customer": customer,
                        "currency": "eur",
                        "created": 2,
                        "number": number,
                        "description": number,
                    }
                },
            },
        ]
    async with TestClient(TestServer(create_app(load_settings()))) as client:
        for item in events:
            body = json.dumps(item)
            headers = {"Stripe-Signature": stripe.WebhookSignature.generate_signature_header(body, secret)}
            assert (await client.post("/webhooks/stripe", data=body, headers=headers)).status == 200
    for item in events:
        await process_event(pool, item["id"])

    leaks = [
        (table, column, hit) for table, column, value in await text_values(pool) for hit in card_like(value)
    ]
    assert leaks == []
    # The scan itself finds what it is looking for:
    assert card_like("x 4242 4242 4242 4242 y") == ["4242 4242 4242 4242"]
    assert card_like('{"backup_id": "81154258-0993-4449-a53e-0c8b1f1c2d3e"}') == []
    assert card_like("81154258-0993-4449") == ["81154258-0993-4449"]  # not an id: a card
    assert [card_like(f"note: {number}.") for number in CARDS] == [[number] for number in CARDS]


# A JSON number in any spelling Stripe's encoder or another could write: jsonb stores it in
# fixed-point notation (1.5e+20 as 150000000000000000000), which is what must hold no card.
_numbers = (
    st.floats(allow_nan=False, allow_infinity=False).map(repr)
    | st.integers(min_value=-(10**20), max_value=10**20).map(str)
    | st.from_regex(r"-?[1-9][0-9]{0,17}(\.[0-9]{1,17})?[eE][+-]?[0-9]{1,2}", fullmatch=True)
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(number=_numbers)
async def test_a_number_in_any_spelling_is_stored_without_a_card_number_in_it(
    pool: asyncpg.Pool, number: str
) -> None:
    body = (
        f'{{"id": "{new_id("evt")}", "object": "event", "type": "charge.updated", "created": 1,'
        f' "data": {{"object": {{"id": "{new_id("ch")}", "object": "charge", "amount": {number}}}}}}}'
    )
    [stored] = await store_events(pool, [parse_event(body.encode())])
    assert stored
    text = await pool.fetchval(
        "SELECT payload::text FROM stripe_events WHERE id = $1", json.loads(body)["id"]
    )
    assert card_numbers(text) == [], (number, text)


async def test_no_table_can_hold_a_card_number_in_last4(pool: asyncpg.Pool) -> None:
    with pytest.raises(asyncpg.CheckViolationError):
        await pool.execute(
            """INSERT INTO payment_methods (id, type, card_brand, last4)
               VALUES ($1, 'card', 'visa', '4242424242424242')""",
            new_id("pm"),
        )
