from __future__ import annotations

from datetime import timedelta

import pytest

from tests.processes import bindery_env, run_bindery
from workers.settings import SettingsError, load_settings, parse_duration

PRODUCTION_READY = {
    "BINDERY_ENV": "production",
    "STRIPE_API_KEY": "sk_live_example",
    "STRIPE_WEBHOOK_SECRET": "whsec_new,whsec_old",
    "AWS_SECRET_ACCESS_KEY": "scw-secret",
    "S3_ENDPOINT_URL": "https://s3.fr-par.scw.cloud",
    "BACKUP_RECIPIENTS": "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p",
    "ERASURE_LEDGER_KEY": "a-long-random-production-key",
    "BACKUP_IDENTITY_FILE": "/etc/bindery/backup-identity.txt",
    "SMTP_URL": "smtp://user:pass@smtp.example.net:587",
    "TRUST_PROXY": "1",
}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90s", timedelta(seconds=90)),
        ("15m", timedelta(minutes=15)),
        ("24h", timedelta(hours=24)),
        ("7d", timedelta(days=7)),
    ],
)
def test_durations_parse(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


def test_bad_duration_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ERASURE_GRACE", "tomorrow")
    with pytest.raises(SettingsError, match="ERASURE_GRACE"):
        load_settings()


def test_webhook_secrets_are_a_comma_separated_list(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STRIPE_WEBHOOK_SECRET", "whsec_a, whsec_b")
    assert load_settings().webhook_secrets == ["whsec_a", "whsec_b"]


def test_invalid_setting_stops_the_process_with_one_line_and_status_2() -> None:
    result = run_bindery("migrate", env=bindery_env(BROKER_URL="ftp://user:hunter2@example"))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "BROKER_URL" in lines[0]
    assert "hunter2" not in result.stderr


def test_production_refuses_development_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in PRODUCTION_READY.items():
        monkeypatch.setenv(name, value)
    assert load_settings().is_production
    monkeypatch.delenv("STRIPE_API_KEY")
    with pytest.raises(SettingsError, match="STRIPE_API_KEY"):
        load_settings()


@pytest.mark.parametrize(
    "variable",
    ["BACKUP_RECIPIENTS", "BACKUP_IDENTITY_FILE", "STRIPE_WEBHOOK_SECRET", "S3_ENDPOINT_URL", "SMTP_URL"],
)
def test_production_refuses_each_development_value(monkeypatch: pytest.MonkeyPatch, variable: str) -> None:
    for name, value in PRODUCTION_READY.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv(variable)
    with pytest.raises(SettingsError, match=variable):
        load_settings()
