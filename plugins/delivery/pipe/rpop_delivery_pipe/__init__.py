"""Delivery through an MDA command (``dovecot-lda``, ``procmail``, ...): the
command runs once per recipient, without a shell, with the message on its
standard input.

The copy on stdin is what a final delivery writes: ``Return-Path:`` (the
envelope sender) and ``Delivered-To:`` (the recipient) on top, the header
without the fields named in the envelope's ``remove_fields``, the body as
received; LF line endings, as MDAs expect.  It is streamed, so memory does
not grow with the message.

``command`` is a list: the program, then its arguments.  In each argument
the placeholders ``{recipient}`` (``localpart@domain``), ``{sender}`` (""
for the null sender), ``{localpart}`` and ``{domain}`` are replaced by the
values themselves -- one argument stays one argument, whatever it holds.
A value from the message (the sender) could begin with ``-``: write
placeholders as the value of an option (``-f {sender}``), not on their own
where a program would read them as options.

The command gets a small environment, not rpop's own (which may hold the
secrets of records, ``secret = "env:..."``): ``PATH``, ``HOME``, ``USER``,
``LOGNAME``, ``LANG``, ``LC_ALL``, ``LC_CTYPE``, ``TZ`` and ``TMPDIR`` when
set, plus, as Postfix's local delivery sets them, ``SENDER``,
``RECIPIENT``, ``ORIGINAL_RECIPIENT``, ``LOCAL`` and ``DOMAIN``.

Exit status: 0 is delivered; 75 (EX_TEMPFAIL) temporary; any other status
permanent, with the last line the command wrote to stderr.  A command that
cannot be started, runs past ``timeout`` (its process group is killed) or
dies from a signal is temporary: the message stays on the server.

The program must exist when the site is opened (a missing one is a
configuration error), found on PATH for a bare name; a relative path is
relative to the site file's folder.

Site file::

    [delivery]
    plugin = "pipe"
    command = ["/usr/lib/dovecot/dovecot-lda", "-f", "{sender}", "-d", "{recipient}"]
    timeout = "5m"             # the default; a slow filter (spam, virus) must not be cut short
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
from pathlib import Path

from rpopcore.api import (
    ConfigError,
    Key,
    Outcome,
    RecipientOutcome,
    delivery_timeout,
    hookimpl,
    read_table,
    string_list,
    trace_fields,
)

EX_TEMPFAIL = 75
PLACEHOLDERS = ("recipient", "sender", "localpart", "domain")
_PLACEHOLDER = re.compile(r"\{(" + "|".join(PLACEHOLDERS) + r")\}")
_ANY_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
#: What the command inherits from rpop's environment.
KEPT_ENVIRONMENT = ("PATH", "HOME", "USER", "LOGNAME", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR")
#: How much of stderr is kept (its end) for the detail of a failure.
STDERR_TAIL = 4096
#: After the command exits, how long its stderr may stay open (a child it
#: left behind may hold it) before we stop reading.
STDERR_GRACE = 2.0


class PipeAgent:
    """Runs ``command`` (the program resolved, placeholders not yet
    substituted) once per recipient."""

    def __init__(self, command: tuple[str, ...], timeout: float = 300):
        self.command = command
        self.timeout = timeout
        self.name = os.path.basename(command[0])

    async def deliver(self, message, envelope, recipients):
        # One recipient after the other: an MDA writes into one mailbox, and
        # several at once would only compete for the same disk.
        return [await self._deliver_one(message, envelope, recipient) for recipient in recipients]

    @staticmethod
    def environment(sender: str, recipient) -> dict[str, str]:
        """The command's environment for one recipient."""
        env = {name: os.environ[name] for name in KEPT_ENVIRONMENT if name in os.environ}
        env.update(SENDER=sender, RECIPIENT=recipient.address, ORIGINAL_RECIPIENT=recipient.original,
                   LOCAL=recipient.localpart, DOMAIN=recipient.domain)
        return env

    def argv(self, sender: str, recipient) -> list[str]:
        """The command for one recipient; raises ValueError for a value no
        argument can carry (a NUL byte)."""
        values = {"recipient": recipient.address, "sender": sender,
                  "localpart": recipient.localpart, "domain": recipient.domain}
        argv = [self.command[0]] + [_PLACEHOLDER.sub(lambda m: values[m.group(1)], arg) for arg in self.command[1:]]
        if any("\0" in arg for arg in argv + [sender, recipient.original]):
            raise ValueError("a NUL byte cannot be passed in an argument")
        return argv

    async def _deliver_one(self, message, envelope, recipient) -> RecipientOutcome:
        def outcome(kind: Outcome, detail: str) -> RecipientOutcome:
            return RecipientOutcome(recipient, kind, f"{self.name}: {detail}")

        try:
            argv = self.argv(envelope.sender, recipient)
        except ValueError as exc:
            return outcome(Outcome.PERMANENT, str(exc))
        try:
            process = await asyncio.create_subprocess_exec(
                *argv, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE, env=self.environment(envelope.sender, recipient),
                start_new_session=True)  # a group of its own, to kill it whole
        except OSError as exc:
            # removed or made unrunnable since the site was opened: an administrator can fix it
            return outcome(Outcome.TEMPORARY, f"cannot run {argv[0]}: {exc.strerror or exc}")
        stderr = asyncio.create_task(_tail(process.stderr))
        try:
            async with asyncio.timeout(self.timeout):
                await _feed(process, message.chunks(envelope.remove_fields, trace_fields(envelope.sender, recipient.address)))
                status = await process.wait()
        except TimeoutError:
            _kill(process)
            await process.wait()
            stderr.cancel()
            return outcome(Outcome.TEMPORARY, f"killed after running for {self.timeout}s")
        except OSError as exc:
            # the spooled message could not be read: kill the command before
            # it sees the end of a truncated copy
            _kill(process)
            await process.wait()
            stderr.cancel()
            return outcome(Outcome.TEMPORARY, f"stopped: {exc.strerror or exc}")
        except BaseException:
            # cancelled (rpop is stopping) or our own failure: leave no MDA behind
            _kill(process)
            stderr.cancel()
            raise
        try:
            last_line = await asyncio.wait_for(stderr, STDERR_GRACE)
        except TimeoutError:
            last_line = ""
        said = f": {last_line}" if last_line else ""
        if status == 0:
            return outcome(Outcome.DELIVERED, "exited with status 0")
        if status == EX_TEMPFAIL:
            return outcome(Outcome.TEMPORARY, f"exited with status 75 (EX_TEMPFAIL){said}")
        if status < 0:
            return outcome(Outcome.TEMPORARY, f"killed by {_signal_name(-status)}{said}")
        return outcome(Outcome.PERMANENT, f"exited with status {status}{said}")

    async def close(self) -> None:
        pass  # nothing outlives a deliver() call


