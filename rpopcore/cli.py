"""The ``rpop`` command: a thin layer over :class:`rpopcore.service.Site`.

Bad input -- a file, key or value -- prints one line on stderr and exits 2;
a state store or standard output that cannot be written (a full disk)
prints one line and exits 1; nothing the user can cause prints a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import select
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from rpopcore import __version__, errors
from rpopcore.config.site import DEFAULT_SITE_FILE
from rpopcore.durations import format_duration

if TYPE_CHECKING:
    from rpopcore.service import ApplyReport

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 2


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 2, like every other bad input
        raise errors.ConfigError(f"{message} (see 'rpop --help')")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="rpop", description="Retrieve mail from remote POP3 mailboxes and deliver it locally.")
    parser.add_argument("-V", "--version", action="version", version=f"rpop {__version__}",
                        help="print the version and exit")
    _common_options(parser, os.environ.get("RPOP_CONFIG", "rpop.toml"), 0, False)
    # -c, -v and -q are taken after the subcommand too (rpop status -c SITE):
    # there they override, and when absent leave, what came before it.
    common = _Parser(add_help=False)
    _common_options(common, argparse.SUPPRESS, argparse.SUPPRESS, argparse.SUPPRESS)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    def command(name: str, help: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=help, description=help[0].upper() + help[1:] + ".", parents=[common])

    p = command("init", "create a site: DIR/rpop.toml, a secrets key, SQLite state, Maildir delivery")
    p.add_argument("dir", type=Path, help="the folder of the new site (made if missing)")
    p = command("apply", "make the stored settings, domains and records what a declarative file says")
    p.add_argument("file", type=Path, help="the declarative file")
    p.add_argument("--dry-run", action="store_true", help="print what applying would change, and change nothing")
    p = command("poll", "poll records now")
    p.add_argument("--once", action="store_true", help="poll once and exit (the only mode; 'rpop run' polls on schedule)")
    p.add_argument("--record", action="append", metavar="WHICH",
                   help="poll only these records: an id, an owner's address (all their records) or "
                        "OWNER/ACCOUNT@HOST (repeatable)")
    p.add_argument("--check", action="store_true",
                   help="report what is new on each server without retrieving or changing anything; exit 0 when "
                        "there is new mail, 1 when none, 2 on an error")
    p.add_argument("--json", action="store_true", help="print the results as JSON (and no progress)")
    p = command("status", "one row per record: last poll, error")
    p.add_argument("--json", action="store_true", help="print the rows as JSON")
    command("run", "the daemon (a worker): poll every record on its schedule until SIGTERM (and serve [web])")
    p = command("workers", "the live processes polling through this site's state store")
    p.add_argument("--json", action="store_true", help="print the list as JSON")
    command("migrate", "bring the state store's schema up to date (also done whenever rpop starts)")
    p = command("migrate-state", "copy this site's state (records, secrets, UIDs, ...) into another site's empty "
                "state store")
    p.add_argument("--to", required=True, type=Path, metavar="OTHER_SITE.toml", help="the other site's file")
    command("web", "serve the web pages and JSON API of [web] alone, without polling, until SIGTERM")
    p = command("passwd", "set the web password of a local account (from stdin when it is not a terminal)")
    p.add_argument("address", help="the local account, e.g. alice@example.test")
    p = command("plugins", "list loaded plugins")
    p.add_argument("--json", action="store_true", help="print the list as JSON")
    p = command("settings", "the module settings in force, with their defaults")
    p.add_argument("--json", action="store_true", help="print the settings as JSON")
    command("export", "print the stored configuration as a declarative file (without secrets)")
    p = command("secrets", "manage the site key: 'rotate' re-encrypts every stored secret under a new key")
    p.add_argument("action", choices=["rotate"], help="rotate: make a new key and re-encrypt under it")
    p = command("plugin", "'new KIND NAME [DIR]': write a new plugin distribution from a template")
    p.add_argument("action", choices=["new"], help="new: write a plugin that passes its tests as generated")
    p.add_argument("kind", metavar="KIND", help="auth, delivery, recipients or routing")
    p.add_argument("name", metavar="NAME", help="the plugin's name (lower case, digits, _)")
    p.add_argument("dir", metavar="DIR", type=Path, nargs="?", help="where to write it (default: ./rpop-KIND-NAME)")
    p = command("demo", "poll a sample POP3 server on loopback into a temporary Maildir")
    p.add_argument("--keep", action="store_true", help="keep the temporary folder")
    p = command("probe", "show what a POP3 server offers (greeting, CAPA, TLS, certificate, auth), without logging in")
    p.add_argument("target", metavar="HOST[:PORT]", help="the server; the port defaults to 110, or 995 with --tls")
    tls = p.add_mutually_exclusive_group()
    tls.add_argument("--tls", action="store_true", help="TLS from the first byte (pop3s, port 995)")
    tls.add_argument("--starttls", action="store_true", help="require STLS (by default it is used when offered)")
    p.add_argument("--ca-file", default="", metavar="FILE", help="verify the certificate against this PEM CA bundle "
                                                               "instead of the system's CAs")
    p.add_argument("--timeout", type=float, default=30.0, metavar="SECONDS", help="give up after this long (default 30)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p = command("import", "print a declarative file made from a fetchmail, getmail6 or mpop configuration")
    p.add_argument("format", choices=["fetchmailrc", "getmailrc", "mpoprc"],
                   help="the other tool's file format (getmailrc: one rc file per mailbox)")
    p.add_argument("files", type=Path, nargs="+", metavar="FILE", help="the tool's configuration files")
    p.add_argument("--uids", type=Path, action="extend", nargs="+", default=[], metavar="UIDFILE",
                   help="the tool's UID files (.fetchids, getmail's oldmail-*, mpop's uidls; repeatable): "
                        "stored in SITE's state so that mail the tool left on the server is not retrieved again")
    p.add_argument("--domain", help="the local domain of bare local user names (default: the site's main domain)")
    p.add_argument("--owner", metavar="ADDRESS",
                   help="the local owner of mailboxes a file names no local user for (default: the file's owner)")
    return parser


def _common_options(parser: argparse.ArgumentParser, config, verbose, quiet) -> None:
    parser.add_argument("-c", "--config", metavar="SITE.toml", default=config,
                        help="the site file (default: $RPOP_CONFIG or ./rpop.toml)")
    parser.add_argument("-v", "--verbose", action="count", default=verbose,
                        help="log more for this run only: -v protocol lines (low-level), -vv everything (all); "
                             "the stored log_level is not changed")
    parser.add_argument("-q", "--quiet", action="store_true", default=quiet,
                        help="log nothing for this run (results and errors are still printed)")


def run_log_level(stored: str, verbose: int, quiet: bool) -> str:
    """The log level of this run: -v/-vv/-q, else the stored ``log_level``."""
    if quiet:
        return "none"
    if verbose >= 2:
        return "all"
    if verbose == 1:
        return "all" if stored == "all" else "low-level"
    return stored


class OutputLost(Exception):
    """Standard output could not be written: ``rpop export > FILE`` on a
    full disk."""

    def __init__(self, error: OSError):
        super().__init__(error)
        self.error = error


class _Stdout:
    """Standard output whose write failures are :class:`OutputLost`, told
    apart from the failures of the files a command works on.  A closed pipe
    stays BrokenPipeError (see :func:`main`)."""

    def __init__(self, stream):
        self._stream = stream

    def write(self, text: str) -> int:
        try:
            return self._stream.write(text)
        except BrokenPipeError:
            raise
        except OSError as exc:
            raise OutputLost(exc) from None

    def flush(self) -> None:
        try:
            self._stream.flush()
        except BrokenPipeError:
            raise
        except OSError as exc:
            raise OutputLost(exc) from None

    def __getattr__(self, name):
        return getattr(self._stream, name)


def main(argv: list[str] | None = None) -> int:
    stdout = sys.stdout
    sys.stdout = _Stdout(stdout)
    try:
        return _main(argv)
    finally:
        sys.stdout = stdout


def _main(argv: list[str] | None) -> int:
    try:
        args = build_parser().parse_args(argv)
        if args.command is None:
            build_parser().print_help()
            return EXIT_BAD_INPUT
        status = asyncio.run(_dispatch(args))
        sys.stdout.flush()  # a write error is the command's, not the interpreter's at exit
        return status
    except OutputLost as exc:
        # Not bad input, which exit status 2 would tell a script to fix in
        # the command or its files: the disk behind the redirection is full,
        # as a state store on a full disk is exit status 1.
        _silence_stdout()
        print(f"rpop: cannot write standard output ({exc.error.strerror or exc.error}); "
              "what the command printed is lost (anything it changed stays changed)", file=sys.stderr)
        return EXIT_FAILED
    except errors.ConfigError as exc:
        print(f"rpop: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except errors.StateFailed as exc:
        # The state store cannot be written (a full disk): not a bug of
        # ours, and its message says which file and why.
        print(f"rpop: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError as exc:
        if _stdout_is_gone():
            # `rpop plugins | head`: the reader has all it wanted.  Exit
            # quietly, as a program killed by SIGPIPE would.
            return 128 + signal.SIGPIPE
        return _internal_error(exc)
    except Exception as exc:  # a bug of ours: still one line, but say how to learn more
        return _internal_error(exc)


def _internal_error(exc: BaseException) -> int:
    if os.environ.get("RPOP_DEBUG"):
        raise exc
    print(f"rpop: internal error: {type(exc).__name__}: {exc} (set RPOP_DEBUG=1 for details)", file=sys.stderr)
    return EXIT_FAILED


def _stdout_is_gone() -> bool:
    """Whether standard output's reader has closed it (poll() reports an
    error on a pipe with no reader).  If so, standard output is silenced
    (:func:`_silence_stdout`)."""
    try:
        fd = sys.stdout.fileno()
        poller = select.poll()
        poller.register(fd, select.POLLOUT)
        gone = any(events & select.POLLERR for _fd, events in poller.poll(0))
    except (OSError, ValueError):
        return False
    if gone:
        _silence_stdout()
    return gone


def _silence_stdout() -> None:
    """Point standard output at /dev/null, so that the interpreter's flush
    at exit does not fail again over what could not be written."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass


