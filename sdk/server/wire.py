"""The OpenAI Chat Completions wire format, as the gateway reads and writes it.

:class:`ChatRequest` is a request body; :func:`chat_options` turns its sampling fields into
the generator's options (what a local model and a hosted one can take differ);
:func:`completion` and the ``chunk`` helpers build the reply and the stream's events. Pure:
no web framework, no I/O.
"""

from __future__ import annotations

import time
import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from personalizer.errors import InvalidInput, UnsupportedRequest
from personalizer.types import Generation, Message

__all__ = ["ChatRequest", "Extension", "SUPPORTED", "chat_options", "chunk", "completion",
           "messages_of", "new_id"]

# Fields of the OpenAI API this gateway does not honour, with what to do instead.
_UNSUPPORTED = {
    "tools": "tool calls are not supported; answer with plain text",
    "tool_choice": "tool calls are not supported",
    "functions": "function calls are not supported",
    "function_call": "function calls are not supported",
    "response_format": "only plain text answers are supported; leave response_format out",
    "logprobs": "log probabilities are not returned",
    "top_logprobs": "log probabilities are not returned",
    "logit_bias": "logit_bias is not supported",
    "audio": "audio is not supported",
    "modalities": "only text is supported",
    "prediction": "predicted outputs are not supported",
    "parallel_tool_calls": "tool calls are not supported",
    "presence_penalty": "presence_penalty is not supported (local models guard against "
                        "repetition on their own)",
    "frequency_penalty": "frequency_penalty is not supported (local models guard against "
                         "repetition on their own)",
}
# What the gateway takes (named in every refusal).
SUPPORTED = ("model", "messages", "user", "stream", "stream_options", "max_tokens",
             "max_completion_tokens", "temperature", "top_p", "stop", "seed", "n", "metadata",
             "store", "service_tier", "prompt_cache_key", "safety_identifier", "personalizer")


