"""Pure tensor functions for choosing the next token. No I/O; inputs are never modified.

``logits`` is ``(batch, vocab)``; filtered positions become ``-inf``.
"""

from __future__ import annotations

from typing import Any

import torch

__all__ = ["choose_next", "filter_top_k", "filter_top_p", "scale_temperature", "seeded_rng"]


def seeded_rng(seed: int | None, device: Any = "cpu") -> torch.Generator:
    """A request's own random generator: seeded with ``seed``, or with a fresh random seed.
    (Never the global RNG: concurrent requests must not disturb each other's draws.)"""
    rng = torch.Generator(device=device)
    rng.manual_seed(seed if seed is not None else int(torch.randint(0, 2**62, ()).item()))
    return rng


def scale_temperature(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """``logits / temperature`` (temperature > 0)."""
    return logits / temperature


def filter_top_k(logits: torch.Tensor, k: int) -> torch.Tensor:
    """Keep the ``k`` largest logits per row (ties at the k-th value kept, as transformers does)."""
    k = min(k, logits.shape[-1])
    kth = torch.topk(logits, k, dim=-1).values[..., -1:]
    return logits.masked_fill(logits < kth, float("-inf"))


def filter_top_p(logits: torch.Tensor, p: float) -> torch.Tensor:
    """Nucleus filter: keep the smallest set of tokens whose probability reaches ``p``
    (the most likely token always stays)."""
    sorted_logits, order = torch.sort(logits, descending=False, dim=-1)
    cumulative = sorted_logits.softmax(dim=-1).cumsum(dim=-1)
    remove_sorted = cumulative <= (1 - p)
    remove_sorted[..., -1:] = False
    remove = remove_sorted.scatter(-1, order, remove_sorted)
    return logits.masked_fill(remove, float("-inf"))


def choose_next(logits: torch.Tensor, *, do_sample: bool, temperature: float = 1.0,
                top_k: int | None = None, top_p: float | None = None,
                generator: Any = None) -> torch.Tensor:
    """The next token id per row, shape ``(batch,)``: argmax, or a sample after temperature,
    top-k and top-p (in transformers' order)."""
    if not do_sample:
        return logits.argmax(dim=-1)
    scores = scale_temperature(logits.float(), temperature)
    if top_k is not None:
        scores = filter_top_k(scores, top_k)
    if top_p is not None and top_p < 1.0:
        scores = filter_top_p(scores, top_p)
    probs = scores.softmax(dim=-1)
    return torch.multinomial(probs, num_samples=1, generator=generator).squeeze(-1)
