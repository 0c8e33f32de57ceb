"""The plugin manager: hook specifications plus whatever the ``rpop``
entry-point group holds.

``RPOP_PLUGINS`` limits which entry points load (a comma-separated list of
entry-point names; empty loads none), so tests can be isolated from whatever
else is installed.  ``RPOP_TRACE_HOOKS=1`` logs every hook call.

Entry points are read here from the ``entry_points.txt`` of each installed
distribution (``*.dist-info``, ``*.egg-info``) on ``sys.path``, with the
rules of :func:`importlib.metadata.entry_points` (the first distribution of
a name on the path wins).  Every rpop command starts with this, and
importing and running :mod:`importlib.metadata` cost ~15 ms of a ~0.2 s
start, as much as a whole poll of a small mailbox; reading the files
directly costs ~2 ms.  :func:`describe` still uses ``importlib.metadata``
for the distributions' names and versions.
"""

from __future__ import annotations

import importlib
import logging
import os
import re
import sys
from pathlib import Path

import attrs
import pluggy

from rpopcore import errors, hookspecs

GROUP = "rpop"
log = logging.getLogger("rpop.plugins")


@attrs.frozen
class EntryPoint:
    """One ``name = module[:attribute]`` line of the ``[rpop]`` group."""

    name: str
    value: str
    #: the ``*.dist-info`` (or ``*.egg-info``) folder that declares it
    dist_path: str

    @property
    def dist_name(self) -> str:
        """The distribution's name and version, as its folder spells them."""
        # rpop_delivery_smtp-0.1.0.dist-info, or rpop_delivery_smtp.egg-info
        # (no version) in a source folder on the path.
        name, _, version = os.path.basename(self.dist_path).rpartition(".")[0].partition("-")
        return f"{name.replace('_', '-')} {version.partition('-')[0]}".strip()

    def load(self) -> object:
        module_name, _, attribute = self.value.partition(":")
        target = importlib.import_module(module_name.strip())
        for part in attribute.strip().split(".") if attribute.strip() else ():
            target = getattr(target, part)
        return target


def entry_points(group: str = GROUP) -> list[EntryPoint]:
    """The entry points of ``group`` that installed distributions declare."""
    found: list[EntryPoint] = []
    seen: set[str] = set()
    for folder in sys.path:
        try:
            entries = sorted(os.scandir(folder or "."), key=lambda e: e.name)
        except OSError:
            continue
        for entry in entries:
            if not entry.name.endswith((".dist-info", ".egg-info")):
                continue
            project = _normalised(entry.name.rpartition(".")[0].split("-")[0])
            if project in seen:
                continue
            seen.add(project)
            try:
                with open(os.path.join(entry.path, "entry_points.txt"), encoding="utf-8") as file:
                    text = file.read()
            except OSError:
                continue
            found.extend(EntryPoint(name, value, entry.path) for name, value in _group(text, group))
    return found


def _normalised(project: str) -> str:
    return project.lower().replace("-", "_").replace(".", "_")


def _group(text: str, group: str) -> list[tuple[str, str]]:
    """The ``name = value`` lines of section ``[group]`` of an INI text."""
    pairs, inside = [], False
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            inside = line == f"[{group}]"
        elif inside and "=" in line:
            name, _, value = line.partition("=")
            pairs.append((name.strip(), value.strip()))
    return pairs


# Which entry point each loaded plugin module came from, for `rpop plugins`.
_ORIGINS: dict[int, EntryPoint] = {}


def plugin_manager() -> pluggy.PluginManager:
    """A plugin manager with every installed (or allowed) plugin loaded and
    checked: an implementation that names no hook fails loudly."""
    pm = pluggy.PluginManager(GROUP)
    pm.add_hookspecs(hookspecs)
    allowed = os.environ.get("RPOP_PLUGINS")
    wanted = None if allowed is None else {n.strip() for n in allowed.split(",") if n.strip()}
    for entry_point in entry_points(GROUP):
        if wanted is not None and entry_point.name not in wanted:
            continue
        if pm.has_plugin(entry_point.name):
            first = _ORIGINS.get(id(pm.get_plugin(entry_point.name)))
            if first is not None and first.dist_path != entry_point.dist_path:
                raise errors.ConfigError(
                    f"two distributions provide the plugin '{entry_point.name}': {first.dist_name} and "
                    f"{entry_point.dist_name}; uninstall one of them"
                )
            continue
        try:
            plugin = entry_point.load()
        except Exception as exc:
            dist = f" ({entry_point.dist_name})"
            raise errors.ConfigError(
                f"the plugin '{entry_point.name}'{dist} cannot be loaded: {type(exc).__name__}: {exc}; "
                "reinstall or uninstall that distribution"
            ) from None
        pm.register(plugin, name=entry_point.name)
        _ORIGINS[id(plugin)] = entry_point
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        raise errors.ConfigError(f"a plugin implements a hook that does not exist: {exc}") from None
    if os.environ.get("RPOP_TRACE_HOOKS"):
        pm.trace.root.setwriter(lambda text: log.debug("%s", text.rstrip()))
        pm.enable_tracing()
    return pm


