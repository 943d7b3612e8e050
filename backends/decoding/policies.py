"""Token policies: how a row of the decoding loop chooses its next token.

* :class:`PlainPolicy`: the model's own choice (greedy, or a sample after temperature, top-k
  and top-p), optionally limited to the top ``limit`` tokens (ARGS with nothing to add).
* :class:`TokenRewardPolicy`: token-level rewards: the row's logits come from its hidden
  state shifted by its user's folded token heads; chosen like plain decoding.
* :class:`ArgsPolicy`: ARGS: the top ``k`` candidates rescored as
  ``logit + strength * (features @ weights + offset)``, then chosen with the same sampling
  options. With whole-answer lookahead, at each sentence end it also weighs stopping now
  against one more (greedily drafted) sentence, both scored as finished answers:
  ``logit(eos) + W (a + l q)(prefix) + w b(prefix)`` against the same for ``prefix +
  sentence`` with ``logit(next)``: ``a`` is the user's reward from whole-answer attributes
  (length), which only finished answers show, weighed by ``W = strength *
  lookahead_weight``; ``b`` the rest of their reward at the per-token ``w = strength``;
  ``q`` the quality term (substance) with its fixed weight ``l``; an answer
  whose substance is below the quality floor may not end (neither here nor by the reward
  choosing the end of turn over the model's own choice).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from personalizer.backends.decoding.tensor_math import args_scores, choose_next, scatter_scores
from personalizer.backends.decoding.engine import Decoding, RowSpec
from personalizer.backends.decoding.handle import ModelHandle, context_length
from personalizer.backends.request import GenerationOptions
from personalizer.backends.decoding.text import ends_sentence, may_end

if TYPE_CHECKING:  # pragma: no cover
    from personalizer.backends.decoding.engine import DecodeRow
    from personalizer.backends.decoding.scorers import TokenScorer

__all__ = ["PLAIN", "ArgsPolicy", "BranchPolicy", "PlainPolicy", "TokenRewardPolicy", "draft"]


def _sample(logits: torch.Tensor, row: DecodeRow, top_k: int | None) -> int:
    o = row.spec.options
    return int(choose_next(logits, do_sample=o.sampling(), temperature=o.temperature,
                           top_k=top_k, top_p=o.top_p, generator=row.spec.rng)[0])


@dataclass(frozen=True)
class PlainPolicy:
    """The model's own next token; ``limit`` keeps only the top ``limit`` tokens."""

    limit: int | None = None
    k: int = 0
    scorer: None = None

    def scored(self, step: int) -> bool:
        return False

    def candidates_at(self, step: int) -> int:
        return 0

    def choose(self, run: Decoding, row: DecodeRow, logits: torch.Tensor,
               values: torch.Tensor | None, candidates: torch.Tensor | None) -> int:
        top_k = row.spec.options.top_k
        if self.limit is not None:
            top_k = self.limit if top_k is None else min(top_k, self.limit)
        return _sample(logits, row, top_k)


PLAIN = PlainPolicy()


@dataclass(frozen=True)
class BranchPolicy:
    """Greedy decoding that starts with the ``rank``-th most likely token (0: the greedy
    token itself), or with the greedy token when that one's logit is more than ``max_gap``
    below the best: one branch of a blockwise search."""

    rank: int
    max_gap: float
    scorer: None = None

    @property
    def k(self) -> int:
        return self.rank + 1

    def scored(self, step: int) -> bool:
        return False

    def candidates_at(self, step: int) -> int:
        return self.rank + 1 if step == 0 else 0

    def choose(self, run: Decoding, row: DecodeRow, logits: torch.Tensor,
               values: torch.Tensor | None, candidates: torch.Tensor | None) -> int:
        if row.tokens == 0 and values is not None and candidates is not None:
            if float(values[0] - values[self.rank]) <= self.max_gap:
                return int(candidates[self.rank])
            return int(candidates[0])
        return int(torch.argmax(logits))


