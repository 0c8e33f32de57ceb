"""The operations of an rpop site, in one place for every front end: the CLI
today, web pages and a JSON API later.  Each front end is a thin layer over
:class:`Site`."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import attrs
import pluggy

from rpopcore import activity, errors, logs, schedule
from rpopcore.config.declarative import OAUTH2_SECRETS, read_declaration
from rpopcore.config.export import export
from rpopcore.config.site import SiteConfig, load_site
from rpopcore.delivery import DeliveryAgent
from rpopcore.bounces import Bouncer
from rpopcore.model import ModuleSettings, PollResult, PollStatus, RemoteRecord, SecretRef, split_host
from rpopcore.plugins import plugin_manager
from rpopcore.records import check_user_limits
from rpopcore.retrieval import PollContext, poll_record
from rpopcore.secrets import Keyring, rotate
from rpopcore.state import StateStore

log = logging.getLogger("rpop.service")


class Site:
    """An opened site: its configuration, plugins, state store and key."""

    def __init__(self, config: SiteConfig, pm: pluggy.PluginManager, store: StateStore):
        self.config = config
        self.pm = pm
        self.store = store
        self.keyring = Keyring(config.key_file)
        # Records already warned about a clear-text password (once each).
        self.cleartext_warned: set[int] = set()

    @classmethod
    async def open(cls, site_path: Path, pm: pluggy.PluginManager | None = None) -> "Site":
        config = load_site(site_path)
        pm = pm or plugin_manager()
        factory = _choose(pm.hook.rpop_state_stores(), config.state.name, "state", config.path)
        store = _make(factory, config.state.options, config)
        # Fail on a bad [delivery] table now, not at the first message.
        agent = _make(_choose(pm.hook.rpop_delivery_agents(), config.delivery.name, "delivery", config.path),
                      config.delivery.options, config)
        await agent.close()
        await store.open()
        return cls(config, pm, store)

    async def close(self) -> None:
        await self.store.close()

    async def __aenter__(self) -> "Site":
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    def configure_logging(self, level: str) -> None:
        logs.configure(level, str(self.config.log_file) if self.config.log_file else None)

    # --- configuration ------------------------------------------------------

    def mechanisms(self) -> list:
        return [m for contributed in self.pm.hook.rpop_auth_mechanisms() for m in contributed]

    async def apply(self, path: Path, dry_run: bool = False) -> ApplyReport:
        """Make the stored configuration what the declarative file says, all
        or nothing, and report what that changes (``dry_run``: report only).
        Records keep their ids and remembered UIDs across applies when their
        mailbox (:attr:`RemoteRecord.mailbox`) stays the same."""
        path = Path(path).absolute()
        declaration = read_declaration(
            path,
            self.keyring,
            auth_names=[m.name for m in self.mechanisms()],
            route=lambda address, directory: self.pm.hook.rpop_route_address(address=address, directory=directory),
            site_file=path.resolve() == self.config.path.resolve(),
        )
        check_user_limits(declaration.records, declaration.settings, str(path))
        stored = {r.mailbox: r for r in await self.store.list_records()}
        records = []
        for record in declaration.records:
            where = f"{path}: {declaration.entries[record.mailbox]}"
            old = stored.get(record.mailbox)
            if old is not None:
                record = _keep_stored_secrets(record, old, self.keyring)
            elif record.secret.source == "none" and "oauth2" not in record.options:
                raise errors.ConfigError(
                    f"{where} key 'password' is missing: {record.mailbox} is a new mailbox and has no stored "
                    "password; give password, password_env or password_file (or an oauth2 table)"
                )
            if "oauth2" in record.options and not record.options["oauth2"].get("refresh_token"):
                raise errors.ConfigError(
                    f"{where} key 'oauth2': 'refresh_token' is missing and none is stored; give the refresh token once"
                )
            records.append(record)
        report = ApplyReport(
            changes=(
                *_settings_changes(await self.store.load_settings(), declaration.settings),
                *_keyed_changes(
                    {d.name: d for d in (await self.store.load_directory()).domains},
                    {d.name: d for d in declaration.directory.domains},
                    lambda action, domain, keys: Change(action, "domain", domain.name, keys=keys),
                ),
                *_keyed_changes(
                    stored,
                    {r.mailbox: r for r in records},
                    lambda action, record, keys: Change(action, record.kind.value, record.mailbox, record.owner, keys),
                ),
            ),
            records=len(records),
            dry_run=dry_run,
        )
        if not dry_run:
            await self.store.replace_configuration(declaration.settings, declaration.directory, records)
        return report

    async def export(self) -> str:
        """The stored configuration as a declarative file, without secrets."""
        return export(await self.store.load_settings(), await self.store.load_directory(), await self.store.list_records())

    async def rotate_secrets(self) -> int:
        """Re-encrypt every stored secret under a new site key; returns how
        many.  Records keep their ids and remembered UIDs."""

        async def reseal(fresh: Keyring) -> int:
            count = 0
            records = []
            for record in await self.store.list_records():
                record, sealed = resealed(record, self.keyring, fresh)
                records.append(record)
                count += sealed
            await self.store.replace_configuration(
                await self.store.load_settings(), await self.store.load_directory(), records
            )
            return count

        return await rotate(self.keyring, reseal)

    def delivery_agent(self) -> DeliveryAgent:
        factory = _choose(self.pm.hook.rpop_delivery_agents(), self.config.delivery.name, "delivery", self.config.path)
        return _make(factory, self.config.delivery.options, self.config)

    def relay_agent(self) -> DeliveryAgent | None:
        """The outbound relay (``[bounces] relay = "host:port"``) through the
        smtp delivery plugin, or None when none is configured."""
        if not self.config.bounce_relay:
            return None
        try:
            host, port = split_host(self.config.bounce_relay, tls=False, default_port=25)
        except ValueError as exc:
            raise errors.ConfigError(f"{self.config.path}: [bounces] key 'relay': {exc}; write host:port") from None
        factory = _choose(self.pm.hook.rpop_delivery_agents(), "smtp", "bounces", self.config.path)
        return _make(factory, {"host": host, "port": port}, self.config)

    async def poll_context(
        self, agent: DeliveryAgent, stop: asyncio.Event | None = None, relay: DeliveryAgent | None = None
    ) -> PollContext:
        directory = await self.store.load_directory()
        main = directory.main_domain
        return PollContext(
            settings=await self.store.load_settings(),
            directory=directory,
            store=self.store,
            agent=agent,
            relay=relay,
            bouncer=Bouncer(self.config.bounce_spool, relay, main.name if main else None),
            keyring=self.keyring,
            hook=self.pm.hook,
            mechanisms=self.mechanisms(),
            stop=stop,
            cleartext_warned=self.cleartext_warned,
        )

    # --- polling ------------------------------------------------------------

    async def poll_once(self, record_ids: Iterable[int] | None = None) -> list[PollResult]:
        """Poll now, ignoring due times and failure delays (an explicit
        request) but obeying ``processors``: every enabled record, or exactly
        the records named (disabled or not)."""
        records = await self.store.list_records()
        if record_ids is not None:
            wanted = list(record_ids)
            by_id = {r.id: r for r in records}
            missing = [i for i in wanted if i not in by_id]
            if missing:
                raise errors.ConfigError(
                    f"no record with id {', '.join(map(str, missing))}; 'rpop status' lists the records"
                )
            records = [by_id[i] for i in wanted]
        else:
            records = [r for r in records if r.poll_every is not None]
        self.check_key(records)
        agent = self.delivery_agent()
        relay = self.relay_agent()
        try:
            ctx = await self.poll_context(agent, relay=relay)
            if ctx.settings.processors == 0:
                raise errors.ConfigError("processors = 0 in [rpop]: polling is stopped; set processors to 1 or more")
            refuse_outside_schedule(ctx.settings)
            await self.announce("poll", ctx.settings.processors)
            gate = asyncio.Semaphore(ctx.settings.processors)

            async def one(record: RemoteRecord) -> PollResult:
                async with gate:
                    return await poll_record(ctx, record)

            return list(await asyncio.gather(*(one(r) for r in records)))
        finally:
            await agent.close()
            if relay is not None:
                await relay.close()

    async def announce(self, role: str, processors: int) -> None:
        """List this process among the store's workers (``rpop workers``).
        Only informative: a store that cannot record it (a full disk) says
        so in one line, and each poll then reports its own state failure."""
        try:
            await self.store.announce_worker(role, processors)
        except errors.StateFailed as exc:
            log.log(logs.PROBLEM, "this process is not listed among the workers: %s", exc)

    def check_key(self, records) -> None:
        """A missing or wrong key file is bad input (exit 2) when any record
        stores a secret: no such poll could work."""
        if any(r.secret.source == "stored" or "oauth2" in r.options for r in records):
            self.keyring.check()

    async def status(self, now: dt.datetime | None = None) -> list[dict]:
        """One row per record: what ``rpop status`` shows, with when it is due
        next (as the daemon would see it if it started now), when it is
        delayed, why and until when, and which process (``host:pid``) is
        polling it now, if any (``polled_by``)."""
        now = now or dt.datetime.now(dt.timezone.utc)
        settings = await self.store.load_settings()
        records = await self.store.list_records()
        statuses = await self.store.load_statuses()
        holders = await self.store.lease_holders()
        delays = schedule.host_delays(records, statuses, settings)
        rows = []
        for record in records:
            status = statuses.get(record.id)
            when = schedule.due(record, status, settings, now, delays, spread=0)
            rows.append({**status_row(record, status, when, now), "polled_by": holders.get(record.id)})
        return rows


# --- applying a declarative file --------------------------------------------

CHANGE_ACTIONS = ("added", "changed", "removed")


@attrs.frozen
class Change:
    """One thing an apply adds, changes or removes.

    ``subject`` is ``"settings"``, ``"domain"`` or a record's kind
    (``"remote"``, ``"unified"``); ``name`` is the domain's name or the
    record's mailbox (``account@host``), empty for the settings; ``owner``
    is a per-user record's owner.  ``keys`` names the keys whose values
    changed -- names only, never values, so that no report can show a secret.
    """

    action: str = attrs.field(validator=attrs.validators.in_(CHANGE_ACTIONS))
    subject: str
    name: str = ""
    owner: str | None = None
    keys: tuple[str, ...] = ()


@attrs.frozen
class ApplyReport:
    """What applying a declarative file changed (on a dry run: would change),
    in the order settings, domains, records; and how many records the
    stored configuration holds afterwards."""

    changes: tuple[Change, ...]
    records: int
    dry_run: bool = False


# The file's key for each source of a record's password.
_SECRET_KEYS = {"stored": "password", "env": "password_env", "file": "password_file"}


def _changed_keys(old, new) -> tuple[str, ...]:
    """The names of the fields of two attrs values (settings, domains,
    records) that differ, as a declarative file names them: a record's
    secret by its password key, its options one by one.  A record's id is
    the store's, not the file's."""
    keys: list[str] = []
    for field in attrs.fields(type(old)):
        before, after = getattr(old, field.name), getattr(new, field.name)
        if field.name == "id" or before == after:
            continue
        if isinstance(before, SecretRef):
            keys += sorted({_SECRET_KEYS[ref.source] for ref in (before, after) if ref.source in _SECRET_KEYS})
        elif field.name == "options":
            keys += [name for name in sorted({*before, *after}) if before.get(name) != after.get(name)]
        else:
            keys.append(field.name)
    return tuple(keys)


def _settings_changes(old: ModuleSettings, new: ModuleSettings) -> tuple[Change, ...]:
    keys = _changed_keys(old, new)
    return (Change("changed", "settings", keys=keys),) if keys else ()


def _keyed_changes(
    old: Mapping[str, Any], new: Mapping[str, Any], change: Callable[[str, Any, tuple[str, ...]], Change]
) -> list[Change]:
    """Additions and changes in the file's order, then removals in the
    store's: ``old`` and ``new`` map an identity (a domain's name, a
    record's mailbox) to the value; ``change(action, value, keys)`` makes
    the report's entry."""
    changes = []
    for identity, value in new.items():
        before = old.get(identity)
        if before is None:
            changes.append(change("added", value, ()))
        elif keys := _changed_keys(before, value):
            changes.append(change("changed", value, keys))
    changes += [change("removed", value, ()) for identity, value in old.items() if identity not in new]
    return changes


