"""Stateless compute: generators (local Hugging Face models, hosted APIs) and reward models.

Backends know a user only through the coefficients and options handed to them; they never
import ``personalizer.profiles`` or the facade. Torch-based parts load on first use.
"""

from __future__ import annotations

from typing import Any

from .steering import Steering

__all__ = ["GenerationOptions", "LocalGenerator", "ProxyTuning", "Steering"]


def __getattr__(name: str) -> Any:
    if name in ("GenerationOptions", "LocalGenerator"):
        from . import local

        return getattr(local, name)
    if name == "ProxyTuning":
        from .proxy import ProxyTuning

        return ProxyTuning
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
