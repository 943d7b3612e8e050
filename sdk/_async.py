"""Async adapters: run a blocking iterator in one worker thread of its own, item by item, so
the event loop stays free; closing the async iterator closes the blocking one (its work stops).

One dedicated thread per iteration, not the shared pool: torch's inference mode and other
thread-local state entered by the iterator must see the same thread at every step.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")

__all__ = ["ThreadedStream", "iterate_in_thread"]

_DONE = object()


async def iterate_in_thread(iterator: Iterator[T]) -> AsyncIterator[T]:
    """Yield ``iterator``'s items without blocking the event loop."""
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


class ThreadedStream:
    """An async view of a blocking stream (its pieces come through :func:`iterate_in_thread`)
    that keeps the stream's ``generation`` (set after the last piece)."""

    def __init__(self, stream: Iterable[str]) -> None:
        self._stream = stream
        self._pieces: AsyncIterator[str] | None = None

    def __aiter__(self) -> AsyncIterator[str]:
        self._pieces = iterate_in_thread(iter(self._stream))
        return self._pieces

    async def aclose(self) -> None:
        """Stop the blocking stream (when left early)."""
        close = getattr(self._pieces, "aclose", None)
        if close is not None:
            await close()

    @property
    def generation(self) -> Any:
        return getattr(self._stream, "generation", None)
