"""``/v1/chat/completions`` and ``/v1/models``: the OpenAI surface of the gateway.

The person is the request's ``user`` field (or the ``X-Personalizer-User`` header); their
answer comes from :meth:`Personalizer.agenerate` / :meth:`Personalizer.astream`, so a
newcomer gets a plain answer marked ``personalized: false`` and a known person's profile
steers it. With no user the generator answers plainly. A stream is started before the
reply's headers go out, so a refused request gets its error status, not a broken stream.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Depends, Header
from fastapi.responses import JSONResponse, StreamingResponse

from personalizer.answering import as_generator
from personalizer.profiles import validate_user_id
from personalizer.seams import SteerableGenerator
from personalizer.streams import AsyncStream

from .guards import need
from .keys import ApiKeys
from .problems import Problem, problem_of
from .wire import ChatRequest, chat_options, chunk, completion, messages_of, new_id

__all__ = ["chat_router"]

log = logging.getLogger("personalizer.server")


def chat_router(personalizer: Any, model: str, keys: ApiKeys | None) -> APIRouter:
    """The routes of the OpenAI surface for ``personalizer``, serving ``model``."""
    router = APIRouter(dependencies=[Depends(need(keys, "chat"))])
    p = personalizer
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

    @router.get("/v1/models", tags=["openai"])
    async def models() -> dict[str, Any]:
        """The model this gateway serves."""
        return {"object": "list", "data": [model_card()] if p.generator is not None else []}

    @router.get("/v1/models/{name:path}", tags=["openai"])
    async def one_model(name: str) -> dict[str, Any]:
        if name != model or p.generator is None:
            raise _no_model(name)
        return model_card()

    @router.post("/v1/chat/completions", tags=["openai"], response_model=None)
    async def chat(request: ChatRequest,
                   x_personalizer_user: str | None = Header(default=None)
                   ) -> JSONResponse | StreamingResponse:
        """A chat completion, personalized for the person named by ``user``."""
        if request.model != model or p.generator is None:
            raise _no_model(request.model)
        request.refuse_unsupported()
        user = _user(request.user, x_personalizer_user)
        generator, steerable = answerer()
        options = chat_options(request, steerable=steerable)
        messages = messages_of(request)
        ext = request.personalizer
        knobs = {} if ext is None else ext.model_dump(exclude_none=True)
        if user is None and knobs:
            raise Problem(400, "invalid_request_error", "invalid_request",
                          "personalizer options need a person: set the request's user field",
                          param="personalizer")
        ident, created = new_id(), int(time.time())
        if not request.stream:
            if user is None:
                p.limits.check("chat", [(f"messages[{i}].content", m.content)
                                        for i, m in enumerate(messages)])
                out = await generator.agenerate(messages, steering=None, **options)
            else:
                out = await p.agenerate(user, messages, **knobs, **options)
            return JSONResponse(completion(out, model=model, user=user, ident=ident,
                                           created=created))
        if user is None:
            p.limits.check("chat", [(f"messages[{i}].content", m.content)
                                    for i, m in enumerate(messages)])
            stream = generator.astream(messages, steering=None, **options)
        else:
            stream = p.astream(user, messages, **knobs, **options)
        usage = request.stream_options is not None and request.stream_options.include_usage
        pieces = aiter(stream)
        try:  # started here: a refused request is an error reply, not a broken stream
            first = await anext(pieces)
        except StopAsyncIteration:
            first = None
        events = _events(stream, pieces, first, ident=ident, model=model, created=created,
                         user=user, usage=usage)
        return StreamingResponse(events, media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache"})

    return router


async def _events(stream: AsyncStream, pieces: AsyncIterator[str], first: str | None, *,
                  ident: str, model: str, created: int, user: str | None,
                  usage: bool) -> AsyncIterator[str]:
    """The stream's server-sent events in OpenAI's chunk format, ``[DONE]`` last; a failure
    midway is an ``error`` event (the official SDKs raise it) and no ``[DONE]``."""
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
        yield _event(chunk(**head, finish=finish, done=done, user=user))
        if usage:
            yield _event(chunk(**head, done=done, usage=True))
        yield "data: [DONE]\n\n"
    except Exception as exc:  # the reply has started: say it in the stream
        problem = problem_of(exc)
        if problem.status >= 500:
            log.error("stream failed: %s", type(exc).__name__, exc_info=exc)
        yield _event(problem.body())
    finally:
        await stream.aclose()


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
