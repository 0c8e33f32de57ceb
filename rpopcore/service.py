"""The operations of an rpop site, in one place for every front end: the CLI
today, web pages and a JSON API later.  Each front end is a thin layer over
:class:`Site`."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping

import attrs
import pluggy

from rpopcore import activity, errors, logs, schedule
from rpopcore.config.declarative import PASSWORD_KEYS, RECORD_KEYS, Declaration, check_declaration, check_record, read_declaration
from rpopcore.config.export import export
from rpopcore.config.site import SiteConfig, load_site
from rpopcore.model import ModuleSettings, PollResult, PollStatus, RemoteRecord, SecretRef, split_host
from rpopcore.plugins import contributions, install_hint, plugin_manager, record_options
from rpopcore.records import check_user_limits
from rpopcore.secrets import Keyring, rotate
from rpopcore.state import StateStore

if TYPE_CHECKING:  # imported when a poll is made: a command that polls nothing starts without them
    from rpopcore.delivery import DeliveryAgent
    from rpopcore.retrieval import PollContext

log = logging.getLogger("rpop.service")


class Site:
    """An opened site: its configuration, plugins, state store and key."""

    def __init__(self, config: SiteConfig, pm: pluggy.PluginManager, store: StateStore):
        self.config = config
        self.pm = pm
        self.store = store
        #: The record keys installed plugins add, by name.
        self.record_options = record_options(pm, RECORD_KEYS)
        self.keyring = Keyring(config.key_file)
        # Records already warned about a clear-text password (once each).
        self.cleartext_warned: set[int] = set()

    @classmethod
    async def open(cls, site_path: Path, pm: pluggy.PluginManager | None = None) -> "Site":
        config = load_site(site_path)
        pm = pm or plugin_manager()
        factory = _choose(contributions(pm, "rpop_state_stores"), config.state.name, "state", config.path)
        store = _make(factory, config.state.options, config)
        site = cls(config, pm, store)  # two plugins declaring one record key: fails here
        # Fail on a bad [delivery] or [bounces] table now, not at the first message.
        for agent in (site.delivery_agent(), site.relay_agent()):
            if agent is not None:
                await agent.close()
        await store.open()
        return site

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
        return list(contributions(self.pm, "rpop_auth_mechanisms").values())

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
            route=self.route,
            site_file=path.resolve() == self.config.path.resolve(),
            options=self.record_options,
        )
        return await self.apply_declaration(declaration, str(path), dry_run)

    async def apply_document(self, doc: Mapping, origin: str, dry_run: bool = False) -> ApplyReport:
        """:meth:`apply` for a declaration already parsed into tables (what
        the web pages and the JSON API build): the same checks, the same
        all-or-nothing change.  ``origin`` begins each error."""
        declaration = check_declaration(
            doc, origin, self.config.base_dir, self.keyring, [m.name for m in self.mechanisms()], self.route,
            self.record_options,
        )
        return await self.apply_declaration(declaration, origin, dry_run)

    def route(self, address: str, directory) -> str | None:
        """The final local address of ``address`` (aliases resolved), or
        None when it is no local account: the routing hook."""
        if not self.pm.hook.rpop_route_address.get_hookimpls():
            raise errors.ConfigError(
                f"no routing plugin is installed, so no record's owner can be checked against the local domains; "
                f"{install_hint('routing', 'directory')}"
            )
        return self.pm.hook.rpop_route_address(address=address, directory=directory)

    async def apply_declaration(self, declaration: Declaration, origin: str, dry_run: bool = False) -> ApplyReport:
        """Make the stored configuration what a checked declaration says
        (see :meth:`apply`); ``origin`` begins each error."""
        check_user_limits(declaration.records, declaration.settings, origin)
        if declaration.records and not self.mechanisms():
            raise errors.ConfigError(
                f"{origin}: no authentication plugin is installed, so no record could log in; "
                f"{install_hint('auth', 'userpass')}"
            )
        stored = {r.mailbox: r for r in await self.store.list_records()}
        records = []
        for record in declaration.records:
            entry = declaration.entries[record.mailbox]
            kind, _, index = entry.strip("[]").partition("]] #")
            records.append(self._with_secrets(record, stored.get(record.mailbox), f"{origin}: {entry}",
                                              (kind, int(index))))
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

    def _with_secrets(self, record: RemoteRecord, old: RemoteRecord | None, where: str, entry) -> RemoteRecord:
        """The record with the stored secrets of ``old`` (the stored record
        of the same mailbox) where it gives none; a new mailbox must give
        one.  ``entry`` goes on the error."""
        try:
            if old is not None:
                record = _keep_stored_secrets(record, old, self.keyring, self.record_options)
            credentials = [name for name, option in self.record_options.items()
                           if option.credential and record.kind.value in option.kinds]
            if old is None and record.secret.source == "none" and not set(credentials) & set(record.options):
                alternatives = "".join(f" (or {name})" for name in credentials)
                raise errors.ConfigError(
                    f"{where} key 'password' is missing: {record.mailbox} is a new mailbox and has no stored "
                    f"password; give password, password_env or password_file{alternatives}",
                    field="password",
                )
            for name, value in record.options.items():
                option = self.record_options[name]
                missing = [key for key in option.required_secret_keys if key not in option.sealed(value)]
                if missing:
                    raise errors.ConfigError(
                        f"{where} key '{name}': '{missing[0]}' is missing and none is stored; give it once",
                        field=name,
                    )
        except errors.ConfigError as exc:
            exc.entry = entry
            raise
        return record
    async def apply_record(self, kind: str, entry: Mapping, origin: str, record_id: int | None = None) -> RemoteRecord:
        """Add a record (``record_id`` None) or make a stored one what one
        ``[[remote]]`` or ``[[unified]]`` entry says, with the checks of
        :meth:`apply` -- the entry's keys, its mailbox unique, the user
        limits of its owner, a new mailbox's password -- leaving every other
        record as it is, so the cost does not grow with their number.
        Returns the stored record."""
        settings = await self.store.load_settings()
        directory = await self.store.load_directory()
        where = f"{origin}: [[{kind}]]"
        record = check_record(kind, entry, where, self.config.base_dir, self.keyring,
                              [m.name for m in self.mechanisms()], directory, self.route, self.record_options)
        stored = await self.store.list_records()
        old = next((r for r in stored if r.id == record_id), None)
        others = [r for r in stored if r.id != record_id]
        same = next((r for r in others if r.mailbox == record.mailbox), None)
        if same is not None:
            exc = errors.ConfigError(f"{where}: {record.mailbox} is record {same.id} already; one mailbox is one "
                                     "record", field="account")
            exc.entry = (kind, 1)
            raise exc
        record = self._with_secrets(record, old if old and old.mailbox == record.mailbox else None, where, (kind, 1))
        check_user_limits([*(r for r in others if r.owner == record.owner), record], settings, origin)
        return await self.store.save_record(attrs.evolve(record, id=record_id))

    async def export(self) -> str:
        """The stored configuration as a declarative file, without secrets."""
        return export(await self.store.load_settings(), await self.store.load_directory(),
                      await self.store.list_records(), self.record_options)

    async def rotate_secrets(self) -> int:
        """Re-encrypt every stored secret under a new site key; returns how
        many.  Records keep their ids and remembered UIDs."""

        async def reseal(fresh: Keyring) -> int:
            count = 0
            records = []
            for record in await self.store.list_records():
                record, sealed = self.resealed(record, self.keyring, fresh)
                records.append(record)
                count += sealed
            await self.store.replace_configuration(
                await self.store.load_settings(), await self.store.load_directory(), records
            )
            return count

        return await rotate(self.keyring, reseal)

    def resealed(self, record: RemoteRecord, old: Keyring, new: Keyring) -> tuple[RemoteRecord, int]:
        """The record with every stored secret -- its password, and those of
        the keys plugins add (OAuth 2 tokens) -- sealed under ``new`` instead
        of ``old``; and how many there were.  Key rotation and migrate-state
        both use it."""
        count = 0

        def again(ref: SecretRef) -> SecretRef:
            nonlocal count
            if ref.source != "stored":
                return ref
            count += 1
            return new.seal(old.reveal(ref))

        options = {}
        for name, value in record.options.items():
            option = self._known_option(record, name, "re-encrypting its secrets")
            options[name] = option.with_secrets(value, {k: again(ref) for k, ref in option.sealed(value).items()})
        return attrs.evolve(record, secret=again(record.secret), options=options), count

    def _known_option(self, record: RemoteRecord, name: str, doing: str):
        """The declaration of a key a stored record carries; a key no installed
        plugin declares may hold secrets rpop cannot tell apart, so nothing
        that must handle them goes on without its plugin."""
        option = self.record_options.get(name)
        if option is None:
            raise errors.ConfigError(
                f"record {record.id} ({record.mailbox}) has the key '{name}', which no installed plugin declares; "
                f"install the plugin that provides it before {doing} ('rpop plugins' lists what is installed)"
            )
        return option

    def delivery_agent(self) -> DeliveryAgent:
        factory = _choose(contributions(self.pm, "rpop_delivery_agents"), self.config.delivery.name, "delivery", self.config.path)
        return _make(factory, self.config.delivery.options, self.config)

    def relay_agent(self) -> DeliveryAgent | None:
        """The outbound relay, or None when none is configured: the delivery
        plugin ``[bounces] relay_plugin`` names (``smtp`` by default), with
        the ``[bounces.relay_options]`` table and ``relay = "host:port"`` as
        its ``host`` and ``port``."""
        bounces = self.config.bounces
        if not bounces.relay and not bounces.relay_options:
            return None
        options = dict(bounces.relay_options)
        if bounces.relay:
            try:
                options["host"], options["port"] = split_host(bounces.relay, tls=False, default_port=25)
            except ValueError as exc:
                raise errors.ConfigError(f"{self.config.path}: [bounces] key 'relay': {exc}; write host:port") from None
        factory = _choose(contributions(self.pm, "rpop_delivery_agents"), bounces.relay_plugin, "bounces", self.config.path,
                          key="relay_plugin")
        return _make(factory, options, self.config)

    async def poll_context(
        self, agent: DeliveryAgent, stop: asyncio.Event | None = None, relay: DeliveryAgent | None = None,
        progress=None,
    ) -> PollContext:
        from rpopcore.bounces import Bouncer
        from rpopcore.retrieval import PollContext

        directory = await self.store.load_directory()
        main = directory.main_domain
        return PollContext(
            settings=await self.store.load_settings(),
            directory=directory,
            store=self.store,
            agent=agent,
            relay=relay,
            bouncer=Bouncer(self.config.bounces.spool, relay, main.name if main else None),
            keyring=self.keyring,
            hook=self.pm.hook,
            mechanisms=self.mechanisms(),
            stop=stop,
            cleartext_warned=self.cleartext_warned,
            progress=progress,
        )

    # --- polling ------------------------------------------------------------

    async def poll_once(self, record_ids: Iterable[int] | None = None, progress=None) -> list[PollResult]:
        """Poll now, ignoring due times and failure delays (an explicit
        request) but obeying ``processors``: every enabled record, or exactly
        the records named (disabled or not).  ``progress``
        (:class:`rpopcore.progress.PollProgress`) is told of each message."""
        records = await self._chosen_records(record_ids)
        if not records:  # said without loading what polling needs
            refuse_stopped(await self.store.load_settings())
            return []
        from rpopcore.retrieval import poll_record

        agent = self.delivery_agent()
        relay = self.relay_agent()
        try:
            ctx = await self.poll_context(agent, relay=relay, progress=progress)
            refuse_stopped(ctx.settings)
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

    async def check(self, record_ids: Iterable[int] | None = None) -> list:
        """What is new on each server (``poll --check``): the records
        :meth:`poll_once` would poll, logged in to and listed, nothing
        retrieved or changed.  Returns one :class:`rpopcore.check.CheckResult` per record."""
        from rpopcore.check import check_records

        records = await self._chosen_records(record_ids)
        ctx = await self.poll_context(agent=None)
        return await check_records(ctx, records)

    async def _chosen_records(self, record_ids: Iterable[int] | None) -> list[RemoteRecord]:
        """Every enabled record, or exactly the records named (disabled or
        not), with the key checked if any stores a secret."""
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
        return records

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
        if any(r.secret.source == "stored" or any(self._known_option(r, name, "polling it").sealed(value)
                                                   for name, value in r.options.items()) for r in records):
            self.keyring.check()

    async def host_delays(self, settings) -> dict[str, dt.datetime]:
        """Host -> until when no record on it is polled (Delay Failed Hosts),
        from the statuses that say a host failed, on any record and by any
        worker: a read of those statuses, not of every record."""
        failed = await self.store.statuses_with_error(schedule.HOST_FAILURES)
        records = await self.store.list_records(ids=failed) if failed else []
        return schedule.host_delays(records, failed, settings)

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
            rows.append({**status_row(record, status, when, now, self.record_options), "polled_by": holders.get(record.id)})
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
            keys += sorted({PASSWORD_KEYS[ref.source] for ref in (before, after) if ref.source in PASSWORD_KEYS})
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


def _keep_stored_secrets(record: RemoteRecord, stored: RemoteRecord, keyring: Keyring, options) -> RemoteRecord:
    """The record as a file gives it, with the stored sealed secrets where
    the file leaves a secret out -- after the first apply a file may (an
    exported one does) -- or gives the same one again: sealing is not
    repeatable (each Fernet token differs), so re-sealing an unchanged
    password would report and store a change that is none.  The secrets of
    the keys plugins add (``options``) are kept the same way."""
    secret = record.secret
    if secret.source == "none" or _same_secret(keyring, stored.secret, secret):
        secret = stored.secret
    values = dict(record.options)
    for name, value in record.options.items():
        option = options[name]
        if name not in stored.options:
            continue
        given = option.sealed(value)
        kept = {key: ref for key, ref in option.sealed(stored.options[name]).items()
                if key not in given or _same_secret(keyring, ref, given[key])}
        values[name] = option.with_secrets(value, kept)
    return attrs.evolve(record, secret=secret, options=values)


def _same_secret(keyring: Keyring, stored: SecretRef, given: SecretRef) -> bool:
    """Whether two sealed secrets hold the same value.  One that cannot be
    unsealed (sealed under a key since lost) is replaced, not compared."""
    if stored.source != "stored" or given.source != "stored":
        return stored == given
    try:
        return keyring.reveal(stored) == keyring.reveal(given)
    except errors.SecretUnavailable:
        return False


def refuse_stopped(settings, now: dt.datetime | None = None) -> None:
    """``poll --once`` refuses when polling is stopped: ``processors = 0``,
    or outside the activity schedule (a refusal by policy: exit 2)."""
    if settings.processors == 0:
        raise errors.ConfigError("processors = 0 in [rpop]: polling is stopped; set processors to 1 or more")
    refuse_outside_schedule(settings, now)


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


def status_row(
    record: RemoteRecord, status: PollStatus | None, when: "schedule.Due | None" = None, now: dt.datetime | None = None,
    options: Mapping = {},
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
        # The keys plugins add, without their secrets.
        "options": {name: options[name].public(value) for name, value in record.options.items() if name in options},
    }


def _iso(moment: dt.datetime) -> str:
    return moment.astimezone(dt.timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


#: The kind of plugin each site-file table selects, for the install hint.
_KIND = {"delivery": "delivery", "bounces": "delivery", "state": "state"}


def _choose(available: dict, name: str, table: str, path: Path, key: str = "plugin"):
    if name not in available:
        names = ", ".join(sorted(available)) or "none installed"
        raise errors.ConfigError(
            f"{path}: [{table}] key '{key}': no installed plugin provides {name!r} (available: {names}); "
            f"{install_hint(_KIND[table], name)}"
        )
    return available[name]


def _make(factory, options, config: SiteConfig):
    """Call a plugin's factory; its option errors get the site file's name."""
    try:
        return factory(options, config.base_dir)
    except errors.ConfigError as exc:
        raise errors.ConfigError(f"{config.path}: {exc}") from None
