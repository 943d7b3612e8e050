"""ARGS (Khanov et al. 2024): each step, rescore the top candidate tokens by the user's reward.

``score(v) = logit(v) + strength * r_user(prompt, prefix + v)`` over the ``candidates``
most likely tokens, chosen greedily or sampled with the generation's sampling options. The
reward's own fast token scorer runs when it offers one for the model (path ``args-tree``,
``args-trunk``), else candidate texts are scored by the reward set (``args-text``). With
whole-answer lookahead, at each sentence end it also weighs stopping now against one more
(greedily drafted) sentence, both scored as finished answers: ``logit(eos) + W (a + l
q)(prefix) + w b(prefix)`` against the same for ``prefix + sentence`` with ``logit(next)``:
``a`` is the user's reward from whole-answer attributes (length), which only finished
answers show, weighed by ``W = strength * lookahead_weight``; ``b`` the rest of their
reward at the per-token ``w = strength``; ``q`` the quality term (substance) with its fixed
weight ``l``; an answer whose substance is below the quality floor may not end (neither
here nor by the reward choosing the end of turn over the model's own choice).

Torch is imported where it is used, so that naming the strategy needs no torch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from pydantic import Field

from personalizer.steering import Strategy

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from personalizer.backends.decoding.engine import Decoding, DecodeRow
    from personalizer.backends.decoding.handle import ModelHandle
    from personalizer.backends.decoding.planning import Plan, PlanContext
    from personalizer.backends.decoding.scorers import TokenScorer
    from personalizer.backends.rewards.quality import QualityModel

__all__ = ["Args", "ArgsPolicy"]


class Args(Strategy):
    """ARGS: each step, rescore the ``candidates`` most likely tokens as
    ``logit + strength * r_user(prompt, prefix + token)`` and choose among them (greedy, or
    sampled with the generation's sampling options)."""

    kind: Literal["args"] = "args"
    candidates: int = Field(default=10, ge=1, le=256,
                            description="Candidate tokens rescored per step (ARGS's k).")
    score_every: int = Field(default=1, ge=1, le=64,
                             description="Rescore every m tokens (text rewards are costly).")
    whole_answer: Literal["lookahead", "off"] = Field(
        default="lookahead",
        description="At sentence ends, weigh stopping against one more sentence, scored as "
                    "finished answers (a prefix says nothing about length or structure).")
    lookahead_tokens: int = Field(default=48, ge=4, le=512,
                                  description="Token limit of one drafted sentence.")
    lookahead_weight: float = Field(
        default=200.0, ge=0, le=10000,
        description="The reward's weight when two finished answers are compared (ending "
                    "here or after one more sentence), as a multiple of strength. The "
                    "model's logits there differ by 5-25 between going on and ending, "
                    "while one more sentence moves a whole-answer reward by about 0.1 (on "
                    "the relative scale), so this weight is far larger than the per-token "
                    "one; the quality floor keeps an early end an answer.")
    scoring: Literal["auto", "text", "fast"] = Field(
        default="auto",
        description="'fast': the reward's own token scorer (a reward model's tree pass, "
                    "heads on the LM's trunk), refused when the reward has none; 'text': "
                    "score decoded candidate texts; 'auto': fast when the reward offers it.")
    quality_weight: float = Field(
        default=0.25, ge=0, le=100,
        description="Weight of the generator's quality term (substance) beside the user's "
                    "reward when whole answers are compared; an answer may only end once "
                    "its quality clears the term's floor. 0: off.")

    def plan(self, ctx: PlanContext) -> Plan:
        """Plain top-k decoding when the reward cannot change the answer (strength 0, or
        no weight and no sampled lookahead): identical answers, faster; else ARGS."""
        import torch

        from personalizer.backends.decoding.handle import end_of_turn
        from personalizer.backends.decoding.policies import PlainPolicy
        from personalizer.backends.rewards.user import UserReward

        lookahead = self.whole_answer == "lookahead"
        if ctx.steering.strength == 0 or (not ctx.coef.any()
                                          and not (lookahead and ctx.options.sampling())):
            return ctx.plain(PlainPolicy(limit=self.candidates))
        # whole-answer attributes (length) only count when finished answers are compared
        weights, offset = ctx.rewards.raw_weights(ctx.user * (1 - ctx.whole))  # type: ignore[attr-defined]
        scorer = ctx.scorer(self.scoring, weights)
        quality = ctx.quality_model if self.quality_weight > 0 else None
        reward = UserReward(ctx.rewards, ctx.user)
        policy = ArgsPolicy(
            k=self.candidates, strength=ctx.steering.strength,
            weights=torch.tensor(weights, dtype=torch.float32), offset=offset, scorer=scorer,
            score_every=self.score_every,
            lookahead=self.lookahead_tokens if lookahead else None,
            text_reward=reward.split, eos=end_of_turn(ctx.handle), quality=quality,
            quality_weight=self.quality_weight, lookahead_weight=self.lookahead_weight)
        levers = ("args", "lookahead") if lookahead else ("args",)
        return ctx.plan(policy, f"args-{scorer.kind}", levers, quality=quality,
                        quality_weight=self.quality_weight)


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
    quality: QualityModel | None = None  # substance with a fixed weight, or None
    quality_weight: float = 0.0
    lookahead_weight: float = 1.0  # whole answers are compared at strength * this

    def scored(self, step: int) -> bool:
        return step % self.score_every == 0

    def candidates_at(self, step: int) -> int:
        return self.k

    def choose(self, run: Decoding, row: DecodeRow, logits: torch.Tensor,
               values: torch.Tensor | None, candidates: torch.Tensor | None) -> int:
        from personalizer.backends.decoding.policies import sample
        from personalizer.backends.decoding.tensor_math import args_scores, scatter_scores
        from personalizer.backends.decoding.text import may_end

        assert values is not None and candidates is not None
        k = row.k
        v, c = values[:k], candidates[:k]
        rewards = v.new_zeros(v.shape)
        if row.features is not None:
            rewards = row.features[:k] @ self.weights + self.offset
        scores = scatter_scores(c, args_scores(v, rewards, self.strength), logits.shape[-1])
        tid = sample(scores, row, row.spec.options.top_k)
        eos = run.handle.eos_ids
        if tid in eos and int(c[0]) not in eos and not self._has_content(row):
            # the reward, not the model, wants to end an answer that says nothing yet
            scores[[e for e in eos if e < scores.shape[-1]]] = float("-inf")
            if bool(scores.isfinite().any()):
                tid = sample(scores, row, row.spec.options.top_k)
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
        from personalizer.backends.decoding.policies import draft
        from personalizer.backends.decoding.text import ends_sentence

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
