"""Proxy-tuning (Liu et al. 2024): steer a large base model with two small ones.

``logits = base + alpha * (expert - antiexpert)``, all three sharing a vocabulary: the expert
is a small tuned model, the antiexpert its untuned counterpart; their difference carries the
tuning onto the base without touching its weights. Each model keeps its own KV cache and may
format the chat its own way (its own chat template). Vocabularies must be the same; extra
padding rows of an embedding matrix (a larger ``vocab_size`` than the tokenizer) are dropped.
The arithmetic is :func:`~.tensor_math.proxy_logits`; the decoding loop keeps the three
caches. Proxy-tuning combines with every strategy (plain, ARGS, best-of-n).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from personalizer.errors import InvalidInput

__all__ = ["ProxyTuning", "shared_vocab_size"]


@dataclass(frozen=True)
class ProxyTuning:
    """A proxy-tuning request: the two small models and the strength ``alpha``."""

    expert: Any  # a ModelHandle (a LocalGenerator)
    antiexpert: Any  # a ModelHandle (a LocalGenerator)
    alpha: float = 1.0

    def __post_init__(self) -> None:
        from personalizer.backends.decoding.handle import ModelHandle

        for role in ("expert", "antiexpert"):
            if not isinstance(getattr(self, role), ModelHandle):
                raise InvalidInput(f"the {role} must be a local model (a LocalGenerator), not "
                                   f"{type(getattr(self, role)).__name__}")
        if not isinstance(self.alpha, (int, float)) or not 0 <= self.alpha <= 100:
            raise InvalidInput("alpha must be a number between 0 and 100")


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
