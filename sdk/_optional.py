"""Lazy imports of optional dependencies, with the ``pip install`` that fixes a missing one."""

from __future__ import annotations

import importlib
from types import ModuleType

from .errors import MissingDependency


def require(module: str, *, extra: str, feature: str) -> ModuleType:
    """Import ``module`` or raise :class:`MissingDependency` naming the extra to install."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        if exc.name is not None and exc.name.split(".")[0] != module.split(".")[0]:
            raise  # the package is there but one of *its* imports failed: show the real cause
        raise MissingDependency(module.split(".")[0], extra, feature) from exc
