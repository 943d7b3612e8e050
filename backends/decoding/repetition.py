"""A repetition guard for steered rows: a token that would repeat an earlier stretch of the
answer is penalised, more the longer the stretch (DRY, "don't repeat yourself").

Steering toward a short or list-shaped answer can push a small model into a loop ("1. Battery
life: 100%\\n2. Battery life: 100%\\n..."). For every earlier position ``p`` of the answer,
``L(p)`` is how many tokens ending at ``p`` equal the answer's last tokens; the token that came
after ``p`` would make the repeat one longer, so its logit loses
``multiplier * base ** (L(p) - allowed)`` once ``L(p) >= allowed`` (the largest such penalty
when several positions lead to the same token). Short repeats ("of the") cost little; a
repeated sentence or list item costs more with each token, so the model leaves the loop.
Pure functions of token ids and logits; the decoding loop applies the guard to the rows a
strategy steers (plain decoding is never touched).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["RepeatGuard", "repeat_lengths"]


def repeat_lengths(history: Sequence[int], longest: int = 64) -> dict[int, int]:
    """For each token that would extend a repeat of the end of ``history``: the length of
    the longest such repeat (at most ``longest``). ``{}`` when nothing repeats."""
    h = np.asarray(history, dtype=np.int64)
    n = len(h)
    if n < 2:
        return {}
    # positions p < n - 1 whose token equals the last one: repeats of length >= 1
    alive = np.flatnonzero(h[:-1] == h[-1])
    length = 1
    lengths = np.zeros(n - 1, dtype=np.int64)
    while alive.size:
        lengths[alive] = length
        if length >= longest:
            break
        back = alive - length
        ok = back >= 0
        alive, back = alive[ok], back[ok]
        alive = alive[h[back] == h[n - 1 - length]]
        length += 1
    out: dict[int, int] = {}
    for p in np.flatnonzero(lengths):
        token, got = int(h[p + 1]), int(lengths[p])
        if got > out.get(token, 0):
            out[token] = got
    return out


@dataclass(frozen=True)
class RepeatGuard:
    """The penalty ``multiplier * base ** (L - allowed)`` (in logits) on a token that would
    repeat ``L >= allowed`` earlier tokens of the answer; capped at ``cap``."""

    allowed: int = 2
    multiplier: float = 0.8
    base: float = 1.75
    cap: float = 1e4

    def penalties(self, history: Sequence[int]) -> dict[int, float]:
        """Token id -> the logit it loses after ``history``."""
        return {t: min(self.cap, self.multiplier * self.base ** (length - self.allowed))
                for t, length in repeat_lengths(history).items() if length >= self.allowed}

    def apply(self, logits: torch.Tensor, history: Sequence[int]) -> torch.Tensor:
        """``logits`` (vocab,) with the penalties of ``history`` subtracted (a new tensor
        when any applies; tokens outside the logits' vocabulary are ignored)."""
        pen = {t: v for t, v in self.penalties(history).items() if 0 <= t < logits.shape[-1]}
        if not pen:
            return logits
        out = logits.clone()
        idx = torch.tensor(list(pen), dtype=torch.long, device=logits.device)
        out[idx] -= torch.tensor(list(pen.values()), dtype=logits.dtype, device=logits.device)
        return out