def _keep_stored_secrets(record: RemoteRecord, stored: RemoteRecord, keyring: Keyring) -> RemoteRecord:
    """The record as a file gives it, with the stored sealed secrets where
    the file leaves a secret out -- after the first apply a file may (an
    exported one does) -- or gives the same one again: sealing is not
    repeatable (each Fernet token differs), so re-sealing an unchanged
    password would report and store a change that is none."""
    secret = record.secret
    if secret.source == "none" or _same_secret(keyring, stored.secret, secret):
        secret = stored.secret
    options = record.options
    if "oauth2" in options and "oauth2" in stored.options:
        oauth2 = dict(options["oauth2"])
        for name in OAUTH2_SECRETS:
            kept, given = stored.options["oauth2"].get(name), oauth2.get(name)
            if kept and (not given or _same_secret(keyring, SecretRef(**kept), SecretRef(**given))):
                oauth2[name] = kept
        options = {**options, "oauth2": oauth2}
    return attrs.evolve(record, secret=secret, options=options)


def _same_secret(keyring: Keyring, stored: SecretRef, given: SecretRef) -> bool:
    """Whether two sealed secrets hold the same value.  One that cannot be
    unsealed (sealed under a key since lost) is replaced, not compared."""
    if stored.source != "stored" or given.source != "stored":
        return stored == given
    try:
        return keyring.reveal(stored) == keyring.reveal(given)
    except errors.SecretUnavailable:
        return False


