"""The hook specifications: the seams where plugins plug in.

Each hook's docstring is its reference documentation.  A hook is either
"first answer wins" (``firstresult=True``: the first implementation that
returns something other than None decides) or "everyone contributes" (every
implementation's answer is collected).  Implementations may accept only the
arguments they use, which keeps plugins working when a hook gains arguments.

Plugins register through the ``rpop`` entry-point group::

    [project.entry-points.rpop]
    mything = "rpop_mything"

and implement hooks with :data:`hookimpl`::

    from rpopcore.api import hookimpl

    @hookimpl
    def rpop_delivery_agents():
        return {"mything": MyAgentFactory}
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Callable, Mapping

import pluggy

if TYPE_CHECKING:  # the types are documented here; importing them costs nothing at run time
    from rpopcore.auth import AuthMechanism
    from rpopcore.delivery import DeliveryAgent
    from rpopcore.message import RetrievedMessage
    from rpopcore.model import Directory, Envelope, ModuleSettings, RemoteRecord
    from rpopcore.options import RecordOption
    from rpopcore.state import StateStore
    from rpopcore.web.auth import WebAuthenticator

hookspec = pluggy.HookspecMarker("rpop")
hookimpl = pluggy.HookimplMarker("rpop")


@hookspec
def rpop_auth_mechanisms() -> list["AuthMechanism"]:
    """Contribute authentication mechanisms.  Everyone contributes.

    :return: a list of :class:`rpopcore.auth.AuthMechanism` objects.  Each has
        a lower-case ``name`` (what a record's ``auth`` key selects), an
        ``auto_rank`` (lower is preferred when a record says ``auth = "auto"``),
        ``offered(context)`` (may it be used on this connection?) and
        ``authenticate(client, context, secret)``.

    The core picks per connection: a named mechanism when the record names
    one, else every offered mechanism in ``auto_rank`` order until one logs
    in or one is refused with credentials at fault.
    """


@hookspec(firstresult=True)
def rpop_resolve_envelope(
    record: "RemoteRecord",
    message: "RetrievedMessage",
    route: Callable[[str], str | None],
    directory: "Directory",
) -> "Envelope | None":
    """Rebuild the envelope of a retrieved message.  First answer wins.

    :param record: the record the message came from; strategies usually
        decide by ``record.kind`` and ``record.special_field``.
    :param message: the retrieved message; read its header fields with
        ``message.field_values(name)`` and ``message.return_path``.
    :param route: maps an address to its final local address
        (``localpart@domain``, aliases resolved) or None when it is not a
        local account; built from :func:`rpop_route_address`.
    :param directory: the local domains, for the main domain's postmaster.
    :return: an :class:`rpopcore.model.Envelope`, or None when this strategy
        does not handle this record.
    """


@hookspec(firstresult=True)
def rpop_route_address(address: str, directory: "Directory") -> "str | None":
    """Route an address.  First answer wins.

    :param address: an address as written in a message or a record
        (``Alice@Example.TEST``, an alias, ...).
    :param directory: the local domains with their accounts and aliases.
    :return: the final local address (``localpart@domain``, lower case,
        aliases resolved) when the address is an existing local account,
        else None.
    """


@hookspec
def rpop_state_stores() -> Mapping[str, Callable[[Mapping[str, object], Path], "StateStore"]]:
    """Contribute state stores by name.  Everyone contributes.

    :return: ``{name: factory}``; the site file's ``[state] plugin = NAME``
        selects one, and the core calls ``factory(options, base_dir)`` with
        the rest of the ``[state]`` table and the site file's folder.  The
        factory raises :class:`rpopcore.errors.ConfigError` for a bad option.
        The store implements :class:`rpopcore.state.StateStore`.
    """


@hookspec
def rpop_delivery_agents() -> Mapping[str, Callable[[Mapping[str, object], Path], "DeliveryAgent"]]:
    """Contribute delivery agents by name.  Everyone contributes.

    :return: ``{name: factory}``; the site file's ``[delivery] plugin = NAME``
        selects one, and the core calls ``factory(options, base_dir)`` with
        the rest of the ``[delivery]`` table and the site file's folder.  The
        agent implements :class:`rpopcore.delivery.DeliveryAgent`.
    """


@hookspec
def rpop_record_options() -> list["RecordOption"]:
    """Contribute keys that records may carry.  Everyone contributes.

    :return: a list of :class:`rpopcore.options.RecordOption`: each key's
        name, converter, help text, the record kinds that take it and which
        of its parts are secrets.  The declarative reader checks the key and
        seals its secrets; ``rpop export`` writes it back without them;
        ``rpop status --json`` shows its public part; ``rpop secrets rotate``
        re-seals it.  The value lands in ``record.options[name]``.

    A key declared by two plugins, or one the core already has, is an error
    naming both.
    """


@hookspec
def rpop_poll_finished(record: "RemoteRecord", result: object, settings: "ModuleSettings") -> None:
    """Told after every poll of a record, successful or not.  Everyone is
    told; return values are ignored.  For notifications and metrics."""


@hookspec
def rpop_web_authenticators() -> list["WebAuthenticator"]:
    """Contribute ways to check a web sign-in.  Everyone contributes.

    :return: a list of :class:`rpopcore.web.auth.WebAuthenticator` objects.
        Each has a ``name`` and two coroutines:
        ``authenticate(address, password, store)`` returns True when the
        password is right for that local address, and
        ``set_password(address, password, store)`` returns True when it
        stored the password, False when it keeps no passwords (an
        authenticator that asks Dovecot or LDAP).

    A sign-in (a page's form, or HTTP Basic on the JSON API) succeeds when
    any authenticator accepts it, tried in the order plugins registered.
    ``address`` is already the final local address (aliases resolved) of an
    existing local account; ``store`` is the site's state store.  ``rpop
    passwd`` stores through the first that keeps passwords (the built-in
    ``web_password`` plugin: Argon2 hashes in the state store).
    """
