"""Shared-trunk reward heads: linear heads on the LM's own last hidden state.

A response's reward features are ``W h + b`` with ``h`` the LM's final hidden state at the
response's last token (the prompt in the LM's chat format before it). During decoding the LM
computes these states anyway: one tree-attention pass of the LM body over the k candidates
gives every candidate's features (:class:`TrunkScorer`, offered by
:meth:`TrunkHeads.token_scorer`), and the chosen candidate's state, kept from that pass,
gives the next step's logits. Steering then costs about one k-token body pass per token
instead of a one-token pass, with no second model.

:func:`distill_heads` fits such heads to any reward set (e.g. the attribute scorers) by ridge
regression on texts, so that a costly text-level reward can steer at trunk speed.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from personalizer._optional import require
from personalizer.errors import InvalidInput
from personalizer.types import Message

from personalizer.backends import _hf
from personalizer.backends.rewards._batching import chunks, right_pad

if TYPE_CHECKING:  # pragma: no cover
    from personalizer.backends.decoding.handle import ModelHandle

__all__ = ["TrunkHeads", "TrunkScorer", "distill_heads", "trunk_states"]


class TrunkHeads:
    """J linear heads on a local LM's (a :class:`ModelHandle`'s) last hidden state (a multi-reward model)."""

    def __init__(self, generator: ModelHandle, weight: np.ndarray, bias: np.ndarray,
                 names: Sequence[str], descriptions: Sequence[str] | None = None, *,
                 batch_size: int = 8) -> None:
        w = np.asarray(weight, dtype=np.float32)
        hidden = int(generator.model.config.hidden_size)
        if w.ndim != 2 or w.shape[1] != hidden or len(names) != w.shape[0]:
            raise InvalidInput(f"weight must be (len(names), {hidden}), got {w.shape}")
        b = np.asarray(bias, dtype=np.float32)
        if b.shape != (w.shape[0],) or not (np.isfinite(w).all() and np.isfinite(b).all()):
            raise InvalidInput("bias needs one finite value per head; weights must be finite")
        self.generator, self.weight, self.bias = generator, w, b
        self.names = tuple(names)
        self.descriptions = tuple(descriptions or (f"trunk head {n}" for n in names))
        self.batch_size = batch_size

    def hidden_states(self, prompt: str, responses: Sequence[str]) -> np.ndarray:
        """Final hidden state at each response's last token, prompt in chat format first."""
        return trunk_states(self.generator, prompt, responses, batch_size=self.batch_size)

    def token_scorer(self, handle: ModelHandle) -> TrunkScorer | None:
        """The fast path: these heads read the decoding LM's own trunk, so on the model they
        were fitted on one tree pass per step scores every candidate."""
        return TrunkScorer(self) if handle.model is self.generator.model else None

    def score_many(self, prompt: str, responses: Sequence[str]) -> list[list[float]]:
        h = self.hidden_states(prompt, responses)
        return (h @ self.weight.T + self.bias).astype(np.float64).tolist()

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the heads (weights, bias, names, descriptions) to one safetensors file."""
        st = require("safetensors.numpy", extra="local", feature="saving reward heads")
        meta = {"names": json.dumps(self.names), "descriptions": json.dumps(self.descriptions),
                "hidden_size": str(self.weight.shape[1]), "kind": "trunk"}
        st.save_file({"weight": self.weight, "bias": self.bias}, str(path), metadata=meta)

    @classmethod
    def load(cls, path: str | os.PathLike[str], generator: ModelHandle) -> TrunkHeads:
        """Read heads saved by :meth:`save` onto ``generator`` (the LM they were fitted on)."""
        st = require("safetensors", extra="local", feature="loading reward heads")
        try:
            with st.safe_open(str(path), framework="numpy") as f:
                meta = f.metadata() or {}
                weight, bias = f.get_tensor("weight"), f.get_tensor("bias")
            if meta.get("kind") != "trunk":
                raise KeyError("kind")
            names, descriptions = json.loads(meta["names"]), json.loads(meta["descriptions"])
        except (OSError, KeyError, ValueError, st.SafetensorError) as exc:
            raise InvalidInput(f"{path} is not a personalizer trunk-heads file: {exc}") from None
        return cls(generator, weight, bias, names, descriptions)


def trunk_states(generator: ModelHandle, prompt: str, responses: Sequence[str], *,
                 batch_size: int = 8) -> np.ndarray:
    """The LM's final hidden state at each response's last token, with the prompt in the LM's
    chat format before it: what shared-trunk heads read during decoding (``(n, hidden)``)."""
    gen = generator
    head = _hf.chat_prompt(gen.tokenizer, [Message(role="user", content=prompt)])
    out = np.zeros((len(responses), int(gen.model.config.hidden_size)), np.float32)
    for start, batch in chunks(list(responses), batch_size):
        rows = [head + gen.tokenizer(r, add_special_tokens=False)["input_ids"] for r in batch]
        ids, mask = right_pad(rows, gen.tokenizer.pad_token_id or 0, torch)
        with torch.inference_mode():
            h = gen.model.base_model(input_ids=ids.to(gen.device),
                                     attention_mask=mask.to(gen.device)).last_hidden_state
        last = mask.sum(1) - 1
        out[start:start + len(batch)] = h[torch.arange(len(rows)), last].float().cpu().numpy()
    return out


def distill_heads(generator: ModelHandle, rewards: Any,
                  samples: Sequence[tuple[str, str]], *, ridge: float = 1.0) -> TrunkHeads:
    """Trunk heads that predict ``rewards``' raw features from the LM's hidden states
    (ridge regression over ``(prompt, response)`` samples)."""
    by_prompt: dict[str, list[str]] = {}
    for prompt, response in samples:
        by_prompt.setdefault(prompt, []).append(response)
    if sum(len(v) for v in by_prompt.values()) < 2:
        raise InvalidInput("distilling heads needs at least 2 samples")
    probe = TrunkHeads(generator, np.zeros((len(rewards), generator.model.config.hidden_size)),
                       np.zeros(len(rewards)), rewards.names)
    hs, ys = [], []
    for prompt, responses in by_prompt.items():
        hs.append(probe.hidden_states(prompt, responses))
        ys.append(rewards.raw_features(prompt, responses))
    h, y = np.concatenate(hs).astype(np.float64), np.concatenate(ys)
    mu_h, mu_y = h.mean(0), y.mean(0)
    hc = h - mu_h
    w = np.linalg.solve(hc.T @ hc + ridge * np.eye(h.shape[1]), hc.T @ (y - mu_y))  # (H, J)
    bias = mu_y - mu_h @ w
    return TrunkHeads(generator, w.T, bias, rewards.names, rewards.descriptions)



class TrunkScorer:
    """Trunk heads as a token scorer: the features of ``prefix + candidate`` are the heads on
    the LM's own tree pass over the candidates (the pass that also gives the next logits)."""

    kind = "trunk"

    def __init__(self, heads: TrunkHeads) -> None:
        self.weight = torch.tensor(heads.weight, dtype=torch.float32)  # (J, H)
        self.bias = torch.tensor(heads.bias, dtype=torch.float32)

    def start(self, rows: Sequence[Any]) -> None:
        pass

    def features(self, step: Any, rows: Sequence[Any]) -> torch.Tensor:
        hidden = step.lm_tree()[[r.b for r in rows]]  # (n, k, H)
        return hidden @ self.weight.T + self.bias

    def commit(self, chosen: torch.Tensor, slot: torch.Tensor) -> None:
        pass

    def select(self, alive: Sequence[Any]) -> None:
        pass
