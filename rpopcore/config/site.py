"""The site file: where state, mail, the secrets key and the log live.

Relative paths are relative to the site file's folder.  A site file may also
carry declarative sections ([rpop], [[domain]], [[remote]], [[unified]]);
those are read by :mod:`rpopcore.config.declarative` when the file is applied.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import attrs

from rpopcore import errors, logs
from rpopcore.config.schema import Key, file_path, non_empty_string, read_table, read_toml, string

DECLARATIVE_TABLES = ("rpop", "domain", "remote", "unified")
SITE_TABLES = ("delivery", "state", "secrets", "log", "bounces")

#: The plugins a new site file names, by table.
DEFAULT_PLUGINS = {"delivery": "maildir", "state": "sqlite"}

DEFAULT_SITE_FILE = f"""\
# rpop site file: where state and mail live.  Relative paths are relative to
# this file's folder.  Records, domains and module settings go in a
# declarative file applied with 'rpop -c THIS apply DECL.toml' (this file may
# carry them too).

[delivery]
plugin = "{DEFAULT_PLUGINS['delivery']}"
root = "mail"

[state]
plugin = "{DEFAULT_PLUGINS['state']}"

[secrets]
key_file = "rpop.key"
"""


def _table(value: Any) -> dict:
    if not isinstance(value, dict):
        raise ValueError("expected a table: [bounces.relay_options] with the relay plugin's keys")
    return dict(value)


BOUNCES_KEYS = {
    "relay": Key(string, "", "the outbound relay, host:port"),
    "relay_plugin": Key(non_empty_string, "smtp", "the delivery plugin that sends reports to the relay"),
    "relay_options": Key(_table, {}, "more keys for the relay plugin, as its [delivery] table takes them"),
    "spool": Key(file_path, "bounces", "the folder reports are written to when no relay is configured"),
}


@attrs.frozen
class PluginChoice:
    """``[delivery]`` or ``[state]``: the plugin name and the rest of the
    table, which the plugin checks itself."""

    name: str
    options: Mapping[str, Any]


@attrs.frozen
class BouncesConfig:
    """``[bounces]``: where delivery status notifications go.  A relay is
    any delivery plugin (``relay_plugin``, ``smtp`` by default) given the
    ``[bounces.relay_options]`` table, with ``relay = "host:port"`` as its
    ``host`` and ``port``; without either, reports are written to ``spool``."""

    relay: str = ""
    relay_plugin: str = "smtp"
    relay_options: Mapping[str, Any] = attrs.field(factory=dict)
    spool: Path = Path("bounces")


@attrs.frozen
class SiteConfig:
    path: Path
    delivery: PluginChoice
    state: PluginChoice
    key_file: Path
    log_file: Path | None
    bounces: BouncesConfig

    @property
    def base_dir(self) -> Path:
        return self.path.parent


def load_site(path: Path) -> SiteConfig:
    path = Path(path).absolute()
    doc = read_toml(path)
    for name in doc:
        if name not in SITE_TABLES + DECLARATIVE_TABLES:
            raise errors.ConfigError(
                f"{path}: unknown table [{name}]; a site file has "
                f"{', '.join('[' + t + ']' for t in SITE_TABLES + DECLARATIVE_TABLES)}"
            )
    base = path.parent
    delivery = _plugin_choice(doc, "delivery", path)
    state = _plugin_choice(doc, "state", path)
    secrets = read_table(doc.get("secrets", {}), {"key_file": Key(file_path, "rpop.key")}, f"{path}: [secrets]")
    log = read_table(doc.get("log", {}), {"file": Key(file_path, "")}, f"{path}: [log]")
    bounces = read_table(doc.get("bounces", {}), BOUNCES_KEYS, f"{path}: [bounces]")
    log_file = (base / log["file"]) if log["file"] else None
    if log_file is not None:
        try:
            logs.check_file(str(log_file))
        except OSError as exc:
            raise errors.ConfigError(
                f"{path}: [log] key 'file': cannot open {log_file} ({exc.strerror}); give a file in a folder that "
                "exists and rpop can write, or leave it empty to log to stderr"
            ) from None
    return SiteConfig(
        path=path,
        delivery=delivery,
        state=state,
        key_file=base / secrets["key_file"],
        log_file=log_file,
        bounces=BouncesConfig(relay=bounces["relay"], relay_plugin=bounces["relay_plugin"],
                              relay_options=bounces["relay_options"], spool=base / bounces["spool"]),
    )


def _plugin_choice(doc: dict, table: str, path: Path) -> PluginChoice:
    section = doc.get(table)
    if section is None:
        raise errors.ConfigError(f"{path}: the [{table}] table is missing; 'rpop init DIR' writes a complete site file")
    if not isinstance(section, dict):
        raise errors.ConfigError(f"{path}: [{table}] must be a table")
    name = section.get("plugin")
    if not isinstance(name, str) or not name:
        raise errors.ConfigError(f"{path}: [{table}] key 'plugin' is missing; name the {table} plugin, e.g. plugin = \"{'maildir' if table == 'delivery' else 'sqlite'}\"")
    return PluginChoice(name=name, options={k: v for k, v in section.items() if k != "plugin"})
