"""The I/O boundary of a hosted generator: its SDK clients, and each call through them.

A :class:`Connection` holds the caller's clients (used as given) or the settings to build
them on first use (the key as a ``SecretStr``; an async client per event loop), and makes one
call at a time with the SDK's errors converted by the provider (``Provider.error``; for the
built-in ones :func:`~.errors.sdk_error`). Request fields that this SDK version's method does
not name travel in ``extra_body`` (:func:`sdk_arguments`).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import os
import threading
import weakref
from collections.abc import Callable, Iterator
from typing import Any

from pydantic import SecretStr

from personalizer._optional import require
from personalizer.errors import InvalidInput, PersonalizerError, UnsupportedRequest

from .provider import Provider, Reply

__all__ = ["Connection", "sdk_arguments"]


def _secret(value: str | SecretStr | None, env: str) -> SecretStr | None:
    if value is None:
        value = os.environ.get(env) or None
    if value is None or isinstance(value, SecretStr):
        return value
    return SecretStr(value)


class Connection:
    """One generator's way to its provider (``owner``: the generator's name, in messages)."""

    def __init__(self, provider: Provider, owner: str, *, client: Any, async_client: Any,
                 api_key: str | SecretStr | None, base_url: str | None,
                 timeout: float | None, max_retries: int | None) -> None:
        if not (api_key is None or isinstance(api_key, SecretStr)
                or (isinstance(api_key, str) and 0 < len(api_key) <= 1000)):
            raise InvalidInput(f"{owner}: api_key must be a non-empty string or a SecretStr "
                               f"(got {type(api_key).__name__}; its value is not shown)")
        for what, value in (("client", client), ("async_client", async_client)):
            if value is not None and not hasattr(value, provider.client_attr):
                raise InvalidInput(f"{owner}: {what} must have .{provider.client_attr} (got "
                                   f"{type(value).__name__}); see {owner}'s docstring")
        self.provider, self.owner = provider, owner
        self._client, self._async_client = client, async_client
        self._given = (client is not None, async_client is not None)  # the caller's own
        self._loop_clients: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()
        self._lock = threading.Lock()
        self._api_key = _secret(api_key, provider.api_key_env)
        self.base_url, self._timeout, self._max_retries = base_url, timeout, max_retries
        if client is None and async_client is None and self._api_key is None \
                and base_url is None:
            raise InvalidInput(
                f"{owner} needs an API key: set {provider.api_key_env}, pass api_key=, or "
                "pass a ready client=")

    def sdk(self) -> Any:
        """The provider's SDK module (MissingDependency naming the extra when absent)."""
        module = self.provider.sdk_module
        return require(module, extra=module, feature=self.owner)

    def _settings(self) -> dict[str, Any]:
        kw: dict[str, Any] = {
            "api_key": self._api_key.get_secret_value() if self._api_key else "not-needed"}
        if self.base_url is not None:
            kw["base_url"] = self.base_url
        if self._timeout is not None:
            kw["timeout"] = self._timeout
        if self._max_retries is not None:
            kw["max_retries"] = self._max_retries
        return kw

    def _only_given(self, given: str, needed: str, methods: str) -> UnsupportedRequest:
        return UnsupportedRequest(
            f"{self.owner} was given only {given}=; pass {needed}= too for {methods} (a "
            "client built from yours could miss its settings: headers, proxies, auth)")

    @property
    def client(self) -> Any:
        """The caller's sync client, or one built from the settings."""
        with self._lock:
            if self._client is None:
                if self._given[1]:
                    raise self._only_given("async_client", "client", "generate and stream")
                self._client = self.provider.make_client(self.sdk(), self._settings(),
                                                         asynchronous=False)
            return self._client

    @property
    def async_client(self) -> Any:
        """The caller's async client, else one built for the running event loop (an async
        HTTP client's connections belong to the loop that opened them, and applications that
        call ``asyncio.run`` more than once run more than one loop)."""
        if self._async_client is not None:
            return self._async_client
        if self._given[0]:
            raise self._only_given("client", "async_client", "agenerate and astream")
        loop = asyncio.get_running_loop()
        with self._lock:
            client = self._loop_clients.get(loop)
            if client is None:
                client = self._loop_clients[loop] = self.provider.make_client(
                    self.sdk(), self._settings(), asynchronous=True)
        return client

    @contextlib.contextmanager
    def errors(self) -> Iterator[None]:
        """The SDK's errors as ours (the SDK's own retries have already run)."""
        sdk = self.sdk()
        try:
            yield
        except PersonalizerError:
            raise
        except Exception as exc:
            raise self.provider.error(sdk, exc) from exc

    def call(self, request: dict[str, Any]) -> Any:
        """The SDK's response to ``request`` (a stream, for a streaming request)."""
        with self.errors():
            endpoint = self.provider.endpoint(self.client)
            return endpoint(**sdk_arguments(endpoint, request))

    async def acall(self, request: dict[str, Any]) -> Any:
        """:meth:`call` with the async client."""
        with self.errors():
            endpoint = self.provider.endpoint(self.async_client)
            return await endpoint(**sdk_arguments(endpoint, request))

    def read(self, response: Any) -> list[Reply]:
        """The answers of one response (a reply that cannot be read is a ProviderError)."""
        with self.errors():
            return self.provider.replies(response)

    def ask(self, request: dict[str, Any]) -> list[Reply]:
        """One call, its answers read."""
        return self.read(self.call(request))

    async def aask(self, request: dict[str, Any]) -> list[Reply]:
        """:meth:`ask` with the async client."""
        return self.read(await self.acall(request))


def sdk_arguments(endpoint: Callable[..., Any], request: dict[str, Any]) -> dict[str, Any]:
    """``request`` as keyword arguments of the SDK's method: fields that this SDK version's
    method does not name (some releases dropped sampling parameters that older models still
    take) travel in ``extra_body``, exactly as given."""
    try:
        known = _parameters(endpoint)
    except (TypeError, ValueError):  # no signature: send everything as named arguments
        return request
    if known is None:  # it takes any keyword: the request as it is
        return request
    extra = {k: v for k, v in request.items() if k not in known}
    if not extra:
        return request
    return {k: v for k, v in request.items() if k in known} | {"extra_body": extra}


@functools.lru_cache(maxsize=32)
def _parameters_of(func: Callable[..., Any]) -> frozenset[str] | None:
    """The keyword parameters ``func`` names; None when it takes any (``**kwargs``)."""
    parameters = inspect.signature(func).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return None
    return frozenset(parameters)


def _parameters(endpoint: Callable[..., Any]) -> frozenset[str] | None:
    return _parameters_of(getattr(endpoint, "__func__", endpoint))
