"""Token scorers for reward-guided decoding: score k candidate next tokens for a prefix.

``TokenScorer`` is the seam: ``start(prompt_ids)`` once, then per step ``score(candidates)``
(one reward per candidate token for ``prefix + token``) and ``accept(token)`` with the chosen
token. Two implementations:

* :class:`TextScorer`: decodes the k candidate texts and scores them with the reward set in one
  batched call (any reward, any tokenizer).
* :class:`TreeRewardScorer`: a sequence-classification reward model that shares the LM's
  tokenizer keeps its own KV cache of the prefix and scores all k candidates in ONE forward
  pass with tree attention: one row of k tokens, all at position L, under a 4-D mask that lets
  each see the prefix and itself. Accepting a token moves its slot to position L and crops the
  other k - 1, so no cache is ever copied.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch

from personalizer.errors import InvalidInput

from . import _hf

__all__ = ["TextScorer", "TokenScorer", "TreeRewardScorer", "crop_to", "keep_slot", "score_head",
           "tree_mask"]


@runtime_checkable
class TokenScorer(Protocol):
    def start(self, prompt_ids: Sequence[int]) -> None: ...

    def score(self, candidates: torch.Tensor) -> torch.Tensor: ...

    def accept(self, token_id: int) -> None: ...


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


def crop_to(cache: Any, length: int) -> None:
    """Shorten every layer of ``cache`` to ``length`` positions (transformers 5 layers take the
    number of positions to remove, as a negative count)."""
    for layer in cache.layers:
        extra = layer.get_seq_length() - length
        if extra > 0:
            layer.crop(-extra)


def keep_slot(cache: Any, base_len: int, index: int | torch.Tensor) -> None:
    """Keep tree slot ``index`` (at ``base_len + index``) as position ``base_len``; drop the
    other tree slots. ``index`` is one slot for every row, or a tensor of one slot per row.
    Changes ``cache`` in place (it is the decoding state, not an input)."""
    slots = torch.as_tensor(index).reshape(-1)
    if bool((slots != 0).any()):
        for layer in cache.layers:
            rows = torch.arange(layer.keys.shape[0], device=layer.keys.device)
            at = base_len + slots.to(layer.keys.device).expand(len(rows))
            layer.keys[rows, :, base_len] = layer.keys[rows, :, at]
            layer.values[rows, :, base_len] = layer.values[rows, :, at]
    crop_to(cache, base_len + 1)


def score_head(model: Any) -> torch.nn.Linear:
    """The linear score head of a sequence-classification model (on its final hidden states)."""
    head = getattr(model, "score", None) or getattr(model, "classifier", None)
    if head is None or not isinstance(head, torch.nn.Linear):
        raise InvalidInput(f"{type(model).__name__} has no linear score head; use the "
                           "text-level path for this reward model")
    return head


class TextScorer:
    """Scores ``prefix + candidate`` texts with a text-level reward (batched per step)."""

    def __init__(self, tokenizer: Any, user_reward: Callable[[list[str]], np.ndarray]) -> None:
        self.tokenizer, self.user_reward = tokenizer, user_reward
        self.ids: list[int] = []

    def start(self, prompt_ids: Sequence[int]) -> None:
        self.ids = []

    def score(self, candidates: torch.Tensor) -> torch.Tensor:
        texts = [self.tokenizer.decode(self.ids + [int(c)], skip_special_tokens=True)
                 for c in candidates]
        return torch.tensor(self.user_reward(texts), dtype=torch.float32)

    def accept(self, token_id: int) -> None:
        self.ids.append(int(token_id))


class TreeRewardScorer:
    """A sequence-classification RM with the LM's vocabulary, scored by tree attention.

    ``label_weights`` turn the RM's outputs into the user's reward (coefficients divided by
    the reward set's scales); ``offset`` is the constant part of the normalisation (it does not
    change which candidate wins but keeps the values equal to the text path's).
    """

    def __init__(self, model: Any, label_weights: Sequence[float], offset: float = 0.0) -> None:
        head = score_head(model)
        self.model, self.base, self.head = model, model.base_model, head
        self.weights = torch.tensor(list(label_weights), dtype=torch.float32)
        if self.weights.numel() != head.out_features:
            raise InvalidInput(f"{head.out_features} labels need {head.out_features} weights")
        self.offset = float(offset)
        self._kwarg = _hf.cache_kwarg(self.base)
        self.cache: Any = None
        self.length = 0
        self._pending: list[int] | None = None  # candidates of the last score() call

    def _forward(self, ids: torch.Tensor, **kw: Any) -> Any:
        return self.base(input_ids=ids, use_cache=True, **{self._kwarg: self.cache}, **kw)

    def start(self, prompt_ids: Sequence[int]) -> None:
        transformers = _hf.transformers_module()
        self.cache = transformers.DynamicCache(config=self.model.config)
        with torch.inference_mode():
            self._forward(torch.tensor([list(prompt_ids)]))
        self.length = len(prompt_ids)
        self._pending = None

    def score(self, candidates: torch.Tensor) -> torch.Tensor:
        k = int(candidates.numel())
        if self._pending is not None:  # scored before without accepting: drop those slots
            crop_to(self.cache, self.length)
        with torch.inference_mode():
            out = self._forward(candidates.view(1, k).long(),
                                attention_mask=tree_mask(self.length, k),
                                position_ids=torch.full((1, k), self.length, dtype=torch.long))
            labels = self.head(out.last_hidden_state[0]).float()
        self._pending = [int(c) for c in candidates]
        return labels @ self.weights + self.offset

    def accept(self, token_id: int) -> None:
        if self._pending is not None and token_id in self._pending:
            keep_slot(self.cache, self.length, self._pending.index(token_id))
        else:
            if self._pending is not None:
                crop_to(self.cache, self.length)
            with torch.inference_mode():
                self._forward(torch.tensor([[int(token_id)]]))
        self._pending = None
        self.length += 1