async def _feed(process, chunks) -> None:
    """Write the message to the command's stdin and close it.  A command may
    stop reading and exit early; then its exit status alone decides."""
    try:
        for chunk in chunks:
            process.stdin.write(chunk)
            await process.stdin.drain()
        process.stdin.close()
        await process.stdin.wait_closed()
    except (BrokenPipeError, ConnectionResetError):
        pass


async def _tail(stream: asyncio.StreamReader) -> str:
    """Read ``stream`` to its end; its last non-empty line."""
    kept = b""
    while chunk := await stream.read(65536):
        kept = (kept + chunk)[-STDERR_TAIL:]
    lines = [line.strip() for line in kept.splitlines() if line.strip()]
    return lines[-1].decode("utf-8", "replace") if lines else ""


def _kill(process) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _command(value) -> tuple[str, ...]:
    command = string_list(value)
    if not command or not command[0].strip():
        raise ValueError('expected the program and its arguments, like ["/usr/lib/dovecot/dovecot-lda", "-d", "{recipient}"]')
    for number, arg in enumerate(command):
        for name in _ANY_PLACEHOLDER.findall(arg):
            if name not in PLACEHOLDERS:
                known = ", ".join(f"{{{p}}}" for p in PLACEHOLDERS)
                raise ValueError(f"unknown placeholder {{{name}}}; the placeholders are {known}")
        if number == 0 and _PLACEHOLDER.search(arg):
            raise ValueError(f"the program {arg!r} must be fixed; placeholders go in its arguments")
    return command


def make_agent(options, base_dir: Path) -> PipeAgent:
    """The ``[delivery]`` table (without ``plugin``) -> a :class:`PipeAgent`."""
    values = read_table(dict(options), {"command": Key(_command), "timeout": Key(delivery_timeout, 300)}, "[delivery]")
    program, *args = values["command"]
    if "/" in program:
        path = str(base_dir / program)
        if not os.path.isfile(path) or not os.access(path, os.X_OK):
            problem = "does not exist" if not os.path.exists(path) else "is not an executable file"
            raise ConfigError(f"[delivery] key 'command': the program {path} {problem}")
    else:
        path = shutil.which(program)
        if path is None:
            raise ConfigError(
                f"[delivery] key 'command': no program {program!r} on PATH; give its full path")
    return PipeAgent((path, *args), timeout=values["timeout"])


@hookimpl
def rpop_delivery_agents():
    return {"pipe": make_agent}
