"""OpenAI Chat Completions through the official ``openai`` SDK (extra ``openai``).

``base_url=`` makes it any OpenAI-compatible server: vLLM, llama.cpp's server, Ollama, hosted
gateways. Best-of-n asks for ``n`` candidates in one call; a server that ignores ``n`` gets one
call per missing candidate.
"""

from __future__ import annotations

import types
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from personalizer._boundary import Unchecked, public_api
from personalizer.errors import ProviderError
from personalizer.types import Message

from ..connection import sdk_arguments
from ..errors import sdk_error
from ..generator import HostedGenerator
from ..options import HostedOptions, ModelName
from ..provider import Finish, Reply, StreamState

__all__ = ["OpenAIChat", "OpenAIGenerator"]

_FINISH: dict[str, Finish] = {"stop": "stop", "length": "length", "content_filter": "stop",
                              "tool_calls": "stop"}


@dataclass(frozen=True)
class OpenAIChat:
    """The :class:`~personalizer.backends.hosted.Provider` of the Chat Completions API
    (options: see :class:`OpenAIGenerator`)."""

    token_parameter: Literal["max_completion_tokens", "max_tokens"] = "max_completion_tokens"
    system_role: Literal["system", "developer"] = "system"
    stream_usage: bool = True

    name = "OpenAI"
    sdk_module = "openai"
    api_key_env = "OPENAI_API_KEY"
    client_attr = "chat"
    native_n = True
    lacks = types.MappingProxyType(
        {"top_k": "the OpenAI API has no top_k; use top_p or temperature"})

    def make_client(self, sdk: Any, settings: Mapping[str, Any], *, asynchronous: bool
                    ) -> Any:
        return (sdk.AsyncOpenAI if asynchronous else sdk.OpenAI)(**settings)

    def endpoint(self, client: Any) -> Callable[..., Any]:
        return _Call(client).__call__

    def request(self, model: str, messages: list[Message], options: HostedOptions, n: int
                ) -> dict[str, Any]:
        req: dict[str, Any] = {
            "model": model,
            "messages": [{"role": self.system_role if m.role == "system" else m.role,
                          "content": m.content} for m in messages]}
        given = options.given()
        if "max_new_tokens" in given:
            req[self.token_parameter] = given.pop("max_new_tokens")
        if "stop" in given:
            req["stop"] = list(given.pop("stop"))
        req.update(given)
        if n > 1:
            req["n"] = n
        return req

    def replies(self, response: Any) -> list[Reply]:
        """The answers of one reply, as the server sent it (JSON, see :class:`_Call`)."""
        usage = response.get("usage") or {}
        prompt = usage.get("prompt_tokens")
        completion = usage.get("completion_tokens")
        return [Reply(text=(choice.get("message") or {}).get("content") or "",
                      finish=_FINISH.get(choice.get("finish_reason") or ""),
                      prompt_tokens=prompt,
                      # usage covers every choice of the call: count it once
                      completion_tokens=(completion if i == 0 else 0)
                      if completion is not None else None,
                      model=response.get("model"))
                for i, choice in enumerate(response.get("choices") or [])]

    def stream_request(self, request: dict[str, Any]) -> dict[str, Any]:
        req = {**request, "stream": True}
        if self.stream_usage:
            req["stream_options"] = {"include_usage": True}
        return req

    def read_event(self, state: StreamState, event: Any) -> str | None:
        state.model = getattr(event, "model", None) or state.model
        usage = getattr(event, "usage", None)
        if usage is not None:
            state.prompt_tokens = usage.prompt_tokens
            state.completion_tokens = usage.completion_tokens
        piece = None
        for choice in event.choices or []:
            if choice.index != 0:
                continue
            if choice.delta is not None and choice.delta.content:
                piece = choice.delta.content
            if choice.finish_reason:
                state.finish = _FINISH.get(choice.finish_reason)
        return piece

    def error(self, sdk: Any, exc: Exception) -> ProviderError:
        return sdk_error(self.name, sdk, exc)


class _Call:
    """One Chat Completions request on ``client`` (sync or async alike). A stream goes
    through the SDK's typed method (its events are read one by one); an answer is asked
    for with ``client.post`` and read as the JSON the server sent: the SDK's documented way
    to make a raw request, with the same retries, errors and authentication, without
    building its response models, which cost about as much CPU as the rest of a
    personalized call (bench/gateway.py)."""

    def __init__(self, client: Any) -> None:
        self.client = client

    def __call__(self, **request: Any) -> Any:
        if request.get("stream"):
            create = self.client.chat.completions.create
            return create(**sdk_arguments(create, request))
        return self.client.post("/chat/completions", body=request, cast_to=object)


@public_api
class OpenAIGenerator(HostedGenerator):
    """A chat model behind the OpenAI Chat Completions API.

    >>> gen = OpenAIGenerator("gpt-4o-mini")                  # doctest: +SKIP
    >>> local = OpenAIGenerator("llama3", base_url="http://localhost:11434/v1",
    ...                         api_key="unused")             # doctest: +SKIP

    The key comes from ``api_key=`` or ``$OPENAI_API_KEY`` (held as a ``SecretStr``), or pass
    a ready ``client=`` (``openai.OpenAI``) and/or ``async_client=``. ``timeout`` and
    ``max_retries`` go to the SDK, whose own retries (with back-off, honouring
    ``retry-after``) are kept. ``max_new_tokens`` is sent as ``max_completion_tokens``
    (``token_parameter="max_tokens"`` for servers that only know the older name).
    ``system_role="developer"`` sends the system prompt as a developer message (reasoning
    models). ``stream_usage=False`` stops asking a server for usage in streams (for servers
    that refuse ``stream_options``). Options: ``max_new_tokens``, ``temperature``, ``top_p``,
    ``stop``; OpenAI has no ``top_k``. The other arguments are
    :class:`~personalizer.backends.HostedGenerator`'s.
    """

    def __init__(self, model: ModelName, *,
                 token_parameter: Literal["max_completion_tokens", "max_tokens"] =
                 "max_completion_tokens",
                 system_role: Literal["system", "developer"] = "system",
                 stream_usage: bool = True, **kwargs: Unchecked[Any]) -> None:
        super().__init__(model, provider=OpenAIChat(
            token_parameter=token_parameter, system_role=system_role,
            stream_usage=stream_usage), **kwargs)
