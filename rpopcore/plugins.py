"""The plugin manager: hook specifications plus whatever the ``rpop``
entry-point group holds.

``RPOP_PLUGINS`` limits which entry points load (a comma-separated list of
entry-point names; empty loads none), so tests can be isolated from whatever
else is installed.  ``RPOP_TRACE_HOOKS=1`` logs every hook call.
"""

from __future__ import annotations

import importlib.metadata
import logging
import os

import pluggy

from rpopcore import errors, hookspecs

GROUP = "rpop"
# Which distribution each loaded plugin module came from, for `rpop plugins`.
_DISTRIBUTIONS: dict[int, importlib.metadata.Distribution] = {}
log = logging.getLogger("rpop.plugins")


def plugin_manager() -> pluggy.PluginManager:
    """A plugin manager with every installed (or allowed) plugin loaded and
    checked: an implementation that names no hook fails loudly."""
    pm = pluggy.PluginManager(GROUP)
    pm.add_hookspecs(hookspecs)
    allowed = os.environ.get("RPOP_PLUGINS")
    wanted = None if allowed is None else {n.strip() for n in allowed.split(",") if n.strip()}
    for entry_point in importlib.metadata.entry_points(group=GROUP):
        if wanted is not None and entry_point.name not in wanted:
            continue
        if pm.has_plugin(entry_point.name):
            continue
        try:
            plugin = entry_point.load()
        except Exception as exc:
            dist = f" ({entry_point.dist.name} {entry_point.dist.version})" if entry_point.dist else ""
            raise errors.ConfigError(
                f"the plugin '{entry_point.name}'{dist} cannot be loaded: {type(exc).__name__}: {exc}; "
                "reinstall or uninstall that distribution"
            ) from None
        pm.register(plugin, name=entry_point.name)
        _DISTRIBUTIONS[id(plugin)] = entry_point.dist
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        raise errors.ConfigError(f"a plugin implements a hook that does not exist: {exc}") from None
    if os.environ.get("RPOP_TRACE_HOOKS"):
        pm.trace.root.setwriter(lambda text: log.debug("%s", text.rstrip()))
        pm.enable_tracing()
    return pm


def describe(pm: pluggy.PluginManager) -> list[dict]:
    """Each loaded plugin: name, distribution, version and the hooks it
    implements (what ``rpop plugins --json`` prints)."""
    dists = _DISTRIBUTIONS
    rows = []
    for name, plugin in sorted(pm.list_name_plugin(), key=lambda item: item[0]):
        if plugin is None:
            continue
        dist = dists.get(id(plugin))
        hooks = sorted(h.name for h in pm.get_hookcallers(plugin) or [])
        rows.append(
            {
                "name": name,
                "distribution": dist.metadata["name"] if dist else None,
                "version": dist.version if dist else None,
                "hooks": hooks,
            }
        )
    return rows


def installed_distributions() -> list[str]:
    """Names of installed distributions that provide ``rpop`` entry points."""
    return sorted({ep.dist.name for ep in importlib.metadata.entry_points(group=GROUP) if ep.dist})
