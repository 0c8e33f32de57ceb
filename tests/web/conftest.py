"""A site with a web interface, for the API, page and browser tests: the
domain example.test whose users may keep remote accounts (carol may not),
postmaster@example.test the administrator, each with a web password set as
'rpop passwd' sets it."""

from __future__ import annotations

import re
import textwrap

import httpx
import pytest

from rpopcore.cli import _init
from rpopcore.service import Site
from rpopcore.web.app import build_app
from rpopcore.web.auth import set_password

ADMIN, ALICE, BOB, CAROL = "postmaster@example.test", "alice@example.test", "bob@example.test", "carol@example.test"
PASSWORDS = {ADMIN: "admin-pass-1", ALICE: "alice-pass-1", BOB: "bob-pass-1", CAROL: "carol-pass-1"}
#: A remote password the tests give records: it must never come back.
SECRET = "s3cret-remote-Pw"

DECLARATION = f"""
[rpop]
allow_self_poll = true
max_accounts_per_user = 2

[[domain]]
name = "example.test"
accounts = ["alice", "bob", "carol", "postmaster"]
aliases = {{ al = "alice" }}
users_may_poll = true
account_may_poll = {{ carol = false }}

[[remote]]
owner = "alice@example.test"
account = "alice.remote"
host = "127.0.0.1:1"
password = "{SECRET}"

[[remote]]
owner = "bob@example.test"
account = "bob.remote"
host = "127.0.0.1:1"
password = "{SECRET}"

[[unified]]
account = "domain.remote"
host = "127.0.0.1:1"
password = "{SECRET}"
special_field = "X-Real-To"
"""

WEB_TABLE = """
[web]
listen = "127.0.0.1:0"
admins = ["postmaster@example.test"]
"""


def make_web_site(folder, declaration: str = DECLARATION, web: str = WEB_TABLE):
    """A site folder with [web] in its site file and ``decl.toml``."""
    _init(folder)
    with open(folder / "rpop.toml", "a") as f:
        f.write(textwrap.dedent(web))
    (folder / "decl.toml").write_text(declaration)
    return folder / "rpop.toml"


async def open_web_site(folder, declaration: str = DECLARATION) -> Site:
    site = await Site.open(make_web_site(folder, declaration))
    await site.apply(folder / "decl.toml")
    authenticators = [a for contributed in site.pm.hook.rpop_web_authenticators() for a in contributed]
    for address, password in PASSWORDS.items():
        await set_password(authenticators, address, password, site.store)
    return site


@pytest.fixture
async def web_site(tmp_path):
    site = await open_web_site(tmp_path)
    yield site
    await site.close()


class Clients:
    """HTTP clients of the web interface of one site, in this process."""

    def __init__(self, site: Site):
        self.site = site
        self.app = build_app(site, site.config.web)
        self.opened: list[httpx.AsyncClient] = []

    def anonymous(self) -> httpx.AsyncClient:
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app, client=("127.0.0.1", 40000)),
                                   base_url="http://127.0.0.1:8080")
        self.opened.append(client)
        return client

    def basic(self, address: str, password: str | None = None) -> httpx.AsyncClient:
        client = self.anonymous()
        client.auth = (address, password or PASSWORDS[address])
        return client

    async def signed_in(self, address: str) -> httpx.AsyncClient:
        """Signed in through the sign-in page, as a browser is; unsafe API
        requests carry the session's CSRF token as the pages give it."""
        client = self.anonymous()
        await sign_in(client, address, PASSWORDS[address])
        page = await client.get("/", follow_redirects=True)
        client.headers["x-csrf-token"] = csrf_of(page.text)
        return client

    async def close(self):
        for client in self.opened:
            await client.aclose()


async def sign_in(client: httpx.AsyncClient, address: str, password: str) -> httpx.Response:
    form = await client.get("/signin")
    return await client.post("/signin", data={"csrf": csrf_of(form.text), "address": address, "password": password})


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf(?:-token)?" (?:content|value)="([^"]+)"', html)
    assert found, "the page carries a CSRF token"
    return found.group(1)


@pytest.fixture
async def clients(web_site):
    made = Clients(web_site)
    yield made
    await made.close()


@pytest.fixture(autouse=True)
def cheap_password_hashes(monkeypatch):
    """Argon2id as the plugin uses it, with the lowest cost parameters:
    its default (64 MiB, 3 passes) takes most of a second a check on a busy
    test machine, and every HTTP Basic request is one check."""
    import argon2
    import rpop_web_password

    cheap = argon2.PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
    monkeypatch.setattr(rpop_web_password, "_HASHER", cheap)
    rpop_web_password._unused_hash.cache_clear()  # made again, with the cheap parameters
    yield
    rpop_web_password._unused_hash.cache_clear()
