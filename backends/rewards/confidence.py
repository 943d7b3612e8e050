"""``ConfidenceReward``: a causal LM's own certainty about a response, as a label-free reward.

Two measures over the response tokens (RLSF; self-certainty):

* ``mean_logprob``: mean of ``log p(token | prompt, previous tokens)``;
* ``self_certainty``: mean over positions of ``KL(U || p) = -log V - mean_v log p_v``, how far
  the next-token distribution is from uniform.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal

from personalizer.errors import InvalidInput
from personalizer.types import Message

from personalizer.backends import _hf
from personalizer.backends.rewards._batching import chunks, right_pad
from personalizer.backends.rewards.base import check_scores

__all__ = ["ConfidenceReward"]


class ConfidenceReward:
    """The LM of a :class:`~personalizer.backends.LocalGenerator` scoring its own certainty."""

    def __init__(self, generator: Any, *,
                 measure: Literal["mean_logprob", "self_certainty"] = "mean_logprob",
                 batch_size: int = 4, name: str | None = None) -> None:
        if measure not in ("mean_logprob", "self_certainty"):
            raise InvalidInput("measure must be 'mean_logprob' or 'self_certainty'")
        self.generator, self.measure, self.batch_size = generator, measure, batch_size
        self.name = name or f"confidence_{measure}"
        self.description = ("the model is more certain of the answer: "
                            + ("mean token log-probability" if measure == "mean_logprob"
                               else "mean KL(uniform || next-token distribution)"))

    def score(self, prompt: str, responses: Sequence[str]) -> list[float]:
        torch = _hf.torch_module()
        gen = self.generator
        tok = gen.tokenizer
        head = _hf.chat_prompt(tok, [Message(role="user", content=prompt)])
        bodies = [tok(r, add_special_tokens=False)["input_ids"] for r in responses]
        if any(not b for b in bodies):
            raise InvalidInput("cannot score the confidence of an empty response")
        out: list[float] = []
        for _, batch in chunks(bodies, self.batch_size):
            rows = [head + list(b) for b in batch]
            ids, mask = right_pad(rows, tok.pad_token_id or 0, torch)
            with torch.inference_mode():
                logits = gen.model(input_ids=ids.to(gen.device),
                                   attention_mask=mask.to(gen.device)).logits.float()
            logp = logits.log_softmax(dim=-1)
            for i, body in enumerate(batch):
                start = len(head) - 1  # position whose logits predict the first response token
                span = logp[i, start:start + len(body)]
                if self.measure == "mean_logprob":
                    target = torch.tensor(list(body), device=span.device)
                    value = span.gather(-1, target[:, None]).mean()
                else:
                    value = (-math.log(span.shape[-1]) - span.mean(dim=-1)).mean()
                out.append(float(value))
        return check_scores(out, self.name, len(bodies))
