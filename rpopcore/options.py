"""Record keys that plugins add (:func:`rpopcore.hookspecs.rpop_record_options`).

A plugin that needs more from a record than the core's keys -- an OAuth2
client and refresh token, a per-record folder -- declares each key once, as
a :class:`RecordOption`: its converter, help text, which record kinds take
it and which parts of it are secrets.  The declarative reader checks and
converts it and seals its secrets with the site key; ``rpop export`` writes
it back without its secrets; ``rpop status --json`` shows its public part;
``rpop secrets rotate`` re-seals its secrets.  The value lands in
``record.options[name]``, where the plugin reads it.

A secret is stored sealed, as ``{"source": "stored", "value": TOKEN}``;
:meth:`rpopcore.auth.AuthContext.reveal` turns it into clear text at the
moment of use (``reveal(SecretRef(**value))``).
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Mapping

import attrs

from rpopcore import errors
from rpopcore.model import SecretRef

KINDS = ("remote", "unified")


def _kinds(value: Iterable[str]) -> tuple[str, ...]:
    kinds = tuple(value)
    unknown = [k for k in kinds if k not in KINDS]
    if unknown:
        raise ValueError(f"unknown record kind {unknown[0]!r}; kinds are {', '.join(KINDS)}")
    return kinds


@attrs.frozen
class RecordOption:
    """One key a plugin adds to ``[[remote]]`` and/or ``[[unified]]`` records.

    :param name: the key as a declarative file writes it (``oauth2``).
    :param convert: checks and converts the file's value; raises
        ``ValueError`` with a message saying what is expected (the reader
        prefixes the file, record and key).  Called only when the key is
        given; a record without it has no ``options[name]``.
    :param help: one sentence for ``rpop export`` and the documentation.
    :param kinds: which record kinds take it.
    :param secret: the whole value is a secret (a string).
    :param secret_keys: for a table value, the keys whose values are secrets.
    :param required_secret_keys: secret keys a record must have: given in the
        file, or kept from an earlier apply (a file may leave a stored secret
        out, as an exported one does).
    :param credential: a record with this key needs no password (the key
        carries its credentials).
    """

    name: str
    convert: Callable[[Any], Any]
    help: str
    kinds: tuple[str, ...] = attrs.field(default=KINDS, converter=_kinds)
    secret: bool = False
    secret_keys: tuple[str, ...] = attrs.field(default=(), converter=tuple)
    required_secret_keys: tuple[str, ...] = attrs.field(default=(), converter=tuple)
    credential: bool = False

    def seal(self, value: Any, seal: Callable[[str], SecretRef]) -> Any:
        """``value`` with its secrets sealed (``seal`` is the keyring's)."""
        return self._map(value, lambda clear: _as_dict(seal(clear)) if clear else clear)

    def public(self, value: Any) -> Any:
        """``value`` without its secrets (None when it is all secret): what
        export and status show."""
        if self.secret:
            return None
        if isinstance(value, Mapping):
            return {k: v for k, v in value.items() if k not in self.secret_keys}
        return value

    def sealed(self, value: Any) -> dict[str, SecretRef]:
        """The sealed secrets in a stored value, by key (``""`` for a whole
        secret value)."""
        found = {}
        for key, stored in self._parts(value):
            if isinstance(stored, Mapping):
                found[key] = SecretRef(**stored)
        return found

    def with_secrets(self, value: Any, secrets: Mapping[str, SecretRef]) -> Any:
        """``value`` with the given sealed secrets put in by key."""
        if self.secret:
            return _as_dict(secrets[""]) if "" in secrets else value
        if not isinstance(value, Mapping):
            return value
        return {**value, **{k: _as_dict(ref) for k, ref in secrets.items() if k}}

    def _parts(self, value: Any):
        if self.secret:
            yield "", value
        elif isinstance(value, Mapping):
            for key in self.secret_keys:
                if key in value:
                    yield key, value[key]

    def _map(self, value: Any, change: Callable[[Any], Any]) -> Any:
        if self.secret:
            return change(value)
        if isinstance(value, Mapping) and self.secret_keys:
            return {k: change(v) if k in self.secret_keys else v for k, v in value.items()}
        return value


def _as_dict(ref: SecretRef) -> dict[str, str]:
    return {"source": ref.source, "value": ref.value}


def collect(contributions: Iterable[tuple[str, Iterable[RecordOption]]], core_keys: Iterable[str]) -> dict[str, RecordOption]:
    """The options every plugin contributes, by name.  ``contributions``
    pairs each plugin, as an error names it, with its options.  Two plugins declaring one
    key, or a plugin redeclaring a core key, is an error naming both."""
    options: dict[str, RecordOption] = {}
    owners: dict[str, str] = {name: "the rpop core" for name in core_keys}
    for plugin, contributed in contributions:
        for option in contributed or ():
            if option.name in owners:
                raise errors.ConfigError(
                    f"the record key '{option.name}' is declared by both {owners[option.name]} and {plugin}; "
                    "uninstall one of them"
                )
            owners[option.name] = plugin
            options[option.name] = option
    return options
