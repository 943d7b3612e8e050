"""``ClassifierReward``: any ``AutoModelForSequenceClassification`` as base rewards.

Each output label is one base reward (a one-label reward model is one reward). Prompt and
response go through the tokenizer's chat template when it has one (how HF reward models are
trained), else as a text pair.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from typing import Any

from personalizer.errors import BackendError, InvalidInput

from personalizer.backends import _hf
from personalizer.backends.rewards._batching import chunks, right_pad, unused_id

__all__ = ["ClassifierReward"]


class ClassifierReward:
    """Scores with a sequence-classification model; one base reward per label.

    ``names`` default to the config's ``id2label`` (or ``name`` for one label).
    """

    def __init__(self, model: str | os.PathLike[str] | Any, tokenizer: Any = None, *,
                 names: Sequence[str] | None = None, descriptions: Sequence[str] | None = None,
                 name: str = "classifier", max_length: int = 512, batch_size: int = 16,
                 device: str = "cpu", dtype: str | Any = "float32") -> None:
        torch = _hf.torch_module()
        transformers = _hf.transformers_module()
        if isinstance(model, (str, os.PathLike)):
            try:
                tokenizer = transformers.AutoTokenizer.from_pretrained(str(model))
                model = transformers.AutoModelForSequenceClassification.from_pretrained(
                    str(model), dtype=_hf.resolve_dtype(dtype))
            except (OSError, ValueError) as exc:
                raise BackendError(f"could not load classifier {model!r}: {exc}") from exc
            model = model.to(device)
        elif tokenizer is None:
            raise InvalidInput("pass the tokenizer together with a loaded model")
        self.model, self.tokenizer = model.eval(), tokenizer
        n_labels = int(model.config.num_labels)
        if names is None:
            id2label = getattr(model.config, "id2label", None) or {}
            default = [str(id2label.get(i, f"label_{i}")) for i in range(n_labels)]
            names = [name] if n_labels == 1 else [f"{name}:{lab}" for lab in default]
        if len(names) != n_labels:
            raise InvalidInput(f"the model has {n_labels} labels but {len(names)} names given")
        self.names = tuple(names)
        self.descriptions = tuple(descriptions or (f"higher {n} score" for n in self.names))
        if len(self.descriptions) != n_labels:
            raise InvalidInput(f"{n_labels} labels need {n_labels} descriptions")
        self.max_length, self.batch_size = max_length, batch_size
        self.device = next(model.parameters()).device
        self._torch = torch
        self._lock = threading.Lock()  # the batch's pad id is set on the config per call

    @property
    def name(self) -> str:
        return self.names[0]

    @property
    def description(self) -> str:
        return self.descriptions[0]

    def token_scorer(self, handle: Any) -> Any:
        """The fast path for ARGS: when this model shares the decoding LM's vocabulary, one
        tree-attention pass over its own KV cache scores every candidate of every row per
        step (:class:`~personalizer.backends.decoding.scorers.TreeScorer`); None otherwise."""
        from personalizer.backends.decoding.scorers import TreeScorer, score_head

        if self.tokenizer.get_vocab() != handle.tokenizer.get_vocab():
            return None
        score_head(self.model)  # a model without a linear head cannot be tree-scored
        return TreeScorer(self.model, handle.tokenizer.pad_token_id or 0)

    def _encode(self, prompt: str, response: str) -> list[int]:
        tok = self.tokenizer
        if getattr(tok, "chat_template", None):
            text = tok.apply_chat_template(
                [{"role": "user", "content": prompt}, {"role": "assistant", "content": response}],
                tokenize=False)
            ids = tok(text, add_special_tokens=False)["input_ids"]
        else:
            ids = tok(prompt, response)["input_ids"]
        return list(ids[-self.max_length:])  # keep the end: the response is what is scored

    def score_many(self, prompt: str, responses: Sequence[str]) -> list[list[float]]:
        torch = self._torch
        out: list[list[float]] = []
        for _, batch in chunks(list(responses), self.batch_size):
            rows = [self._encode(prompt, r) for r in batch]
            pad = unused_id(rows, self.tokenizer.pad_token_id, int(self.model.config.vocab_size))
            ids, mask = right_pad(rows, pad, torch)
            with self._lock, torch.inference_mode():
                saved = self.model.config.pad_token_id
                self.model.config.pad_token_id = pad
                try:
                    logits = self.model(input_ids=ids.to(self.device),
                                        attention_mask=mask.to(self.device)).logits
                finally:
                    self.model.config.pad_token_id = saved
            if not torch.isfinite(logits).all():
                raise BackendError(f"classifier {self.names[0]!r} returned a non-finite score; "
                                   "a NaN or inf is an error, not a score")
            out += logits.float().cpu().tolist()
        return out

    def score(self, prompt: str, responses: Sequence[str]) -> list[float]:
        if len(self.names) != 1:
            raise InvalidInput(f"{type(self).__name__} has {len(self.names)} labels; use "
                               "score_many, or put it in a RewardSet")
        return [row[0] for row in self.score_many(prompt, responses)]