async def _dispatch(args) -> int:
    if args.command == "init":
        return _init(args.dir)
    if args.command == "demo":
        from rpopcore.demo import run_demo

        return await run_demo(keep=args.keep)
    if args.command == "plugins":
        return _plugins(args.json)
    if args.command == "probe":
        return await _probe(args)
    if args.command == "plugin":
        from rpopcore.plugin_template import new_plugin

        folder = new_plugin(args.kind, args.name, args.dir)
        print(f"wrote {folder}; next: cd {folder} && pip install -e '.[test]' && python -m pytest")
        return EXIT_OK
    from rpopcore.service import Site

    site = await Site.open(Path(args.config))
    try:
        settings = await site.store.load_settings()
        level = run_log_level(settings.log_level, args.verbose, args.quiet)
        site.configure_logging(level)
        if args.command == "apply":
            _print_apply(args.file, await site.apply(args.file, dry_run=args.dry_run))
            return EXIT_OK
        if args.command == "poll":
            ids = await _selected(site, args.record) if args.record else None
            if args.check:
                return await _check(site, ids, args.json)
            from rpopcore.progress import for_terminal

            progress = None if args.json or args.quiet else for_terminal(sys.stderr)
            results = await site.poll_once(ids, progress=progress)
            _print_poll(results, args.json)
            return EXIT_FAILED if any(r.error for r in results) else EXIT_OK
        if args.command == "status":
            _print_status(await site.status(), args.json)
            return EXIT_OK
        if args.command == "settings":
            _print_settings(settings, args.json)
            return EXIT_OK
        if args.command == "export":
            print(await site.export(), end="")
            return EXIT_OK
        if args.command == "secrets":
            count = await site.rotate_secrets()
            print(f"re-encrypted {_count(count, 'secret')} under a new key in {site.keyring.key_file}; "
                  f"the old key is kept in {site.keyring.previous_file}: delete it once you are sure")
            return EXIT_OK
        if args.command == "import":
            return await _import(site, args)
        if args.command == "run":
            from rpopcore.scheduler import run_daemon

            # -v or -q hold for this run: the daemon then does not follow log_level.
            overridden = level != settings.log_level or args.verbose or args.quiet
            return await run_daemon(site, None if overridden else settings.log_level)
        if args.command == "web":
            return await _web(site)
        if args.command == "passwd":
            return await _passwd(site, args.address)
        if args.command == "workers":
            _print_workers(await site.store.list_workers(), args.json)
            return EXIT_OK
        if args.command == "migrate":
            print(f"{site.config.path}: the state store's schema is at version {await site.store.schema_version()}, "
                  "the newest this rpop knows")
            return EXIT_OK
        if args.command == "migrate-state":
            return await _migrate_state(site, args.to)
    finally:
        await site.close()
    return EXIT_BAD_INPUT


