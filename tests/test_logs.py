from __future__ import annotations

import json
import logging

import pytest
import structlog

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
