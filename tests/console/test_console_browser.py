"""The console in a real browser: Playwright driving Debian's Chromium against a real
`bindery web`. Logging in and out, the overview on a laptop and on a phone, no script
that the page did not serve itself, and a page of another site that cannot act with
the operator's session."""

from __future__ import annotations

import asyncio
import concurrent.futures
import http.server
import json
import secrets
import threading
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import pytest
from playwright.sync_api import Browser, ConsoleMessage, Dialog, Page, sync_playwright

from tests.billing_events import event, new_account, new_id, stored, subscription
from tests.breach_setup import create_campaign, sink
from tests.console.console_setup import PASSWORD, console_web, make_operator
from tests.databases import new_bindery_database
from tests.http import web_and_worker
from tests.processes import bindery_env, wait_until
from workers.db import create_pool, drop_database
from workers.devstack.servers import free_port

CHROMIUM = "/usr/bin/chromium"  # Debian's, installed by `make install`; Playwright downloads none


@pytest.fixture
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: `make install` installs Debian's chromium")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield launched
        launched.close()


@pytest.fixture
def web(database_url: str, tmp_path: Path) -> Iterator[str]:
    with console_web(tmp_path) as base:
        yield base


def _watch(page: Page) -> list[str]:
    """Every dialog (an injected alert), script error and refusal by the Content-Security-
    Policy, as text. (A status such as the failed login's 401 is no error of the page.)"""
    seen: list[str] = []

    def dialog(opened: Dialog) -> None:
        seen.append(f"dialog: {opened.message}")
        opened.dismiss()

    def console(message: ConsoleMessage) -> None:
        if message.type == "error" and not message.text.startswith("Failed to load resource"):
            seen.append(f"console: {message.text}")

    page.on("dialog", dialog)
    page.on("pageerror", lambda error: seen.append(f"error: {error}"))
    page.on("console", console)
    return seen


def _log_in(page: Page, base: str, name: str) -> None:
    page.goto(f"{base}/console/")
    assert page.url == f"{base}/console/login"  # sent to the login page first
    page.fill("input[name=username]", name)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}/console/")


def test_an_operator_logs_in_sees_every_promise_and_logs_out(
    browser: Browser, web: str, tmp_path: Path
) -> None:
    assert make_operator("ana-browser", "operator").returncode == 0
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    seen = _watch(page)
    page.goto(f"{web}/console/login")
    page.fill("input[name=username]", "ana-browser")
    page.fill("input[name=password]", "not the password, sorry")
    page.click("button[type=submit]")
    assert page.locator("[role=alert]").inner_text() == "Wrong name or password."
    _log_in(page, web, "ana-browser")
    lines = page.locator("li.status")
    promises = [lines.nth(i).locator(".promise").inner_text() for i in range(lines.count())]
    assert "paid instances are backed up daily, 30 days kept" in promises
    assert "accounts are erased on request" in promises
    assert "every request about one's data is answered within a month" in promises
    broker = lines.filter(has_text="the broker carries the work").locator(".reason").inner_text()
    assert broker.startswith("messages waiting: default ") and "exports " in broker
    assert page.locator("header .who").inner_text() == "ana-browser (operator)"
    page.screenshot(path=str(tmp_path / "overview.png"), full_page=True)
    page.click("header .logout button")
    page.wait_for_url(f"{web}/console/login")
    page.goto(f"{web}/console/")
    assert page.url == f"{web}/console/login"  # the session ended
    assert seen == []


def test_the_overview_fits_a_phone(browser: Browser, web: str) -> None:
    assert make_operator("ana-phone", "viewer").returncode == 0
    page = browser.new_page(viewport={"width": 390, "height": 844}, is_mobile=True)
    _log_in(page, web, "ana-phone")
    width: Any = page.evaluate("() => [document.documentElement.scrollWidth, window.innerWidth]")
    assert width[0] <= width[1]  # nothing wider than the screen


class _AttackerPage(http.server.BaseHTTPRequestHandler):
    """Another site's page that posts a form to the console's logout as soon as it loads."""

    target = ""

    def do_GET(self) -> None:
        body = f"""<!doctype html><form id=f method=post action="{self.target}/console/logout">
<input name=csrf_token value=guessed></form><script>document.getElementById('f').submit()</script>""".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def test_a_page_of_another_site_cannot_act_with_the_operators_session(browser: Browser, web: str) -> None:
    assert make_operator("ana-target", "admin").returncode == 0
    context = browser.new_context()
    page = context.new_page()
    _log_in(page, web, "ana-target")
    port = free_port()
    _AttackerPage.target = web
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), _AttackerPage)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        attacker = context.new_page()
        # localhost is another site than 127.0.0.1: the SameSite=Strict cookie stays home.
        with attacker.expect_response(f"{web}/console/logout") as posted:
            attacker.goto(f"http://localhost:{port}/")
        assert posted.value.status == 403
    finally:
        server.shutdown()
    page.goto(f"{web}/console/")
    assert page.url == f"{web}/console/"  # still signed in: the forged logout did nothing