def refuse_outside_schedule(settings, now: dt.datetime | None = None) -> None:
    """``poll --once`` obeys the activity schedule: outside it, nothing
    connects (a refusal by policy: exit 2)."""
    if not settings.activity_schedule:
        return
    now = now or dt.datetime.now(dt.timezone.utc)
    windows = activity.parse_schedule(settings.activity_schedule)
    opens = activity.next_allowed(windows, activity.zone(settings.time_zone), now)
    if opens > now:
        raise errors.ConfigError(
            f"outside the activity schedule ([rpop] activity_schedule); nothing polled. "
            f"The next window opens at {_iso(opens)}"
        )


def resealed(record: RemoteRecord, old: Keyring, new: Keyring) -> tuple[RemoteRecord, int]:
    """The record with every stored secret (its password, its OAuth 2
    tokens) sealed under ``new`` instead of ``old``; and how many there were."""
    count = 0

    def again(ref: SecretRef) -> SecretRef:
        nonlocal count
        if ref.source != "stored":
            return ref
        count += 1
        return new.seal(old.reveal(ref))

    options = dict(record.options)
    if "oauth2" in options:
        oauth2 = dict(options["oauth2"])
        for name in OAUTH2_SECRETS:
            if isinstance(oauth2.get(name), dict):
                sealed = again(SecretRef(**oauth2[name]))
                oauth2[name] = {"source": sealed.source, "value": sealed.value}
        options["oauth2"] = oauth2
    return attrs.evolve(record, secret=again(record.secret), options=options), count


