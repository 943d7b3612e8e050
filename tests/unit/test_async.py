"""Async streaming: same text, the event loop keeps running, early exit stops the work."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from support import tiny

from personalizer.backends import LocalGenerator
from personalizer.streams import iterate_in_thread


def test_astream_equals_generate_and_leaves_the_loop_free() -> None:
    gen = LocalGenerator(tiny.gpt2(), tiny.tokenizer())
    turn = threading.Event()  # set by a task on the event loop, taken by each forward pass
    passes = 0

    def needs_a_loop_turn(*_: Any) -> None:
        # each forward pass waits until the loop has run since the one before: decoding that
        # held the loop would wait here in vain
        nonlocal passes
        if not turn.wait(timeout=5):
            raise AssertionError(f"the event loop did not run before forward pass {passes}")
        turn.clear()
        passes += 1

    async def main() -> tuple[str, int, Any]:
        done = asyncio.Event()

        async def ticker() -> None:
            while not done.is_set():
                turn.set()
                await asyncio.sleep(0.001)

        task = asyncio.create_task(ticker())
        try:
            pieces = [p async for p in gen.astream("Hello there", max_new_tokens=40)]
            streamed_passes = passes
            whole = await gen.agenerate("Hello there", max_new_tokens=40)
        finally:
            done.set()
            await task
        return "".join(pieces), streamed_passes, whole

    hook = gen.model.get_input_embeddings().register_forward_pre_hook(needs_a_loop_turn)
    try:
        streamed, streamed_passes, whole = asyncio.run(main())
    finally:
        hook.remove()
    assert streamed == whole.text
    # both decoded (a pass per token), each pass only after a turn of the loop
    assert streamed_passes >= whole.completion_tokens > 0
    assert passes - streamed_passes == streamed_passes


def test_leaving_early_closes_the_blocking_iterator() -> None:
    state = {"produced": 0, "closed": False}

    def numbers():  # noqa: ANN202
        try:
            for i in range(1000):
                state["produced"] += 1
                yield i
        finally:
            state["closed"] = True

    async def main() -> list[int]:
        out = []
        agen = iterate_in_thread(numbers())
        async for n in agen:
            out.append(n)
            if n == 2:
                break
        await agen.aclose()
        return out

    assert asyncio.run(main()) == [0, 1, 2]
    assert state["closed"] and state["produced"] == 3