T = TypeVar("T")


def _beside_the_browser(work: Coroutine[Any, Any, T]) -> T:
    """Run set-up work on a loop of its own: Playwright's runs in this thread."""
    with concurrent.futures.ThreadPoolExecutor(1) as thread:
        return thread.submit(asyncio.run, work).result()


HOSTILE_NAMES = ("<script>alert(1)</script>", '"><img src=x onerror=alert(1)>')


async def _hostile_customer(database_url: str) -> int:
    """An account whose names are markup, with a request in the register and an erasure
    in its grace period: what the privacy page shows of a customer."""
    conn = await asyncpg.connect(database_url)
    try:
        account_id: int = await conn.fetchval(
            """INSERT INTO accounts (email, password_hash, business_name, first_name, status)
               VALUES ($1, 'x', $2, $3, 'disabled') RETURNING id""",
            f"hostile.{secrets.token_hex(4)}@example.fr",
            *HOSTILE_NAMES,
        )
        await conn.execute(
            """INSERT INTO privacy_requests (kind, account_id, received_by, due_at)
               VALUES ('other', $1, 'test', now() + interval '3 days')""",
            account_id,
        )
        await conn.execute(
            """INSERT INTO erasure_requests (account_id, requested_by, run_after)
               VALUES ($1, 'test', now() + interval '1 day')""",
            account_id,
        )
        return account_id
    finally:
        await conn.close()


def test_customer_names_made_of_markup_show_as_text_and_an_erasure_is_cancelled(
    browser: Browser, web: str, database_url: str
) -> None:
    account_id = _beside_the_browser(_hostile_customer(database_url))
    assert make_operator("ana-privacy", "operator").returncode == 0
    assert make_operator("vic-viewer", "viewer").returncode == 0
    viewer = browser.new_page()
    seen = _watch(viewer)
    _log_in(viewer, web, "vic-viewer")
    viewer.goto(f"{web}/console/privacy")
    assert viewer.locator("button", has_text="Cancel").count() == 0  # a viewer is shown no action
    page = browser.new_page()
    seen += _watch(page)
    _log_in(page, web, "ana-privacy")
    page.goto(f"{web}/console/privacy")
    names = page.locator("td.account .name").all_inner_texts()
    assert HOSTILE_NAMES[0] in names  # the text, as text
    assert page.locator("img[src=x]").count() == 0  # and no element made of it
    row = page.locator("tr", has=page.locator(f"input[name=account_id][value='{account_id}']"))
    row.locator("button", has_text="Cancel").click()
    page.wait_for_url(f"{web}/console/privacy")
    assert page.locator(f"input[name=account_id][value='{account_id}']").count() == 0  # no longer under way
    assert seen == []


def test_a_failed_stripe_event_retried_from_the_inbox_is_processed(
    browser: Browser, database_url: str, redis_client: Any, tmp_path: Path
) -> None:
    event_id = _beside_the_browser(_failed_event(database_url))
    assert make_operator("ana-stripe", "operator").returncode == 0
    with web_and_worker(tmp_path, bindery_env(STRIPE_REFETCH="never")) as base:
        page = browser.new_page()
        _log_in(page, base, "ana-stripe")
        page.goto(f"{base}/console/stripe?type=customer.subscription.created")
        row = page.locator("tr", has=page.locator(f"a:text-is('{event_id}')"))
        assert row.locator("td").nth(3).inner_text() == "failed"
        row.locator("button", has_text="Retry").click()
        page.wait_for_url(f"{base}/console/stripe")

        def processed() -> bool:
            page.goto(f"{base}/console/stripe/events/{event_id}")
            return page.locator("dl.fields dd").first.inner_text().startswith(("done", "ignored"))

        wait_until(processed, 30, "the retried event to be processed")


async def _failed_event(database_url: str) -> str:
    pool = await create_pool(database_url, max_size=1)
    try:
        account_id = await new_account(pool)
        customer = new_id("cus")
        await pool.execute("UPDATE accounts SET stripe_customer_id = $1 WHERE id = $2", customer, account_id)
        item = event("customer.subscription.created", subscription(new_id("sub"), customer, "active"))
        await stored(pool, item)
        await pool.execute(
            "UPDATE stripe_events SET state = 'failed', attempts = 10, last_error = 'boom' WHERE id = $1",
            item["id"],
        )
        return str(item["id"])
    finally:
        await pool.close()


async def _customers(url: str, count: int) -> None:
    """A database of the test's own: the campaign's snapshot is exactly these accounts."""
    await new_bindery_database(url)
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(
            """INSERT INTO accounts (email, password_hash, first_name)
               SELECT 'c' || g || '@example.org', 'x', 'Client ' || g FROM generate_series(1, $1::int) g""",
            count,
        )
    finally:
        await conn.close()