#: What each "everyone contributes" hook gives, as ``rpop plugins`` says it.
_PROVIDES = {
    "rpop_auth_mechanisms": "auth",
    "rpop_delivery_agents": "delivery",
    "rpop_state_stores": "state",
    "rpop_record_options": "record key",
}


def _provides(plugin, callers) -> list[str]:
    """What a plugin contributes by name: ``["delivery maildir"]``."""
    found = []
    for caller in callers:
        what = _PROVIDES.get(caller.name)
        if what is None:
            continue
        for impl in caller.get_hookimpls():
            if impl.plugin is plugin:
                answer = impl.function() or {}
                names = answer if isinstance(answer, dict) else [item.name for item in answer]
                found += [f"{what} {n}" for n in names]
    return sorted(found)


def describe(pm: pluggy.PluginManager) -> list[dict]:
    """Each loaded plugin: name, distribution, version, the hooks it
    implements and what it provides by name (what ``rpop plugins --json``
    prints)."""
    import importlib.metadata

    rows = []
    for name, plugin in sorted(pm.list_name_plugin(), key=lambda item: item[0]):
        if plugin is None:
            continue
        origin = _ORIGINS.get(id(plugin))
        dist = importlib.metadata.PathDistribution(Path(origin.dist_path)) if origin else None
        callers = pm.get_hookcallers(plugin) or []
        rows.append(
            {
                "name": name,
                "distribution": dist.metadata["name"] if dist else None,
                "version": dist.version if dist else None,
                "hooks": sorted(h.name for h in callers),
                "provides": _provides(plugin, callers),
            }
        )
    return rows



def origin(pm: pluggy.PluginManager, plugin_name: str) -> str:
    """A plugin as an error names it: ``the plugin 'smtp' (rpop-delivery-smtp 0.1.0)``."""
    entry_point = _ORIGINS.get(id(pm.get_plugin(plugin_name)))
    return f"the plugin '{plugin_name}' ({entry_point.dist_name})" if entry_point else "a plugin registered by hand"


def contributions(pm: pluggy.PluginManager, hook: str) -> dict:
    """What the plugins contribute through an "everyone contributes" hook
    that answers ``{name: value}`` (delivery agents, state stores) or a
    list of objects with a ``name`` (authentication mechanisms), by name.
    Two plugins contributing one name is an error naming both, with their
    distributions: which one would win is an accident of install order."""
    found: dict = {}
    owner: dict[str, str] = {}
    for impl in getattr(pm.hook, hook).get_hookimpls():
        answer = impl.function() or {}
        pairs = answer.items() if isinstance(answer, dict) else ((item.name, item) for item in answer)
        for name, value in pairs:
            if name in owner and owner[name] != impl.plugin_name:
                raise errors.ConfigError(
                    f"two plugins provide {name!r} ({hook}): {origin(pm, owner[name])} and "
                    f"{origin(pm, impl.plugin_name)}; uninstall one of them"
                )
            owner[name] = impl.plugin_name
            found[name] = value
    return found


def record_options(pm: pluggy.PluginManager, core_keys) -> dict:
    """Every record key the loaded plugins declare
    (:func:`rpopcore.hookspecs.rpop_record_options`), by name; ``core_keys``
    are the core's own, which no plugin may declare again."""
    from rpopcore.options import collect

    return collect(
        ((origin(pm, impl.plugin_name), impl.function()) for impl in pm.hook.rpop_record_options.get_hookimpls()),
        core_keys,
    )


#: The distributions of rpop's standard plugins, by kind and plugin name, so
#: that a missing one is named exactly ("pip install rpop-routing-directory").
STANDARD_DISTRIBUTIONS = {
    "auth": {name: f"rpop-auth-{name}" for name in ("userpass", "apop", "plain", "cram-md5", "msn", "xoauth2",
                                                     "oauthbearer")},
    "delivery": {name: f"rpop-delivery-{name}" for name in ("maildir", "lmtp", "smtp", "pipe")},
    "state": {"sqlite": "rpop-storage-sqlite", "postgresql": "rpop-storage-postgresql"},
    "routing": {"directory": "rpop-routing-directory"},
    "recipients": {"owner": "rpop-recipients-owner", "headers": "rpop-recipients-headers",
                   "special_field": "rpop-recipients-special-field"},
}


def install_hint(kind: str, name: str) -> str:
    """How to install the plugin ``name`` of ``kind`` (``delivery``,
    ``state``, ``auth``, ``routing``, ``recipients``)."""
    distribution = STANDARD_DISTRIBUTIONS.get(kind, {}).get(name)
    if distribution:
        return f"pip install {distribution} (or pip install 'rpop[standard]' for the standard set)"
    return f"install the distribution that provides the {kind} plugin {name!r} ('rpop plugins' lists what is installed)"
