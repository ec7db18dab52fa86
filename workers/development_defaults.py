"""The development defaults of `Settings`: test keys and local credentials that let
`make run` work with no configuration. Production refuses every one of them
(workers/production_rules.py), so a forgotten variable cannot ship a test key."""

from __future__ import annotations

from pathlib import Path

DEV_STRIPE_API_KEY = "sk_test_bindery_development"
# bandit: a development default, refused in production
DEV_STRIPE_WEBHOOK_SECRET = "whsec_bindery_development"  # noqa: S105  # nosec B105
DEV_AWS_ACCESS_KEY_ID = "bindery-dev"
# bandit: a development default, refused in production
DEV_AWS_SECRET_ACCESS_KEY = "bindery-dev-secret"  # noqa: S105  # nosec B105
# Public half of workers/devstack/dev-backup-identity.txt: anyone can decrypt what it protects.
DEV_BACKUP_RECIPIENT = "age10vswtwy4k39v24njtgxy8tf2t6p2jxdq8pr9tvzgdrc6t9ygyg9qjmj7dm"
DEV_ERASURE_LEDGER_KEY = "bindery-development-ledger-key"
DEV_BACKUP_IDENTITY_FILE = Path(__file__).parent / "devstack" / "dev-backup-identity.txt"
