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
from rpopcore.config.schema import Key, file_path, non_empty_string, read_table, read_toml, string, string_list

DECLARATIVE_TABLES = ("rpop", "domain", "remote", "unified")
SITE_TABLES = ("delivery", "state", "secrets", "log", "bounces", "metrics", "web")

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
class WebConfig:
    """``[web]``: where the web pages and the JSON API listen, the TLS
    certificate and key (both or neither; with them cookies are Secure), and
    the local addresses that have the administrator role."""

    host: str = "127.0.0.1"
    port: int = 8080
    tls_cert: Path | None = None
    tls_key: Path | None = None
    admins: tuple[str, ...] = ()

    @property
    def tls(self) -> bool:
        return self.tls_cert is not None


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
    #: ``host:port`` where ``rpop run`` serves Prometheus metrics; "" for none.
    metrics_listen: str = ""
    #: None without a ``[web]`` table: ``rpop run`` then serves no pages.
    web: WebConfig | None = None

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
    metrics = read_table(doc.get("metrics", {}), {"listen": Key(string, "")}, f"{path}: [metrics]")
    if metrics["listen"]:
        from rpopcore.model import check_host  # only for sites that serve metrics

        try:
            check_host(metrics["listen"])
        except ValueError as exc:
            raise errors.ConfigError(f"{path}: [metrics] key 'listen': {exc}") from None
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
        metrics_listen=metrics["listen"],
        web=_web(doc["web"], path) if "web" in doc else None,
    )


def _listen(value) -> tuple[str, int]:
    """``host:port`` (``[::1]:8080`` for IPv6); port 0 takes any free port
    (``rpop web`` prints the one it got)."""
    text = string(value).strip()
    host, colon, port = text.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not colon or not host or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"{value!r} is not host:port; write it like \"127.0.0.1:8080\" or \"[::1]:8080\"")
    return host, int(port)


def _web(table, path: Path) -> WebConfig:
    where = f"{path}: [web]"
    values = read_table(
        table,
        {
            "listen": Key(_listen, ("127.0.0.1", 8080)),
            "tls_cert": Key(file_path, ""),
            "tls_key": Key(file_path, ""),
            "admins": Key(string_list, ()),
        },
        where,
    )
    if bool(values["tls_cert"]) != bool(values["tls_key"]):
        raise errors.ConfigError(f"{where}: give both tls_cert and tls_key, or neither", field="tls_key")
    cert = key = None
    if values["tls_cert"]:
        cert, key = path.parent / values["tls_cert"], path.parent / values["tls_key"]
        for name, file in (("tls_cert", cert), ("tls_key", key)):
            if not file.is_file():
                raise errors.ConfigError(f"{where} key '{name}': {file} is not a readable file; give a PEM file",
                                         field=name)
    for admin in values["admins"]:
        if "@" not in admin:
            raise errors.ConfigError(
                f"{where} key 'admins': {admin!r} is not an address; write local addresses, like "
                "\"postmaster@example.test\"",
                field="admins",
            )
    host, port = values["listen"]
    return WebConfig(host=host, port=port, tls_cert=cert, tls_key=key,
                     admins=tuple(a.strip().lower() for a in values["admins"]))


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
