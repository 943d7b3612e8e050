"""A hosted answer as the project's one stream pair, :class:`~personalizer.streams.Stream`
and :class:`~personalizer.streams.AsyncStream`.

A plain answer streams the provider's events as they come (the provider reads each into
text and a :class:`~.provider.StreamState`: usage when the server reports it, the finish
reason, the model); leaving early closes the SDK's stream, and with it the connection.
Best-of-n cannot stream its candidates: the chosen answer comes as one piece once chosen.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

from personalizer.streams import AsyncStream, Stream
from personalizer.types import Generation, SteeringRecord, Timings

from .connection import Connection
from .provider import StreamState

__all__ = ["astream_of", "stream_of"]


class _Reading:
    """What one streamed answer said besides its text, and when its first piece came."""

    def __init__(self, conn: Connection, model: str) -> None:
        self.conn, self.model = conn, model
        self.state = StreamState()
        self.start = time.perf_counter()
        self.first: float | None = None

    def piece(self, event: Any) -> str | None:
        piece = self.conn.provider.read_event(self.state, event)
        if piece and self.first is None:
            self.first = time.perf_counter() - self.start
        return piece or None

    def generation(self, text: str) -> Generation:
        s = self.state
        return Generation(
            text=text, completion_tokens=s.completion_tokens, prompt_tokens=s.prompt_tokens,
            finish_reason=s.finish,
            timings=Timings(total_s=time.perf_counter() - self.start,
                            first_token_s=self.first),
            model=s.model or self.model, steering=SteeringRecord(path="plain"))


class _Chosen:
    """Best-of-n as a stream: one piece, the chosen answer, once chosen."""

    generation: Generation | None = None

    def pieces(self, answer: Callable[[], Generation]) -> Iterator[str]:
        self.generation = answer()
        yield self.generation.text

    async def apieces(self, answer: Callable[[], Awaitable[Generation]]
                      ) -> AsyncIterator[str]:
        self.generation = await answer()
        yield self.generation.text

    def finish(self, _text: str) -> Generation | None:
        return self.generation


def _pieces(reading: _Reading, request: dict[str, Any]) -> Iterator[str]:
    reading.start = time.perf_counter()
    conn = reading.conn
    stream = conn.call(request)
    try:
        with conn.errors():
            for event in stream:
                piece = reading.piece(event)
                if piece:
                    yield piece
    finally:
        stream.close()


async def _apieces(reading: _Reading, request: dict[str, Any]) -> AsyncIterator[str]:
    reading.start = time.perf_counter()
    conn = reading.conn
    stream = await conn.acall(request)
    try:
        with conn.errors():
            async for event in stream:
                piece = reading.piece(event)
                if piece:
                    yield piece
    finally:
        await stream.close()


def stream_of(conn: Connection, model: str, request: dict[str, Any] | None,
              answer: Callable[[], Generation], where: str) -> Stream:
    """The stream of a streaming ``request``; without one (best-of-n), of ``answer()``."""
    if request is None:
        chosen = _Chosen()
        return Stream(chosen.pieces(answer), chosen.finish, where=where)
    reading = _Reading(conn, model)
    return Stream(_pieces(reading, request), reading.generation, where=where)


def astream_of(conn: Connection, model: str, request: dict[str, Any] | None,
               answer: Callable[[], Awaitable[Generation]], where: str) -> AsyncStream:
    """:func:`stream_of` with the async client."""
    if request is None:
        chosen = _Chosen()
        return AsyncStream(chosen.apieces(answer), chosen.finish, where=where)
    reading = _Reading(conn, model)
    return AsyncStream(_apieces(reading, request), reading.generation, where=where)
