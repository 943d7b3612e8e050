"""Best-of-n and blockwise best-of-n over the decoding loop: each block is one run of n rows
forked from one prefill of the prompt (and the kept prefix); the user's reward keeps the best.
Suits expensive rewards (reasoning judges): the reward is called once per block on n finished
texts instead of once per token.

* ``block="answer"``: n whole answers, the best is returned.
* ``block="sentence"``: n continuations up to the next sentence end (at most
  ``block_tokens``), the best is kept, and the next block starts from it.

Samples that finish early leave the batch, so they stop costing compute. Streaming emits each
block's chosen text once it is chosen.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np

from personalizer.types import ScoredCandidate

from .engine import Decoding, RowSpec
from .handle import ModelHandle
from .request import BestOfN
from .text import TextTracker, ends_sentence, first_stop

if TYPE_CHECKING:  # pragma: no cover
    from .proxy import ProxyTuning

__all__ = ["BestOfNRun"]


class BestOfNRun:
    """Iterate for the text pieces of the kept samples; afterwards ``candidates`` hold the
    last block's samples with their rewards and ``chosen`` the kept one."""

    def __init__(self, handle: ModelHandle, spec: RowSpec, strategy: BestOfN,
                 user_reward: Callable[[list[str]], Any], proxy: ProxyTuning | None) -> None:
        self.handle, self.spec, self.strategy = handle, spec, strategy
        self.user_reward, self.proxy = user_reward, proxy
        self.candidates: tuple[ScoredCandidate, ...] = ()
        self.chosen: int | None = None
        self.token_ids: list[int] = []
        self.finish = "length"
        self.first_s: float | None = None
        self.start = time.perf_counter()

    def __iter__(self) -> Iterator[str]:
        tok, spec, strategy = self.handle.tokenizer, self.spec, self.strategy
        out = TextTracker(tok, spec.options.stop)
        kept: list[int] = []

        def sentence_done(ids: list[int]) -> bool:
            return len(ids) >= 2 and ends_sentence(tok.decode(ids))

        while len(kept) < spec.max_new_tokens:
            budget = spec.max_new_tokens - len(kept)
            end = None
            if strategy.block == "sentence":
                budget, end = min(budget, strategy.block_tokens), sentence_done
            block = replace(spec, prompt=[*spec.prompt, *kept],
                            continuation=(*spec.continuation, *kept),
                            max_new_tokens=budget, end=end)
            run = Decoding(self.handle, [block] * strategy.n, proxy=self.proxy)
            for _ in run:
                pass
            texts = [self._text([*kept, *r.ids]) for r in run.rows]
            scores = np.asarray(self.user_reward(texts), dtype=np.float64)
            best = int(np.argmax(scores))
            self.candidates = tuple(ScoredCandidate(text=t, reward=float(s))
                                    for t, s in zip(texts, scores, strict=True))
            self.chosen = best
            row = run.rows[best]
            if self.first_s is None:
                self.first_s = time.perf_counter() - self.start
            self.token_ids += row.token_ids
            for tid in row.ids:
                piece = out.push(tid)
                if piece:
                    yield piece
                if out.stopped:
                    self.finish = "stop"
                    return
            kept += row.ids
            if row.finish == "stop":
                self.finish = "stop"
                break
            if strategy.block == "answer" or not row.ids:
                break
        rest = out.flush()
        if rest:
            yield rest

    def _text(self, ids: list[int]) -> str:
        text = self.handle.tokenizer.decode(ids, skip_special_tokens=True)
        cut = first_stop(text, self.spec.options.stop)
        return text if cut is None else text[:cut]
