"""Schemathesis against a real `bindery web`: requests generated from the served OpenAPI
description, valid and not, with and without a token. No answer is a 5xx, and every
answer matches the description (status, content type, body)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import schemathesis
import stripe
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import negative_data_rejection

from tasks import system  # noqa: F401  (the job registry the document is built from)
from tests.http import answers
from tests.processes import bindery, bindery_env, run_bindery, wait_until
from workers.development_defaults import DEV_STRIPE_WEBHOOK_SECRET
from workers.devstack.servers import free_port
from workers.web.openapi import openapi_document

schema = schemathesis.openapi.from_dict(openapi_document())


@pytest.fixture(scope="module")
def web(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """`bindery web` on a free port, and a token allowed every job; (base URL, token)."""
    env = bindery_env()
    created = run_bindery("token", "create", f"schemathesis-{os.getpid()}", "--scope", "*", env=env)
    assert created.returncode == 0, created.stderr
    port = free_port()
    log = Path(tmp_path_factory.mktemp("schemathesis")) / "web.log"
    with bindery("web", "--port", str(port), log=log, env=env):
        base = f"http://127.0.0.1:{port}"
        wait_until(lambda: answers(f"{base}/healthz"), 30, "bindery web")
        yield base, created.stdout.strip()
    redis.Redis.from_url(os.environ["BROKER_URL"]).flushdb()  # the jobs it queued


@schema.parametrize()
@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_answer_is_a_server_error_and_every_answer_matches_the_description(
    case: schemathesis.Case[Any], web: tuple[str, str]
) -> None:
    base, token = web
    if case.operation.path == "/webhooks/stripe":
        # Signed as Stripe would sign it, so that the body itself is what is tested.
        try:
            body = case.body if isinstance(case.body, bytes) else json.dumps(case.body).encode()
        except TypeError:  # no body at all (schemathesis's NOT_SET): send an empty one
            body = b""
        case.body = body
        signature = stripe.WebhookSignature.generate_signature_header(
            body.decode(errors="replace"), DEV_STRIPE_WEBHOOK_SECRET
        )
        # negative_data_rejection is left out here alone: re-signing undoes a mutation of
        # the Stripe-Signature header, so schemathesis would call a now-valid request
        # "schema-violating". Bad signatures have their own property tests.
        case.call_and_validate(
            base_url=base,
            headers={"Stripe-Signature": signature},
            excluded_checks=[negative_data_rejection],
        )
        return
    case.call_and_validate(base_url=base, headers={"Authorization": f"Bearer {token}"})