@dataclass(frozen=True)
class ArgsPolicy:
    """ARGS over ``k`` candidates with one user's reward ``features @ weights + offset``
    (raw base-reward features from ``scorer``)."""

    k: int
    strength: float
    weights: torch.Tensor  # (J,) the user's weights on the raw features
    offset: float
    scorer: TokenScorer
    score_every: int = 1
    lookahead: int | None = None  # token budget of a drafted sentence; None: off
    # the user's reward of finished texts: (whole-answer part, per-token part), each (n,)
    text_reward: Callable[[str, list[str]], Any] | None = None
    eos: int = 0  # the id that ends an answer
    quality: Any = None  # a QualityModel (substance) with a fixed weight, or None
    quality_weight: float = 0.0
    lookahead_weight: float = 1.0  # whole answers are compared at strength * this

    def scored(self, step: int) -> bool:
        return step % self.score_every == 0

    def candidates_at(self, step: int) -> int:
        return self.k

    def choose(self, run: Decoding, row: DecodeRow, logits: torch.Tensor,
               values: torch.Tensor | None, candidates: torch.Tensor | None) -> int:
        assert values is not None and candidates is not None
        k = row.k
        v, c = values[:k], candidates[:k]
        rewards = torch.zeros_like(v)
        if row.features is not None:
            rewards = row.features[:k] @ self.weights + self.offset
        scores = scatter_scores(c, args_scores(v, rewards, self.strength), logits.shape[-1])
        tid = _sample(scores, row, row.spec.options.top_k)
        eos = run.handle.eos_ids
        if tid in eos and int(c[0]) not in eos and not self._has_content(row):
            # the reward, not the model, wants to end an answer that says nothing yet
            scores[[e for e in eos if e < scores.shape[-1]]] = float("-inf")
            if bool(torch.isfinite(scores).any()):
                tid = _sample(scores, row, row.spec.options.top_k)
        if (self.lookahead is not None and row.ids and tid not in eos
                and may_end(row.tracker.decode())):
            if self._stop_here(run.handle, row, tid, logits):
                return self.eos
        return tid

    def _has_content(self, row: DecodeRow) -> bool:
        """Whether the answer so far clears the quality floor (always, without one)."""
        if self.quality is None:
            return True
        text = row.tracker.decode()
        return float(self.quality.score(row.prompt_text, [text])[0]) >= self.quality.floor

    def _stop_here(self, handle: ModelHandle, row: DecodeRow, go: int,
                   logits: torch.Tensor) -> bool:
        """Stop now, or go on with one more sentence? Both scored as finished answers."""
        assert self.lookahead is not None and self.text_reward is not None
        tok = handle.tokenizer

        def sentence_done(ids: list[int]) -> bool:
            return len(ids) + 1 >= 3 and ends_sentence(tok.decode([go, *ids]))

        more = [go, *draft(handle, [*row.prompt, *row.ids, go], self.lookahead,
                           sentence_done)]
        stop_text = row.tracker.decode()
        go_text = row.tracker.decode([*row.ids, *more])
        whole, rest = self.text_reward(row.prompt_text, [stop_text, go_text])
        if self.quality is not None:
            q_stop, q_go = self.quality.score(row.prompt_text, [stop_text, go_text])
            if q_stop < self.quality.floor:
                return False  # nothing said yet: the answer may not end here
            whole = whole + self.quality_weight * np.array([q_stop, q_go])
        big, w = self.strength * self.lookahead_weight, self.strength
        stop = float(logits[self.eos]) + big * float(whole[0]) + w * float(rest[0])
        go_on = float(logits[go]) + big * float(whole[1]) + w * float(rest[1])
        return stop > go_on