def status_row(
    record: RemoteRecord, status: PollStatus | None, when: "schedule.Due | None" = None, now: dt.datetime | None = None
) -> dict:
    last: str | None = None
    if status is not None:
        if status.error:
            last = status.error
        elif status.last_success:
            last = _iso(status.last_success)
    return {
        "id": record.id,
        "kind": record.kind.value,
        "owner": record.owner,
        "account": record.account,
        "host": record.host,
        # Said wherever a record is shown: any certificate is accepted, so a
        # machine on the path can read the password and the mail.
        "tls_verify": record.tls_verify,
        "poll_every": record.poll_every,
        "last": last,
        "error": status.error if status else None,
        "last_success": _iso(status.last_success) if status and status.last_success else None,
        "detail": status.detail if status and status.error else "",
        "next_due": _iso(when.at) if when and when.at else None,
        "delayed": (
            {"reason": when.reason, "until": _iso(when.at)}
            if when and when.at and now and when.at > now and when.reason in schedule.DELAYS
            else None
        ),
    }


def _iso(moment: dt.datetime) -> str:
    return moment.astimezone(dt.timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def _choose(contributions: list[dict], name: str, table: str, path: Path):
    available: dict = {}
    for contributed in contributions:
        available.update(contributed)
    if name not in available:
        names = ", ".join(sorted(available)) or "none installed"
        raise errors.ConfigError(
            f"{path}: [{table}] key 'plugin': no installed plugin provides {name!r} (available: {names}); "
            f"install the plugin's distribution, e.g. pip install rpop-{table if table != 'state' else 'storage'}-{name}"
        )
    return available[name]


def _make(factory, options, config: SiteConfig):
    """Call a plugin's factory; its option errors get the site file's name."""
    try:
        return factory(options, config.base_dir)
    except errors.ConfigError as exc:
        raise errors.ConfigError(f"{config.path}: {exc}") from None
