"""The console in a real browser: Playwright driving Debian's Chromium against a real
`bindery web`. Logging in and out, the overview on a laptop and on a phone, no script
that the page did not serve itself, and a page of another site that cannot act with
the operator's session."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, ConsoleMessage, Dialog, Page, sync_playwright

from tests.console.console_setup import PASSWORD, console_web, make_operator
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
