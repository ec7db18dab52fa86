"""Where the account itself is held, and the register (see workers/data_map.py)."""

from __future__ import annotations

from workers.data_map import Erase, Export, Place, Statement

PLACES = [
    Place(
        "accounts",
        "deleted last, with the ledger entry",
        erased_by="delete_account",
        export=Export(
            "account",
            Statement(
                """SELECT id, email, business_name, first_name, last_name, address, postal_code, country,
                          vat_number, status, stripe_customer_id, created_at, updated_at
                     FROM accounts WHERE id = $1"""
            ),
            "Votre compte : identité, adresse, état. (L'empreinte de votre mot de passe n'est pas"
            " incluse : ce n'est pas une information sur vous, et elle ne sert qu'à vérifier votre"
            " mot de passe.)",
            "Your account: identity, address, state. (Your password's hash is not included: it is"
            " not information about you, and serves only to check your password.)",
            # bandit: the value is why the column is left out, not a password
            left_out={"password_hash": "a credential, not information about the customer"},  # nosec B105
        ),
    ),
    Place(
        "database:instances",
        "each instance's database dropped",
        erased_by="instance_databases",
        exported_by="instance_databases",
    ),
    Place(
        "instances",
        "deleted, after every row that names the account's instances",
        erase=Erase("instances", Statement("DELETE FROM instances WHERE account_id = $1"), stage="last"),
        export=Export(
            "instances",
            Statement("SELECT id, name, created_at FROM instances WHERE account_id = $1 ORDER BY id"),
            "Vos instances.",
            "Your instances.",
            left_out={"database_url": "where we host the database, with its credentials"},
        ),
    ),
    Place(
        "privacy_requests",
        "kind, dates and outcome kept as the record of the request; the note emptied",
        erase=Erase(
            "privacy_request_notes",
            Statement("UPDATE privacy_requests SET note = NULL WHERE account_id = $1 AND note IS NOT NULL"),
        ),
        export=Export(
            "privacy_requests",
            Statement(
                """SELECT id, kind, received_at, received_by, due_at, extended_until, extension_reason,
                          deadline, state, closed_at, outcome, note, erasure_request_id, export_job_id
                     FROM privacy_requests WHERE account_id = $1 ORDER BY id"""
            ),
            "Vos demandes relatives à vos données (accès, suppression, rectification…), avec leurs"
            " échéances légales.",
            "Your requests about your data (access, erasure, rectification…), with their legal deadlines.",
        ),
    ),
    Place(
        "s3:exports/",
        "the account's export archives deleted",
        erased_by="export_archives",
        not_exported="earlier archives of this same export",
    ),
]
