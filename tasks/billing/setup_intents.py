"""`setup_intent.succeeded`: where we learn of a saved payment method's mandate.

Stripe sends no event when a SEPA mandate is created; the SetupIntent that collected
it names it, and the payment method, by id only. Both are fetched and applied in order
as of the event, like any other state of those objects.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from tasks.billing.objects import apply_mandate, apply_payment_method, reference_id
from tasks.billing.ordering import apply_in_order
from tasks.billing.refetch import Refetcher
from workers.db import Connection


async def apply_setup_intent(
    conn: Connection, refetch: Refetcher, intent: dict[str, Any], *, source: str, as_of: datetime
) -> None:
    # The payment method first: applying the mandate copies its reference onto it.
    for kind, apply in (("payment_method", apply_payment_method), ("mandate", apply_mandate)):
        object_id = reference_id(intent.get(kind))
        fetched = await refetch.fetch(kind, object_id) if object_id else None
        if fetched is not None:
            await apply_in_order(conn, apply, fetched, source=source, as_of=as_of)
