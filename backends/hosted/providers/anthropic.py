"""Anthropic Messages through the official ``anthropic`` SDK (extra ``anthropic``).

System messages become the top-level ``system`` field; best-of-n makes n calls in parallel
(the Messages API returns one answer per call).
"""

from __future__ import annotations

import types
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import Field

from personalizer._boundary import Unchecked, public_api
from personalizer.errors import ProviderError
from personalizer.types import Message

from ..errors import sdk_error
from ..generator import HostedGenerator
from ..options import HostedOptions, ModelName
from ..provider import Finish, Reply, StreamState

__all__ = ["DEFAULT_MAX_TOKENS", "AnthropicGenerator", "AnthropicMessages"]

# The Messages API requires max_tokens; used when the caller does not set max_new_tokens.
DEFAULT_MAX_TOKENS = 1024

_FINISH: dict[str, Finish] = {"end_turn": "stop", "stop_sequence": "stop",
                              "max_tokens": "length", "refusal": "stop", "tool_use": "stop",
                              "pause_turn": "stop"}


@dataclass(frozen=True)
class AnthropicMessages:
    """The :class:`~personalizer.backends.hosted.Provider` of the Messages API
    (``max_tokens``: sent when the caller sets no ``max_new_tokens``)."""

    max_tokens: int = DEFAULT_MAX_TOKENS

    name = "Anthropic"
    sdk_module = "anthropic"
    api_key_env = "ANTHROPIC_API_KEY"
    client_attr = "messages"
    native_n = False
    lacks = types.MappingProxyType[str, str]({})

    def make_client(self, sdk: Any, settings: Mapping[str, Any], *, asynchronous: bool
                    ) -> Any:
        return (sdk.AsyncAnthropic if asynchronous else sdk.Anthropic)(**settings)

    def endpoint(self, client: Any) -> Callable[..., Any]:
        return client.messages.create  # type: ignore[no-any-return]

    def request(self, model: str, messages: list[Message], options: HostedOptions, n: int
                ) -> dict[str, Any]:
        system = "\n\n".join(m.content for m in messages if m.role == "system")
        turns: list[dict[str, Any]] = []
        for m in messages:
            if m.role == "system":
                continue
            if turns and turns[-1]["role"] == m.role:  # the API wants alternating turns
                turns[-1]["content"] += "\n\n" + m.content
            else:
                turns.append({"role": m.role, "content": m.content})
        given = options.given()
        req: dict[str, Any] = {"model": model, "messages": turns,
                               "max_tokens": given.pop("max_new_tokens", self.max_tokens)}
        if system:
            req["system"] = system
        if "stop" in given:
            req["stop_sequences"] = list(given.pop("stop"))
        req.update(given)
        return req

    def replies(self, response: Any) -> list[Reply]:
        text = "".join(getattr(b, "text", "") for b in response.content
                       if getattr(b, "type", None) == "text")
        usage = getattr(response, "usage", None)
        return [Reply(text=text, finish=_FINISH.get(response.stop_reason or ""),
                      prompt_tokens=getattr(usage, "input_tokens", None),
                      completion_tokens=getattr(usage, "output_tokens", None),
                      model=getattr(response, "model", None))]

    def stream_request(self, request: dict[str, Any]) -> dict[str, Any]:
        return {**request, "stream": True}

    def read_event(self, state: StreamState, event: Any) -> str | None:
        kind = getattr(event, "type", None)
        if kind == "message_start":
            state.model = getattr(event.message, "model", None)
            usage = getattr(event.message, "usage", None)
            state.prompt_tokens = getattr(usage, "input_tokens", None)
        elif kind == "content_block_delta" and getattr(event.delta, "type", "") == "text_delta":
            return event.delta.text  # type: ignore[no-any-return]
        elif kind == "message_delta":
            state.finish = _FINISH.get(event.delta.stop_reason or "")
            state.completion_tokens = getattr(event.usage, "output_tokens", None)
        return None

    def error(self, sdk: Any, exc: Exception) -> ProviderError:
        return sdk_error(self.name, sdk, exc)


@public_api
class AnthropicGenerator(HostedGenerator):
    """A Claude model behind the Anthropic Messages API.

    >>> gen = AnthropicGenerator("claude-sonnet-4-5")          # doctest: +SKIP

    The key comes from ``api_key=`` or ``$ANTHROPIC_API_KEY`` (held as a ``SecretStr``), or
    pass a ready ``client=`` (``anthropic.Anthropic``) and/or ``async_client=``. ``timeout``
    and ``max_retries`` go to the SDK, whose own retries are kept. Options:
    ``max_new_tokens`` (sent as the required ``max_tokens``; default
    :data:`DEFAULT_MAX_TOKENS`), ``temperature``, ``top_p``, ``top_k``, ``stop`` (as
    ``stop_sequences``). Only options you set are sent: newer models refuse ``temperature``
    together with ``top_p``, and some refuse sampling options entirely. The other arguments
    are :class:`~personalizer.backends.HostedGenerator`'s.
    """

    def __init__(self, model: ModelName, *,
                 max_tokens: Annotated[int, Field(ge=1, le=1_000_000)] = DEFAULT_MAX_TOKENS,
                 **kwargs: Unchecked[Any]) -> None:
        super().__init__(model, provider=AnthropicMessages(max_tokens=max_tokens), **kwargs)
