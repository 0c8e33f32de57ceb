"""End to end in a real headless Chromium (Debian's ``chromium``, driven by
Playwright): an administrator and users at work in the pages, against a
real Dovecot, with mail arriving in the local Maildir.

Set ``RPOP_SCREENSHOTS=docs`` to save the screenshots docs/web.md shows
(otherwise they go to the test's temporary folder).
"""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path

import pytest
from playwright.async_api import async_playwright, expect

from rpopcore.web.server import WebServer
from rpopcore.testing.sites import delivered
from tests.web.conftest import ADMIN, ALICE, CAROL, PASSWORDS, open_web_site

PROVIDER = {"exampletest": "box-secret", "alice.isp": "alice-secret"}


def chromium() -> str:
    found = shutil.which("chromium")
    if found is None:
        pytest.fail("Debian's chromium is not installed: apt-get install -y chromium (scripts/setup --test does)")
    return found


@pytest.fixture
def provider(dovecot_factory):
    return dovecot_factory(users=PROVIDER, tls=False)


@pytest.fixture
async def served(tmp_path):
    """The site's web interface served by uvicorn on a free loopback port."""
    site = await open_web_site(tmp_path)
    server = WebServer(site, site.config.web)
    stop = asyncio.Event()
    task = asyncio.ensure_future(server.serve(stop))
    yield site, server.url.rstrip("/"), tmp_path
    stop.set()
    await task
    await site.close()


@pytest.fixture
async def browser():
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=chromium(), headless=True,
                                                    args=["--no-sandbox", "--disable-gpu"])
        yield launched
        await launched.close()


async def signed_in(browser, base: str, address: str, width: int = 1280):
    page = await (await browser.new_context(viewport={"width": width, "height": 900})).new_page()
    await page.goto(f"{base}/signin")
    await page.get_by_label("Address").fill(address)
    await page.get_by_label("Password").fill(PASSWORDS[address])
    await page.get_by_role("button", name="Sign in").click()
    await page.wait_for_load_state()
    return page


def screenshots(tmp_path: Path) -> Path:
    return Path(os.environ["RPOP_SCREENSHOTS"]) if os.environ.get("RPOP_SCREENSHOTS") else tmp_path


async def add_row(page, account: str, host: str, password: str, period: str | None = None) -> None:
    await page.get_by_label("Account (new record)", exact=True).fill(account)
    await page.get_by_label("Host (new record)", exact=True).fill(host)
    await page.get_by_label("Password (new record)", exact=True).fill(password)
    if period:
        await page.get_by_label("Poll every (new record)", exact=True).select_option(period)
    await page.get_by_role("button", name="Update", exact=True).click()
    await page.wait_for_load_state()


async def test_an_administrator_sets_up_a_unified_account_and_polls_it_now(served, browser, provider):
    site, base, folder = served
    provider.put("exampletest", b"From: friend@isp.test\nTo: alice@example.test\nSubject: hello\n\nhi alice\n")
    page = await signed_in(browser, base, ADMIN)
    await expect(page.get_by_role("heading", name="RPOP module settings")).to_be_visible()
    await expect(page.locator("#polling-state")).to_contain_text("The module is polling now: 10 processors")

    await page.get_by_label("Processors").fill("lots")
    await page.get_by_role("button", name="Update").click()
    await expect(page.locator("#processors-error")).to_contain_text("expected a whole number, got 'lots'")
    await expect(page.get_by_label("Processors")).to_have_attribute("aria-invalid", "true")
    await page.get_by_label("Processors").fill("4")
    await page.get_by_role("button", name="Update").click()
    await expect(page.get_by_role("status")).to_contain_text("Settings updated.")
    assert (await site.store.load_settings()).processors == 4
    await page.screenshot(path=screenshots(folder) / "web-settings.png", full_page=True)

    await page.get_by_role("link", name="Unified accounts").click()
    host = f"127.0.0.1:{provider.pop3_port}"
    await add_row(page, "exampletest", host, PROVIDER["exampletest"])
    await expect(page.get_by_role("status")).to_contain_text("Updated.")
    await page.get_by_role("button", name=f"Poll now exampletest@{host}").click()
    await expect(page.locator("#poll-outcome")).to_contain_text("1 retrieved, 1 delivered")
    row = page.locator("tr", has=page.get_by_label(f"Account (exampletest@{host})"))
    await expect(row.locator(".last .ok")).to_contain_text("polled 20")
    await expect(row.locator(".counts")).to_contain_text("1 retrieved last time, 1 in all")
    (arrived,) = delivered(folder, "alice")
    assert b"hi alice" in arrived
    assert PROVIDER["exampletest"] not in await page.content()
    await page.screenshot(path=screenshots(folder) / "web-unified.png", full_page=True)


async def test_a_user_adds_remote_accounts_until_the_limit_refuses_one(served, browser, provider):
    site, base, folder = served
    page = await signed_in(browser, base, ALICE, width=390)  # a phone's width
    await expect(page.get_by_role("heading", name=f"Remote accounts of {ALICE}")).to_be_visible()
    host = f"127.0.0.1:{provider.pop3_port}"
    await add_row(page, "alice.isp", host, PROVIDER["alice.isp"], "30m")
    await add_row(page, "second.isp", host, "whatever-1", "1h")
    await add_row(page, "third.isp", host, "whatever-2", "1h")
    await expect(page.get_by_role("alert")).to_contain_text("more than max_accounts_per_user = 2")
    assert sorted(r.account for r in await site.store.list_records() if r.owner == ALICE) == [
        "alice.isp", "alice.remote", "second.isp"]


async def test_a_wrong_password_shows_auth_failed_explained_in_last(served, browser, provider):
    site, base, folder = served
    provider.put("alice.isp", b"Subject: stays\n\nnot fetched\n")
    page = await signed_in(browser, base, ALICE)
    host = f"127.0.0.1:{provider.pop3_port}"
    await add_row(page, "alice.isp", host, "not-the-password", "30m")
    await page.get_by_role("button", name=f"Poll now alice.isp@{host}").click()
    await expect(page.locator("#poll-outcome")).to_contain_text("failed, auth-failed")
    row = page.locator("tr", has=page.get_by_label(f"Account (alice.isp@{host})"))
    await expect(row.locator(".last .failed")).to_contain_text("auth-failed: The server refused the credentials.")
    await expect(row.locator(".next")).to_contain_text("next attempt")
    assert delivered(folder, "alice") == []
    assert "not-the-password" not in await page.content()
    await page.screenshot(path=screenshots(folder) / "web-user-records.png", full_page=True)


async def test_a_user_without_the_right_sees_the_page_read_only(served, browser):
    site, base, folder = served
    page = await signed_in(browser, base, CAROL)
    await expect(page.locator("#read-only")).to_contain_text(
        "granted by an administrator (postmaster@example.test)")
    await expect(page.get_by_label("Account (new record)", exact=True)).to_be_disabled()
    await expect(page.get_by_role("button", name="Update", exact=True)).to_have_count(0)
    await page.keyboard.press("Tab")  # the skip link comes first, and shows where focus is
    await expect(page.locator(".skip")).to_be_focused()
