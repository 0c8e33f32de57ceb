"""The public API for plugins: everything a plugin may import from rpop.

A plugin imports from this module and from nowhere else in ``rpopcore``::

    from rpopcore.api import hookimpl, Outcome, RecipientOutcome

What is listed in :data:`__all__` is promised to stay, with the same meaning,
for every 0.x release of the ``rpop`` distribution (see ``docs/plugins.md``,
"Stability"); every other module and name of ``rpopcore`` is private and may
change in any release.  A test reads the imports of every plugin of the
rpop repository and fails on any other ``rpopcore`` import.

The SMTP/LMTP client, the POP3 client and the authentication context are
loaded on first use (``from rpopcore.api import SmtpClient`` inside the
function that delivers), because every rpop command loads every plugin and
most commands never open a connection.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rpopcore.addresses import addresses_in
from rpopcore.codec import (
    directory_from_dict,
    directory_to_dict,
    record_from_dict,
    record_to_dict,
    settings_from_dict,
    settings_to_dict,
)
from rpopcore.config.schema import (
    REQUIRED,
    Key,
    boolean,
    delivery_timeout,
    duration,
    file_path,
    integer,
    non_empty_string,
    one_of,
    port,
    read_table,
    string,
    string_list,
    string_map,
)
from rpopcore.delivery import DeliveryAgent, StagedCopy, StagingAgent
from rpopcore.errors import (
    AuthFailed,
    ConfigError,
    ConnectFailed,
    MechanismUnavailable,
    PollError,
    ProtocolError,
    RpopError,
    SecretUnavailable,
    ServerPermanentFailure,
    ServerTemporaryFailure,
    StateFailed,
    Timeout,
    TlsFailed,
)
from rpopcore.hookspecs import hookimpl
from rpopcore.journal import settlement
from rpopcore.logs import LINK, MAJOR, PROBLEM, PROTOCOL
from rpopcore.message import MessageSpool, RetrievedMessage, trace_fields
from rpopcore.model import (
    Directory,
    Domain,
    Envelope,
    ModuleSettings,
    Outcome,
    PendingCopy,
    PlanEntry,
    PollStatus,
    Recipient,
    RecipientOutcome,
    RecordKind,
    RemoteRecord,
    SecretRef,
    WebSession,
    WorkerInfo,
)
from rpopcore.options import RecordOption
from rpopcore.selfpoll import is_loopback_host
from rpopcore.state import REMOVED_MAILBOX_RETENTION, StateStore

if TYPE_CHECKING:
    from rpopcore.auth import AuthContext, AuthMechanism
    from rpopcore.pop3.client import Pop3Client
    from rpopcore.smtp.client import ConnectOptions, LmtpClient, SmtpClient
    from rpopcore.smtp.delivery import deliver as smtp_deliver

#: The public names by topic, in the order the reference lists them.
SECTIONS = {
    "Hooks": ["hookimpl"],
    "Values that cross the hooks": [
        "RemoteRecord", "RecordKind", "SecretRef", "ModuleSettings", "Directory", "Domain", "Envelope", "Recipient",
        "RecipientOutcome", "Outcome", "PollStatus", "PendingCopy", "PlanEntry",
    ],
    "Errors (raise these, never a driver's own exception)": [
        "RpopError", "ConfigError", "PollError", "AuthFailed", "ConnectFailed", "MechanismUnavailable",
        "ProtocolError", "SecretUnavailable", "ServerPermanentFailure", "ServerTemporaryFailure", "StateFailed",
        "Timeout", "TlsFailed",
    ],
    "Option tables (a plugin's [delivery] or [state] keys, its record keys)": [
        "Key", "REQUIRED", "read_table", "boolean", "string", "non_empty_string", "file_path", "integer", "duration",
        "delivery_timeout", "port", "string_list", "string_map", "one_of", "RecordOption",
    ],
    "Messages and addresses": ["RetrievedMessage", "MessageSpool", "trace_fields", "addresses_in", "is_loopback_host"],
    "Delivery agents": [
        "DeliveryAgent", "StagingAgent", "StagedCopy", "SmtpClient", "LmtpClient", "ConnectOptions", "smtp_deliver",
    ],
    "Authentication mechanisms": ["AuthMechanism", "AuthContext", "Pop3Client"],
    "State stores": [
        "StateStore", "REMOVED_MAILBOX_RETENTION", "record_to_dict", "record_from_dict", "settings_to_dict",
        "settings_from_dict", "directory_to_dict", "directory_from_dict", "settlement", "WebSession", "WorkerInfo",
    ],
    "Log levels (between logging's own: logger.log(PROBLEM, ...))": ["MAJOR", "PROBLEM", "PROTOCOL", "LINK"],
}

__all__ = [name for names in SECTIONS.values() for name in names]

#: Names loaded on first use: (module, attribute).
_LAZY = {
    "SmtpClient": ("rpopcore.smtp.client", "SmtpClient"),
    "LmtpClient": ("rpopcore.smtp.client", "LmtpClient"),
    "ConnectOptions": ("rpopcore.smtp.client", "ConnectOptions"),
    "smtp_deliver": ("rpopcore.smtp.delivery", "deliver"),
    "AuthMechanism": ("rpopcore.auth", "AuthMechanism"),
    "AuthContext": ("rpopcore.auth", "AuthContext"),
    "Pop3Client": ("rpopcore.pop3.client", "Pop3Client"),
}


def __getattr__(name: str):
    try:
        module, attribute = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'rpopcore.api' has no attribute {name!r}") from None
    import importlib

    value = getattr(importlib.import_module(module), attribute)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


def reference() -> str:
    """The API reference in Markdown, from the docstrings: the hooks, then
    every public name by topic (``python -m rpopcore.api`` prints it;
    ``docs/plugins.md`` carries it)."""
    import inspect

    from rpopcore import hookspecs

    def doc(value) -> str:
        text = inspect.getdoc(value) or ""
        return text.replace("\n", "\n") + "\n" if text else ""

    lines = ["### The hooks", ""]
    for name, spec in sorted(vars(hookspecs).items()):
        if name.startswith("rpop_") and callable(spec):
            lines += [f"#### `{name}{inspect.signature(spec)}`", "", doc(spec)]
    for section, names in SECTIONS.items():
        lines += [f"### {section}", ""]
        for name in names:
            value = globals()[name] if name in globals() else __getattr__(name)
            if inspect.isclass(value) or inspect.isfunction(value):
                try:
                    signature = str(inspect.signature(value))
                except (TypeError, ValueError):
                    signature = ""
                if inspect.isclass(value) and getattr(value, "_is_protocol", False):
                    signature = " (protocol)"
                lines += [f"#### `{name}{signature}`", "", doc(value)]
            elif name == "hookimpl":
                lines += [f"#### `{name}`", "", "The decorator of a hook implementation: `@hookimpl`.", ""]
            else:
                lines += [f"#### `{name}` = `{value!r}`", ""]
    import re

    return re.sub(r" at 0x[0-9a-f]+", "", "\n".join(lines).rstrip() + "\n")  # a default function's repr


if __name__ == "__main__":
    print(reference(), end="")
