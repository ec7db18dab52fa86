"""Where billing holds data about an account (see workers/data_map.py)."""

from __future__ import annotations

from workers.data_map import Erase, Export, Place, Statement

BY_ACCOUNT_OR_CUSTOMER = ("account_id", "customer_id")
# The inbox events about the Stripe ids $1: an index each for the two ways an event names
# its customer (an OR of the two would read the whole inbox).
EVENTS_ABOUT = """ARRAY(
    SELECT id FROM stripe_events
     WHERE coalesce(payload #>> '{data,object,customer}', object_id) = ANY($1::text[])
    UNION SELECT id FROM stripe_events
     WHERE payload #>> '{data,previous_attributes,customer}' = ANY($1::text[]))"""
# Composed of the constant above only.
SCRUB_EVENTS = (
    "UPDATE stripe_events SET payload = NULL, object_id = NULL WHERE id = ANY(" + EVENTS_ABOUT + ")"  # nosec B608
)
EXPORT_EVENTS = (
    "SELECT id, type, object_id, created, received_at, state, processed_at, payload FROM stripe_events"
    " WHERE id = ANY(" + EVENTS_ABOUT + ") ORDER BY created, id"  # nosec B608
)

PLACES = [
    Place(
        "stripe:customer",
        "deleted at Stripe, with what Stripe deletes with it",
        erased_by="stripe_customer",
        exported_by="stripe_customer",
    ),
    Place(
        "mandates",
        "deleted",
        # Before payment_methods: it finds the account's mandates through them.
        erase=Erase(
            "mandates",
            Statement(
                """DELETE FROM mandates WHERE payment_method_id IN
                   (SELECT id FROM payment_methods WHERE account_id = $1 OR customer_id = $2)""",
                BY_ACCOUNT_OR_CUSTOMER,
            ),
        ),
        export=Export(
            "mandates",
            Statement(
                """SELECT m.id, m.payment_method_id, m.status, m.type, m.reference, m.accepted_at,
                          m.updated_at
                     FROM mandates m JOIN payment_methods p ON p.id = m.payment_method_id
                    WHERE p.account_id = $1 OR p.customer_id = $2 ORDER BY m.id""",
                BY_ACCOUNT_OR_CUSTOMER,
            ),
            "Vos mandats de prélèvement SEPA, tels que Stripe nous les a transmis.",
            "Your SEPA direct debit mandates, as Stripe sent them to us.",
        ),
    ),
    Place(
        "payment_methods",
        "deleted",
        erase=Erase(
            "payment_methods",
            Statement(
                "DELETE FROM payment_methods WHERE account_id = $1 OR customer_id = $2",
                BY_ACCOUNT_OR_CUSTOMER,
            ),
        ),
        export=Export(
            "payment_methods",
            Statement(
                """SELECT id, type, card_brand, last4, exp_month, exp_year, sepa_bank_code, sepa_country,
                          mandate_reference, detached, updated_at
                     FROM payment_methods WHERE account_id = $1 OR customer_id = $2 ORDER BY id""",
                BY_ACCOUNT_OR_CUSTOMER,
            ),
            "Vos moyens de paiement : marque et 4 derniers chiffres de la carte, ou l'IBAN abrégé"
            " du mandat SEPA. Nous ne conservons jamais le numéro de carte.",
            "Your payment methods: the card's brand and last 4 digits, or the SEPA mandate's"
            " shortened bank details. We never keep the card number.",
        ),
    ),
    Place(
        "subscriptions",
        "deleted",
        erase=Erase(
            "subscriptions",
            Statement(
                "DELETE FROM subscriptions WHERE account_id = $1 OR customer_id = $2", BY_ACCOUNT_OR_CUSTOMER
            ),
        ),
        export=Export(
            "subscriptions",
            Statement(
                """SELECT id, status, price_id, current_period_start, current_period_end,
                          cancel_at_period_end, updated_at
                     FROM subscriptions WHERE account_id = $1 OR customer_id = $2 ORDER BY id""",
                BY_ACCOUNT_OR_CUSTOMER,
            ),
            "Vos abonnements.",
            "Your subscriptions.",
        ),
    ),
    Place(
        "invoices",
        "kept, unlinked from the account and the customer",
        # Retained (RETENTION in tasks/erasure/requests.py): the invoice's own fields
        # stay, linked to nobody.
        erase=Erase(
            "invoices_unlinked",
            Statement(
                """UPDATE invoices SET account_id = NULL, customer_id = NULL, updated_at = now()
                    WHERE account_id = $1 OR customer_id = $2""",
                BY_ACCOUNT_OR_CUSTOMER,
            ),
        ),
        export=Export(
            "invoices",
            Statement(
                """SELECT id, number, currency, total, amount_due, amount_paid, status, created, due_date,
                          paid_at, hosted_invoice_url, updated_at
                     FROM invoices WHERE account_id = $1 OR customer_id = $2 ORDER BY created, id""",
                BY_ACCOUNT_OR_CUSTOMER,
            ),
            "Vos factures, avec le lien de la page de chaque facture chez Stripe.",
            "Your invoices, with the link to each invoice's page at Stripe.",
        ),
    ),
    Place(
        "stripe_events",
        "payload and object id dropped; the event id stays for deduplication",
        # Alone, before the one transaction of the others: the inbox is the largest table.
        erase=Erase(
            "stripe_event_payloads",
            Statement(
                SCRUB_EVENTS,
                ("stripe_ids",),
            ),
            stage="before",
        ),
        export=Export(
            "stripe_events",
            Statement(
                EXPORT_EVENTS,
                ("stripe_ids",),
            ),
            "Les notifications que Stripe nous a envoyées sur votre compte client et ses objets.",
            "The notifications Stripe sent us about your customer account and its objects.",
            left_out={
                column: "bookkeeping of our processing of the event"
                for column in ("livemode", "attempts", "lease_until", "last_error")
            },
        ),
    ),
    Place(
        "stripe_objects",
        "ordering marks of the account's objects deleted",
        erase=Erase(
            "stripe_objects",
            Statement("DELETE FROM stripe_objects WHERE object_id = ANY($1::text[])", ("stripe_ids",)),
        ),
        not_exported="an object id and the time of Stripe's last event about it: bookkeeping of the order"
        " events are applied in, which the exported events already show",
    ),
    Place(
        "stripe_tombstones",
        "sha256 digests of erased Stripe ids: no id, nothing personal",
        kept="written by the erasure itself, so that Stripe's late webhooks bring nothing back",
        not_exported="exists only once an account is erased",
    ),
]
