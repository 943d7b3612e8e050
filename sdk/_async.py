"""Async adapters: run a blocking iterator in one worker thread of its own, item by item, so
the event loop stays free; closing the async iterator closes the blocking one (its work stops).

One dedicated thread per iteration, not the shared pool: torch's inference mode and other
thread-local state entered by the iterator must see the same thread at every step.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")

__all__ = ["iterate_in_thread"]

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
