"""Proxy-tuning (Liu et al. 2024): steer a large base model with two small ones.

``logits = base + alpha * (expert - antiexpert)``, all three sharing a vocabulary: the expert
is a small tuned model, the antiexpert its untuned counterpart; their difference carries the
tuning onto the base without touching its weights. Each model keeps its own KV cache and may
format the chat its own way (its own chat template). Vocabularies must be the same; extra
padding rows of an embedding matrix (a larger ``vocab_size`` than the tokenizer) are dropped.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from personalizer.errors import BackendError, InvalidInput

if TYPE_CHECKING:  # pragma: no cover
    from personalizer.types import Message

    from .local import GenerationOptions, LocalGenerator

__all__ = ["ProxyLogits", "ProxyTuning", "proxy_logits", "proxy_token_ids",
           "shared_vocab_size"]


def proxy_logits(base: torch.Tensor, expert: torch.Tensor, antiexpert: torch.Tensor,
                 alpha: float) -> torch.Tensor:
    """``base + alpha * (expert - antiexpert)`` over the last dimension (inputs unchanged)."""
    if not base.shape == expert.shape == antiexpert.shape:
        raise ValueError("base, expert and antiexpert logits must have the same shape")
    if alpha == 0:
        return base.clone()
    return base + alpha * (expert - antiexpert)


@dataclass(frozen=True)
class ProxyTuning:
    """A proxy-tuning request: the two small models and the strength ``alpha``."""

    expert: Any  # LocalGenerator
    antiexpert: Any  # LocalGenerator
    alpha: float = 1.0

    def __post_init__(self) -> None:
        if not 0 <= self.alpha <= 100:
            raise InvalidInput("alpha must be between 0 and 100")


def shared_vocab_size(*gens: Any) -> int:
    """The vocabulary the models share: their tokenizers must map the same texts to the same
    ids; logits beyond the tokenizer (embedding padding rows) are ignored."""
    vocabs = [g.tokenizer.get_vocab() for g in gens]
    if any(v != vocabs[0] for v in vocabs[1:]):
        raise InvalidInput("proxy-tuning needs models with the same vocabulary (tokenizers "
                           "differ); pick an expert and antiexpert from the base model's family")
    n = len(gens[0].tokenizer)
    for g in gens:
        if int(g.model.config.vocab_size) < n:
            raise InvalidInput(f"{g.name} has fewer logits ({g.model.config.vocab_size}) than "
                               f"tokens ({n})")
    return n


class ProxyLogits:
    """Proxy-tuned next-token logits, step by step: three models, three KV caches."""

    def __init__(self, base: LocalGenerator, messages: Sequence[Message],
                 proxy: ProxyTuning) -> None:
        self.gens = (base, proxy.expert, proxy.antiexpert)
        self.n = shared_vocab_size(*self.gens)
        self.alpha = proxy.alpha
        self.messages = messages
        self.caches: list[Any] = []

    def _combine(self, outs: list[Any]) -> torch.Tensor:
        b, e, a = (o.logits[0, -1, :self.n].float().cpu() for o in outs)
        logits = proxy_logits(b, e, a, self.alpha)
        if not torch.isfinite(logits).any():
            raise BackendError("proxy-tuned logits are not finite")
        return logits

    def start(self) -> torch.Tensor:
        """Prefill every model with the chat in its own format; the first logits."""
        self.caches = [g.new_cache() for g in self.gens]
        outs = [g.forward(torch.tensor([g.prompt_ids(self.messages)], device=g.device), c,
                          logits_to_keep=1) for g, c in zip(self.gens, self.caches, strict=True)]
        return self._combine(outs)

    def advance(self, token_id: int) -> torch.Tensor:
        """Feed the chosen token to all three; the next logits."""
        outs = [g.forward(torch.tensor([[token_id]], device=g.device), c)
                for g, c in zip(self.gens, self.caches, strict=True)]
        return self._combine(outs)


def proxy_token_ids(base: LocalGenerator, messages: Sequence[Message], opts: GenerationOptions,
                    proxy: ProxyTuning) -> Iterator[int]:
    """Decode with proxy-tuned logits: three cached forwards per token."""
    from .sampling import choose_next, seeded_rng

    rng = None
    if opts.do_sample:
        rng = seeded_rng(opts.seed)
    source = ProxyLogits(base, messages, proxy)
    with torch.inference_mode():
        logits = source.start()
        for _ in range(opts.max_new_tokens):
            tid = int(choose_next(logits[None], do_sample=opts.do_sample,
                                  temperature=opts.temperature, top_k=opts.top_k,
                                  top_p=opts.top_p, generator=rng)[0])
            yield tid
            if tid in base.eos_ids:
                return
            logits = source.advance(tid)
