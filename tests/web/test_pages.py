"""The pages without a browser: the seed's tables applied all or nothing
with the error on its row, the settings page's fields and help."""

from __future__ import annotations

import re
from pathlib import Path

from rpopcore.web.settings_form import GROUPS, SETTINGS_HELP
from tests.web.conftest import ADMIN, ALICE, BOB, SECRET

ROOT = Path(__file__).parent.parent.parent


async def table_form(client, path: str) -> dict:
    """The table's form as a browser would submit it unchanged."""
    page = (await client.get(path)).text
    form = {"csrf": client.headers["x-csrf-token"], "rows": re.search(r'name="rows" value="(\d+)"', page).group(1)}
    for name, value in re.findall(r'name="(r\d+-(?:id|account|host|special_field))" value="([^"]*)"', page):
        form[name] = value
    for name in re.findall(r'name="(r\d+-(?:leave|apop|tls))" checked', page):
        form[name] = "on"
    for name, value in re.findall(r'name="(r\d+-poll_every)"[^>]*>.*?<option selected>([^<]+)<', page, re.S):
        form[name] = value
    return form


async def test_the_unified_table_applies_all_rows_or_none_with_the_error_on_its_row(clients):
    admin = await clients.signed_in(ADMIN)
    form = await table_form(admin, "/unified")
    assert form["rows"] == "2" and form["r0-account"] == "domain.remote" and form["r1-account"] == ""
    # Change the stored row and add a bad one: neither is applied.
    refused = await admin.post("/unified", data={**form, "r0-poll_every": "disabled", "r1-account": "new",
                                                 "r1-host": "http://pop.isp.test", "r1-password": "p"})
    assert refused.status_code == 400
    assert re.search(r'id="r1-host-error" role="alert">[^<]*is a URL', refused.text)
    assert 'value="http://pop.isp.test"' in refused.text, "what was typed is shown again"
    (unified,) = [r for r in await clients.site.store.list_records() if r.kind.value == "unified"]
    assert unified.poll_every == 600

    done = await admin.post("/unified", data={**form, "r0-poll_every": "disabled", "r1-account": "new",
                                              "r1-host": "127.0.0.1:7", "r1-password": SECRET})
    assert done.status_code == 303
    stored = {r.account: r for r in await clients.site.store.list_records() if r.kind.value == "unified"}
    assert stored["domain.remote"].poll_every is None and stored["new"].poll_every == 600
    assert clients.site.keyring.reveal(stored["domain.remote"].secret) == SECRET, "empty password keeps it"

    form = await table_form(admin, "/unified")
    assert (await admin.post("/unified", data={**form, "r0-poll_every": "----"})).status_code == 303
    assert [r.account for r in await clients.site.store.list_records() if r.kind.value == "unified"] == ["new"]


async def test_a_user_s_table_leaves_other_users_records_alone(clients):
    alice = await clients.signed_in(ALICE)
    form = await table_form(alice, f"/accounts/{ALICE}/records")
    answer = await alice.post(f"/accounts/{ALICE}/records", data={**form, "r0-poll_every": "----",
                                                                  "r1-account": "mine", "r1-host": "127.0.0.1:8",
                                                                  "r1-password": "p", "r1-poll_every": "1h"})
    assert answer.status_code == 303
    owned = {r.account: r.owner for r in await clients.site.store.list_records() if r.owner}
    assert owned == {"bob.remote": BOB, "mine": ALICE}


async def test_the_settings_page_shows_every_setting_with_its_label_and_help(clients):
    admin = await clients.signed_in(ADMIN)
    page = (await admin.get("/settings")).text
    keys = [key for _title, group in GROUPS for key in group]
    assert sorted(keys) == sorted(SETTINGS_HELP)
    for key in keys:
        assert f'<label for="{key}">' in page and f'id="{key}-help"' in page
    assert "<legend>Processing</legend>" in page


def test_the_pages_help_is_the_settings_reference_word_for_word():
    reference = {}
    for line in (ROOT / "docs" / "settings.md").read_text().splitlines():
        found = re.match(r"\| `(\w+)` \| `[^|]*` \| (.*) \|$", line)
        if found:
            reference[found.group(1)] = found.group(2)
    assert reference == SETTINGS_HELP


async def test_the_account_page_shows_and_sets_the_account_s_right(clients):
    admin = await clients.signed_in(ADMIN)
    page = (await admin.get("/accounts/carol@example.test/records")).text
    assert '<option value="no" selected>no</option>' in page
    assert "as the domain says (yes)" in page
    answer = await admin.post("/accounts/carol@example.test/right", data={"may_poll": "default",
                                                                         "csrf": admin.headers["x-csrf-token"]})
    assert answer.status_code == 303
    page = (await admin.get("/accounts/carol@example.test/records")).text
    assert '<option value="default" selected>' in page
    assert (await clients.basic("carol@example.test").get("/api/v1/me")).json()["may_poll"] is True
