"""Token-level base rewards: every base reward scores every next token from the LM's own state.

GenARM (Xu et al., ICLR 2025) steers with an *autoregressive* reward: one forward pass scores
every vocabulary token as the next token's reward, and a user's decoding is
``log p_base + sum_j alpha_j log p_arm_j``. Here each base reward ``j`` of a reward set is a
rank-r map of the decoding LM's final hidden state read through the LM's own output
embedding, ``s_j(v | h) = W[v] . (U_j D_j^T h + b_j)``, so a user's steered logits
``W h + w sum_j c_j s_j(. | h)`` fold into one vocabulary projection of a shifted hidden state
(:func:`~personalizer.backends.decoding.tensor_math.fold_token_rewards`): the cost per step does not depend on how many
candidates would be rescored, on the vocabulary or on how many users share a batch.

An answer's sequence-level score for reward ``j`` is a log-ratio summed over its tokens (its
end of turn included): ``log pi_j(y_t) - log pi(y_t)``, where ``pi`` is the LM and ``pi_j``
the LM tilted by the head (logits ``W h + s_j``), both normalised over the tokens the LM finds
likely at that step (its top ``top`` and the answer's own). Heads that are 0 score every
answer 0. A head can say "longer" only through small per-token gains, so distilled heads
track length and structure poorly; base rewards with a *token rule* (an attribute scorer's
``token_rule``) act directly on their tokens instead (:mod:`.rules`): the user's length
coefficient biases the end-of-turn logits, the structure coefficient the list markers at the
start of a line, a lexical reward the tokens of its words, and their heads are left out of
the fold. The normalisers are the same for every token of
a step, so decoding adds the raw scores (softmax ignores a constant), and steering with
``strength * c . s`` draws from ``pi * exp(strength * r_user)`` token by token.

The heads are saved as a versioned safetensors file that names its reward set and the LM
it was trained for, and refuses any other. Training them (distilling from a reward set,
refining from preferences) lives in :mod:`.training`.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import torch

from personalizer._optional import require
from personalizer.errors import InvalidInput

from personalizer.backends.decoding.handle import ModelHandle
from personalizer.backends.decoding.tensor_math import fold_token_rewards, token_reward_scores

__all__ = ["TOKEN_HEADS_FORMAT", "HeadsOwner", "HiddenSteer", "TokenHeads", "model_fingerprint",
           "shift_hidden"]

# the file's version; "2": the model fingerprint is read in bfloat16 (float32 and bfloat16
# copies of a model match), so heads written as "1" are refused and distilled again
TOKEN_HEADS_FORMAT = "2"
_FINGERPRINT_ROWS = 256  # rows of the output embedding that the fingerprint reads


class HeadsOwner(ModelHandle, Protocol):
    """A loaded LM with the reward set its heads must match (a ``LocalGenerator`` is one)."""

    rewards: Any


def model_fingerprint(model: Any) -> str:
    """A short digest of an LM's output embedding (its shape and a strided sample of
    ``_FINGERPRINT_ROWS`` of its rows, rounded to bfloat16): heads read that matrix and the
    states before it, so they fit no other model. A float32 model and its bfloat16 copy
    fingerprint the same; only the sampled rows are copied."""
    w = model.get_output_embeddings().weight
    step = max(1, w.shape[0] // _FINGERPRINT_ROWS)
    rows = w[::step].detach().to(torch.bfloat16).float().cpu()
    h = hashlib.sha256(f"{tuple(w.shape)}".encode())
    h.update(rows.contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


@dataclass(frozen=True)
class TokenHeads:
    """Token-level heads for every base reward of one reward set, on one LM.

    ``down`` is ``(J, d, r)``, ``up`` ``(J, r, d)``, ``bias`` ``(J, d)`` (float32, no grad);
    ``names`` are the reward set's base rewards in its order, ``reward_set_id`` and
    ``reward_set_version`` the set whose coefficients steer with them, ``model`` the
    :func:`model_fingerprint` of the LM they were trained on.
    """

    down: torch.Tensor
    up: torch.Tensor
    bias: torch.Tensor
    names: tuple[str, ...]
    reward_set_id: str
    reward_set_version: str
    model: str

    def __post_init__(self) -> None:
        j = len(self.names)
        if self.down.dim() != 3 or self.down.shape[0] != j:
            raise InvalidInput(f"down must be (J={j}, d, r), got {tuple(self.down.shape)}")
        _, d, r = self.down.shape
        if tuple(self.up.shape) != (j, r, d) or tuple(self.bias.shape) != (j, d):
            raise InvalidInput(f"up must be ({j}, {r}, {d}) and bias ({j}, {d}), got "
                               f"{tuple(self.up.shape)} and {tuple(self.bias.shape)}")
        if not all(bool(torch.isfinite(t).all()) for t in (self.down, self.up, self.bias)):
            raise InvalidInput("token heads must be finite")

    @property
    def rank(self) -> int:
        return int(self.down.shape[2])

    def check(self, rewards: Any, model: Any = None) -> None:
        """Refuse a reward set (and, when given, an LM) these heads were not trained for."""
        if rewards is None or (rewards.id, rewards.version) != (self.reward_set_id,
                                                                 self.reward_set_version):
            got = None if rewards is None else f"{rewards.id!r} version {rewards.version!r}"
            raise InvalidInput(
                f"these token heads were distilled from reward set {self.reward_set_id!r} "
                f"version {self.reward_set_version!r}, not {got}: distill heads for this "
                "reward set (distill_token_heads)")
        if tuple(rewards.names) != self.names:
            raise InvalidInput("the token heads' base rewards differ from the reward set's")
        if model is not None:
            self.check_model(model)

    def check_model(self, model: Any) -> None:
        """Refuse an LM these heads were not trained on (another hidden size, or another
        :func:`model_fingerprint`)."""
        d = int(model.get_output_embeddings().weight.shape[1])
        if d != self.down.shape[1]:
            raise InvalidInput(
                f"these token heads read hidden states of size {self.down.shape[1]}, but the "
                f"model's are of size {d}: distill heads on this model")
        if model_fingerprint(model) != self.model:
            raise InvalidInput(
                "these token heads were trained on another model (they read its hidden "
                "states and output embedding): distill heads on this one")

    def scores(self, hidden: torch.Tensor, out_embedding: torch.Tensor) -> torch.Tensor:
        """Every base reward's raw score of every next token, ``(rows, J, vocab)``."""
        return token_reward_scores(hidden, self.down, self.up, self.bias, out_embedding)

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the heads and what they belong to into one safetensors file."""
        st = require("safetensors.torch", extra="local", feature="saving token heads")
        meta = {"kind": "token-heads", "format": TOKEN_HEADS_FORMAT,
                "names": json.dumps(self.names), "reward_set_id": self.reward_set_id,
                "reward_set_version": self.reward_set_version, "model": self.model}
        st.save_file({"down": self.down.contiguous(), "up": self.up.contiguous(),
                      "bias": self.bias.contiguous()}, str(path), metadata=meta)

    @classmethod
    def load(cls, path: str | os.PathLike[str], generator: HeadsOwner) -> TokenHeads:
        """Read heads saved by :meth:`save` for ``generator`` (refused when they were trained
        on another model or for another reward set than the generator's)."""
        st = require("safetensors", extra="local", feature="loading token heads")
        try:
            with st.safe_open(str(path), framework="pt") as f:
                meta = f.metadata() or {}
                tensors = {k: f.get_tensor(k) for k in ("down", "up", "bias")}
            if meta.get("kind") != "token-heads":
                raise KeyError("kind")
            fmt = meta.get("format")
            if fmt != TOKEN_HEADS_FORMAT:
                raise InvalidInput(f"{path} has token-heads format {fmt!r}; this version "
                                   f"reads {TOKEN_HEADS_FORMAT!r}: distill the heads again")
            try:
                heads = cls(**{k: v.float() for k, v in tensors.items()},
                            names=tuple(json.loads(meta["names"])),
                            reward_set_id=meta["reward_set_id"],
                            reward_set_version=meta["reward_set_version"], model=meta["model"])
            except InvalidInput as exc:
                raise InvalidInput(f"{path} holds broken token heads: {exc}") from None
        except InvalidInput:
            raise  # a specific reason (the format version, broken heads), said as it is
        except (OSError, KeyError, ValueError, TypeError, st.SafetensorError) as exc:
            raise InvalidInput(f"{path} is not a personalizer token-heads file: "
                               f"{exc}") from None
        heads.check(generator.rewards, generator.model)
        return heads


@dataclass(frozen=True)
class HiddenSteer:
    """One row's token-level steering: its user's coefficients over ``heads`` (already on
    the relative scale) and strength. The decoding loop shifts the row's hidden state by it
    before the vocabulary projection."""

    heads: TokenHeads
    coefficients: torch.Tensor  # (J,)
    strength: float


def shift_hidden(hidden: torch.Tensor, steers: Sequence[HiddenSteer | None]) -> torch.Tensor:
    """``hidden`` (rows, d) with every steered row folded (:func:`fold_token_rewards`); rows
    without a steer are the same tensor values. Rows sharing heads are folded together."""
    groups: dict[int, list[int]] = {}
    for b, s in enumerate(steers):
        if s is not None:
            groups.setdefault(id(s.heads), []).append(b)
    if not groups:
        return hidden
    out = hidden.clone()
    for rows in groups.values():
        heads = steers[rows[0]].heads  # type: ignore[union-attr]
        dev = hidden.device
        idx = torch.tensor(rows, device=dev)
        coef = torch.stack([steers[b].coefficients for b in rows]).to(dev)  # type: ignore[union-attr]
        w = torch.tensor([steers[b].strength for b in rows], device=dev)  # type: ignore[union-attr]
        h = hidden[idx].float()
        folded = fold_token_rewards(h, heads.down.to(dev), heads.up.to(dev),
                                    heads.bias.to(dev), coef, w)
        out[idx] = folded.to(hidden.dtype)
    return out
