"""Public test doubles: use them in your own tests the way httpx users use MockTransport."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from ._boundary import Unchecked, public_api
from .errors import BackendError, InvalidInput
from .seams import ProfilePrompt, RewardSet
from .steering import Steering, Strategy
from .streams import AsyncStream, Stream
from .types import Generation, Message, MessagesLike, Timings, as_messages

__all__ = ["ScriptedGenerator"]


@public_api
class ScriptedGenerator:
    """A :class:`~personalizer.seams.Generator` that answers from a script.

    ``replies`` is either a list of texts returned in order (a :class:`BackendError` once they
    run out) or a function from the message list to the reply. Every call is recorded in
    ``calls`` as ``(messages, options)``, with ``options["steering"]`` when a steering was
    handed in. It steers nothing: its answers are the script's whatever the steering says
    (its default strategy is None, so the facade hands it the profile in the prompt only).

    >>> g = ScriptedGenerator(["Hi!"])
    >>> g.generate("hello").text
    'Hi!'
    """

    default_strategy: Strategy | None = None
    rewards: RewardSet | None = None
    profile_prompt = ProfilePrompt()

    def __init__(self,
                 replies: Unchecked[Iterable[str] | Callable[[list[Message]], str]]) -> None:
        if isinstance(replies, (str, Mapping)) or not (callable(replies)
                                                       or isinstance(replies, Iterable)):
            raise InvalidInput("replies must be a list of texts or a function of the messages")
        self._reply_fn = replies if callable(replies) else None
        self._queue = [] if callable(replies) else list(replies)
        if not all(isinstance(r, str) for r in self._queue):
            raise InvalidInput("replies must be a list of texts or a function of the messages")
        self.calls: list[tuple[list[Message], dict[str, Any]]] = []

    def _next(self, messages: list[Message]) -> str:
        if self._reply_fn is not None:
            text = self._reply_fn(messages)
            if not isinstance(text, str):
                raise BackendError(f"the script returned {type(text).__name__}, not a text")
            return text
        if not self._queue:
            raise BackendError(
                f"ScriptedGenerator ran out of replies after {len(self.calls) - 1} calls; "
                "give it more replies or a function"
            )
        return self._queue.pop(0)

    def generate(self, messages: MessagesLike, *, steering: Unchecked[Steering | None] = None,
                 **options: Any) -> Generation:
        """The next reply of the script."""
        start = time.perf_counter()
        if steering is not None and not isinstance(steering, Steering):
            raise InvalidInput("steering must be a personalizer.steering.Steering, not "
                               f"{type(steering).__name__}")
        msgs = as_messages(messages)
        self.calls.append((msgs, dict(options) | ({"steering": steering} if steering else {})))
        text = self._next(msgs)
        return Generation(
            text=text,
            completion_tokens=len(text.split()),
            finish_reason="stop",
            timings=Timings(total_s=time.perf_counter() - start),
            model="scripted",
        )

    def stream(self, messages: MessagesLike, *, steering: Unchecked[Steering | None] = None,
               **options: Any) -> Stream:
        """The next reply in word-sized pieces; ``.generation`` after the last."""
        out = self.generate(messages, steering=steering, **options)
        words = out.text.split(" ")

        def pieces() -> Iterator[str]:
            for i, piece in enumerate(words):
                yield piece if i == 0 else " " + piece

        return Stream(pieces(), lambda _text: out, where="ScriptedGenerator.stream")

    async def agenerate(self, messages: MessagesLike, *,
                        steering: Unchecked[Steering | None] = None,
                        **options: Any) -> Generation:
        """:meth:`generate`, awaited."""
        await asyncio.sleep(0)
        return self.generate(messages, steering=steering, **options)

    def astream(self, messages: MessagesLike, *, steering: Unchecked[Steering | None] = None,
                **options: Any) -> AsyncStream:
        """:meth:`stream` for ``async for``."""
        return AsyncStream.in_thread(self.stream(messages, steering=steering, **options),
                                     where="ScriptedGenerator.astream")
