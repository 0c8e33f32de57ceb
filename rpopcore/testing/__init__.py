"""The rpop test kit: what a plugin's tests need, without the rpop repository.

Install it with ``pip install rpop[testing]``; its fixtures (``rpop_site``,
``pop3_server``, ``dovecot``, ``capturing_agent``, ...) are then available in
every pytest run through the ``pytest11`` entry point
(:mod:`rpopcore.testing.plugin` documents each).  Import the helpers from
here::

    from rpopcore.testing import Message, delivered, poll_one, remote

- :func:`remote`, :func:`unified`: a ``[[remote]]`` or ``[[unified]]`` table
  for a test site;
- :func:`delivered`: the messages in a test site's Maildir;
- :func:`poll_one`: poll a site holding one record, return its result;
- :func:`make_site` / :func:`open_site`: a site in a folder you choose;
- :class:`Message`, :class:`PlainSasl`, :class:`ScriptableServer`: the
  scriptable POP3 server (also what ``rpop demo`` serves);
- :class:`Dovecot`, :func:`free_port`, :class:`TestCA`: real servers;
- :class:`ScriptedSmtp`, :class:`ScriptedLmtp`: scripted SMTP/LMTP servers;
- :class:`CapturingAgent`: the in-memory delivery agent;
- :func:`plugin_manager`: the plugins as rpop loads them (installed ones,
  limited by ``RPOP_PLUGINS``);
- :mod:`rpopcore.testing.contract`: contract tests a delivery agent, an
  authentication mechanism or a state store runs against itself.

Names load on first use, so that ``rpop demo`` (which serves the scriptable
POP3 server) needs no pytest.  Like :mod:`rpopcore.api`, the names listed in
``__all__`` are the kit's stable surface.
"""

from __future__ import annotations

import importlib

_FROM = {
    "remote": "sites",
    "unified": "sites",
    "delivered": "sites",
    "poll_one": "sites",
    "make_site": "sites",
    "open_site": "sites",
    "DOMAIN": "sites",
    "Message": "scriptable_server",
    "PlainSasl": "scriptable_server",
    "ScriptableServer": "scriptable_server",
    "Faults": "scriptable_server",
    "Dovecot": "dovecot",
    "free_port": "dovecot",
    "ensure_mail_user": "dovecot",
    "HOST": "dovecot",
    "TestCA": "tlsca",
    "make_self_signed": "tlsca",
    "ScriptedSmtp": "scripted_smtp",
    "ScriptedLmtp": "scripted_smtp",
    "CapturingAgent": "capture",
    "Copy": "capture",
    "capa": "probes",
    "client_lines": "probes",
    "DEFAULT_USERS": "plugin",
    "plugin_manager": "rpopcore.plugins",
    "Site": "rpopcore.service",
}

__all__ = sorted(_FROM)


def __getattr__(name: str):
    try:
        module = _FROM[name]
    except KeyError:
        raise AttributeError(f"module 'rpopcore.testing' has no attribute {name!r}") from None
    module = module if module.startswith("rpopcore.") else f"rpopcore.testing.{module}"
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