async def _selected(site, which: list[str]) -> list[int]:
    from rpopcore.records import select_records

    return select_records(await site.store.list_records(), which)


async def _check(site, ids, as_json: bool) -> int:
    results = await site.check(ids)
    if as_json:
        print(json.dumps([attrs_dict(r) for r in results], indent=2))
    else:
        _print_table(["ID", "MAILBOX", "MESSAGES", "NEW", "NEW SIZE", "ERROR"], [
            [r.record_id, r.mailbox, r.messages if not r.error else "-", r.new if not r.error else "-",
             format_size(r.new_bytes) if not r.error else "-", f"{r.error}: {r.detail}" if r.error else ""]
            for r in results], right={0, 2, 3, 4})
        if not results:
            print("no records to check")
    if any(r.error for r in results):
        return EXIT_BAD_INPUT  # fetchmail's convention: 2 is an error, which needs a look
    return EXIT_OK if any(r.new for r in results) else EXIT_FAILED


def attrs_dict(value) -> dict:
    import attrs

    return attrs.asdict(value)


def format_size(size: int) -> str:
    """1234567 -> '1.2 MB'; bytes below a kilobyte as they are."""
    if size < 1000:
        return f"{size} B"
    for unit in ("kB", "MB", "GB", "TB"):
        size /= 1000
        if size < 1000 or unit == "TB":
            return f"{size:.1f} {unit}"
    return f"{size} B"


