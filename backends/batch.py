"""Many users in one batch: each row its own prompt and :class:`Steering` (or none), decoded
together with one batched forward per step (left padding, attention masks, per-row positions),
rows that finish leave the batch so they stop costing compute.

Supported per row: plain decoding (greedy or seeded sampling) and ARGS with shared-trunk heads
(the reward set of the generator is one :class:`~.trunk.TrunkHeads` on its own model, with
``whole_answer="off"``): one k-candidate tree pass of the LM body per step for the whole
batch. Each row's tokens equal decoding that row alone (up to floating-point ties).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch

from personalizer.errors import InvalidInput
from personalizer.types import Generation, MessagesLike, Timings, as_messages

from . import _hf
from .args import args_scores, args_select
from .sampling import choose_next, seeded_rng
from .steering import Steering
from .tree import crop_to, tree_mask
from .trunk import TrunkHeads

if TYPE_CHECKING:  # pragma: no cover
    from .local import LocalGenerator

__all__ = ["generate_batch"]


def generate_batch(gen: LocalGenerator, requests: Sequence[tuple[MessagesLike,
                                                                  Steering | None]],
                   **options: Any) -> list[Generation]:
    """Answer several requests together; ``options`` (``max_new_tokens``, ``do_sample``,
    ``temperature``, ``top_k``, ``seed``) apply to unsteered rows, each Steering to its row."""
    from .local import parse_options

    opts = parse_options(options, gen.defaults)
    if opts.stop:
        raise InvalidInput("stop strings are not supported in batched decoding yet")
    if not requests:
        return []
    start = time.perf_counter()
    prompts = [gen.prompt_ids(as_messages(m)) for m, _ in requests]
    steerings = [s for _, s in requests]
    heads = _heads(gen, steerings)
    n = len(prompts)
    weights = torch.zeros(n, gen.model.config.hidden_size)
    offsets = torch.zeros(n)
    for i, s in enumerate(steerings):
        if s is not None:
            coef = gen.rewards.coefficient_vector(
                s.coefficients, reward_set_id=s.reward_set_id,
                reward_set_version=s.reward_set_version)
            norm = gen.rewards.normalization
            w = coef / norm.scale
            weights[i] = torch.tensor(heads.weight.T @ w, dtype=torch.float32)
            offsets[i] = float(heads.bias @ w - (coef * norm.mean / norm.scale).sum())
    rngs = [seeded_rng(s.seed if s is not None else opts.seed) for s in steerings]

    width = max(len(p) for p in prompts)
    pad = gen.tokenizer.pad_token_id or 0
    ids = torch.full((n, width), pad, dtype=torch.long)
    mask = torch.zeros((n, width), dtype=torch.long)
    for i, p in enumerate(prompts):
        ids[i, width - len(p):] = torch.tensor(p)
        mask[i, width - len(p):] = 1
    model, body = gen.model, gen.model.base_model
    lm_head = model.get_output_embeddings()
    kwarg = _hf.cache_kwarg(body)
    out_ids: list[list[int]] = [[] for _ in range(n)]
    finished = [False] * n
    firsts: list[float | None] = [None] * n
    active = list(range(n))  # batch row -> request index
    with torch.inference_mode():
        cache = gen.new_cache()
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        hidden = body(input_ids=ids, attention_mask=mask, position_ids=positions,
                      use_cache=True, **{kwarg: cache}).last_hidden_state[:, -1]
        logits = lm_head(hidden).float()
        next_pos = mask.sum(-1)  # per row: position of the next token
        for _ in range(opts.max_new_tokens):
            rows = len(active)
            k = max([steerings[r].top_k for r in active if steerings[r] is not None] or [1])
            values, cands = torch.topk(logits, k, dim=-1)
            any_steered = any(steerings[r] is not None and steerings[r].strength > 0
                              for r in active)
            tree_hidden = None
            if any_steered:
                tree_hidden = body(input_ids=cands, attention_mask=tree_mask(mask, k),
                                   position_ids=next_pos[:, None].expand(rows, k),
                                   use_cache=True, **{kwarg: cache}).last_hidden_state
            chosen = torch.zeros(rows, dtype=torch.long)
            slot = torch.zeros(rows, dtype=torch.long)
            for b, r in enumerate(active):
                s = steerings[r]
                if s is None:
                    tid = int(choose_next(logits[b:b + 1], do_sample=opts.do_sample,
                                          temperature=opts.temperature, top_k=opts.top_k,
                                          top_p=opts.top_p, generator=rngs[r])[0])
                else:
                    kb = s.top_k
                    rewards = (tree_hidden[b, :kb].float() @ weights[r] + offsets[r]
                               if tree_hidden is not None and s.strength > 0
                               else torch.zeros(kb))
                    tid = args_select(cands[b, :kb], args_scores(values[b, :kb], rewards,
                                                                 s.strength),
                                      vocab_size=logits.shape[-1], do_sample=s.do_sample,
                                      temperature=s.temperature, generator=rngs[r])
                chosen[b] = tid
                hits = (cands[b] == tid).nonzero()
                slot[b] = int(hits[0, 0]) if hits.numel() else -1
                out_ids[r].append(tid)
                if firsts[r] is None:
                    firsts[r] = time.perf_counter() - start
                if tid in gen.eos_ids:
                    finished[r] = True
            length = mask.shape[1]
            if tree_hidden is not None and bool((slot >= 0).all()):
                ar = torch.arange(rows)
                for layer in cache.layers:  # keep each row's chosen slot at position `length`
                    layer.keys[ar, :, length] = layer.keys[ar, :, length + slot]
                    layer.values[ar, :, length] = layer.values[ar, :, length + slot]
                crop_to(cache, length + 1)
                hidden = tree_hidden[ar, slot]
            else:
                if tree_hidden is not None:
                    crop_to(cache, length)
                hidden = body(input_ids=chosen[:, None], attention_mask=torch.cat(
                    [mask, torch.ones(rows, 1, dtype=torch.long)], dim=1),
                    position_ids=next_pos[:, None], use_cache=True,
                    **{kwarg: cache}).last_hidden_state[:, -1]
            mask = torch.cat([mask, torch.ones(rows, 1, dtype=torch.long)], dim=1)
            next_pos = next_pos + 1
            keep = [b for b, r in enumerate(active) if not finished[r]]
            if not keep:
                break
            if len(keep) < rows:  # finished rows leave the batch
                sel = torch.tensor(keep)
                cache.batch_select_indices(sel)
                mask, next_pos, hidden = mask[sel], next_pos[sel], hidden[sel]
                active = [active[b] for b in keep]
            logits = lm_head(hidden).float()
    total = time.perf_counter() - start
    results = []
    for r in range(n):
        toks = [t for t in out_ids[r] if t not in gen.eos_ids]
        results.append(Generation(
            text=gen.tokenizer.decode(toks, skip_special_tokens=True),
            completion_tokens=len(out_ids[r]), prompt_tokens=len(prompts[r]),
            finish_reason="stop" if finished[r] else "length",
            timings=Timings(total_s=total, first_token_s=firsts[r]), model=gen.name,
            steering=None if steerings[r] is None else steerings[r].record()))
    return results


def _heads(gen: LocalGenerator, steerings: Sequence[Steering | None]) -> TrunkHeads | None:
    if all(s is None for s in steerings):
        return None
    rs = gen.rewards
    only = rs.rewards[0] if rs is not None and len(rs.rewards) == 1 else None
    if not (isinstance(only, TrunkHeads) and only.generator.model is gen.model):
        raise InvalidInput("batched steering needs shared-trunk heads on this generator "
                           "(rewards = RewardSet of one TrunkHeads); decode other rewards "
                           "one request at a time")
    for s in steerings:
        if s is not None and (s.strategy != "args" or s.whole_answer != "off"
                              or s.score_every != 1):
            raise InvalidInput("batched steering supports strategy='args' with "
                               "whole_answer='off' and score_every=1")
    return only


