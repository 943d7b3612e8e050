"""A user's reward of finished texts: the one implementation, for every path that needs it.

``r_user(x, y) = sum_j w_j phi_j(x, y)`` with ``w`` the user's coefficients over the reward
set, divided by their scale when relative (:func:`personalizer.steering.reward_scale`).
Whole-answer rewards (``per_token=False``: length) are only meaningful for finished
answers, so the reward splits into that part and the rest.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from personalizer.seams import RewardSet
from personalizer.steering import Steering, reward_scale

__all__ = ["UserReward"]


@dataclass(frozen=True)
class UserReward:
    """``features @ weights`` of texts; ``weights`` in the reward set's order."""

    rewards: RewardSet
    weights: np.ndarray

    @classmethod
    def of(cls, rewards: RewardSet, coefficients: Mapping[str, float], *,
           reward_set_id: str | None, reward_set_version: str | None,
           relative: bool = False) -> UserReward:
        """A user's reward from their coefficients (checked against ``rewards``: a
        :class:`~personalizer.errors.RewardSetMismatch` for another set), divided by their
        scale when ``relative``."""
        coef = rewards.coefficient_vector(coefficients, reward_set_id=reward_set_id,
                                          reward_set_version=reward_set_version)
        return cls(rewards, coef / reward_scale(coef, relative))

    @classmethod
    def of_steering(cls, rewards: RewardSet, steering: Steering) -> UserReward:
        """The reward a :class:`~personalizer.steering.Steering` asks for."""
        return cls.of(rewards, steering.coefficients, reward_set_id=steering.reward_set_id,
                      reward_set_version=steering.reward_set_version,
                      relative=steering.relative)

    @property
    def whole(self) -> np.ndarray:
        """1 for each whole-answer reward, 0 for each per-token one."""
        return 1.0 - np.asarray(self.rewards.per_token, dtype=float)

    def __call__(self, prompt: str, texts: Sequence[str]) -> np.ndarray:
        """The user's reward of each text."""
        return self.rewards.features(prompt, list(texts)) @ self.weights

    def split(self, prompt: str, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Each text's reward from its whole-answer rewards (length) and from the rest."""
        feats = self.rewards.features(prompt, list(texts))
        whole = self.whole
        return feats @ (self.weights * whole), feats @ (self.weights * (1 - whole))

    def with_whole(self, prompt: str, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Each text's whole reward, and its part from whole-answer rewards."""
        feats = self.rewards.features(prompt, list(texts))
        return feats @ self.weights, feats @ (self.weights * self.whole)

    def parts(self, prompt: str, text: str) -> np.ndarray:
        """Each base reward's part in the reward of one text (weight times score)."""
        return self.weights * self.rewards.features(prompt, [text])[0]