def test_a_campaign_is_previewed_started_paused_and_resumed_and_its_counts_move_live(
    browser: Browser, database_url: str, redis_client: Any, tmp_path: Path
) -> None:
    url = database_url.rsplit("/", 1)[0] + f"/console_breach_{secrets.token_hex(4)}"
    _beside_the_browser(_customers(url, 200))
    try:
        with sink(tmp_path) as (smtp_url, _mail):
            env = bindery_env(
                DATABASE_URL=url,
                SMTP_URL=smtp_url,
                BREACH_MESSAGES_PER_SECOND="40",  # five seconds of sending: time to pause
                BREACH_LANES="2",
                BREACH_BATCH_SIZE="10",
            )
            campaign_id = create_campaign(env)
            assert make_operator("ana-breach", "admin", env=env).returncode == 0
            with web_and_worker(tmp_path, env) as base:
                page = browser.new_page()
                seen = _watch(page)
                _log_in(page, base, "ana-breach")
                page.goto(f"{base}/console/campaigns/{campaign_id}")
                frame = page.frame_locator("iframe.preview")
                assert "unauthorised third party" in frame.locator("body").inner_text()
                page.fill("input[name=confirm]", "999")  # not its number: refused
                page.click("form.confirm button")
                assert "type the campaign's number" in page.locator("[role=alert]").inner_text()
                page.goto(f"{base}/console/campaigns/{campaign_id}")
                page.fill("input[name=confirm]", str(campaign_id))
                page.click("form.confirm button")
                page.wait_for_url(f"{base}/console/campaigns/{campaign_id}")
                page.evaluate("document.body.dataset.loaded = 'once'")

                def sent() -> int:
                    return int(page.locator("dd[data-field=sent]").inner_text())

                wait_until(lambda: sent() > 0, 30, "the live count of sent messages to move")
                page.click("button:text-is('Pause')")
                page.wait_for_url(f"{base}/console/campaigns/{campaign_id}")
                assert page.locator("h1 [data-field=state]").inner_text() == "paused"
                page.evaluate("document.body.dataset.loaded = 'once'")
                page.click("button:text-is('Resume')")
                page.wait_for_url(f"{base}/console/campaigns/{campaign_id}")
                page.evaluate("document.body.dataset.loaded = 'once'")
                wait_until(lambda: sent() == 200, 60, "every message sent, counted live")
                wait_until(
                    lambda: page.locator("h1 [data-field=state]").inner_text() == "done",
                    30,
                    "the campaign done",
                )
                assert page.evaluate("document.body.dataset.loaded") == "once"  # no reload: progress.js
                assert seen == []
    finally:
        _beside_the_browser(drop_database(url))


async def _hostile_everywhere(database_url: str) -> tuple[int, str]:
    """Markup where the console shows customers' words: an instance's name (the backups
    pages) and a stored event's payload (the inbox's event page)."""
    conn = await asyncpg.connect(database_url)
    try:
        account_id = await conn.fetchval(
            "INSERT INTO accounts (email, password_hash) VALUES ($1, 'x') RETURNING id",
            f"markup.{secrets.token_hex(4)}@example.fr",
        )
        await conn.execute(
            "INSERT INTO subscriptions (id, customer_id, account_id, status) VALUES ($1, $2, $3, 'active')",
            f"sub_markup{account_id}",
            f"cus_markup{account_id}",
            account_id,
        )
        instance_id: int = await conn.fetchval(
            """INSERT INTO instances (account_id, name, database_url)
               VALUES ($1, $2, 'postgresql://absent/x') RETURNING id""",
            account_id,
            HOSTILE_NAMES[1],
        )
        event_id = f"evt_markup{secrets.token_hex(5)}"
        await conn.execute(
            """INSERT INTO stripe_events (id, type, created, livemode, state, attempts, last_error, payload)
               VALUES ($1, 'customer.updated', now(), false, 'failed', 3, 'boom', $2)""",
            event_id,
            json.dumps({"data": {"object": {"name": HOSTILE_NAMES[0], "description": HOSTILE_NAMES[1]}}}),
        )
        return instance_id, event_id
    finally:
        await conn.close()


def test_markup_in_instance_names_and_payloads_shows_as_text_on_every_page(
    browser: Browser, web: str, database_url: str
) -> None:
    instance_id, event_id = _beside_the_browser(_hostile_everywhere(database_url))
    assert make_operator("ana-markup", "viewer").returncode == 0
    page = browser.new_page()
    seen = _watch(page)
    _log_in(page, web, "ana-markup")
    for path in (
        "/console/",
        "/console/backups",
        f"/console/backups/instances/{instance_id}",
        "/console/stripe",
        f"/console/stripe/events/{event_id}",
        "/console/privacy",
        "/console/jobs",
        "/console/campaigns",
    ):
        page.goto(f"{web}{path}")
        assert page.locator("img[src=x]").count() == 0, path
    page.goto(f"{web}/console/stripe/events/{event_id}")
    assert HOSTILE_NAMES[0] in page.locator("pre.payload").inner_text()
    page.goto(f"{web}/console/backups/instances/{instance_id}")
    assert HOSTILE_NAMES[1] in page.locator("h1").inner_text()
    assert seen == []
