"""Where backups hold data about an account (see workers/data_map.py)."""

from __future__ import annotations

from workers.data_map import Export, Place, Statement

PLACES = [
    Place(
        "backups",
        "catalog rows deleted with the objects",
        erased_by="backup_objects",
        export=Export(
            "backups",
            Statement(
                """SELECT id, instance_id, day, generation, state, pg_version, table_counts, dump_bytes,
                          object_bytes, started_at, finished_at, restore_tested_at
                     FROM backups WHERE instance_id = ANY($1::bigint[])
                    ORDER BY instance_id, day, generation""",
                ("instance_ids",),
            ),
            "Le catalogue des sauvegardes de vos instances : dates, tailles, état.",
            "The catalogue of your instances' backups: dates, sizes, state.",
            left_out={
                **{
                    column: "where and how the encrypted copy is stored at the backup provider"
                    for column in ("object_key", "manifest_key", "sha256", "parts", "upload_id")
                },
                "lease_until": "bookkeeping of the worker writing it",
                "error": "our own diagnostics of a failed run",
            },
        ),
    ),
    Place(
        "s3:instances/",
        "objects and unfinished uploads under each instance's prefix deleted",
        erased_by="backup_objects",
        not_exported="encrypted copies of the instance databases, which the export holds themselves"
        " with --with-instances",
    ),
]
