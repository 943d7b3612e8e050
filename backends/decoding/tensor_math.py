"""The decoding math as pure tensor functions: no I/O, no model, inputs never modified.

This module imports only torch. Shapes: ``logits`` is ``(batch, vocab)`` or ``(vocab,)``;
filtered positions become ``-inf``.

* ARGS (Khanov et al. 2024): ``score(v) = logit(v) + w * reward(prefix + v)`` over the top-k
  candidates ``v`` (:func:`top_candidates`, :func:`args_scores`), spread back over the
  vocabulary with every non-candidate at ``-inf`` (:func:`scatter_scores`). Choosing from that
  vector with :func:`choose_next` makes ``w = 0`` exactly top-k decoding: greedy ARGS is plain
  greedy, and sampled ARGS draws what transformers' ``generate(do_sample=True, top_k=k)`` draws
  with the same seed.
* Sampling filters in transformers' order: temperature, top-k, top-p.
* Proxy-tuning (Liu et al. 2024): ``base + alpha * (expert - antiexpert)``.
* Tree attention: a boolean mask that lets k candidates at one position each see the prefix
  and themselves, and the index of each row's chosen token among its candidates.
* Token-level base rewards (GenARM-style, groundwork for issue #14): base reward ``j`` scores
  every next token from the hidden state through the LM's own output embedding,
  ``s_j(v | h) = W[v] . (U_j (D_j^T h) + b_j)`` (a rank-r map per reward). A user's steered
  logits ``W h + w * sum_j c_j s_j(. | h)`` then fold into one vocabulary projection of a
  shifted hidden state, ``W (h + w * sum_j c_j (U_j D_j^T h + b_j))``
  (:func:`fold_token_rewards`), whose cost is independent of the vocabulary, of k, and of
  how many users share the batch (each row carries its own coefficients).
"""

from __future__ import annotations

from typing import Any

import torch

__all__ = [
    "args_scores",
    "choose_next",
    "filter_top_k",
    "filter_top_p",
    "fold_token_rewards",
    "proxy_logits",
    "scale_temperature",
    "scatter_scores",
    "seeded_rng",
    "slots_of",
    "token_reward_scores",
    "top_candidates",
    "tree_mask",
]


