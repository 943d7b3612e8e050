"""``/v1/chat/completions`` and ``/v1/models``: the OpenAI surface of the gateway.

The person is the request's ``user`` field (or the ``X-Personalizer-User`` header); their
answer comes from :meth:`Personalizer.agenerate` / :meth:`Personalizer.astream`, so a
newcomer gets a plain answer marked ``personalized: false`` and a known person's profile
steers it. With no user the generator answers plainly. A stream is started before the
reply's headers go out, so a refused request gets its error status, not a broken stream.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any

import anyio
from fastapi import APIRouter, Depends, Header
from fastapi.responses import JSONResponse, StreamingResponse

from personalizer.answering import as_generator
from personalizer.profiles import validate_user_id
from personalizer.seams import SteerableGenerator
from personalizer.streams import AsyncStream

from .guards import need
from .keys import ApiKeys, allows
from .problems import Problem, problem_of
from .wire import ChatRequest, chat_options, chunk, completion, messages_of, new_id

__all__ = ["chat_router"]

log = logging.getLogger("personalizer.server")


def chat_router(personalizer: Any, model: str, keys: ApiKeys | None,
                max_concurrent: int | None = None) -> APIRouter:
    """The routes of the OpenAI surface for ``personalizer``, serving ``model``; at most
    ``max_concurrent`` answers at once (more: 503 with ``Retry-After``)."""
    router = APIRouter()
    chat_key = need(keys, "chat")
    p = personalizer
    slots = asyncio.Semaphore(max_concurrent) if max_concurrent else None
    seen: list[Any] = [None, None, False]  # the facade's generator, as a Generator, steerable

    def answerer() -> tuple[Any, bool]:
        """The generator as a Generator and whether it steers (a runtime protocol check is
        slow: done again only when the facade's generator was replaced)."""
        if seen[0] is not p.generator:
            generator = as_generator(p.generator)
            seen[:] = [p.generator, generator, isinstance(generator, SteerableGenerator)]
        return seen[1], seen[2]

    def model_card() -> dict[str, Any]:
        return {"id": model, "object": "model", "created": 0, "owned_by": "personalizer"}

    @router.get("/v1/models", tags=["openai"], dependencies=[Depends(chat_key)])
    async def models() -> dict[str, Any]:
        """The model this gateway serves."""
        return {"object": "list", "data": [model_card()] if p.generator is not None else []}

    @router.get("/v1/models/{name:path}", tags=["openai"], dependencies=[Depends(chat_key)])
    async def one_model(name: str) -> dict[str, Any]:
        if name != model or p.generator is None:
            raise _no_model(name)
        return model_card()

    @router.post("/v1/chat/completions", tags=["openai"], response_model=None)
    async def chat(request: ChatRequest,
                   x_personalizer_user: Annotated[str | None, Header()] = None,
                   # a default, not Annotated: this module's annotations are strings, and
                   # FastAPI resolves them in the module's globals, where chat_key is not
                   scopes: frozenset[str] = Depends(chat_key),
                   ) -> JSONResponse | StreamingResponse:
        """A chat completion, personalized for the person named by ``user``. The reply's
        ``personalizer`` object shows the person's weights (``why``, ``steering``) only to
        a key that may read profiles."""
        if slots is not None and slots.locked():
            raise Problem(503, "server_error", "overloaded",
                          f"the gateway is answering {max_concurrent} requests already "
                          "(server_max_concurrent); try again shortly",
                          headers=(("Retry-After", "1"),))
        slot = await _Slot.take(slots)
        try:
            response = await answer(request, x_personalizer_user,
                                    allows(scopes, "profiles:read"), slot)
        except BaseException:
            slot.release()
            raise
        if not isinstance(response, StreamingResponse):
            slot.release()  # a stream releases it once written
        return response

    async def answer(request: ChatRequest, header_user: str | None, detail: bool,
                     slot: _Slot) -> JSONResponse | StreamingResponse:
        if request.model != model or p.generator is None:
            raise _no_model(request.model)
        request.refuse_unsupported()
        user = _user(request.user, header_user)
        generator, steerable = answerer()
        options = chat_options(request, steerable=steerable)
        messages = messages_of(request)
        ext = request.personalizer
        knobs = {} if ext is None else ext.model_dump(exclude_none=True)
        if user is None and knobs:
            raise Problem(400, "invalid_request_error", "invalid_request",
                          "personalizer options need a person: set the request's user field",
                          param="personalizer")
        if user is None:  # the facade checks a person's request itself
            p.limits.check("chat", [(f"messages[{i}].content", m.content)
                                    for i, m in enumerate(messages)])
        ident, created = new_id(), int(time.time())
        if not request.stream:
            if user is None:
                out = await generator.agenerate(messages, steering=None, **options)
            else:
                out = await p.agenerate(user, messages, **knobs, **options)
            return JSONResponse(completion(out, model=model, user=user, ident=ident,
                                           created=created, detail=detail))
        if user is None:
            # started in a worker thread: a local model plans (tokenizes) as it starts
            stream = await asyncio.to_thread(generator.astream, messages, steering=None,
                                             **options)
        else:
            stream = p.astream(user, messages, **knobs, **options)
        usage = request.stream_options is not None and request.stream_options.include_usage
        pieces = aiter(stream)
        try:  # started here: a refused request is an error reply, not a broken stream
            first = await anext(pieces)
        except StopAsyncIteration:
            first = None
        events = _events(stream, pieces, first, ident=ident, model=model, created=created,
                         user=user, usage=usage, detail=detail)
        return _EventStream(events, stream, slot)

    return router


async def _events(stream: AsyncStream, pieces: AsyncIterator[str], first: str | None, *,
                  ident: str, model: str, created: int, user: str | None, usage: bool,
                  detail: bool) -> AsyncIterator[str]:
    """The stream's server-sent events in OpenAI's chunk format, ``[DONE]`` last; a failure
    midway is an ``error`` event (the official SDKs raise it) and no ``[DONE]``. The reply
    (:class:`_EventStream`) closes the stream and gives the place back."""
    head = {"ident": ident, "model": model, "created": created}
    try:
        yield _event(chunk(**head, delta={"role": "assistant", "content": ""}))
        if first is not None:
            if first:
                yield _event(chunk(**head, delta={"content": first}))
            async for piece in pieces:
                if piece:
                    yield _event(chunk(**head, delta={"content": piece}))
        done = stream.generation
        finish = (done.finish_reason if done is not None else None) or "stop"
        yield _event(chunk(**head, finish=finish, done=done, user=user, detail=detail))
        if usage:
            yield _event(chunk(**head, done=done, usage=True))
        yield "data: [DONE]\n\n"
    except Exception as exc:  # the reply has started: say it in the stream
        problem = problem_of(exc)
        if problem.status >= 500:
            log.error("stream failed: %s", type(exc).__name__, exc_info=exc)
        yield _event(problem.body())


class _EventStream(StreamingResponse):
    """The events as a server-sent-event reply that, however it ends (written, the client
    gone before it started or midway), closes the answer's stream and gives its
    concurrency place back."""

    def __init__(self, events: AsyncIterator[str], stream: AsyncStream, slot: _Slot) -> None:
        super().__init__(events, media_type="text/event-stream",
                         headers={"Cache-Control": "no-cache"})
        self._events, self._stream, self._slot = events, stream, slot

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            with anyio.CancelScope(shield=True):
                await self._events.aclose()  # type: ignore[attr-defined]
                await self._stream.aclose()
            self._slot.release()


class _Slot:
    """One answer's place among ``server_max_concurrent``, released once (none: no
    limit)."""

    def __init__(self, slots: asyncio.Semaphore | None) -> None:
        self._slots = slots

    @classmethod
    async def take(cls, slots: asyncio.Semaphore | None) -> _Slot:
        if slots is not None:
            await slots.acquire()
        return cls(slots)

    def release(self) -> None:
        if self._slots is not None:
            self._slots, slots = None, self._slots
            slots.release()


def _event(data: dict[str, Any]) -> str:
    return f"data: {json.dumps(data, separators=(',', ':'))}\n\n"


def _user(field: str | None, header: str | None) -> str | None:
    if field is not None and header is not None and field != header:
        raise Problem(400, "invalid_request_error", "invalid_user",
                      "the user field and the X-Personalizer-User header name different "
                      "people; send one of them", param="user")
    user = field if field is not None else header
    return None if user is None else validate_user_id(user)


def _no_model(name: str) -> Problem:
    shown = name if len(name) <= 100 else name[:100] + "..."
    return Problem(404, "invalid_request_error", "model_not_found",
                   f"the model {shown!r} is not served here; GET /v1/models lists the one "
                   "that is", param="model")