@dataclass(frozen=True)
class TokenRewardPolicy:
    """Token-level rewards: the loop projects this row's hidden state shifted by ``steer``
    (its user's folded token heads), the token rules add their biases (``end_bias`` on the
    end of turn, ``marker_bias`` on list markers at a line start, ``word_bias`` on the words
    of lexical rewards), and the row chooses from
    those logits as plain decoding would. With a ``quality`` term, the steering may not end an answer whose substance is
    below the floor: an end of turn that the unsteered logits would not choose is then
    masked (the model's own end stays). "The model's own choice" is the greedy argmax of
    the unsteered logits (proxy-tuned when the run is), also when the row samples: a
    sampled end of turn below the floor is kept only when the unsteered argmax is an end of
    turn, and is otherwise redrawn without the end-of-turn tokens."""

    steer: Any  # a token_heads.HiddenSteer
    quality: Any = None
    end_bias: float = 0.0  # added to the end-of-turn logits (token rule of length); a
    #                        positive one only after a finished sentence or line
    marker_bias: float = 0.0  # added to list markers at a line start (rule of structure)
    lines: Any = None  # token_rules.LineTokens, with a marker or a positive end bias
    starts_line: bool = True  # whether the answer starts a line (False after a prefill
    #                           that ends mid-line)
    word_bias: Any = None  # token_rules.WordBias: the lexical rewards' rule
    k: int = 0
    scorer: None = None

    def scored(self, step: int) -> bool:
        return False

    def candidates_at(self, step: int) -> int:
        return 0

    def choose(self, run: Decoding, row: DecodeRow, logits: torch.Tensor,
               values: torch.Tensor | None, candidates: torch.Tensor | None) -> int:
        eos = run.handle.eos_ids
        logits = self._ruled(logits, row, eos)
        tid = _sample(logits, row, row.spec.options.top_k)
        if tid in eos and self.quality is not None and \
                int(torch.argmax(run.source.unsteered(row.b))) not in eos:
            text = row.tracker.decode()
            if float(self.quality.score(row.prompt_text, [text])[0]) < self.quality.floor:
                masked = logits.clone()
                masked[[e for e in eos if e < masked.shape[-1]]] = float("-inf")
                if bool(torch.isfinite(masked).any()):
                    tid = _sample(masked, row, row.spec.options.top_k)
        return tid

    def _ruled(self, logits: torch.Tensor, row: DecodeRow, eos: set[int]) -> torch.Tensor:
        """``logits`` with the token rules' biases: the words of lexical rewards (a raised
        word once it is in the answer no more), the end of turn (toward ending only after
        a finished sentence or line), and list markers when the answer starts or its last
        token ended a line."""
        last = row.token_ids[-1] if row.token_ids else None
        at_line_start = self.marker_bias != 0 and self.lines is not None and (
            last in self.lines.newline if last is not None else self.starts_line)
        end = self.end_bias if self.end_bias <= 0 or self._may_end(row, last) else 0.0
        if end == 0 and not at_line_start and self.word_bias is None:
            return logits
        out = logits.clone()
        if self.word_bias is not None:  # a raised word is earned once
            out += self.word_bias.at(row.token_ids, out.shape[-1]).to(out.dtype)
        if end:
            out[[e for e in eos if e < out.shape[-1]]] += end
        if at_line_start:
            out[[m for m in self.lines.markers if m < out.shape[-1]]] += self.marker_bias
        return out

    def _may_end(self, row: DecodeRow, last: int | None) -> bool:
        """Whether the answer so far ends a sentence or a line (so ending is whole): its
        last token may end one, and its text does (not "2." nor "e.g.")."""
        from personalizer.backends.heads.rules import ends_whole

        return last is not None and self.lines is not None and \
            last in self.lines.sentence_end and ends_whole(row.tracker.decode())


def draft(handle: ModelHandle, prefix: Sequence[int], budget: int,
          end: Callable[[list[int]], bool] | None = None) -> list[int]:
    """Greedy tokens continuing ``prefix`` (end of turn excluded), at most ``budget``, until
    ``end(ids)`` says a block ends: a lookahead draft, decoded as a row of its own."""
    room = context_length(handle.model)
    if room is not None:
        budget = min(budget, room - len(prefix))
    if budget < 1:
        return []
    spec = RowSpec(prompt=list(prefix), prompt_text="",
                   options=GenerationOptions(max_new_tokens=budget), policy=PLAIN,
                   max_new_tokens=budget, end=end)
    run = Decoding(handle, [spec])
    for _ in run:
        pass
    return run.rows[0].ids
