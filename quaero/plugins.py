"""The user's own executors: modules named in `[executors] modules` (or
QUAERO_EXECUTORS_MODULES) and the entry points of the group `quaero.executors`.

Importing such a module runs its `@register` decorators, so its types are known to the
process. Every process that builds its services (serve, web, worker, submit) loads them,
so the web accepts and documents the same types the workers run. An import error stops
start-up with a message naming the module.
"""

from __future__ import annotations

import importlib
import logging
from importlib.metadata import entry_points

from quaero.config import ConfigError

logger = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "quaero.executors"


class PluginError(ConfigError):
    """An executor module or entry point could not be imported."""


def _why(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def load_executor_modules(modules: list[str]) -> list[str]:
    """Import `modules`, then every entry point of the `quaero.executors` group; returns
    what was loaded. Raises PluginError naming the first one that fails."""
    loaded = []
    for name in modules:
        try:
            importlib.import_module(name)
        except Exception as exc:  # any import-time failure is the module's, say whose
            raise PluginError(
                f"executors.modules: cannot import {name!r}: {_why(exc)} "
                "(is its folder on PYTHONPATH?)"
            ) from exc
        loaded.append(name)
    for point in entry_points(group=ENTRY_POINT_GROUP):
        try:
            point.load()
        except Exception as exc:
            raise PluginError(
                f"entry point {point.name!r} ({point.value}) of group {ENTRY_POINT_GROUP!r}: "
                f"cannot import {point.module!r}: {_why(exc)}"
            ) from exc
        loaded.append(point.value)
    if loaded:
        logger.info("executor modules loaded: %s", ", ".join(loaded))
    return loaded
