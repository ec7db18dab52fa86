from __future__ import annotations

import json
import logging
import string
from typing import Any

import pytest
import structlog
from hypothesis import assume, given
from hypothesis import strategies as st

from workers.errors import JobError
from workers.logs import REDACTED, configure_logging, redact_personal_data


def test_personal_fields_are_redacted_and_ids_kept() -> None:
    event = redact_personal_data(
        None,
        "info",
        {
            "event": "account updated",
            "account_id": 42,
            "email": "jeanne@example.fr",
            "first_name": "Jeanne",
            "billing_address": "1 rue de la Paix",
            "vat_number": "FR123",
            "api_token": "bnd_1_secret",
            "stripe_customer_id": "cus_123",
        },
    )
    assert event["account_id"] == 42
    assert event["stripe_customer_id"] == "cus_123"
    for key in ("email", "first_name", "billing_address", "vat_number", "api_token"):
        assert event[key] == REDACTED


def test_email_addresses_are_masked_anywhere_in_values() -> None:
    event = redact_personal_data(
        None, "info", {"event": "mail to jeanne@example.fr bounced", "detail": {"to": ["a.b@c.io"]}}
    )
    assert "jeanne@example.fr" not in event["event"]
    assert event["detail"] == {"to": [REDACTED]}


def test_production_logs_are_json_without_personal_data(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(json=True)
    structlog.get_logger("test").info("signed up", account_id=7, email="x@example.org")
    logging.getLogger("aiohttp.server").warning("client %s failed", "y@example.org")
    lines = [json.loads(line) for line in capsys.readouterr().err.strip().splitlines()]
    assert lines[0]["account_id"] == 7
    assert lines[0]["email"] == REDACTED
    assert "y@example.org" not in json.dumps(lines)


def test_an_exception_is_logged_without_a_library_message_that_may_quote_data(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A database error's message quotes the failing row; only the type and frames go out,
    in production (JSON) and in development (console) alike."""
    # Not in the raising lines: a traceback shows source lines, which are code, not data.
    reading = "while reading Dupont"
    detail = 'DETAIL: Failing row contains (7, jeanne@example.fr, "1 rue de la Paix")'
    for json_logs in (True, False):
        configure_logging(json=json_logs)
        try:
            try:
                raise KeyError(reading)
            except KeyError as cause:
                raise ValueError(detail) from cause
        except ValueError:
            logging.getLogger("dramatiq.worker").exception("unhandled error in a library")
            structlog.get_logger("tasks.x").error("unhandled error of ours", exc_info=True)
        try:
            raise JobError("instance 12 is unreachable")
        except JobError:
            structlog.get_logger("tasks.x").error("a job failed", exc_info=True)
        err = capsys.readouterr().err
        assert "rue de la Paix" not in err and "jeanne" not in err and "Dupont" not in err
        assert err.count("builtins.ValueError (message withheld") == 2 and "builtins.KeyError" in err
        assert "test_logs.py" in err  # the frames are kept
        assert "workers.errors.JobError: instance 12 is unreachable" in err


_PASSWORD = st.text(
    alphabet=string.ascii_uppercase + string.digits + "%-._~!$&()*+,;=@:", min_size=8, max_size=30
)
_SCHEME = st.sampled_from(
    ["postgresql", "postgres", "redis", "rediss", "amqp", "smtp", "smtps", "https", "HTTP"]
)
_HOST = st.sampled_from(["127.0.0.1", "localhost", "db.internal", "[::1]", "smtp.example.fr"])
_KEYS = [
    "email", "mail", "contact", "phone", "iban", "dsn", "database_url", "smtp_url", "broker_url",
    "customer", "password", "api_token", "secret", "authorization", "billing_address", "vat", "full_name",
]  # fmt: skip


@given(
    scheme=_SCHEME,
    user=st.text(alphabet=string.ascii_lowercase, min_size=1, max_size=8),
    password=_PASSWORD,
    host=_HOST,
    before=st.text(alphabet=string.ascii_letters + " :=,", max_size=12),
    key=st.sampled_from(["event", "detail", "url", "error", "note"]),
    nested=st.booleans(),
)
def test_no_url_password_survives_in_any_value(
    scheme: str, user: str, password: str, host: str, before: str, key: str, nested: bool
) -> None:
    url = f"{scheme}://{user}:{password}@{host}:5432/bindery"
    value: Any = f"{before}{url} failed"
    assume(password not in value.replace(f":{password}@", " "))  # found only where it was put
    if nested:
        value = {"attempts": [value, {"target": value}]}
    event = redact_personal_data(
        None, "info", {key: value, "event": value} if key != "event" else {key: value}
    )
    rendered = json.dumps(event)
    assert password not in rendered


@given(
    key=st.sampled_from(_KEYS),
    prefix=st.sampled_from(["", "customer_", "old_", "X-"]),
    upper=st.booleans(),
    value=st.text(alphabet=string.ascii_letters + string.digits, min_size=3, max_size=20),
)
def test_sensitive_keys_are_redacted_in_any_spelling(key: str, prefix: str, upper: bool, value: str) -> None:
    name = (prefix + key).upper() if upper else prefix + key
    event = redact_personal_data(None, "info", {"event": "x", name: value, "nested": {name: value}})
    assert event[name] == REDACTED and event["nested"][name] == REDACTED


@given(
    local=st.from_regex(r"[a-z0-9._%+-]{1,20}", fullmatch=True),
    domain=st.from_regex(r"[a-z0-9-]{1,12}\.[a-z]{2,6}", fullmatch=True),
)
def test_email_addresses_are_masked_in_free_text(local: str, domain: str) -> None:
    address = f"{local}@{domain}"
    event = redact_personal_data(
        None, "info", {"event": f"mail to {address} refused", "ids": [f"<{address}>"]}
    )
    assert address not in json.dumps(event)


def test_ids_are_kept_and_urls_keep_their_host() -> None:
    event = redact_personal_data(
        None,
        "info",
        {"event": "x", "customer_id": "cus_1", "job_ids": [1, 2], "url": "postgresql://u:pw@db.internal/x"},
    )
    assert event["customer_id"] == "cus_1" and event["job_ids"] == [1, 2]
    assert event["url"] == f"postgresql://{REDACTED}@db.internal/x"
