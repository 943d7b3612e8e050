"""Errors as the OpenAI API shapes them: ``{"error": {"message", "type", "code", "param"}}``
with the HTTP status that says what happened, mapped from the
:class:`~personalizer.errors.PersonalizerError` tree (and from the upstream provider's
errors, which arrive as its :class:`~personalizer.errors.ProviderError` subclasses).

Messages are our own words: never a stack trace; an upstream provider's message is cut
short. Pure: no web framework.
"""

from __future__ import annotations

from typing import Any

from personalizer import errors as e

__all__ = ["Problem", "problem_of"]

_UPSTREAM_CHARS = 300


class Problem(Exception):
    """An error reply: status, OpenAI error type and code, the message, the parameter it
    is about (if any) and extra headers (``Retry-After``)."""

    def __init__(self, status: int, type: str, code: str, message: str, *,
                 param: str | None = None, headers: tuple[tuple[str, str], ...] = ()) -> None:
        super().__init__(message)
        self.status, self.type, self.code, self.message = status, type, code, message
        self.param, self.headers = param, headers

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "code": self.code,
                          "param": self.param}}


# most specific first: the first class an error is an instance of decides
_MAP: tuple[tuple[type[BaseException], int, str, str], ...] = (
    (e.InvalidUserId, 400, "invalid_request_error", "invalid_user"),
    (e.UnsupportedSchemaVersion, 400, "invalid_request_error", "unsupported_schema_version"),
    (e.InvalidProfileData, 400, "invalid_request_error", "invalid_profile_data"),
    (e.RewardSetMismatch, 409, "invalid_request_error", "reward_set_mismatch"),
    (e.InvalidInput, 400, "invalid_request_error", "invalid_request"),
    (e.ProfileNotFound, 404, "invalid_request_error", "profile_not_found"),
    (e.ProfileExists, 409, "invalid_request_error", "profile_exists"),
    (e.VersionConflict, 409, "invalid_request_error", "version_conflict"),
    (e.StoreBusy, 503, "server_error", "store_busy"),
    (e.StoreUnavailable, 503, "server_error", "store_unavailable"),
    (e.StoreError, 500, "server_error", "store_error"),
    (e.UnsupportedRequest, 400, "invalid_request_error", "unsupported_parameter"),
    (e.ProviderRateLimited, 429, "requests", "upstream_rate_limited"),
    (e.ProviderAuthFailed, 502, "server_error", "upstream_auth_failed"),
    (e.ProviderTimeout, 504, "server_error", "upstream_timeout"),
    (e.ProviderBadRequest, 400, "invalid_request_error", "upstream_bad_request"),
    (e.ProviderServerError, 503, "server_error", "upstream_unavailable"),
    (e.ProviderUnavailable, 503, "server_error", "upstream_unavailable"),
    (e.ProviderError, 502, "server_error", "upstream_error"),
    (e.MissingDependency, 500, "server_error", "missing_dependency"),
    (e.BackendError, 500, "server_error", "backend_error"),
)


def _message(exc: BaseException, status: int) -> str:
    """What the client is told: our own words; the upstream's only where they are about the
    client's request (a refusal as sent, a rate limit), cut short. Failures of the gateway
    or its upstream (the upstream's key refused, a model it does not know, no connection)
    are the operator's to fix: the log has them, the client gets a fixed sentence."""
    if isinstance(exc, e.InvalidUserId):  # the id may be a name: not repeated
        return ("the user id is not valid: use 1-128 characters of A-Z a-z 0-9 . _ @ + : - "
                "starting with a letter or digit (hash external ids, for example with "
                "HMAC-SHA256, rather than sending names)")
    if isinstance(exc, e.ProviderError):
        if status in (400, 429):
            said = exc.provider_message
            said = said if len(said) <= _UPSTREAM_CHARS else said[:_UPSTREAM_CHARS] + "..."
            return f"the upstream model refused the request: {said}"
        return {502: "the upstream model could not be used (the gateway's log says why)",
                503: "the upstream model is unavailable or overloaded; try again shortly",
                504: "the upstream model did not answer in time; try again, or ask for fewer "
                     "tokens"}.get(status, "the upstream model failed")
    if isinstance(exc, e.StoreError) and status == 500:
        return "the profile store failed; nothing was changed (the server's log has the details)"
    if isinstance(exc, e.BackendError) and status == 500:
        return "the model failed to answer (the server's log has the details)"
    return str(exc)


def problem_of(exc: BaseException) -> Problem:
    """The reply for an exception raised while serving a request: ours by class, anything
    else an opaque 500 (logged by the caller, not shown)."""
    if isinstance(exc, Problem):
        return exc
    for cls, status, kind, code in _MAP:
        if isinstance(exc, cls):
            if isinstance(exc, e.ProviderBadRequest) and exc.status_code == 404:
                status, kind, code = 502, "server_error", "upstream_not_found"
            headers = (("Retry-After", "1"),) if status in (429, 503) else ()
            return Problem(status, kind, code, _message(exc, status), headers=headers)
    return Problem(500, "server_error", "internal_error",
                   "the gateway failed to serve this request (the server's log has the "
                   "details)")