class Extension(BaseModel):
    """The request's ``personalizer`` object (``extra_body={"personalizer": {...}}`` in the
    official SDK): the steering knobs of :meth:`Personalizer.generate`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    strength: float | None = Field(default=None, ge=0, le=1000)
    strategy: str | dict[str, Any] | None = None
    prompt_profile: bool | None = None


class StreamOptions(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    include_usage: bool = False


class ChatRequest(BaseModel):
    """A ``POST /v1/chat/completions`` body (fields outside :data:`SUPPORTED` are refused
    with what works; ``metadata``, ``store``, ``service_tier``, ``prompt_cache_key`` and
    ``safety_identifier`` are accepted and ignored: they are about OpenAI's own service)."""

    model_config = ConfigDict(frozen=True, extra="allow")

    model: str = Field(min_length=1, max_length=256)
    messages: list[dict[str, Any]] = Field(min_length=1)
    user: str | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    stop: str | list[str] | None = None
    seed: int | None = None
    n: int | None = Field(default=None, ge=1, le=128)
    metadata: dict[str, Any] | None = None
    store: bool | None = None
    service_tier: str | None = None
    prompt_cache_key: str | None = None
    safety_identifier: str | None = None
    personalizer: Extension | None = None

    @field_validator("max_tokens", "max_completion_tokens", "temperature", "top_p", "seed",
                     "n", mode="before")
    @classmethod
    def _not_bool(cls, value: Any) -> Any:
        if isinstance(value, bool):
            raise ValueError("should be a number, not true or false")
        return value

    def refuse_unsupported(self) -> None:
        """UnsupportedRequest for a field the gateway does not honour (a null or false one
        is what not giving it means, and passes)."""
        for name, value in (self.model_extra or {}).items():
            if value in (None, False, [], {}) or name in ("tool_choice",) and value == "none":
                continue
            reason = _UNSUPPORTED.get(name, "this gateway does not know it")
            raise UnsupportedRequest(f"unsupported parameter {name!r}: {reason} "
                                     f"(parameters it takes: {', '.join(SUPPORTED)})")
        if self.n not in (None, 1):
            raise UnsupportedRequest(
                "unsupported parameter 'n': the gateway returns one choice per request; send "
                "n requests (for several candidates ranked by the person's taste, ask for "
                "{\"personalizer\": {\"strategy\": \"best_of_n\"}})")


def messages_of(request: ChatRequest) -> list[Message]:
    """The chat as our messages: ``developer`` turns count as ``system``, content may be
    text or a list of text parts; images, audio and tool turns are refused."""
    out: list[Message] = []
    for i, m in enumerate(request.messages):
        role = m.get("role")
        role = "system" if role == "developer" else role
        if role not in ("system", "user", "assistant"):
            raise InvalidInput(f"messages[{i}].role must be system, developer, user or "
                               "assistant (tool turns are not supported)")
        out.append(Message(role=role, content=_text(m.get("content"), i)))
    return out


def _text(content: Any, i: int) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if not (isinstance(part, dict) and part.get("type") == "text"
                    and isinstance(part.get("text"), str)):
                raise InvalidInput(f"messages[{i}].content: only text parts are supported "
                                   "({\"type\": \"text\", \"text\": \"...\"})")
            parts.append(part["text"])
        return "".join(parts)
    if content is None:
        return ""
    raise InvalidInput(f"messages[{i}].content must be a string or a list of text parts")


def chat_options(request: ChatRequest, *, steerable: bool) -> dict[str, Any]:
    """The generator's options from the request's sampling fields. A local (steerable)
    model decodes greedily unless sampling is asked: ``temperature`` 0 is its greedy
    answer, above 0 samples at that temperature; a hosted one takes them as they are."""
    options: dict[str, Any] = {}
    limit = request.max_completion_tokens or request.max_tokens
    if limit is not None:
        options["max_new_tokens"] = limit
    if request.stop:
        options["stop"] = request.stop
    if request.top_p is not None:
        options["top_p"] = request.top_p
    if request.seed is not None:
        options["seed"] = request.seed
    if request.temperature is not None:
        if not steerable:
            options["temperature"] = request.temperature
        elif request.temperature > 0:
            options |= {"do_sample": True, "temperature": request.temperature}
        else:
            options["do_sample"] = False
    if steerable and "top_p" in options and "do_sample" not in options:
        options["do_sample"] = True  # nucleus sampling asked: sample
    return options


def new_id() -> str:
    return "chatcmpl-" + uuid.uuid4().hex


def _usage(out: Generation) -> dict[str, int] | None:
    if out.completion_tokens is None:
        return None
    prompt = out.prompt_tokens or 0
    return {"prompt_tokens": prompt, "completion_tokens": out.completion_tokens,
            "total_tokens": prompt + out.completion_tokens}


def extension(out: Generation | None, user: str | None, detail: bool) -> dict[str, Any]:
    """The reply's ``personalizer`` object: the generation id (for feedback), whether the
    answer was personalized (and why not); with ``detail`` (a key that may read profiles)
    also why, in words, and the steering record, which show the person's weights."""
    record = out.steering if out is not None else None
    personalized = user is not None and record is not None and not record.new_user and \
        (record.path != "plain" or bool(record.levers))
    data: dict[str, Any] = {"generation_id": out.id if out is not None else None,
                            "personalized": personalized}
    if user is None:
        data["hint"] = "no user was named (the request's user field or X-Personalizer-User)"
    elif record is not None and record.new_user:
        data["hint"] = ("this person has told the app nothing yet, so the answer is not "
                        "personalized; a few onboarding questions (GET and POST "
                        "/v1/profiles/{user}/onboarding) or their choices (POST "
                        "/v1/profiles/{user}/preferences) would let it be")
    elif record is not None and record.hint:
        data["hint"] = record.hint
    if record is not None and detail:
        data["why"] = record.why()
        data["steering"] = record.model_dump(mode="json")
    return data


def completion(out: Generation, *, model: str, user: str | None, ident: str,
               created: int | None = None, detail: bool = True) -> dict[str, Any]:
    """A ``chat.completion`` object for ``out``."""
    return {"id": ident, "object": "chat.completion", "created": created or int(time.time()),
            "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": out.text},
                         "finish_reason": out.finish_reason or "stop", "logprobs": None}],
            "usage": _usage(out), "personalizer": extension(out, user, detail)}


def chunk(*, ident: str, model: str, created: int, delta: dict[str, Any] | None = None,
          finish: Literal["stop", "length"] | None = None, done: Generation | None = None,
          user: str | None = None, usage: bool = False, detail: bool = True
          ) -> dict[str, Any]:
    """One ``chat.completion.chunk``: a delta, the last one (``finish`` and, with ``done``,
    the ``personalizer`` object), or the usage chunk (``usage=True``: no choices)."""
    body: dict[str, Any] = {"id": ident, "object": "chat.completion.chunk", "created": created,
                            "model": model}
    if usage:
        return body | {"choices": [], "usage": _usage(done) if done is not None else None}
    body["choices"] = [{"index": 0, "delta": delta or {}, "finish_reason": finish,
                        "logprobs": None}]
    if finish is not None:
        body["personalizer"] = extension(done, user, detail)
    return body
