"""Best-of-n on a hosted model: whether to rerank, by what, and the record of the choice.

A hosted API gives no logits, so the one search it can run is best-of-n over whole sampled
answers. :func:`rerank_of` decides, before any call is made, what a
:class:`~personalizer.steering.Steering` asks of a hosted generator: nothing but the prompt
(no strategy: the generator's default, which is none), best-of-n, or a refusal naming what
works. When best-of-n is asked but nothing of the user's can rank the candidates yet
(coefficients without a reward set to score them, principles without a judge), the answer is
one plain call. :class:`Ranker` scores candidates with the user's reward and/or a judge.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from personalizer.backends.decoding.strategies.best_of_n import BestOfN
from personalizer.errors import UnsupportedRequest
from personalizer.steering import Steering, reward_scale
from personalizer.types import RewardTerm, ScoredCandidate, SteeringRecord

__all__ = ["Ranker", "rerank_of"]


def rerank_of(steering: Steering, owner: str, rewards: Any, judge: Any) -> BestOfN | None:
    """The best-of-n to run for ``steering`` (None: one plain call), or UnsupportedRequest.
    ``rewards``: the reward set in force (the generator's, else the one handed in);
    ``judge``: the generator's judge; ``owner`` names the generator in messages."""
    strategy = steering.strategy
    if steering.instruction:
        raise UnsupportedRequest(
            f"{owner} takes the profile in the system prompt (Personalizer puts the "
            "profile block there); Steering.instruction, a request added to the user's "
            "turn, is for local models that ignore system prompts")
    if strategy is None:  # a hosted generator's default strategy: the prompt only
        return None
    if not isinstance(strategy, BestOfN):
        raise UnsupportedRequest(
            f"{owner} cannot do {strategy.kind}: a hosted API exposes no logits or hidden "
            "states to steer. Use best-of-n reranking (Steering(..., strategy='best_of_n'), "
            "or Personalizer.generate(..., strategy='best_of_n')) or the profile in the "
            "prompt (Personalizer does that by default); reward-guided decoding needs a "
            "LocalGenerator")
    if strategy.block != "answer":
        raise UnsupportedRequest(
            f"{owner} cannot do sentence-blockwise best-of-n (a hosted answer cannot be "
            "continued from a chosen sentence); use BestOfN(block='answer')")
    if strategy.draw != "sample":
        raise UnsupportedRequest(
            f"{owner} cannot branch on the most likely first tokens (a hosted API gives no "
            "logits); use BestOfN(draw='sample')")
    if rewards is None and judge is None:
        raise UnsupportedRequest(
            f"best-of-n needs a reward to rerank by: {owner}(..., rewards=reward_set) "
            "and/or judge=JudgeReward(...)")
    if rewards is not None and steering.coefficients:
        rewards.coefficient_vector(  # RewardSetMismatch before any call is made
            steering.coefficients, reward_set_id=steering.reward_set_id,
            reward_set_version=steering.reward_set_version)
        return strategy
    if judge is not None and steering.principles:
        return strategy
    return None  # nothing of this user's can rank candidates yet: the plain answer


@dataclass(frozen=True)
class Ranker:
    """Scores best-of-n candidates: the user's reward (coefficients . features over
    ``rewards``, divided by the coefficients' norm like local steering) plus
    ``judge_weight`` times the ``judge``'s score (given the user's principles)."""

    rewards: Any
    judge: Any
    judge_weight: float

    def scores(self, prompt: str, texts: list[str], steering: Steering
               ) -> tuple[np.ndarray, tuple[RewardTerm, ...]]:
        """One score per text, and the user's terms (empty when no reward set scored)."""
        total = np.zeros(len(texts))
        terms: tuple[RewardTerm, ...] = ()
        rs = self.rewards
        if rs is not None and steering.coefficients:
            coef = rs.coefficient_vector(steering.coefficients,
                                         reward_set_id=steering.reward_set_id,
                                         reward_set_version=steering.reward_set_version)
            total += rs.features(prompt, texts) @ coef / reward_scale(coef, steering.relative)
            terms = tuple(RewardTerm(name=n, description=d, coefficient=float(c))
                          for n, d, c in zip(rs.names, rs.descriptions, coef, strict=True))
        if self.judge is not None:
            judge = self.judge
            if steering.principles and hasattr(judge, "with_principles"):
                judge = judge.with_principles(steering.principles)
            total += self.judge_weight * np.asarray(judge.score(prompt, texts), dtype=float)
        return total, terms

    def record(self, strategy: BestOfN, steering: Steering, terms: tuple[RewardTerm, ...],
               texts: list[str], scores: np.ndarray, best: int) -> SteeringRecord:
        """The record of a best-of-n choice: every candidate with its score."""
        rs = self.rewards if terms else None
        return SteeringRecord(
            path="best-of-n", levers=("best_of_n",), strategy=strategy.model_dump(),
            strength=steering.strength, reward_set_id=rs.id if rs else None,
            reward_set_version=rs.version if rs else None, terms=terms,
            candidates=tuple(ScoredCandidate(text=t, reward=float(s))
                             for t, s in zip(texts, scores, strict=True)),
            chosen=best)
