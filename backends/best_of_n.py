"""Best-of-n and blockwise best-of-n: sample n continuations as ONE batch, keep the one the
user's reward likes best. Suits expensive rewards (reasoning judges): the reward is called
once per block on n finished texts instead of once per token.

* ``block="answer"``: n whole answers, the best is returned.
* ``block="sentence"``: n continuations up to the next sentence end (at most
  ``block_tokens``), the best is kept, and the next block starts from it.

The prompt (and the kept prefix) is prefilled once per block and its cache repeated n times.
Samples that finish early leave the batch, so they stop costing compute.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from .sampling import choose_next, seeded_rng

if TYPE_CHECKING:  # pragma: no cover
    from .local import GenerationOptions, LocalGenerator
    from .steering import Steering

__all__ = ["best_of_n_token_ids", "sample_batch"]

_SENTENCE_END = re.compile(r"[.!?]\s*$|\n\s*$")


def sample_batch(gen: LocalGenerator, prefix_ids: Sequence[int], n: int, max_tokens: int, *,
                 temperature: float, top_k: int | None, generator: Any,
                 stop: Callable[[list[int]], bool] | None = None) -> list[list[int]]:
    """n sampled continuations of ``prefix_ids`` decoded together; each row ends at an
    end-of-turn id (kept), when ``stop(row)`` says so, or at ``max_tokens``."""
    rows: list[list[int]] = [[] for _ in range(n)]
    alive = list(range(n))  # batch row -> sample index; finished samples leave the batch
    with torch.inference_mode():
        cache = gen.new_cache()
        out = gen.forward(torch.tensor([list(prefix_ids)], device=gen.device), cache,
                          logits_to_keep=1)
        cache.batch_repeat_interleave(n)
        logits = out.logits[:, -1, :].expand(n, -1)
        for _ in range(max_tokens):
            nxt = choose_next(logits, do_sample=True, temperature=temperature, top_k=top_k,
                              generator=generator)
            keep = []
            for b, i in enumerate(alive):
                tid = int(nxt[b])
                rows[i].append(tid)
                if not (tid in gen.eos_ids or (stop is not None and stop(rows[i]))):
                    keep.append(b)
            if not keep:
                break
            if len(keep) < len(alive):
                sel = torch.tensor(keep, device=gen.device)
                cache.batch_select_indices(sel)
                nxt, alive = nxt[sel], [alive[b] for b in keep]
            out = gen.forward(nxt.view(-1, 1).to(gen.device), cache)
            logits = out.logits[:, -1, :]
    return rows


def best_of_n_token_ids(gen: LocalGenerator, prompt_ids: Sequence[int], prompt_text: str,
                        opts: GenerationOptions, steering: Steering, rewards: Any,
                        record: dict[str, Any]) -> Iterator[int]:
    """Yield the tokens of the best sample (per block); ``record`` receives the candidates
    and their rewards of the last block."""
    coef = rewards.coefficient_vector(steering.coefficients,
                                      reward_set_id=steering.reward_set_id,
                                      reward_set_version=steering.reward_set_version)
    rng = seeded_rng(steering.seed)
    tok = gen.tokenizer
    kept: list[int] = []
    while len(kept) < opts.max_new_tokens:
        budget = opts.max_new_tokens - len(kept)
        stop = None
        if steering.block == "sentence":
            budget = min(budget, steering.block_tokens)

            def stop(row: list[int]) -> bool:
                return len(row) >= 2 and bool(_SENTENCE_END.search(tok.decode(row)))

        rows = sample_batch(gen, [*prompt_ids, *kept], steering.n, budget,
                            temperature=steering.temperature, top_k=steering.top_k,
                            generator=rng, stop=stop)
        texts = [tok.decode([*kept, *r], skip_special_tokens=True) for r in rows]
        scores = rewards.features(prompt_text, texts) @ coef
        best = int(np.argmax(scores))
        record.update(candidates=texts, rewards=[float(s) for s in scores], chosen=best)
        for tid in rows[best]:
            yield tid
            if tid in gen.eos_ids:
                return
        kept += rows[best]
        if steering.block == "answer" or not rows[best]:
            return
