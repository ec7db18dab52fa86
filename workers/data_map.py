"""The data map: every place bindery holds data about an account, declared once.

Each domain declares the places it owns (`PLACES` in its `data_map` module; the
plumbing's own tables are declared here); `workers.domains.data_map()` collects them.
Both answers to a data subject read the same map: the erasure's `rows` step runs each
place's `erase` statement, the access export (`tasks/privacy/export.py`) each place's
`export` query. A place is handled by exactly one of three ways on each side, so that
adding a place forces a decision for both: a statement of the map, a named step of
the erasure or the export's own code (Stripe, S3, the instance databases), or a
stated reason to keep it or to leave it out of the export.
tests/privacy/test_data_map.py fails when a table holding personal data is missing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Stage = Literal["before", "rows", "last"]


@dataclass(frozen=True)
class Subject:
    """Whom a statement is about: the values its parameters are bound to, by name."""

    account_id: int
    customer_id: str | None
    stripe_ids: list[str]  # its Stripe customer and the objects of the account and the customer
    instance_ids: list[int]

    def value(self, name: str) -> Any:
        if name == "account_id_text":
            return str(self.account_id)
        if name == "instance_ids_text":
            return [str(instance_id) for instance_id in self.instance_ids]
        return getattr(self, name)


@dataclass(frozen=True)
class Statement:
    """SQL whose parameters `$1, $2…` are the `Subject` values named in `args`, in order."""

    sql: str
    args: tuple[str, ...] = ("account_id",)

    def bind(self, subject: Subject) -> list[Any]:
        return [subject.value(name) for name in self.args]


@dataclass(frozen=True)
class Erase:
    """What the erasure's `rows` step runs for a place, and the count it reports it under.
    `before`: alone, ahead of the one transaction of the others; `last`: after them all
    in it (rows the others' subqueries still read)."""

    counted_as: str
    statement: Statement
    stage: Stage = "rows"


# Columns an export leaves out without saying so each time: what links a row to the
# account, whose archive it is (its Stripe customer id is in account.json).
LINK_COLUMNS = ("account_id", "customer_id")


@dataclass(frozen=True)
class Export:
    """The account's rows of a place, as one file of the archive (`<category>.json` and
    `.csv`), with what the file is, in French and English, for the archive's README.
    `left_out`: the columns of the place's table the query does not read, and why; every
    other column must be read (tests/privacy/test_data_map.py), so that a new column is
    exported or left out on purpose, never forgotten."""

    category: str
    query: Statement
    about_fr: str
    about_en: str
    left_out: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Place:
    """Where data about an account is held, and what each answer does with it.

    name: a table, or `stripe:…`, `s3:…`, `database:…` for what lives elsewhere.
    erasure: what the erasure does with it, in a sentence.
    erase / erased_by / kept: a statement of the `rows` step, the erasure step that
        handles it, or why it stays (ids only, a legal obligation…). Exactly one.
    export / exported_by / not_exported: likewise for the access export.
    """

    name: str
    erasure: str
    erase: Erase | None = None
    erased_by: str | None = None
    kept: str | None = None
    export: Export | None = None
    exported_by: str | None = None
    not_exported: str | None = None

    def __post_init__(self) -> None:
        for side, ways in (
            ("erasure", (self.erase, self.erased_by, self.kept)),
            ("export", (self.export, self.exported_by, self.not_exported)),
        ):
            if sum(way is not None for way in ways) != 1:
                raise ValueError(f"data map place {self.name}: say exactly one way for the {side}")

    @property
    def is_table(self) -> bool:
        return ":" not in self.name


def erase_statements(places: list[Place], stage: Stage) -> list[Erase]:
    return [place.erase for place in places if place.erase is not None and place.erase.stage == stage]


# The plumbing's own tables.
PLACES = [
    Place(
        "jobs",
        "arguments and result emptied; the job's name and outcome stay",
        erase=Erase(
            "job_records",
            Statement(
                """UPDATE jobs SET arguments = '{}'::jsonb, result = NULL, updated_at = now()
                    WHERE arguments ->> 'account_id' = $1 OR arguments ->> 'instance_id' = ANY($2::text[])
                       OR ($3::text IS NOT NULL AND strpos(result::text, $3) > 0)""",
                ("account_id_text", "instance_ids_text", "customer_id"),
            ),
        ),
        export=Export(
            "jobs",
            Statement(
                """SELECT id, name, status, arguments, result, created_at, finished_at FROM jobs
                    WHERE arguments ->> 'account_id' = $1 OR arguments ->> 'instance_id' = ANY($2::text[])
                    ORDER BY created_at""",
                ("account_id_text", "instance_ids_text"),
            ),
            "Les tâches demandées à notre service pour votre compte ou vos instances.",
            "The jobs our service was asked to run for your account or your instances.",
            left_out={
                column: "how our services asked for the job and ran it"
                for column in ("idempotency_key", "token_id", "attempts", "error", "updated_at", "started_at")
            },
        ),
    ),
    Place(
        "audit_log",
        "ids only: who did what to which request, never a customer's data",
        kept="the record of what was done; it holds ids only",
        export=Export(
            "audit_records",
            Statement(
                """SELECT id, at, actor, action, subject_type, subject_id, details FROM audit_log
                    WHERE details ->> 'account_id' = $1
                       OR (subject_type = 'erasure_request' AND subject_id IN
                           (SELECT id::text FROM erasure_requests WHERE account_id = $2))
                       OR (subject_type = 'privacy_request' AND subject_id IN
                           (SELECT id::text FROM privacy_requests WHERE account_id = $2))
                    ORDER BY at, id""",
                ("account_id_text", "account_id"),
            ),
            "Le journal d'audit : ce qui a été fait sur votre compte et vos demandes, par qui.",
            "The audit log: what was done about your account and your requests, and by whom.",
        ),
    ),
]
