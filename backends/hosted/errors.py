"""A provider SDK's errors as ours, converted at the boundary (the SDK's own retries have run).

The openai and anthropic SDKs share one exception shape (``APIError`` with a status code,
``APITimeoutError``, ``APIConnectionError``); :func:`sdk_error` maps it into the
:class:`~personalizer.errors.ProviderError` tree, and anything else raised while talking to
a provider (a transport error the SDK did not wrap, a reply we cannot read) is a
``ProviderError`` too. :func:`without_credentials` keeps a ``base_url``'s user and password
out of reprs. Imports nothing of ours but the error tree.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Mapping
from typing import Any

from personalizer.errors import (
    ProviderAuthFailed,
    ProviderBadRequest,
    ProviderError,
    ProviderRateLimited,
    ProviderServerError,
    ProviderTimeout,
    ProviderUnavailable,
)

__all__ = ["provider_error", "sdk_error", "unexpected", "without_credentials"]


def sdk_error(provider: str, sdk: Any, exc: Exception) -> ProviderError:
    """Anything an openai- or anthropic-shaped SDK raised, as a :class:`ProviderError`."""
    if isinstance(exc, sdk.APIError):
        return provider_error(provider, sdk, exc)
    return unexpected(provider, sdk, exc)


def provider_error(provider: str, sdk: Any, exc: Exception) -> ProviderError:
    """An SDK exception (openai and anthropic share the shape) as a :class:`ProviderError`."""
    if isinstance(exc, sdk.APITimeoutError):
        return ProviderTimeout(provider, "the request timed out")
    if isinstance(exc, sdk.APIConnectionError):
        return ProviderUnavailable(provider, f"could not connect ({exc})")
    status = getattr(exc, "status_code", None)
    message = _provider_message(exc)
    kind: type[ProviderError] = ProviderError
    if status in (401, 403):
        kind = ProviderAuthFailed
    elif status == 429:
        kind = ProviderRateLimited
    elif status == 408:
        kind = ProviderTimeout
    elif status in (400, 404, 409, 413, 422):
        kind = ProviderBadRequest
    elif status is not None and status >= 500:
        kind = ProviderServerError
    return kind(provider, message, status_code=status)


def unexpected(provider: str, sdk: Any, exc: Exception) -> ProviderError:
    """Anything else raised while talking to a provider: a transport error the SDK did not
    wrap (a stream cut mid-way), the SDK refusing its settings, a reply we cannot read."""
    kind = type(exc).__name__
    module = type(exc).__module__.split(".")[0]
    if module in ("httpx", "httpx2", "httpcore", "h11", "h2", "anyio"):
        if "Timeout" in kind:
            return ProviderTimeout(provider, f"the request timed out ({kind})")
        return ProviderUnavailable(provider, f"the connection failed ({kind}: {exc})")
    base = getattr(sdk, "OpenAIError", None) or getattr(sdk, "AnthropicError", None)
    if base is not None and isinstance(exc, base):
        return ProviderError(provider, f"{kind}: {exc}")
    if isinstance(exc, (AttributeError, TypeError, KeyError, IndexError, ValueError)):
        return ProviderError(provider, f"the reply could not be read ({kind}: {exc}); is "
                                       "base_url a server that speaks this API?")
    return ProviderError(provider, f"{kind}: {exc}")


def without_credentials(url: str) -> str:
    """``url`` without a user name or password."""
    parts = urllib.parse.urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = host + (f":{parts.port}" if parts.port else "")
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


def _provider_message(exc: Exception) -> str:
    body = getattr(exc, "body", None)
    if isinstance(body, Mapping):
        inner = body.get("error", body)
        if isinstance(inner, Mapping) and isinstance(inner.get("message"), str):
            return inner["message"]
    return str(getattr(exc, "message", None) or exc)
