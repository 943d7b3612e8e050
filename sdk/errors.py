"""The one exception tree of personalizer.

Every error the SDK raises on purpose is a :class:`PersonalizerError`; library and provider
errors (sqlite3, pydantic, HTTP clients) are converted at the boundary, so callers can catch
one class and messages say what to do next::

    PersonalizerError
    ├── InvalidInput (ValueError)          bad arguments, ids, texts or files
    │   ├── InvalidUserId                  user id too long, empty or with odd characters
    │   ├── InvalidProfileData             an import that is not a valid profile export
    │   │   └── UnsupportedSchemaVersion   an export written by a newer personalizer
    │   └── RewardSetMismatch              coefficients that belong to another reward set
    ├── ProfileNotFound (LookupError)      no profile for that user id
    ├── ProfileExists                      create/import over an existing profile
    ├── StoreError                         the profile store cannot do its job
    │   ├── NotADatabase                   the file is not an SQLite database
    │   ├── DatabaseNotFound               no database file where a read-only use expected one
    │   ├── StoreBusy                      locked by other writers for longer than the timeout
    │   ├── StoreUnavailable               the database server cannot be reached (says whether
    │   │                                  anything was written)
    │   ├── StoreAuthFailed                the database server refused the user or password
    │   ├── SchemaTooNew                   the database was written by a newer personalizer
    │   ├── VersionConflict                optimistic-concurrency check failed; re-read and retry
    │   └── CorruptProfile                 a stored row of the user is damaged (names the field)
    ├── BackendError                       a generator or reward model failed
    │   ├── UnsupportedRequest             a backend cannot honour the request (says what can)
    │   └── ProviderError                  a hosted model's API failed (carries its message)
    │       ├── ProviderAuthFailed         401/403: the API key was refused
    │       ├── ProviderRateLimited        429, after the client's retries
    │       ├── ProviderTimeout            no reply within the client's timeout
    │       ├── ProviderBadRequest         400/404/413/422: the request was refused as sent
    │       ├── ProviderServerError        5xx or overloaded, after the client's retries
    │       └── ProviderUnavailable        the server could not be reached
    └── MissingDependency (ImportError)    an optional extra is not installed

This module imports nothing of ours.
"""

from __future__ import annotations

__all__ = [
    "BackendError",
    "CorruptProfile",
    "DatabaseNotFound",
    "InvalidInput",
    "InvalidProfileData",
    "InvalidUserId",
    "MissingDependency",
    "NotADatabase",
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
    "UnsupportedRequest",
    "UnsupportedSchemaVersion",
    "VersionConflict",
]


class PersonalizerError(Exception):
    """Base class of every error personalizer raises on purpose."""


class InvalidInput(PersonalizerError, ValueError):
    """An argument, text or file given to the SDK is not acceptable."""


class InvalidUserId(InvalidInput):
    """A user id is empty, too long or contains characters outside the allowed set."""


class InvalidProfileData(InvalidInput):
    """Data offered for import is not a valid personalizer profile export."""


class UnsupportedSchemaVersion(InvalidProfileData):
    """A profile export uses a schema version this release cannot read."""


class RewardSetMismatch(InvalidInput):
    """Coefficients refer to another reward set, another version of it, or other rewards.

    Coefficients mean nothing against another set; they are refused, never reinterpreted.
    """


class ProfileNotFound(PersonalizerError, LookupError):
    """No profile is stored for the requested user id."""

    def __init__(self, user_id: str) -> None:
        self.user_id = user_id
        super().__init__(
            f"no profile for user {user_id!r}; create one first "
            "(Personalizer.create_profile, or record a preference, which creates it)"
        )


class ProfileExists(PersonalizerError):
    """A profile already exists where a new one was to be created."""

    def __init__(self, user_id: str, hint: str = "") -> None:
        self.user_id = user_id
        super().__init__(f"a profile for user {user_id!r} already exists{hint}")


class StoreError(PersonalizerError):
    """The profile store failed; stored data is left as it was."""


class NotADatabase(StoreError):
    """The store path exists but is not an SQLite database."""


class DatabaseNotFound(StoreError, LookupError):
    """No database file at the path, where one was expected (reading never creates one)."""


class StoreBusy(StoreError):
    """The database stayed locked by other writers for longer than the busy timeout."""


class StoreUnavailable(StoreError):
    """The database server could not be reached, or the connection dropped, for longer than
    the store's retry window. The message says whether the change was written."""


class StoreAuthFailed(StoreError):
    """The database server refused the user name or password of the store's URL."""