async def _probe(args) -> int:
    from rpopcore.plugins import plugin_manager
    from rpopcore.probe import probe, render

    mechanisms = [m for contributed in plugin_manager().hook.rpop_auth_mechanisms() for m in contributed]
    report = await probe(args.target, implicit_tls=args.tls, require_starttls=args.starttls, ca_file=args.ca_file,
                         timeout=args.timeout, mechanisms=mechanisms)
    if args.json:
        print(json.dumps(report.as_json(), indent=2))
    else:
        print(render(report), end="")
    return EXIT_FAILED if report.error else EXIT_OK


async def _import(site, args) -> int:
    from rpopcore.importers import run_import

    report = await run_import(site, args.format, args.files, args.uids, domain=args.domain, owner=args.owner)
    print(report.text, end="")
    sys.stdout.flush()
    for line in report.warnings:
        print(f"rpop: {line}", file=sys.stderr)
    uids = (f"; stored {_count(report.uids_stored, 'UID')} of {_count(report.uid_mailboxes, 'mailbox')}"
            if args.uids else "")
    print(f"rpop: imported {_count(report.mailboxes, 'mailbox')}{uids}; review the file, then: "
          f"rpop -c {args.config} apply FILE", file=sys.stderr)
    return EXIT_OK


async def _web(site) -> int:
    """``rpop web``: the pages and the API alone, until SIGTERM or SIGINT."""
    from rpopcore.web.server import WebServer

    if site.config.web is None:
        raise errors.ConfigError(
            f"{site.config.path}: no [web] table; add one, e.g. [web] listen = \"127.0.0.1:8080\" and "
            "admins = [\"postmaster@example.test\"]"
        )
    server = WebServer(site, site.config.web)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"serving {server.url} (pages and /api/v1/; not polling)", flush=True)
    await server.serve(stop)
    return EXIT_OK


