"""``PaddedCache``: one model's KV cache over a left-padded batch of rows, step by step.

The batched decoding loop (:mod:`.batch`) keeps one of these per model it runs: the LM, a
separate reward model, a proxy-tuning expert and antiexpert. Each has its own prompts (a model
may format the chat its own way), its own padding and attention mask, and the same three moves:

* :meth:`tree`: append k candidate tokens per row in ONE forward, all at the row's next
  position, under a tree mask (each candidate sees the row's prefix and itself);
* :meth:`commit`: append the chosen token per row: the chosen tree slot is moved into place and
  the other slots are cropped (no extra forward), or, without a usable tree pass, one cached
  forward of the chosen tokens;
* :meth:`select`: keep only some rows (finished rows leave the batch and stop costing compute).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from . import _hf
from .tree import crop_to, keep_slot, tree_mask

__all__ = ["PaddedCache"]


class PaddedCache:
    """A model body with a KV cache over left-padded rows; ``hidden`` is each row's last
    final hidden state (``(rows, hidden_size)``)."""

    def __init__(self, model: Any, rows: Sequence[Sequence[int]], pad_id: int) -> None:
        transformers = _hf.transformers_module()
        self.body = model.base_model
        self._kwarg = _hf.cache_kwarg(self.body)
        self.cache = transformers.DynamicCache(config=model.config)
        device = next(model.parameters()).device
        width = max(len(r) for r in rows)
        ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
        self.mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, r in enumerate(rows):
            ids[i, width - len(r):] = torch.tensor(list(r), dtype=torch.long)
            self.mask[i, width - len(r):] = 1
        positions = (self.mask.cumsum(-1) - 1).clamp(min=0)
        self.device = device
        self.hidden = self._run(ids, self.mask, positions)[:, -1]
        self.next_pos = self.mask.sum(-1)  # per row: the position of its next token
        self._tree: torch.Tensor | None = None  # hidden states of the last tree pass

    def _run(self, ids: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor) -> Any:
        out = self.body(input_ids=ids.to(self.device), attention_mask=mask.to(self.device),
                        position_ids=positions.to(self.device), use_cache=True,
                        **{self._kwarg: self.cache})
        return out.last_hidden_state

    @property
    def rows(self) -> int:
        return int(self.mask.shape[0])

    def tree(self, candidates: torch.Tensor) -> torch.Tensor:
        """Hidden states of ``prefix + candidate`` for ``(rows, k)`` candidates, one forward;
        the cache holds the k slots until :meth:`commit`."""
        rows, k = candidates.shape
        if self._tree is not None:  # a tree pass without commit: drop its slots
            crop_to(self.cache, self.mask.shape[1])
        self._tree = self._run(candidates, tree_mask(self.mask, k),
                               self.next_pos[:, None].expand(rows, k))
        return self._tree

    def commit(self, chosen: torch.Tensor, slot: torch.Tensor) -> torch.Tensor:
        """Append ``chosen`` (one id per row); ``slot`` is its index among the last tree
        pass's candidates, -1 where it was not one. Returns the new ``hidden``."""
        length = self.mask.shape[1]
        tree, self._tree = self._tree, None
        ones = torch.ones(self.rows, 1, dtype=torch.long)
        if tree is not None and bool((slot >= 0).all()):
            keep_slot(self.cache, length, slot)  # each row's chosen slot moves to `length`
            slot = slot.to(tree.device)
            self.hidden = tree[torch.arange(self.rows, device=tree.device), slot]
        else:
            if tree is not None:
                crop_to(self.cache, length)
            self.hidden = self._run(chosen.view(-1, 1), torch.cat([self.mask, ones], dim=1),
                                    self.next_pos[:, None])[:, -1]
        self.mask = torch.cat([self.mask, ones], dim=1)
        self.next_pos = self.next_pos + 1
        return self.hidden

    def select(self, keep: Sequence[int]) -> None:
        """Keep only the rows at indices ``keep`` (in that order)."""
        if len(keep) == self.rows:
            return
        idx = torch.tensor(list(keep), dtype=torch.long)
        self.cache.batch_select_indices(idx.to(self.device))
        self.mask, self.next_pos, self.hidden = self.mask[idx], self.next_pos[idx], \
            self.hidden[idx.to(self.hidden.device)]
        if self._tree is not None:
            self._tree = self._tree[idx.to(self._tree.device)]
