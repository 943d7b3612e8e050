"""What a hosted provider is: a small adapter between the sans-I/O core and one vendor SDK.

A :class:`Provider` turns messages and options into the SDK's request, the SDK's reply into
:class:`Reply` objects, one stream event into a text piece (filling a :class:`StreamState`),
builds the SDK's clients and maps its errors. It holds no connection and does no I/O itself:
:class:`~personalizer.backends.hosted.connection.Connection` calls the SDK, and the drivers
run the plan (:mod:`~personalizer.backends.hosted.core`). Adding a provider is one module in
``providers/`` and a thin generator class binding it (see ``providers/openai.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol, runtime_checkable

from personalizer.errors import ProviderError
from personalizer.types import Message

from .options import HostedOptions

__all__ = ["Finish", "Provider", "Reply", "StreamState"]

Finish = Literal["stop", "length"]


@dataclass(frozen=True)
class Reply:
    """One candidate answer as the provider returned it."""

    text: str
    finish: Finish | None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    model: str | None = None


@dataclass
class StreamState:
    """What a stream said besides its text; filled in by the provider's event reader."""

    finish: Finish | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    model: str | None = None


@runtime_checkable
class Provider(Protocol):
    """One vendor's chat API, as data and pure conversions.

    ``name`` names the provider in errors; ``sdk_module`` is the SDK to import (and the extra
    that installs it); ``api_key_env`` the environment variable of its key; ``client_attr``
    what a ready client of its SDK has; ``native_n``: one call can return n candidates;
    ``lacks``: generation options it cannot take, each with what to do instead.
    """

    name: str
    sdk_module: str
    api_key_env: str
    client_attr: str
    native_n: bool
    lacks: Mapping[str, str]

    def make_client(self, sdk: Any, settings: Mapping[str, Any], *, asynchronous: bool
                    ) -> Any:
        """A client of ``sdk`` (the imported SDK module) built from ``settings``
        (``api_key``, and ``base_url``, ``timeout``, ``max_retries`` when set)."""
        ...

    def endpoint(self, client: Any) -> Callable[..., Any]:
        """The client's method that takes a request (sync or async client alike)."""
        ...

    def request(self, model: str, messages: list[Message], options: HostedOptions, n: int
                ) -> dict[str, Any]:
        """The request's keyword arguments for ``n`` answers (n > 1 only when native_n)."""
        ...

    def replies(self, response: Any) -> list[Reply]:
        """The answers of one response."""
        ...

    def stream_request(self, request: dict[str, Any]) -> dict[str, Any]:
        """``request`` (from :meth:`request`, n=1) as a streaming request."""
        ...

    def read_event(self, state: StreamState, event: Any) -> str | None:
        """Read one stream event into ``state``; the text piece it carries, if any."""
        ...

    def error(self, sdk: Any, exc: Exception) -> ProviderError:
        """An exception raised while talking to the provider as a ProviderError."""
        ...
