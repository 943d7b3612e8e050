"""Names that moved or went, kept working with a DeprecationWarning for one release."""

from __future__ import annotations

import warnings
from typing import Any

__all__ = ["client_name"]

_CLIENT = {
    "LOCAL_STRATEGY": "the local default strategy is the generator's: "
                      "personalizer.backends.local.generator.DEFAULT_STRATEGY "
                      "(LocalGenerator(strategy=...))",
    "LOCAL_PROMPT_DEFAULT": "the profile in words is on by default (prompt_profile=False "
                            "switches it off)",
    "PersonalizedStream": "streams are personalizer.streams.Stream",
    "AsyncPersonalizedStream": "async streams are personalizer.streams.AsyncStream",
}


def client_name(name: str) -> Any:
    """A deprecated name of ``personalizer.client``, with a DeprecationWarning."""
    if name not in _CLIENT:
        raise AttributeError(f"module 'personalizer.client' has no attribute {name!r}")
    warnings.warn(f"personalizer.client.{name} is deprecated: {_CLIENT[name]}",
                  DeprecationWarning, stacklevel=3)
    if name == "LOCAL_STRATEGY":
        from personalizer.backends.local.generator import DEFAULT_STRATEGY

        return DEFAULT_STRATEGY.model_dump()
    if name == "LOCAL_PROMPT_DEFAULT":
        return True
    from .streams import AsyncStream, Stream

    return Stream if name == "PersonalizedStream" else AsyncStream
