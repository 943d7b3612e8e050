"""Async streaming: same text, the event loop keeps running, early exit stops the work."""

from __future__ import annotations

import asyncio

import tiny

from personalizer._async import iterate_in_thread
from personalizer.backends import LocalGenerator


def test_astream_equals_generate_and_leaves_the_loop_free() -> None:
    gen = LocalGenerator(tiny.gpt2(), tiny.tokenizer())

    async def main() -> tuple[str, int, str]:
        ticks = 0
        done = asyncio.Event()

        async def ticker() -> None:
            nonlocal ticks
            while not done.is_set():
                ticks += 1
                await asyncio.sleep(0)

        task = asyncio.create_task(ticker())
        pieces = [p async for p in gen.astream("Hello there", max_new_tokens=40)]
        whole = await gen.agenerate("Hello there", max_new_tokens=40)
        done.set()
        await task
        return "".join(pieces), ticks, whole.text

    streamed, ticks, whole = asyncio.run(main())
    assert streamed == whole
    assert ticks > 10  # other tasks ran while tokens were being decoded


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
