"""The operations of an rpop site, in one place for every front end: the CLI
today, web pages and a JSON API later.  Each front end is a thin layer over
:class:`Site`."""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path
from typing import Iterable

import attrs
import pluggy

from rpopcore import activity, errors, logs, schedule
from rpopcore.config.declarative import OAUTH2_SECRETS, read_declaration
from rpopcore.config.export import export
from rpopcore.config.site import SiteConfig, load_site
from rpopcore.delivery import DeliveryAgent
from rpopcore.bounces import Bouncer
from rpopcore.model import PollResult, PollStatus, RemoteRecord, SecretRef, split_host
from rpopcore.plugins import plugin_manager
from rpopcore.records import check_user_limits
from rpopcore.retrieval import PollContext, poll_record
from rpopcore.secrets import Keyring, rotate
from rpopcore.state import StateStore


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

    async def apply(self, path: Path) -> list[RemoteRecord]:
        """Make the stored configuration what the declarative file says, all
        or nothing.  Records keep their ids and remembered UIDs across applies
        when their mailbox (owner, account, host) stays the same."""
        declaration = read_declaration(
            path,
            self.keyring,
            auth_names=[m.name for m in self.mechanisms()],
            route=lambda address, directory: self.pm.hook.rpop_route_address(address=address, directory=directory),
        )
        check_user_limits(declaration.records, declaration.settings, str(Path(path).absolute()))
        # A record that gives no password keeps the one stored for the same
        # mailbox, so a file can leave secrets out after the first apply
        # (an exported file does).  The same goes for OAuth secrets.
        stored = {r.mailbox: r for r in await self.store.list_records()}
        records = []
        for record in declaration.records:
            old = stored.get(record.mailbox)
            if old is not None:
                if record.secret.source == "none":
                    record = attrs.evolve(record, secret=old.secret)
                if "oauth2" in record.options and "oauth2" in old.options:
                    oauth2 = dict(record.options["oauth2"])
                    for name in OAUTH2_SECRETS:
                        if not oauth2.get(name) and old.options["oauth2"].get(name):
                            oauth2[name] = old.options["oauth2"][name]
                    record = attrs.evolve(record, options={**record.options, "oauth2": oauth2})
            if "oauth2" in record.options and not record.options["oauth2"].get("refresh_token"):
                raise errors.ConfigError(
                    f"{Path(path).absolute()}: the record {record.account}@{record.host}: key 'oauth2': "
                    "'refresh_token' is missing and none is stored; give the refresh token once"
                )
            records.append(record)
        return await self.store.replace_configuration(declaration.settings, declaration.directory, records)

    async def export(self) -> str:
        """The stored configuration as a declarative file, without secrets."""
        return export(await self.store.load_settings(), await self.store.load_directory(), await self.store.list_records())

    async def rotate_secrets(self) -> int:
        """Re-encrypt every stored secret under a new site key; returns how
        many.  Records keep their ids and remembered UIDs."""

        async def reseal(fresh: Keyring) -> int:
            count = 0

            def again(ref: SecretRef) -> SecretRef:
                nonlocal count
                if ref.source != "stored":
                    return ref
                count += 1
                return fresh.seal(self.keyring.reveal(ref))

            records = []
            for record in await self.store.list_records():
                options = dict(record.options)
                if "oauth2" in options:
                    oauth2 = dict(options["oauth2"])
                    for name in OAUTH2_SECRETS:
                        if isinstance(oauth2.get(name), dict):
                            sealed = again(SecretRef(**oauth2[name]))
                            oauth2[name] = {"source": sealed.source, "value": sealed.value}
                    options["oauth2"] = oauth2
                records.append(attrs.evolve(record, secret=again(record.secret), options=options))
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
            gate = asyncio.Semaphore(ctx.settings.processors)

            async def one(record: RemoteRecord) -> PollResult:
                async with gate:
                    return await poll_record(ctx, record)

            return list(await asyncio.gather(*(one(r) for r in records)))
        finally:
            await agent.close()
            if relay is not None:
                await relay.close()

    def check_key(self, records) -> None:
        """A missing or wrong key file is bad input (exit 2) when any record
        stores a secret: no such poll could work."""
        if any(r.secret.source == "stored" or "oauth2" in r.options for r in records):
            self.keyring.check()

    async def status(self, now: dt.datetime | None = None) -> list[dict]:
        """One row per record: what ``rpop status`` shows, with when it is due
        next (as the daemon would see it if it started now) and, when it is
        delayed, why and until when."""
        now = now or dt.datetime.now(dt.timezone.utc)
        settings = await self.store.load_settings()
        records = await self.store.list_records()
        statuses = await self.store.load_statuses()
        delays = schedule.host_delays(records, statuses, settings)
        rows = []
        for record in records:
            status = statuses.get(record.id)
            when = schedule.due(record, status, settings, now, delays, spread=0)
            rows.append(status_row(record, status, when, now))
        return rows


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
