"""``ModelHandle``: what decoding strategies and token scorers may use of a local model.

Strategies receive a handle instead of the generator facade, so nothing in the decoding layer
imports :class:`~personalizer.backends.LocalGenerator` back. ``LocalGenerator`` is one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

from personalizer.types import Message

__all__ = ["ModelHandle", "context_length", "end_of_turn"]


@runtime_checkable
class ModelHandle(Protocol):
    """A loaded causal LM with its tokenizer and chat format."""

    name: str
    model: Any  # a transformers PreTrainedModel (causal LM)
    tokenizer: Any
    eos_ids: set[int]  # every id that ends a turn
    device: Any

    def prompt_ids(self, messages: Sequence[Message]) -> list[int]:
        """The prompt's token ids in this model's chat format (generation prompt added)."""
        ...


def end_of_turn(handle: ModelHandle) -> int:
    """The id that ends an answer: the tokenizer's eos when it ends a turn, else the lowest
    end-of-turn id."""
    eos = handle.tokenizer.eos_token_id
    return eos if eos in handle.eos_ids else min(handle.eos_ids)


def context_length(model: Any) -> int | None:
    """The most positions the model was built for (None when its config does not say)."""
    cfg = model.config
    for name in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
        value = getattr(cfg, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return None
