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

from rpopcore import hookspecs

GROUP = "rpop"
log = logging.getLogger("rpop.plugins")


def plugin_manager() -> pluggy.PluginManager:
    """A plugin manager with every installed (or allowed) plugin loaded and
    checked: an implementation that names no hook fails loudly."""
    pm = pluggy.PluginManager(GROUP)
    pm.add_hookspecs(hookspecs)
    allowed = os.environ.get("RPOP_PLUGINS")
    if allowed is None:
        pm.load_setuptools_entrypoints(GROUP)
    else:
        for name in filter(None, (n.strip() for n in allowed.split(","))):
            pm.load_setuptools_entrypoints(GROUP, name=name)
    pm.check_pending()
    if os.environ.get("RPOP_TRACE_HOOKS"):
        pm.trace.root.setwriter(lambda text: log.debug("%s", text.rstrip()))
        pm.enable_tracing()
    return pm


def describe(pm: pluggy.PluginManager) -> list[dict]:
    """Each loaded plugin: name, distribution, version and the hooks it
    implements (what ``rpop plugins --json`` prints)."""
    dists = {id(plugin): dist for plugin, dist in pm.list_plugin_distinfo()}
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
