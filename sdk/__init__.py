"""personalizer: personalize LLM answers per user at decoding time.

>>> from personalizer import Personalizer
"""

from .client import Personalizer
from .errors import (
    BackendError,
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
from .types import Generation, Generator, Message, Timings, as_messages

__version__ = "0.1.0"

__all__ = [
    "BackendError",
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
