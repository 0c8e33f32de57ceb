"""What the web pages and the JSON API do, once, for both: each operation
takes the :class:`Caller` and checks its role, then changes the stored
configuration through :meth:`rpopcore.service.Site.apply_document` -- the
checks and the all-or-nothing apply of ``rpop apply`` -- by editing the
stored configuration as a declaration (the tables of a declarative file).

Errors are :class:`WebError`: the HTTP status, one sentence saying what is
wrong and the fix, and the key at fault.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any, Mapping

import attrs

from rpopcore import errors, schedule
from rpopcore.config.export import declaration, record_table, settings_table
from rpopcore.config.site import WebConfig
from rpopcore.model import RecordKind, RemoteRecord
from rpopcore.service import Site, status_row
from rpopcore.web.last import describe_last

ADMIN, USER = "admin", "user"

#: The keys a user may give for their own records.  Paths and environment
#: variables on the server (password_file, password_env, ca_file) are an
#: administrator's, set in a declarative file: a user naming /etc/shadow as
#: a password file would send its first line to a server of their choice.
USER_KEYS = frozenset(
    {"poll_every", "account", "host", "password", "leave", "apop", "tls", "starttls", "tls_verify", "auth", "owner"}
)
#: Keys no web request sets, whoever makes it (see USER_KEYS).
SERVER_KEYS = frozenset({"password_file", "password_env", "ca_file"})
#: What a record in JSON adds to the declarative keys; never accepted.
READ_ONLY_KEYS = frozenset(
    {"id", "last", "error", "next_poll", "next_poll_reason", "explanation", "detail", "last_success",
     "retrieved", "retrieved_total"}
)
ACCOUNTS_PAGE_SIZE = 50
#: Begins the errors of changes made through the web (and is cut off them).
ORIGIN = "web"


@attrs.frozen
class Caller:
    """Who makes a request: a signed-in local address and its role."""

    address: str
    role: str

    @property
    def admin(self) -> bool:
        return self.role == ADMIN


class WebError(Exception):
    """A request the server refuses: ``status`` (400 bad input, 403 not
    allowed, 404 no such thing for this caller, 409 refused by a limit or
    policy), ``message`` and ``field`` (the key at fault, or None).
    ``entry`` is the row of a table at fault (0-based), when one is."""

    def __init__(self, status: int, message: str, field: str | None = None, entry: int | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.field = field
        self.entry = entry


def _not_found(record_id) -> WebError:
    return WebError(404, f"no record with id {record_id}; GET /api/v1/records lists yours")


class Operations:
    """The web interface's operations on one opened site."""

    def __init__(self, site: Site, web: WebConfig):
        self.site = site
        self.web = web
        # One change at a time: each reads the stored configuration, edits it
        # and applies the whole, so two at once would lose one.
        self._changing = asyncio.Lock()
        self._polling = 0  # polls started from the web and still running

    # --- who is who ---------------------------------------------------------

    async def local_address(self, address: str) -> str | None:
        """The final local address of ``address``, or None if it is none."""
        return self.site.route(address.strip(), await self.site.store.load_directory())

    def role_of(self, address: str) -> str:
        return ADMIN if address in self.web.admins else USER

    async def may_poll(self, caller: Caller) -> bool:
        """Whether the caller may keep remote accounts of their own (the
        seed's right granted per domain and per account)."""
        if caller.admin:
            return True
        return await self._may_poll(caller.address)

    async def _may_poll(self, address: str) -> bool:
        local, _, domain_name = address.partition("@")
        domain = (await self.site.store.load_directory()).domain(domain_name)
        return bool(domain and domain.may_poll(local))

    def who_grants(self) -> str:
        admins = ", ".join(self.web.admins) or "the administrator"
        return f"the right to keep remote accounts is granted by an administrator ({admins})"

    def _need_admin(self, caller: Caller) -> None:
        if not caller.admin:
            raise WebError(403, "this needs the administrator role ([web] admins in the site file)")

    async def _need_right(self, caller: Caller) -> None:
        if not await self.may_poll(caller):
            raise WebError(403, f"you may not keep remote accounts here: {self.who_grants()}")

    # --- module settings ----------------------------------------------------

    async def settings(self, caller: Caller) -> dict:
        self._need_admin(caller)
        return settings_table(await self.site.store.load_settings())

    async def update_settings(self, caller: Caller, values: Mapping[str, Any]) -> dict:
        """Change the settings given; the others keep their values."""
        self._need_admin(caller)
        if not isinstance(values, Mapping):
            raise WebError(400, "send the settings as a JSON object, like {\"processors\": 5}")
        async with self._changing:
            doc, _ids = await self._document()
            doc["rpop"] = {**doc["rpop"], **values}
            await self._apply(doc)
        return await self.settings(caller)

    async def polling_state(self, now: dt.datetime | None = None) -> dict:
        """Whether the module polls now: processors, and the activity
        schedule's state and when it changes."""
        from rpopcore import activity

        settings = await self.site.store.load_settings()
        now = now or dt.datetime.now(dt.timezone.utc)
        state = {"processors": settings.processors, "schedule_open": True, "changes_at": None}
        if settings.activity_schedule:
            windows = activity.parse_schedule(settings.activity_schedule)
            zone = activity.zone(settings.time_zone)
            opens = activity.next_allowed(windows, zone, now)
            state["schedule_open"] = opens <= now
            if opens > now:
                state["changes_at"] = opens
            else:
                state["changes_at"] = _window_end(windows, zone, now)
        state["polling"] = settings.processors > 0 and state["schedule_open"]
        return state

    # --- records ------------------------------------------------------------

    async def records(self, caller: Caller, owner: str | None = None, kind: str | None = None) -> list[dict]:
        """Records as JSON: an administrator's choice (all, one owner's, one
        kind), a user's own remote records."""
        if not caller.admin:
            if owner is not None and owner.lower() != caller.address:
                raise WebError(403, "a user sees their own records only; leave out ?owner=")
            owner, kind = caller.address, RecordKind.REMOTE.value
        elif owner is not None:
            owner = await self.local_address(owner) or owner.lower()
        store = self.site.store
        records = await (store.list_records(owner=owner) if owner is not None else store.list_records())
        return await self._rows([r for r in records if kind is None or r.kind.value == kind])

    async def record(self, caller: Caller, record_id: int) -> dict:
        for row in await self._rows(await self.site.store.list_records(ids=[record_id])):
            if self._may_see(caller, row):
                return row
        raise _not_found(record_id)

    async def create_record(self, caller: Caller, values: Mapping[str, Any]) -> dict:
        values = self._given(caller, values)
        kind = values.pop("kind", RecordKind.REMOTE.value)
        if kind not in ("remote", "unified"):
            raise WebError(400, f"kind {kind!r}: expected \"remote\" or \"unified\"", "kind")
        if not caller.admin:
            await self._need_right(caller)
            if kind != "remote":
                raise WebError(403, "unified records are an administrator's", "kind")
            values.update(owner=caller.address, set_by="user")
        async with self._changing:
            saved = await self._checked(self.site.apply_record(kind, values, ORIGIN))
        return await self.record(caller, saved.id)

    async def update_record(self, caller: Caller, record_id: int, values: Mapping[str, Any]) -> dict:
        values = self._given(caller, values)
        if "kind" in values:
            raise WebError(400, "a record's kind cannot change; remove it and add one of the other kind", "kind")
        async with self._changing:
            record = await self._own_record(caller, record_id)
            if not caller.admin:
                # A record a user changes is theirs: the user limits apply.
                values.update(owner=caller.address, set_by="user")
            entry = {**record_table(record, self.site.record_options), **values}
            await self._checked(self.site.apply_record(record.kind.value, entry, ORIGIN, record_id))
        return await self.record(caller, record_id)

    async def delete_record(self, caller: Caller, record_id: int) -> None:
        async with self._changing:
            await self._own_record(caller, record_id)
            await self.site.store.delete_record(record_id)

    async def _own_record(self, caller: Caller, record_id: int) -> RemoteRecord:
        """A stored record the caller may change; 404 for one that does not
        exist or is not theirs (a user is not told which), 403 for a user
        without the right."""
        record = await self.site.store.get_record(record_id)
        if record is None or not (caller.admin or (record.kind is RecordKind.REMOTE and record.owner == caller.address)):
            raise _not_found(record_id)
        if not caller.admin:
            await self._need_right(caller)
        return record

    async def replace_table(self, caller: Caller, kind: str, owner: str | None, rows: list[dict | None]) -> None:
        """The seed's Update button: make one table -- the unified records,
        or one owner's remote records -- these rows, all or nothing.  Each
        row is the record's keys with ``id`` for a stored one; a stored
        record whose row is None (``----`` in Poll Every) or missing goes.
        An error names its row (:attr:`WebError.entry`, the index in
        ``rows``)."""
        if kind == "unified":
            self._need_admin(caller)
        elif not caller.admin:
            await self._need_right(caller)
            if owner != caller.address:
                raise WebError(404, "no such page")
        async with self._changing:
            doc, ids = await self._document()
            table, where = [], []
            for position, row in enumerate(rows):
                if row is None:
                    continue
                row = dict(row)
                record_id = row.pop("id", None)
                given = self._given(caller, row)
                stored = None
                if record_id is not None:
                    stored = doc[kind][self._locate(caller, doc, ids, record_id, kind)[1]]
                    given = {**stored, **given}
                if kind == "remote":
                    given["owner"] = owner
                    # A row a user changes (or adds) is theirs: the user
                    # limits apply.  One left as it was keeps its setter.
                    if not caller.admin and (given != stored or "password" in given):
                        given["set_by"] = "user"
                table.append(given)
                where.append(position)
            others = [
                entry for entry in doc[kind]
                if kind == "remote" and entry["owner"] != owner
            ]
            doc[kind] = others + table
            try:
                await self._apply(doc)
            except WebError as exc:
                if exc.entry is not None:
                    shifted = exc.entry - len(others)
                    exc.entry = where[shifted] if 0 <= shifted < len(where) else None
                raise

    async def poll(self, caller: Caller, record_id: int) -> dict:
        """Poll one record now (within ``processors``); its result."""
        row = await self.record(caller, record_id)
        if not caller.admin:
            await self._need_right(caller)
        settings = await self.site.store.load_settings()
        if 0 < settings.processors <= self._polling:
            raise WebError(409, f"all {settings.processors} processors are polling now; try again in a moment")
        self._polling += 1
        try:
            (result,) = await self.site.poll_once([row["id"]])
        except errors.ConfigError as exc:
            raise WebError(409, str(exc)) from None
        finally:
            self._polling -= 1
        return {"id": result.record_id, "retrieved": result.retrieved, "delivered": result.delivered,
                "error": result.error, "detail": result.detail}

    # --- local accounts and their right -------------------------------------

    async def accounts(self, caller: Caller, search: str = "", page: int = 1) -> tuple[list[dict], int]:
        """Local accounts matching ``search``, one page of them, with the
        count of their records and their right; and how many match."""
        self._need_admin(caller)
        directory = await self.site.store.load_directory()
        counts = await self.site.store.count_records_by_owner()
        search = search.strip().lower()
        found = [
            {"address": f"{account}@{domain.name}", "may_poll": domain.may_poll(account),
             "records": counts.get(f"{account}@{domain.name}", 0)}
            for domain in directory.domains for account in sorted(domain.accounts)
            if search in f"{account}@{domain.name}"
        ]
        start = (max(page, 1) - 1) * ACCOUNTS_PAGE_SIZE
        return found[start:start + ACCOUNTS_PAGE_SIZE], len(found)

    async def account(self, caller: Caller, address: str) -> dict:
        """One local account: its right and records (an administrator's
        view, or a user's own)."""
        local = await self.local_address(address)
        if local is None or (not caller.admin and local != caller.address):
            raise WebError(404, f"{address!r} is not a local account; GET /api/v1/accounts lists them")
        return {"address": local, "may_poll": await self._may_poll(local),
                "records": await self.records(Caller(local, USER) if not caller.admin else caller, owner=local)}

    async def set_may_poll(self, caller: Caller, address: str, may_poll: bool | None) -> dict:
        """Grant (True) or withdraw (False) one account's right, or let it
        follow its domain's ``users_may_poll`` (None)."""
        self._need_admin(caller)
        if may_poll not in (True, False, None):
            raise WebError(400, "may_poll: expected true, false or null (the domain's default)", "may_poll")
        local = await self.local_address(address)
        if local is None:
            raise WebError(404, f"{address!r} is not a local account")
        account, _, domain_name = local.partition("@")
        async with self._changing:
            doc, _ids = await self._document()
            for table in doc["domain"]:
                if table["name"] == domain_name:
                    rights = dict(table["account_may_poll"])
                    rights.pop(account, None)
                    if may_poll is not None:
                        rights[account] = may_poll
                    table["account_may_poll"] = rights
            await self._apply(doc)
        return await self.account(caller, local)

    # --- the stored configuration as a declaration ---------------------------

    async def _document(self) -> tuple[dict, dict[str, list[int]]]:
        """The stored configuration as declarative tables, and the record id
        of each ``remote`` and ``unified`` entry, by position."""
        store = self.site.store
        records = await store.list_records()
        doc = declaration(await store.load_settings(), await store.load_directory(), records, self.site.record_options)
        ids = {kind: [r.id for r in records if r.kind.value == kind] for kind in ("remote", "unified")}
        return doc, ids

    def _locate(self, caller: Caller, doc: dict, ids: dict[str, list[int]], record_id, kind: str | None = None
                ) -> tuple[str, int]:
        """Where a record the caller may change sits in ``doc``; 404 for
        one that does not exist or is not theirs (a user is not told which)."""
        for each in (kind,) if kind else ("remote", "unified"):
            if record_id in ids[each]:
                index = ids[each].index(record_id)
                if caller.admin or (each == "remote" and doc[each][index]["owner"] == caller.address):
                    return each, index
        raise _not_found(record_id)

    async def _apply(self, doc: dict) -> None:
        await self._checked(self.site.apply_document(doc, ORIGIN))

    async def _checked(self, change):
        """Await a change; its refusal becomes a WebError (409 for a limit,
        400 for the rest) naming the field and the entry at fault."""
        try:
            return await change
        except errors.LimitExceeded as exc:
            raise WebError(409, _without_prefix(str(exc), ORIGIN), exc.field) from None
        except errors.ConfigError as exc:
            entry = exc.entry[1] - 1 if exc.entry else None
            raise WebError(400, _without_prefix(str(exc), ORIGIN), exc.field, entry) from None

    def _given(self, caller: Caller, values: Any) -> dict:
        """The keys a request gives, refused when the caller may not set them."""
        if not isinstance(values, Mapping):
            raise WebError(400, "send the record as a JSON object with the declarative file's keys")
        values = {k: v for k, v in values.items() if k not in READ_ONLY_KEYS}
        for key in values:
            if key in SERVER_KEYS:
                raise WebError(400, f"key '{key}' names a file or variable on the server: set it in a declarative "
                                    "file with 'rpop apply'", key)
            if not caller.admin and key not in USER_KEYS | {"kind"}:
                raise WebError(400, f"key '{key}' is set by an administrator", key)
        if "password" in values and values["password"] in ("", None):
            del values["password"]  # write-only: empty keeps the stored one
        if not caller.admin and "owner" in values and str(values["owner"]).lower() != caller.address:
            raise WebError(400, "owner: a user keeps records for themselves only; leave owner out", "owner")
        return values

    def _may_see(self, caller: Caller, row: dict) -> bool:
        return caller.admin or (row["kind"] == "remote" and row["owner"] == caller.address)

    async def _rows(self, records: list[RemoteRecord]) -> list[dict]:
        """These records as JSON: the declarative keys, the status and when
        the next attempt is due (reading their statuses only)."""
        store = self.site.store
        now = dt.datetime.now(dt.timezone.utc)
        settings = await store.load_settings()
        statuses = await store.load_statuses([record.id for record in records])
        delays = await self.site.host_delays(settings)
        rows = []
        for record in records:
            status = statuses.get(record.id)
            when = schedule.due(record, status, settings, now, delays, spread=0)
            row = status_row(record, status, when, now)
            rows.append({
                "id": record.id,
                "kind": record.kind.value,
                **record_table(record, self.site.record_options),
                "owner": record.owner,
                "last": row["last"],
                "error": row["error"],
                "detail": row["detail"],
                "last_success": row["last_success"],
                "next_poll": row["next_due"],
                "next_poll_reason": when.reason if when else None,
                "explanation": describe_last(row, settings.time_zone)["sentence"],
                "retrieved": status.retrieved if status else 0,
                "retrieved_total": status.retrieved_total if status else 0,
            })
        return rows


def _without_prefix(message: str, origin: str) -> str:
    """A declaration error without the origin and the entry's number, which
    mean nothing to someone editing one record (the field says where)."""
    if message.startswith(origin + ": "):
        message = message[len(origin) + 2:]
    if message.startswith("[["):
        head, _, rest = message.partition(" ")
        number, _, rest = rest.partition(" ")
        message = rest.lstrip(": ") if number.startswith("#") else message
    elif message.startswith("[rpop] "):
        message = message[len("[rpop] "):]
    return message


def _window_end(windows, zone, now: dt.datetime) -> dt.datetime | None:
    """When the activity window open now closes (to the minute), or None if
    it never does within a week."""
    from rpopcore import activity

    probe = now.replace(second=0, microsecond=0)
    for _ in range(7 * 24 * 60):
        probe += dt.timedelta(minutes=1)
        if not activity.allowed(windows, zone, probe):
            return probe
    return None
