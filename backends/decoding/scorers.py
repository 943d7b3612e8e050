"""Token scorers: the base-reward features of ``prefix + candidate`` for k candidate next tokens
of several rows at once, for reward-guided decoding (ARGS).

``TokenScorer`` is the seam. A reward model offers its own fast scorer through a hook,
``token_scorer(handle) -> TokenScorer | None`` (None when it cannot be fast for that model),
so a third-party reward can be fast too; :meth:`RewardSet.token_scorer` combines its rewards'
hooks. Scorers return RAW base-reward features (``(rows, k, J)``); the decoding policy turns
them into each user's reward with that user's weights, so one scorer serves every user of a
batch. Implementations here:

* :class:`TextScorer`: decodes the candidate texts and scores them with the reward set (any
  reward, any tokenizer; one reward-set call per row and step).
* :class:`TreeScorer`: a sequence-classification reward model that shares the LM's tokenizer
  keeps its own batched KV cache and scores every row's k candidates in ONE tree-attention
  pass per step (offered by ``ClassifierReward.token_scorer``).
* Shared-trunk heads read the LM's own tree pass (``personalizer.backends.heads.trunk``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol, runtime_checkable

import torch

from personalizer.errors import InvalidInput

from personalizer.backends.decoding.kv import PaddedCache

__all__ = ["CombinedScorer", "DecodeStep", "ScoredRow", "TextScorer", "TokenScorer",
           "TreeScorer", "score_head"]


@runtime_checkable
class ScoredRow(Protocol):
    """What a scorer may read of one decoding row."""

    b: int  # the row's index in the active batch this step
    prompt: list[int]  # the LM's prompt ids
    prompt_text: str  # the user's last message
    k: int  # how many candidates this row rescores

    @property
    def ids(self) -> list[int]:
        """The tokens decoded so far."""
        ...


@runtime_checkable
class DecodeStep(Protocol):
    """What one decoding step offers its scorers."""

    candidates: torch.Tensor  # (active rows, k_max) candidate ids, best first

    def lm_tree(self) -> torch.Tensor:
        """The LM's final hidden states of ``prefix + candidate`` (``(rows, k_max, H)``),
        computed by one tree pass the first time a scorer asks in this step."""
        ...


@runtime_checkable
class TokenScorer(Protocol):
    """Raw base-reward features of candidate next tokens, batched over rows."""

    kind: str  # names the decoding path: "args-<kind>"

    def start(self, rows: Sequence[ScoredRow]) -> None:
        """The rows this scorer serves, once, before the first step."""
        ...

    def features(self, step: DecodeStep, rows: Sequence[ScoredRow]) -> torch.Tensor:
        """``(len(rows), k_max, J)`` raw features for the rows scored this step (a subset of
        the started rows, in batch order)."""
        ...

    def commit(self, chosen: torch.Tensor, slot: torch.Tensor) -> None:
        """Each active row's chosen token, and its index among the step's candidates (-1
        where it was not one); tensors over the whole active batch (index by ``row.b``)."""
        ...

    def select(self, alive: Sequence[ScoredRow]) -> None:
        """The rows still decoding after this step (finished rows left)."""
        ...


def score_head(model: Any) -> torch.nn.Linear:
    """The linear score head of a sequence-classification model (on its final hidden states)."""
    head = getattr(model, "score", None) or getattr(model, "classifier", None)
    if head is None or not isinstance(head, torch.nn.Linear):
        raise InvalidInput(f"{type(model).__name__} has no linear score head; use the "
                           "text-level path for this reward model (scoring='text')")
    return head


class TextScorer:
    """Scores decoded ``prefix + candidate`` texts with ``raw_features(prompt, texts)``
    (a reward set's, for example)."""

    kind = "text"

    def __init__(self, tokenizer: Any,
                 raw_features: Callable[[str, list[str]], Any]) -> None:
        self.tokenizer, self.raw_features = tokenizer, raw_features

    def start(self, rows: Sequence[ScoredRow]) -> None:
        pass

    def features(self, step: DecodeStep, rows: Sequence[ScoredRow]) -> torch.Tensor:
        out: list[torch.Tensor] = []
        for row in rows:
            cands = step.candidates[row.b, :row.k].tolist()
            texts = [self.tokenizer.decode([*row.ids, c], skip_special_tokens=True)
                     for c in cands]
            feats = torch.as_tensor(self.raw_features(row.prompt_text, texts),
                                    dtype=torch.float32)
            pad = step.candidates.shape[1] - feats.shape[0]
            out.append(torch.nn.functional.pad(feats, (0, 0, 0, pad)) if pad else feats)
        return torch.stack(out)

    def commit(self, chosen: torch.Tensor, slot: torch.Tensor) -> None:
        pass

    def select(self, alive: Sequence[ScoredRow]) -> None:
        pass


class TreeScorer:
    """A sequence-classification reward model with the LM's vocabulary, scored by tree
    attention over a batched KV cache of its own (one forward per step for every row)."""

    kind = "tree"

    def __init__(self, model: Any, pad_id: int) -> None:
        self.model, self.head, self.pad_id = model, score_head(model), pad_id
        self.rows: list[ScoredRow] = []
        self.cache: PaddedCache | None = None

    def start(self, rows: Sequence[ScoredRow]) -> None:
        self.rows = list(rows)
        self.cache = PaddedCache(self.model, [r.prompt for r in rows], self.pad_id)

    def features(self, step: DecodeStep, rows: Sequence[ScoredRow]) -> torch.Tensor:
        assert self.cache is not None
        labels = self.head(self.cache.tree(step.candidates[[r.b for r in self.rows]])).float()
        return labels[[self.rows.index(r) for r in rows]]

    def commit(self, chosen: torch.Tensor, slot: torch.Tensor) -> None:
        assert self.cache is not None
        if not self.rows:
            return
        mine = [r.b for r in self.rows]
        self.cache.commit(chosen[mine], slot[mine])

    def select(self, alive: Sequence[ScoredRow]) -> None:
        assert self.cache is not None
        keep = [i for i, r in enumerate(self.rows) if any(r is a for a in alive)]
        self.rows = [self.rows[i] for i in keep]
        if keep:
            self.cache.select(keep)


class CombinedScorer:
    """Several rewards' fast scorers side by side (features concatenated in set order)."""

    def __init__(self, parts: Sequence[TokenScorer]) -> None:
        self.parts = list(parts)
        self.kind = "+".join(p.kind for p in self.parts)

    def start(self, rows: Sequence[ScoredRow]) -> None:
        for p in self.parts:
            p.start(rows)

    def features(self, step: DecodeStep, rows: Sequence[ScoredRow]) -> torch.Tensor:
        return torch.cat([p.features(step, rows) for p in self.parts], dim=-1)

    def commit(self, chosen: torch.Tensor, slot: torch.Tensor) -> None:
        for p in self.parts:
            p.commit(chosen, slot)

    def select(self, alive: Sequence[ScoredRow]) -> None:
        for p in self.parts:
            p.select(alive)
