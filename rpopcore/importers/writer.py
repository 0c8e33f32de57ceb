"""The one writer of an import's declarative file.

The file starts from the site's stored configuration (``rpop export``), so
that applying it -- which makes the stored configuration exactly the file --
removes nothing; the local users the imported mailboxes name are added to
their ``[[domain]]``; then each imported mailbox follows, with the options
that could not be imported as comments above it.  Where the old tool
delivered is written as a comment: delivery is the site file's
``[delivery]`` table, not a declarative key.
"""

from __future__ import annotations

from typing import Sequence

from rpopcore.config.export import _value, export
from rpopcore.durations import format_duration
from rpopcore.importers.model import Delivery, ImportedMailbox, Note
from rpopcore.model import Directory, ModuleSettings, RemoteRecord


def render(
    *,
    tool: str,
    files: Sequence[str],
    settings: ModuleSettings,
    directory: Directory,
    kept: Sequence[RemoteRecord],
    mailboxes: Sequence[ImportedMailbox],
    deliveries: Sequence[Delivery],
    notes: Sequence[Note],
) -> str:
    """The declarative file, as text."""
    lines = [
        f"# Imported by 'rpop import {tool}' from {', '.join(files)}.",
        "# Passwords are written here in clear, as the old file held them: keep this",
        "# file private, apply it with 'rpop -c SITE apply FILE' (which stores them",
        "# encrypted), then delete it.",
        "",
    ]
    lines += _delivery_comment(deliveries)
    if notes:
        lines += ["# Options with no rpop equivalent, or that rpop does differently:"]
        lines += [f"#   {note.line()}" for note in notes]
        lines.append("")
    lines.append(export(settings, directory, list(kept)).rstrip("\n"))
    for mailbox in mailboxes:
        lines += [""] + _mailbox(mailbox)
    return "\n".join(lines) + "\n"


def _delivery_comment(deliveries: Sequence[Delivery]) -> list[str]:
    usable = [d for d in deliveries if d.plugin]
    lines = []
    if usable:
        first = usable[0]
        lines += ["# Delivery is set in the site file, not here.  The old tool delivered",
                  f"# ({first.source}) as this [delivery] table in the site file would:",
                  "#   [delivery]", f"#   plugin = {_value(first.plugin)}"]
        lines += [f"#   {key} = {_value(value)}" for key, value in first.options.items()]
        others = {(d.plugin, tuple(sorted((k, repr(v)) for k, v in d.options.items()))) for d in usable[1:]}
        others.discard((first.plugin, tuple(sorted((k, repr(v)) for k, v in first.options.items()))))
        if others:
            lines.append("# Other entries delivered elsewhere; rpop has one delivery per site:")
            lines += [f"#   {d.source}: plugin = {_value(d.plugin)}, "
                      + ", ".join(f"{k} = {_value(v)}" for k, v in d.options.items()) for d in usable[1:]]
        lines.append("")
    return lines


def _mailbox(mailbox: ImportedMailbox) -> list[str]:
    lines = [f"# from {mailbox.source} ({mailbox.label})"]
    lines += [f"# {note.line()}" for note in mailbox.notes]
    lines.append("[[unified]]" if mailbox.unified else "[[remote]]")
    if not mailbox.unified:
        lines.append(f"owner = {_value(mailbox.owner)}")
    if mailbox.disabled:
        lines.append('poll_every = "disabled"')
    elif mailbox.poll_every is not None:
        lines.append(f"poll_every = {_value(format_duration(mailbox.poll_every))}")
    lines += [f"account = {_value(mailbox.account)}", f"host = {_value(mailbox.host)}"]
    if mailbox.password is not None:
        lines.append(f"password = {_value(mailbox.password)}")
    lines.append(f"leave = {_value(mailbox.leave)}")
    if mailbox.apop:
        lines.append("apop = true")
    lines.append(f"tls = {_value(mailbox.tls)}")
    if not mailbox.tls:
        lines.append(f"starttls = {_value(mailbox.starttls)}")
    if not mailbox.tls_verify:
        lines.append("tls_verify = false  # the old configuration did not check the certificate")
    for key in ("ca_file", "server_name"):
        if getattr(mailbox, key):
            lines.append(f"{key} = {_value(getattr(mailbox, key))}")
    if mailbox.auth != "auto":
        lines.append(f"auth = {_value(mailbox.auth)}")
    if mailbox.timeout is not None:
        lines.append(f"timeout = {_value(format_duration(mailbox.timeout))}")
    if mailbox.unified:
        lines.append(f"special_field = {_value(mailbox.special_field)}")
    return lines