class SchemaTooNew(StoreError):
    """The database holds schema migrations this release does not know."""


class VersionConflict(StoreError):
    """A profile changed since it was read (optimistic concurrency check failed).

    Re-read the profile and apply the change again; ``store.modify`` does this
    for you.
    """

    def __init__(self, user_id: str, expected: int, found: int) -> None:
        self.user_id = user_id
        self.expected = expected
        self.found = found
        super().__init__(
            f"profile {user_id!r} is at version {found}, not {expected}: it was changed "
            "by someone else since you read it; re-read it and apply your change again "
            "(store.modify(user_id, change) retries for you)"
        )


class CorruptProfile(StoreError):
    """A stored row of one user cannot be read: a value in it is damaged (edited by hand,
    written by another tool). ``user_id`` and ``field`` (``profiles.created_at``,
    ``preferences.judgement``, ...) say where; other users are not affected, and deleting the
    user still works."""

    def __init__(self, user_id: str, field: str, problem: str = "") -> None:
        self.user_id = user_id
        self.field = field
        self.problem = problem
        detail = f" ({problem})" if problem else ""
        super().__init__(
            f"the stored data of user {user_id!r} is damaged: {field} cannot be read{detail}; "
            "restore the user from an export made before the damage (import_profile with "
            "replace=True) or delete them (delete_profile works on a damaged row)"
        )

    def __reduce__(self) -> tuple[object, ...]:  # picklable across processes
        return (type(self), (self.user_id, self.field, self.problem))


class BackendError(PersonalizerError):
    """A generator or reward backend failed or returned something unusable."""


class UnsupportedRequest(BackendError):
    """The backend cannot do what was asked (ARGS on a hosted API, an option a provider does
    not have); the message names what works instead."""


class ProviderError(BackendError):
    """A hosted model's API refused or failed a request.

    ``provider`` names the API ("OpenAI", "Anthropic"), ``status_code`` is the HTTP status
    (None when no reply came) and ``provider_message`` the provider's own words.
    """

    hint = ""

    def __init__(self, provider: str, provider_message: str, *,
                 status_code: int | None = None) -> None:
        self.provider = provider
        self.status_code = status_code
        self.provider_message = provider_message
        status = f" (HTTP {status_code})" if status_code is not None else ""
        super().__init__(f"{provider}{status}: {provider_message}{self.hint}")

    def __reduce__(self) -> tuple[object, ...]:  # picklable across processes
        return (_provider_error, (type(self), self.provider, self.provider_message,
                                  self.status_code))


def _provider_error(cls: type[ProviderError], provider: str, message: str,
                    status_code: int | None) -> ProviderError:
    return cls(provider, message, status_code=status_code)


class ProviderAuthFailed(ProviderError):
    """The provider refused the API key (HTTP 401 or 403)."""

    hint = ("; check the API key (OPENAI_API_KEY / ANTHROPIC_API_KEY, or api_key=) and that "
            "it may use this model")


class ProviderRateLimited(ProviderError):
    """The provider's rate limit was hit (HTTP 429) and the client's retries ran out."""

    hint = "; slow down, or raise max_retries on the generator"


class ProviderTimeout(ProviderError):
    """No reply came within the client's timeout."""

    hint = "; raise timeout= on the generator, or ask for fewer tokens"


class ProviderBadRequest(ProviderError):
    """The provider refused the request as sent (model name, options, prompt size)."""


class ProviderServerError(ProviderError):
    """The provider failed (HTTP 5xx, overloaded) and the client's retries ran out."""

    hint = "; try again later"


class ProviderUnavailable(ProviderError):
    """The provider's server could not be reached."""

    hint = "; check base_url and the network"


class MissingDependency(PersonalizerError, ImportError):
    """An optional dependency is not installed; the message gives the command that fixes it
    (``install``: by default ``pip install 'personalizer[<extra>]'``)."""

    def __init__(self, package: str, extra: str, feature: str, *,
                 install: str | None = None) -> None:
        self.package = package
        self.extra = extra
        self.install = install or f"pip install 'personalizer[{extra}]'"
        super().__init__(
            f"{feature} needs the {package!r} package, which is not installed; "
            f"install it with `{self.install}`"
        )

    def __reduce__(self) -> tuple[object, ...]:  # picklable across processes
        return (_missing, (self.package, self.extra, self.install, str(self)))


def _missing(package: str, extra: str, install: str, message: str) -> MissingDependency:
    error = MissingDependency(package, extra, "", install=install)
    error.args = (message,)
    return error
