"""The two drivers of a plan (:mod:`.core`): one sync, one async; the logic is the plan's.

:func:`run` sends a step's calls on threads (at most ``max_parallel`` at once) and runs
:class:`~.core.Compute` steps in place; :func:`arun` sends them with ``asyncio.gather``
under a semaphore and runs CPU steps in a worker thread, so the event loop is never
blocked. When one call fails, the others stop: requests not yet sent are not sent (threads),
or are cancelled (asyncio), so they stop billing too.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from personalizer.types import Generation

from .connection import Connection
from .core import Compute, Plan
from .provider import Reply

__all__ = ["arun", "run"]


def run(plan: Plan, conn: Connection, max_parallel: int) -> Generation:
    """Drive ``plan`` with the sync client."""
    result: Any = None
    try:
        while True:
            step = plan.send(result)
            if isinstance(step, Compute):
                result = step.fn()
            elif len(step.requests) == 1:
                result = [conn.ask(step.requests[0])]
            else:
                result = _parallel(conn, step.requests, max_parallel)
    except StopIteration as done:
        return done.value


def _parallel(conn: Connection, requests: list[dict[str, Any]], max_parallel: int
              ) -> list[list[Reply]]:
    """The requests on threads; when one fails, those not yet sent are not sent."""
    conn.client  # noqa: B018 - built once, before the threads race to build it
    ex = ThreadPoolExecutor(min(len(requests), max_parallel),
                            thread_name_prefix="personalizer")
    try:
        return list(ex.map(conn.ask, requests))
    finally:
        ex.shutdown(wait=False, cancel_futures=True)


async def arun(plan: Plan, conn: Connection, max_parallel: int) -> Generation:
    """Drive ``plan`` with the async client."""
    result: Any = None
    limit = asyncio.Semaphore(max_parallel)

    async def ask(request: dict[str, Any]) -> list[Reply]:
        async with limit:
            return await conn.aask(request)

    try:
        while True:
            step = plan.send(result)
            if isinstance(step, Compute):
                result = await asyncio.to_thread(step.fn)
                continue
            tasks = [asyncio.ensure_future(ask(r)) for r in step.requests]
            try:
                result = list(await asyncio.gather(*tasks))
            except BaseException:
                for task in tasks:  # one failed: the others stop (and stop billing)
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
                raise
    except StopIteration as done:
        return done.value
