"""Token policies shared by the strategies: how a row of the decoding loop chooses its next
token when no reward rescores it.

* :class:`PlainPolicy`: the model's own choice (greedy, or a sample after temperature, top-k
  and top-p), optionally limited to the top ``limit`` tokens (ARGS with nothing to add), never
  one of its ``banned`` tokens (a block that goes on where the model would end the answer
  bans the end of turn), and with a ``quality`` model never an end of turn that the
  steering chose below the quality floor (:func:`floored`, the experts strategy).
* :class:`BranchPolicy`: the ``rank``-th most likely first token, then greedy (best-of-n's
  branches).
* :func:`draft`: greedy tokens continuing a prefix, as a row of its own (ARGS' lookahead).

A strategy's own policy lives in its module (:mod:`.strategies`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from personalizer.backends.decoding.tensor_math import choose_next
from personalizer.backends.decoding.engine import Decoding, RowSpec
from personalizer.backends.decoding.handle import ModelHandle, context_length
from personalizer.steering import GenerationOptions

if TYPE_CHECKING:  # pragma: no cover
    from personalizer.backends.decoding.engine import DecodeRow
    from personalizer.backends.rewards.quality import QualityModel

__all__ = ["PLAIN", "BranchPolicy", "PlainPolicy", "draft", "floored", "sample"]


def sample(logits: torch.Tensor, row: DecodeRow, top_k: int | None) -> int:
    """The row's next token from ``logits`` with its sampling options (greedy unless it
    samples)."""
    o = row.spec.options
    return int(choose_next(logits, do_sample=o.sampling(), temperature=o.temperature,
                           top_k=top_k, top_p=o.top_p, generator=row.spec.rng)[0])


@dataclass(frozen=True)
class PlainPolicy:
    """The model's own next token (from the row's logits, steered when the row is);
    ``limit`` keeps only the top ``limit`` tokens, ``banned`` tokens are never chosen, and
    with a ``quality`` model the steering may not end an answer below its floor
    (:func:`floored`)."""

    limit: int | None = None
    banned: tuple[int, ...] = ()
    quality: QualityModel | None = None
    k: int = 0
    scorer: None = None

    def scored(self, step: int) -> bool:
        return False

    def candidates_at(self, step: int) -> int:
        return 0

    def choose(self, run: Decoding, row: DecodeRow, logits: torch.Tensor,
               values: torch.Tensor | None, candidates: torch.Tensor | None) -> int:
        top_k = row.spec.options.top_k
        if self.limit is not None:
            top_k = self.limit if top_k is None else min(top_k, self.limit)
        banned = [t for t in self.banned if 0 <= t < logits.shape[-1]]
        if banned:
            logits = logits.clone()
            logits[banned] = float("-inf")
        return floored(run, row, logits, sample(logits, row, top_k), self.quality)


PLAIN = PlainPolicy()


def floored(run: Decoding, row: DecodeRow, logits: torch.Tensor, tid: int,
            quality: QualityModel | None) -> int:
    """``tid``, unless steering ended an answer below the quality floor: an end of turn
    that the unsteered logits' greedy argmax would not choose (the model's own end) is
    then redrawn from ``logits`` without the end-of-turn tokens."""
    eos = run.handle.eos_ids
    if tid not in eos or quality is None or int(run.source.unsteered(row.b).argmax()) in eos:
        return tid
    if float(quality.score(row.prompt_text, [row.tracker.decode()])[0]) >= quality.floor:
        return tid
    masked = logits.clone()
    masked[[e for e in eos if e < masked.shape[-1]]] = float("-inf")
    return sample(masked, row, row.spec.options.top_k) if bool(masked.isfinite().any()) \
        else tid


@dataclass(frozen=True)
class BranchPolicy:
    """Greedy decoding that starts with the ``rank``-th most likely token (0: the greedy
    token itself), or with the greedy token when that one's logit is more than ``max_gap``
    below the best: one branch of a blockwise search."""

    rank: int
    max_gap: float
    scorer: None = None

    @property
    def k(self) -> int:
        return self.rank + 1

    def scored(self, step: int) -> bool:
        return False

    def candidates_at(self, step: int) -> int:
        return self.rank + 1 if step == 0 else 0

    def choose(self, run: Decoding, row: DecodeRow, logits: torch.Tensor,
               values: torch.Tensor | None, candidates: torch.Tensor | None) -> int:
        if row.tokens == 0 and values is not None and candidates is not None:
            if float(values[0] - values[self.rank]) <= self.max_gap:
                return int(candidates[self.rank])
            return int(candidates[0])
        return int(torch.argmax(logits))


def draft(handle: ModelHandle, prefix: Sequence[int], budget: int,
          end: Callable[[list[int]], bool] | None = None) -> list[int]:
    """Greedy tokens continuing ``prefix`` (end of turn excluded), at most ``budget``, until
    ``end(ids)`` says a block ends: a lookahead draft, decoded as a row of its own."""
    room = context_length(handle.model)
    if room is not None:
        budget = min(budget, room - len(prefix))
    if budget < 1:
        return []
    spec = RowSpec(prompt=list(prefix), prompt_text="",
                   options=GenerationOptions(max_new_tokens=budget), policy=PLAIN,
                   max_new_tokens=budget, end=end)
    run = Decoding(handle, [spec])
    for _ in run:
        pass
    return run.rows[0].ids
