"""The plugin manager: built-in sinks and third-party ones from the `csconv` entry-point group."""

from __future__ import annotations

import importlib
import importlib.metadata
from dataclasses import dataclass
from functools import lru_cache

import pluggy

from . import hookspecs
from .core.errors import CsconvError

ENTRY_POINT_GROUP = "csconv"
BUILTIN_PLUGINS = (
    "csconv.sinks.tfrecord",
    "csconv.sinks.parquet",
    "csconv.sinks.webdataset",
    "csconv.sinks.arrayrecord",
)


class PluginError(CsconvError):
    pass


@dataclass(frozen=True)
class SinkEntry:
    name: str
    sink_class: type
    plugin: str  # the plugin's registered name
    origin: str  # "built-in" or the distribution that provides it


def _load_entry_points(pm: pluggy.PluginManager) -> dict[str, str]:
    origins = {}
    for entry_point in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        if pm.get_plugin(entry_point.name) is not None or pm.is_blocked(entry_point.name):
            continue
        dist = entry_point.dist.name if entry_point.dist else "unknown distribution"
        try:
            plugin = entry_point.load()
        except Exception as error:  # a broken plugin must not look like a csconv bug
            raise PluginError(
                f"plugin {entry_point.name!r} ({dist}, {entry_point.value}) failed to load: "
                f"{error.__class__.__name__}: {error}"
            ) from error
        pm.register(plugin, name=entry_point.name)
        origins[entry_point.name] = dist
    return origins


@lru_cache(maxsize=1)
def plugin_manager() -> tuple[pluggy.PluginManager, dict[str, str]]:
    pm = pluggy.PluginManager("csconv")
    pm.add_hookspecs(hookspecs)
    origins = {}
    for module_name in BUILTIN_PLUGINS:
        pm.register(importlib.import_module(module_name), name=module_name)
        origins[module_name] = "built-in"
    origins.update(_load_entry_points(pm))
    return pm, origins


@lru_cache(maxsize=1)
def sinks() -> dict[str, SinkEntry]:
    """Every registered sink by name; a clash or a failing hook names the plugin."""
    pm, origins = plugin_manager()
    found: dict[str, SinkEntry] = {}
    for impl in pm.hook.register_sinks.get_hookimpls():  # registration order: built-ins first
        plugin_name = impl.plugin_name
        registered: list[type] = []
        try:
            impl.function(register=registered.append)
        except Exception as error:
            raise PluginError(
                f"plugin {plugin_name!r} failed in register_sinks: {error.__class__.__name__}: {error}"
            ) from error
        for sink_class in registered:
            name = getattr(sink_class, "name", None)
            if not isinstance(name, str) or not name:
                raise PluginError(f"plugin {plugin_name!r} registered {sink_class!r} without a name")
            if name in found:
                raise PluginError(
                    f"sink {name!r} is registered twice: by plugin {found[name].plugin!r} "
                    f"and by plugin {plugin_name!r}"
                )
            found[name] = SinkEntry(name, sink_class, plugin_name, origins.get(plugin_name, "registered"))
    return found


def get_sink(name: str):
    available = sinks()
    if name not in available:
        raise CsconvError(f"unknown sink {name!r}; registered sinks: {', '.join(sorted(available))}")
    missing = available[name].sink_class.missing_requirement()
    if missing:
        raise CsconvError(missing)
    return available[name].sink_class()
