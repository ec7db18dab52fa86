"""Where erasure holds data about an account (see workers/data_map.py)."""

from __future__ import annotations

from workers.data_map import Export, Place, Statement

PLACES = [
    Place(
        "erasure_requests",
        "ids only, kept as the record of the erasure",
        kept="the record of the erasure: ids, dates and counts",
        export=Export(
            "erasure_requests",
            Statement(
                """SELECT id, state, requested_by, requested_at, run_after, notice_sent_at, finished_at
                     FROM erasure_requests WHERE account_id = $1 ORDER BY id"""
            ),
            "Vos demandes de suppression de compte et leur état.",
            "Your account deletion requests and where each stands.",
            left_out={
                "lease_until": "bookkeeping of the worker running it",
                "attempts": "bookkeeping of the worker running it",
                "last_error": "our own diagnostics",
                "report": "counts of what each step deleted, and ids",
            },
        ),
    ),
    Place(
        "erasure_steps",
        "ids and counts only",
        kept="names and counts of an erasure's steps",
        not_exported="names and counts of an erasure's steps: bookkeeping, nothing about the account",
    ),
    Place(
        "erasure_ledger",
        "keyed hashes only",
        kept="the proof an erasure happened, to re-apply it to a restored database",
        not_exported="written once the account is gone",
    ),
    Place(
        "erasure_subjects",
        "the identity an erasure in flight works with; deleted with the account row",
        erased_by="delete_account",
        not_exported="exists only while an erasure runs, and no export runs then",
    ),
]
