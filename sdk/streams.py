"""One answer, piece by piece: the one stream pair every generator and the facade return.

A :class:`Stream` is iterated once for its text pieces (they join to the answer), or waited
for (:meth:`Stream.wait`) for the whole :class:`~personalizer.types.Generation`;
``.generation`` is set after the last piece. :class:`AsyncStream` is the same for
``async for`` / ``await stream.wait()``. :meth:`Stream.then` builds a stream whose
generation is a function of another's (the facade adds the user's record that way), and
:meth:`AsyncStream.in_thread` runs a blocking stream in a worker thread of its own, so the
event loop is never blocked. Errors are converted at the boundary the stream names
(``where``). Leaving a stream early (``close`` / ``aclose``, or breaking out of the loop)
stops the work behind it now, not at garbage collection.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, NoReturn, TypeVar, Union

from ._boundary import convert
from .errors import InvalidInput
from .types import Generation, Timings

__all__ = ["AsyncStream", "Stream", "iterate_in_thread"]

T = TypeVar("T")
Finish = Callable[[str], Generation]  # the stream's text -> its Generation
Then = Callable[[Generation], Generation]  # a generation -> the one the caller sees
AsyncSource = Union[AsyncIterable[str], Callable[[], Awaitable["AsyncIterable[str]"]]]

_DONE = object()


def _plain(text: str, start: float) -> Generation:
    """The Generation of a stream that reports none (a generator's plain iterator)."""
    return Generation(text=text, completion_tokens=None,
                      timings=Timings(total_s=time.perf_counter() - start))


def _reraise(exc: Exception, where: str) -> NoReturn:
    new = convert(exc, where)
    if new is exc:
        raise exc
    raise new from exc


def _once(used: bool) -> None:
    if used:
        raise InvalidInput("a stream can be iterated once; call stream() again for another "
                           "answer")


class Stream:
    """The pieces of one answer, iterated once; ``generation`` is set after the last.

    ``pieces`` yields the text; ``finish`` turns the joined text into the Generation
    (without it: the source stream's generation, else a bare one); ``then`` maps that
    generation to the one this stream reports.
    """

    def __init__(self, pieces: Iterable[str], finish: Finish | None = None, *,
                 then: Then | None = None, where: str = "stream") -> None:
        self._pieces, self._finish, self._then, self._where = pieces, finish, then, where
        self._used = False
        self._iterator: Iterator[str] | None = None
        self.generation: Generation | None = None

    def __iter__(self) -> Iterator[str]:
        _once(self._used)
        self._used = True
        return self._run()

    def _run(self) -> Iterator[str]:
        start, pieces = time.perf_counter(), []
        inner = iter(self._pieces)
        self._iterator = inner
        try:
            for piece in inner:
                pieces.append(piece)
                yield piece
            text = "".join(pieces)
            done = self._finish(text) if self._finish is not None else None
            if done is None:  # a source stream that reports its generation
                done = getattr(self._pieces, "generation", None)
            done = done if done is not None else _plain(text, start)
            self.generation = self._then(done) if self._then is not None else done
        except Exception as exc:  # noqa: BLE001 - converted at the boundary, not swallowed
            _reraise(exc, self._where)
        finally:  # left early: the work behind the stream stops now
            close = getattr(inner, "close", None)
            if close is not None:
                close()

    def wait(self) -> Generation:
        """The whole Generation: the rest of the stream is read first."""
        if not self._used:
            for _ in self:
                pass
        if self.generation is None:
            raise InvalidInput("this stream was left before its end, so it has no "
                               "generation; call stream() again")
        return self.generation

    def close(self) -> None:
        """Stop early: the generator's work stops now."""
        close = getattr(self._iterator, "close", None)
        if close is not None:
            close()

    def then(self, then: Then, *, where: str) -> Stream:
        """A stream of the same pieces whose generation is ``then(this one's)``."""
        return Stream(self, then=then, where=where)


async def iterate_in_thread(iterator: Iterator[T]) -> AsyncIterator[T]:
    """Yield ``iterator``'s items without blocking the event loop, from one worker thread of
    its own (torch's inference mode and other thread-local state must see the same thread
    at every step); closing this closes ``iterator`` there."""
    loop = asyncio.get_running_loop()
    worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="personalizer-stream")
    try:
        while True:
            item = await loop.run_in_executor(worker, next, iterator, _DONE)
            if item is _DONE:
                return
            yield item  # type: ignore[misc]
    finally:
        close = getattr(iterator, "close", None)
        if close is not None:
            await loop.run_in_executor(worker, close)
        worker.shutdown(wait=False)


class AsyncStream:
    """:class:`Stream` for ``async for``: ``source`` is an async iterable of pieces, or an
    async function that returns one when iteration starts (the facade reads the profile
    then); ``finish`` (sync or async) and ``then`` (sync, run in a worker thread: it may
    write to the store) as in :class:`Stream`."""

    def __init__(self, source: AsyncSource,
                 finish: Callable[[str], Generation | Awaitable[Generation]] | None = None,
                 *, then: Then | None = None, where: str = "astream") -> None:
        self._source, self._finish, self._then, self._where = source, finish, then, where
        self._used = False
        self._pieces: Any = None
        self.generation: Generation | None = None

    @classmethod
    def in_thread(cls, stream: Stream, *, where: str = "astream") -> AsyncStream:
        """A blocking stream read from a worker thread of its own (its generation kept)."""
        return cls(iterate_in_thread(iter(stream)), where=where,
                   finish=lambda _text: stream.wait())

    def __aiter__(self) -> AsyncIterator[str]:
        _once(self._used)
        self._used = True
        self._pieces = self._run()
        return self._pieces

    async def aclose(self) -> None:
        """Stop early: the generator's stream is closed now."""
        if self._pieces is not None:
            await self._pieces.aclose()

    async def wait(self) -> Generation:
        """The whole Generation: the rest of the stream is read first."""
        if not self._used:
            async for _ in self:
                pass
        if self.generation is None:
            raise InvalidInput("this stream was left before its end, so it has no "
                               "generation; call astream() again")
        return self.generation

    def then(self, then: Then, *, where: str) -> AsyncStream:
        """A stream of the same pieces whose generation is ``then(this one's)``."""
        return AsyncStream(self, then=then, where=where)

    async def _run(self) -> AsyncIterator[str]:
        start, pieces = time.perf_counter(), []
        try:
            source = self._source
            if not hasattr(source, "__aiter__"):  # an async function: start it now
                source = await source()  # type: ignore[operator]
            inner = aiter(source)  # type: ignore[arg-type]
            try:
                async for piece in inner:
                    pieces.append(piece)
                    yield piece
            finally:
                close = getattr(inner, "aclose", None)
                if close is not None:
                    await close()
            text = "".join(pieces)
            done: Any = None
            if self._finish is not None:
                done = self._finish(text)
                if inspect.isawaitable(done):
                    done = await done
            if done is None:  # a source stream that reports its generation
                done = getattr(source, "generation", None)
            done = done if done is not None else _plain(text, start)
            if self._then is not None:
                done = await asyncio.to_thread(self._then, done)
            self.generation = done
        except Exception as exc:  # noqa: BLE001 - converted at the boundary, not swallowed
            _reraise(exc, self._where)
