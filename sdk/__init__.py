"""personalizer: personalize LLM answers per user at decoding time.

>>> from personalizer import Personalizer

The error tree is imported with the package; everything else loads on first use, so
``import personalizer.errors`` stays light.
"""

from typing import Any

from .errors import (
    BackendError,
    CorruptProfile,
    DatabaseNotFound,
    InvalidInput,
    InvalidProfileData,
    InvalidUserId,
    MissingDependency,
    NotADatabase,
    PersonalizerError,
    ProfileExists,
    ProfileNotFound,
    ProviderAuthFailed,
    ProviderBadRequest,
    ProviderError,
    ProviderRateLimited,
    ProviderServerError,
    ProviderTimeout,
    ProviderUnavailable,
    RewardSetMismatch,
    SchemaTooNew,
    StoreAuthFailed,
    StoreBusy,
    StoreError,
    StoreUnavailable,
    UnsupportedRequest,
    UnsupportedSchemaVersion,
    VersionConflict,
)

# public names that load their module on first use: name -> module of this package
_LAZY = {"Personalizer": ".client", "Generation": ".types", "Message": ".types",
         "Timings": ".types", "as_messages": ".types", "Generator": ".seams"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value  # looked up once
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))

__version__ = "0.1.0"

__all__ = [
    "BackendError",
    "CorruptProfile",
    "DatabaseNotFound",
    "Generation",
    "Generator",
    "InvalidInput",
    "InvalidProfileData",
    "InvalidUserId",
    "Message",
    "MissingDependency",
    "NotADatabase",
    "Personalizer",
    "PersonalizerError",
    "ProfileExists",
    "ProfileNotFound",
    "ProviderAuthFailed",
    "ProviderBadRequest",
    "ProviderError",
    "ProviderRateLimited",
    "ProviderServerError",
    "ProviderTimeout",
    "ProviderUnavailable",
    "RewardSetMismatch",
    "SchemaTooNew",
    "StoreAuthFailed",
    "StoreBusy",
    "StoreError",
    "StoreUnavailable",
    "Timings",
    "UnsupportedRequest",
    "UnsupportedSchemaVersion",
    "VersionConflict",
    "__version__",
    "as_messages",
]
