"""The sans-I/O core of a hosted request: checked once, planned once, driven sync or async.

:func:`prepare` checks a request before any I/O (messages, options, the steering's strategy)
into a :class:`Request`. :func:`plan` is the request as a generator of steps -- :class:`Calls`
to the provider (sent back: the replies of each request) and :class:`Compute` for CPU work
such as scoring candidates (sent back: its result) -- that returns the
:class:`~personalizer.types.Generation`. The drivers (:mod:`.drivers`) run it with the sync
client (threads) or the async one (``asyncio.gather``), so the logic is written once.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Generator, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from personalizer.backends.decoding.strategies.best_of_n import BestOfN
from personalizer.errors import InvalidInput, ProviderError
from personalizer.steering import Steering
from personalizer.types import (
    Generation,
    Message,
    MessagesLike,
    SteeringRecord,
    Timings,
    as_messages,
    last_user_text,
)

from .options import HostedOptions, check_options
from .provider import Provider, Reply
from .rerank import Ranker, rerank_of

__all__ = ["Calls", "Compute", "Plan", "Request", "as_steering", "plan", "prepare"]


@dataclass(frozen=True)
class Calls:
    """A plan step: send these requests (in parallel); sent back: each one's replies."""

    requests: list[dict[str, Any]]


@dataclass(frozen=True)
class Compute:
    """A plan step: run this CPU-bound function (scoring); sent back: its result."""

    fn: Callable[[], Any]


Plan = Generator["Calls | Compute", Any, Generation]


@dataclass(frozen=True)
class Request:
    """A checked request, before any I/O: best-of-n when ``rerank`` is set (scored by
    ``ranker``), else one plain call."""

    messages: list[Message]
    options: HostedOptions
    steering: Steering | None = None
    rerank: BestOfN | None = None
    ranker: Ranker | None = None


def as_steering(value: Any) -> Steering | None:
    """``value`` as a :class:`~personalizer.steering.Steering` (None stays None; a dict is
    validated as one)."""
    if value is None or isinstance(value, Steering):
        return value
    if isinstance(value, Mapping):
        return Steering.model_validate(dict(value))
    raise InvalidInput(f"steering must be a personalizer.steering.Steering, not "
                       f"{type(value).__name__}")


def prepare(messages: MessagesLike, steering: Any, options: Mapping[str, Any], *,
            provider: Provider, owner: str, rewards: Any, judge: Any,
            judge_weight: float) -> Request:
    """The request checked: refused here, before any call is made, when it cannot run.
    ``rewards``: the generator's own reward set (a steering may hand one in instead)."""
    msgs = as_messages(messages)
    opts = check_options(options, provider.lacks, owner)
    steer = as_steering(steering)
    if steer is None:
        return Request(msgs, opts)
    ranking = steer.reward_set(rewards)
    rerank = rerank_of(steer, owner, ranking, judge)
    ranker = Ranker(ranking, judge, judge_weight) if rerank is not None else None
    return Request(msgs, opts, steer, rerank, ranker)


def plan(req: Request, provider: Provider, model: str) -> Plan:
    """The request as steps; returns its Generation (``model``: the name asked for, the
    answer's own when the provider reports none)."""
    start = time.perf_counter()
    n = req.rerank.n if req.rerank is not None else 1
    replies: list[Reply] = []
    if provider.native_n or n == 1:
        got = yield Calls([provider.request(model, req.messages, req.options, n)])
        replies = _joined(got)
    while len(replies) < n:  # a server that ignores n: one call per missing candidate
        single = provider.request(model, req.messages, req.options, 1)
        more = _joined((yield Calls([single] * (n - len(replies)))))
        if not more:
            raise ProviderError(provider.name, "the reply held no answer")
        replies += more
    replies = replies[:n]
    record = SteeringRecord(path="plain")
    chosen = replies[0]
    if req.rerank is not None and req.ranker is not None and req.steering is not None:
        ranker, steering, strategy = req.ranker, req.steering, req.rerank
        prompt = last_user_text(req.messages)
        texts = [r.text for r in replies]
        scores, terms = yield Compute(lambda: ranker.scores(prompt, texts, steering))
        best = int(np.argmax(scores))
        chosen = replies[best]
        record = ranker.record(strategy, steering, terms, texts, scores, best)
    return Generation(
        text=chosen.text, completion_tokens=_sum(r.completion_tokens for r in replies),
        prompt_tokens=chosen.prompt_tokens, finish_reason=chosen.finish,
        timings=Timings(total_s=time.perf_counter() - start),
        model=chosen.model or model, steering=record)


def _joined(replies: Iterable[list[Reply]]) -> list[Reply]:
    return [r for rs in replies for r in rs]


def _sum(values: Iterable[int | None]) -> int | None:
    values = list(values)
    return None if any(v is None for v in values) else int(sum(v for v in values if v))
