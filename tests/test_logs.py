from __future__ import annotations

import json
import logging

import pytest
import structlog

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