async def _passwd(site, address: str) -> int:
    """``rpop passwd ADDRESS``: the password from standard input (its first
    line) when it is not a terminal, else prompted twice."""
    import getpass

    from rpopcore.web.auth import set_password

    local = site.route(address, await site.store.load_directory())
    if local is None:
        raise errors.ConfigError(
            f"{address!r} is not a local account; add it to a [[domain]]'s accounts and apply the file"
        )
    if sys.stdin.isatty():
        password = getpass.getpass(f"web password for {local}: ")
        if getpass.getpass("again: ") != password:
            raise errors.ConfigError("the two passwords differ; run 'rpop passwd' again")
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    if not password:
        raise errors.ConfigError("no password given (empty line); give one on standard input or at the prompt")
    authenticators = [a for contributed in site.pm.hook.rpop_web_authenticators() for a in contributed]
    try:
        await set_password(authenticators, local, password, site.store)
    except ValueError as exc:
        raise errors.ConfigError(str(exc)) from None
    print(f"set the web password of {local}; its web sessions have ended")
    return EXIT_OK


def _init(folder: Path) -> int:
    """Write a site into ``folder``: the site file and the key, both readable
    by their owner only (a site file may come to carry passwords)."""
    from rpopcore.secrets import create_key_file

    site = folder / "rpop.toml"
    key = folder / "rpop.key"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        if site.exists():
            raise errors.ConfigError(f"{site}: already exists; remove it or choose another folder")
        if not key.exists():
            create_key_file(key)
        fd = os.open(site, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(DEFAULT_SITE_FILE)
        except OSError:
            site.unlink()  # an empty site file would block the next 'rpop init'
            raise
    except OSError as exc:
        raise errors.ConfigError(
            f"{exc.filename or folder}: cannot create it ({exc.strerror}); choose a folder rpop can create and write"
        ) from None
    print(f"created {site} and {key} (keep the key secret and backed up: it decrypts stored passwords)")
    _warn_missing_plugins()
    return EXIT_OK


def _warn_missing_plugins() -> None:
    """Say which plugins the new site file names that are not installed, and
    how to install them: the site is written, but cannot open without them."""
    from rpopcore.config.site import DEFAULT_PLUGINS
    from rpopcore.plugins import install_hint, plugin_manager

    pm = plugin_manager()
    available = {"delivery": pm.hook.rpop_delivery_agents(), "state": pm.hook.rpop_state_stores()}
    for table, name in DEFAULT_PLUGINS.items():
        if not any(name in contributed for contributed in available[table]):
            print(f"rpop: [{table}] names the plugin {name!r}, which is not installed; "
                  f"{install_hint(table, name)}", file=sys.stderr)


def _plugins(as_json: bool) -> int:
    from rpopcore.plugins import describe, plugin_manager

    rows = describe(plugin_manager())
    if as_json:
        print(json.dumps(rows, indent=2))
    else:
        _print_table(["NAME", "DISTRIBUTION", "VERSION", "PROVIDES"],
                     [[r["name"], r["distribution"] or "-", r["version"] or "-",
                       ", ".join(r["provides"]) or ", ".join(r["hooks"])] for r in rows])
    return EXIT_OK


def _print_apply(path: Path, report: ApplyReport) -> None:
    """One line per change (``changed remote a@pop.isp.test for
    alice@example.test: leave, password``), then what the file left."""
    for change in report.changes:
        subject = change.subject if change.subject == "settings" else f"{change.subject} {change.name}"
        if change.owner:
            subject += f" for {change.owner}"
        print(f"{change.action} {subject}" + (f": {', '.join(change.keys)}" if change.keys else ""))
    if not report.changes:
        print("no changes")
    records = _count(report.records, "record")
    if report.dry_run:
        print(f"dry run: nothing changed; applying {path} would leave {records}")
    else:
        print(f"applied {path}: {records}")


def _count(number: int, noun: str) -> str:
    plural = noun + ("es" if noun.endswith(("x", "s")) else "s")
    return f"{number} {noun if number == 1 else plural}"


def _print_poll(results, as_json: bool) -> None:
    if as_json:
        print(json.dumps([
            {"id": r.record_id, "retrieved": r.retrieved, "delivered": r.delivered, "error": r.error,
             "detail": r.detail} for r in results
        ], indent=2))
        return
    if not results:
        print("no records to poll")
    for r in results:
        line = f"record {r.record_id}: {r.retrieved} retrieved, {r.delivered} delivered"
        print(line + (f"; failed: {r.error}: {r.detail}" if r.error else ""))


def _print_status(rows_in, as_json: bool) -> None:
    if as_json:
        print(json.dumps(rows_in, indent=2))
        return
    rows = []
    for row in rows_in:
        every = format_duration(row["poll_every"]) if row["poll_every"] else "disabled"
        # tls_verify = false stands out: any certificate is accepted.
        cert = "verify" if row["tls_verify"] else "NO-VERIFY"
        following = row["next_due"] or "-"
        if row["delayed"]:
            following = f"{row['delayed']['reason']} until {row['delayed']['until']}"
        if row.get("polled_by"):
            following = f"polling now ({row['polled_by']})"
        rows.append([row["id"], row["kind"], row["owner"] or "-", f"{row['account']}@{row['host']}", cert, every,
                     row["last"] or "not yet", following])
    _print_table(["ID", "KIND", "OWNER", "ACCOUNT@HOST", "CERT", "EVERY", "LAST", "NEXT"], rows, right={0})


def _print_table(headers: list[str], rows: list[list], right: set[int] = frozenset()) -> None:
    """Columns as wide as their widest cell; ``right`` columns (numbers)
    aligned right; the last column is not padded."""
    cells = [[str(c) for c in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]

    def line(values: list[str]) -> str:
        out = [v.rjust(w) if i in right else v.ljust(w) for i, (v, w) in enumerate(zip(values, widths))]
        return "  ".join(out).rstrip()

    print(line(headers))
    for row in cells:
        print(line(row))


def _print_workers(workers, as_json: bool) -> None:
    if as_json:
        print(json.dumps([{"name": w.name, "host": w.host, "pid": w.pid, "role": w.role,
                           "started": w.started.isoformat(), "processors": w.processors, "polling": w.polling}
                          for w in workers], indent=2))
        return
    if not workers:
        print("no rpop process is polling through this state store")
        return
    _print_table(["WORKER", "ROLE", "STARTED", "POLLING"], [
        [w.name, w.role, w.started.astimezone(dt.timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z"),
         f"{w.polling} of {w.processors}"] for w in workers])


async def _migrate_state(site, other: Path) -> int:
    from rpopcore.migration import migrate_state
    from rpopcore.service import Site

    target = await Site.open(other)
    try:
        if site.config.path.resolve() == target.config.path.resolve():
            raise errors.ConfigError(f"{other}: is this site's own file; give the site to move the state to")
        report = await migrate_state(site, target)
    finally:
        await target.close()
    print(f"copied {_count(report.records, 'record')} ({_count(report.secrets, 'secret')} sealed again under "
          f"{target.keyring.key_file}), {_count(report.uids, 'remembered UID')} of "
          f"{_count(report.mailboxes, 'mailbox')}, settings, domains and statuses into {other}'s state store")
    return EXIT_OK


def _print_settings(settings, as_json: bool) -> None:
    import attrs

    from rpopcore.model import ModuleSettings

    defaults = ModuleSettings()
    rows = [
        {"name": f.name, "value": getattr(settings, f.name), "default": getattr(defaults, f.name)}
        for f in attrs.fields(ModuleSettings)
    ]
    if as_json:
        print(json.dumps({r["name"]: {"value": r["value"], "default": r["default"]} for r in rows}, indent=2))
        return
    for r in rows:
        value, default = _show(r["name"], r["value"]), _show(r["name"], r["default"])
        print(f"{r['name']:<26} {value:<20} (default {default})")


def _show(name: str, value) -> str:
    from rpopcore.config.declarative import SETTINGS_KEYS

    shown = SETTINGS_KEYS[name].show(value)
    if shown is not value:  # written in its own form, like a duration's 10m
        return str(shown)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple):
        return json.dumps(list(value))
    return json.dumps(value) if isinstance(value, str) else str(value)


if __name__ == "__main__":
    sys.exit(main())
