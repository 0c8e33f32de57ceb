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
    parser.add_argument("--version", action="version", version=f"rpop {__version__}")
    parser.add_argument(
        "-c", "--config", metavar="SITE.toml", default=os.environ.get("RPOP_CONFIG", "rpop.toml"),
        help="the site file (default: $RPOP_CONFIG or ./rpop.toml)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    p = sub.add_parser("init", help="create a site: DIR/rpop.toml, a secrets key, SQLite state, Maildir delivery")
    p.add_argument("dir", type=Path)
    p = sub.add_parser("apply", help="make the stored settings, domains and records what a declarative file says")
    p.add_argument("file", type=Path)
    p.add_argument("--dry-run", action="store_true", help="print what applying would change, and change nothing")
    p = sub.add_parser("poll", help="poll records now")
    p.add_argument("--once", action="store_true", help="poll once and exit (the only mode; 'rpop run' polls on schedule)")
    p.add_argument("--record", type=int, action="append", metavar="ID", help="poll only this record (repeatable)")
    p.add_argument("--json", action="store_true")
    p = sub.add_parser("status", help="one row per record: last poll, error")
    p.add_argument("--json", action="store_true")
    sub.add_parser("run", help="the daemon (a worker): poll every record on its schedule until SIGTERM")
    p = sub.add_parser("workers", help="the live processes polling through this site's state store")
    p.add_argument("--json", action="store_true")
    sub.add_parser("migrate", help="bring the state store's schema up to date (also done whenever rpop starts)")
    p = sub.add_parser("migrate-state", help="copy this site's state (records, secrets, UIDs, ...) into another "
                       "site's empty state store")
    p.add_argument("--to", required=True, type=Path, metavar="OTHER_SITE.toml")
    p = sub.add_parser("plugins", help="list loaded plugins")
    p.add_argument("--json", action="store_true")
    p = sub.add_parser("settings", help="the module settings in force, with their defaults")
    p.add_argument("--json", action="store_true")
    sub.add_parser("export", help="print the stored configuration as a declarative file (without secrets)")
    p = sub.add_parser("secrets", help="manage the site key: 'rotate' re-encrypts every stored secret under a new key")
    p.add_argument("action", choices=["rotate"])
    p = sub.add_parser("demo", help="poll a sample POP3 server on loopback into a temporary Maildir")
    p.add_argument("--keep", action="store_true", help="keep the temporary folder")
    return parser


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
    from rpopcore.service import Site

    site = await Site.open(Path(args.config))
    try:
        settings = await site.store.load_settings()
        site.configure_logging(settings.log_level)
        if args.command == "apply":
            _print_apply(args.file, await site.apply(args.file, dry_run=args.dry_run))
            return EXIT_OK
        if args.command == "poll":
            results = await site.poll_once(args.record)
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
            print(f"re-encrypted {count} secrets under a new key in {site.keyring.key_file}; "
                  f"the old key is kept in {site.keyring.previous_file}: delete it once you are sure")
            return EXIT_OK
        if args.command == "run":
            from rpopcore.scheduler import run_daemon

            return await run_daemon(site, settings.log_level)
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
    return EXIT_OK


def _plugins(as_json: bool) -> int:
    from rpopcore.plugins import describe, plugin_manager

    rows = describe(plugin_manager())
    if as_json:
        print(json.dumps(rows, indent=2))
    else:
        for row in rows:
            print(f"{row['name']:<12} {row['distribution'] or '-':<26} {row['version'] or '-':<8} {', '.join(row['hooks'])}")
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


def _count(number: int, noun: str, plural: str | None = None) -> str:
    return f"{number} {noun if number == 1 else plural or noun + 's'}"


def _print_poll(results, as_json: bool) -> None:
    if as_json:
        print(json.dumps([
            {"id": r.record_id, "retrieved": r.retrieved, "delivered": r.delivered, "error": r.error} for r in results
        ], indent=2))
        return
    if not results:
        print("no records to poll")
    for r in results:
        line = f"record {r.record_id}: {r.retrieved} retrieved, {r.delivered} delivered"
        print(line + (f"; failed: {r.error}: {r.detail}" if r.error else ""))


def _print_status(rows, as_json: bool) -> None:
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    print(f"{'ID':>4}  {'KIND':<8} {'OWNER':<24} {'ACCOUNT@HOST':<36} {'CERT':<9} {'EVERY':<9} {'LAST':<22} NEXT")
    for row in rows:
        every = format_duration(row["poll_every"]) if row["poll_every"] else "disabled"
        where = f"{row['account']}@{row['host']}"
        # tls_verify = false stands out: any certificate is accepted.
        cert = "verify" if row["tls_verify"] else "NO-VERIFY"
        last = row["last"] or "not yet"
        following = row["next_due"] or "-"
        if row["delayed"]:
            following = f"{row['delayed']['reason']} until {row['delayed']['until']}"
        if row.get("polled_by"):
            following = f"polling now ({row['polled_by']})"
        print(f"{row['id']:>4}  {row['kind']:<8} {row['owner'] or '-':<24} {where:<36} {cert:<9} {every:<9} {last:<22} "
              f"{following}")


def _print_workers(workers, as_json: bool) -> None:
    if as_json:
        print(json.dumps([{"name": w.name, "host": w.host, "pid": w.pid, "role": w.role,
                           "started": w.started.isoformat(), "processors": w.processors, "polling": w.polling}
                          for w in workers], indent=2))
        return
    if not workers:
        print("no rpop process is polling through this state store")
        return
    print(f"{'WORKER':<32} {'ROLE':<5} {'STARTED':<22} POLLING")
    for w in workers:
        started = w.started.astimezone(dt.timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")
        print(f"{w.name:<32} {w.role:<5} {started:<22} {w.polling} of {w.processors}")


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
          f"{_count(report.mailboxes, 'mailbox', 'mailboxes')}, settings, domains and statuses into {other}'s state store")
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
    if name.startswith(("delay_", "min_poll")) or name == "timeout":
        return format_duration(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple):
        return json.dumps(list(value))
    return json.dumps(value) if isinstance(value, str) else str(value)


if __name__ == "__main__":
    sys.exit(main())