def top_candidates(logits: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(values, ids)`` of the k largest logits along the last dimension, best first."""
    k = min(k, logits.shape[-1])
    values, ids = torch.topk(logits, k, dim=-1)
    return values, ids


def args_scores(candidate_logits: torch.Tensor, rewards: torch.Tensor,
                strength: float) -> torch.Tensor:
    """``logits + strength * rewards`` (same shape; a new tensor)."""
    if candidate_logits.shape != rewards.shape:
        raise ValueError("one reward per candidate logit")
    if strength == 0:
        return candidate_logits.clone()
    return candidate_logits + strength * rewards.to(candidate_logits.dtype)


def scatter_scores(candidate_ids: torch.Tensor, scores: torch.Tensor,
                   vocab_size: int) -> torch.Tensor:
    """A ``(..., vocab_size)`` float vector: ``scores`` at ``candidate_ids``, ``-inf`` elsewhere."""
    full = torch.full((*scores.shape[:-1], vocab_size), float("-inf"), dtype=torch.float32,
                      device=scores.device)
    return full.scatter(-1, candidate_ids.long(), scores.float())


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
    if logits.dim() == 1:
        logits = logits[None]
    if not do_sample:
        return logits.argmax(dim=-1)
    scores = scale_temperature(logits.float(), temperature)
    if top_k is not None:
        scores = filter_top_k(scores, top_k)
    if top_p is not None and top_p < 1.0:
        scores = filter_top_p(scores, top_p)
    probs = scores.softmax(dim=-1)
    return torch.multinomial(probs, num_samples=1, generator=generator).squeeze(-1)


def proxy_logits(base: torch.Tensor, expert: torch.Tensor, antiexpert: torch.Tensor,
                 alpha: float) -> torch.Tensor:
    """``base + alpha * (expert - antiexpert)`` over the last dimension (a new tensor)."""
    if not base.shape == expert.shape == antiexpert.shape:
        raise ValueError("base, expert and antiexpert logits must have the same shape")
    if alpha == 0:
        return base.clone()
    return base + alpha * (expert - antiexpert)


def _head_outputs(hidden: torch.Tensor, down: torch.Tensor, up: torch.Tensor,
                  bias: torch.Tensor) -> torch.Tensor:
    """``g_j = U_j D_j^T h + b_j`` for every row and base reward: ``(rows, J, d)``."""
    if hidden.dim() != 2 or down.dim() != 3 or up.dim() != 3 or bias.dim() != 2:
        raise ValueError("hidden is (rows, d); down (J, d, r); up (J, r, d); bias (J, d)")
    j, d, r = down.shape
    if up.shape != (j, r, d) or bias.shape != (j, d) or hidden.shape[1] != d:
        raise ValueError(f"shapes do not match: hidden {tuple(hidden.shape)}, down "
                         f"{tuple(down.shape)}, up {tuple(up.shape)}, bias {tuple(bias.shape)}")
    z = torch.einsum("nd,jdr->njr", hidden, down)
    return torch.einsum("njr,jrd->njd", z, up) + bias


def token_reward_scores(hidden: torch.Tensor, down: torch.Tensor, up: torch.Tensor,
                        bias: torch.Tensor, out_embedding: torch.Tensor) -> torch.Tensor:
    """Every base reward's score of every next token, ``(rows, J, vocab)``: what training
    fits and what the folded form must equal. ``out_embedding`` is the LM's ``(vocab, d)``
    output matrix."""
    return torch.einsum("njd,vd->njv", _head_outputs(hidden, down, up, bias), out_embedding)


def fold_token_rewards(hidden: torch.Tensor, down: torch.Tensor, up: torch.Tensor,
                       bias: torch.Tensor, coefficients: torch.Tensor,
                       strength: float | torch.Tensor) -> torch.Tensor:
    """The hidden state whose vocabulary projection is the user's steered logits:
    ``h + w * sum_j c_j (U_j D_j^T h + b_j)``, per row (``coefficients`` is ``(rows, J)``, one
    user per row; ``strength`` a number or ``(rows,)``). Rows with zero strength or zero
    coefficients come back unchanged, so plain rows decode exactly as plain decoding."""
    if coefficients.dim() != 2 or coefficients.shape != (hidden.shape[0], down.shape[0]):
        raise ValueError(f"coefficients must be (rows, J) = ({hidden.shape[0]}, "
                         f"{down.shape[0]}), not {tuple(coefficients.shape)}")
    w = torch.as_tensor(strength, dtype=hidden.dtype, device=hidden.device)
    if w.dim() == 0:
        w = w.expand(hidden.shape[0])
    delta = torch.einsum("nj,njd->nd", coefficients.to(hidden.dtype),
                         _head_outputs(hidden, down, up, bias))
    return hidden + w[:, None] * delta


def tree_mask(prefix: int | torch.Tensor, k: int) -> torch.Tensor:
    """Boolean tree-attention mask: candidate row i sees the prefix and its own slot i.

    ``prefix`` is the prefix length (one sequence: ``(1, 1, k, L + k)``) or a ``(B, L)``
    attention mask of left-padded rows (``(B, 1, k, L + k)``; padding stays hidden).
    """
    if isinstance(prefix, int):
        prefix = torch.ones(1, prefix, dtype=torch.bool)
    rows, length = prefix.shape
    mask = torch.zeros(rows, 1, k, length + k, dtype=torch.bool)
    mask[..., :length] = prefix[:, None, None, :].bool()
    idx = torch.arange(k)
    mask[:, 0, idx, length + idx] = True
    return mask


def slots_of(candidates: torch.Tensor, chosen: torch.Tensor) -> torch.Tensor:
    """Index of each row's chosen token among its ``(rows, k)`` candidates, -1 where it is
    not one of them."""
    hit = candidates == chosen[:, None]
    return torch.where(hit.any(dim=-1), hit.int().argmax(dim=-1), torch.tensor(-1))
