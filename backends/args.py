"""ARGS (Khanov et al. 2024) as pure tensor functions: no I/O, inputs never modified.

``score(v) = logit(v) + w * reward(prefix + v)`` over the top-k candidates ``v``; greedy takes
the argmax, sampling draws from ``softmax(score / T)`` over the k. With ``w = 0`` greedy ARGS
is plain greedy decoding, and sampled ARGS is ``top_k`` sampling at temperature ``T``: the draw
is made over the full vocabulary with non-candidates at ``-inf``, exactly as transformers'
``generate(do_sample=True, top_k=k, temperature=T)`` does, so the same seed gives the same token.
"""

from __future__ import annotations

from typing import Any

import torch

__all__ = ["args_scores", "args_select", "top_candidates"]


def top_candidates(logits: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(values, ids)`` of the k largest logits of a ``(vocab,)`` vector, best first."""
    k = min(k, logits.shape[-1])
    values, ids = torch.topk(logits, k, dim=-1)
    return values, ids


def args_scores(candidate_logits: torch.Tensor, rewards: torch.Tensor,
                strength: float) -> torch.Tensor:
    """``logits + strength * rewards`` (same shape)."""
    if candidate_logits.shape != rewards.shape:
        raise ValueError("one reward per candidate logit")
    if strength == 0:
        return candidate_logits.clone()
    return candidate_logits + strength * rewards.to(candidate_logits.dtype)


def args_select(candidate_ids: torch.Tensor, scores: torch.Tensor, *, vocab_size: int,
                do_sample: bool, temperature: float = 1.0, generator: Any = None) -> int:
    """The chosen token id: the best-scoring candidate, or a draw from softmax(score / T)."""
    if not do_sample:
        return int(candidate_ids[int(torch.argmax(scores))])
    full = torch.full((vocab_size,), float("-inf"), dtype=torch.float32)
    full[candidate_ids] = scores.float() / temperature
    probs = full.softmax(dim=-1)
    return int(torch.multinomial(probs[None, :], num_samples=1, generator=generator)[0, 0])
