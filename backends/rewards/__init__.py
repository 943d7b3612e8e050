"""Reward models: the seam, reward sets, and the built-in backends.

Torch-based backends (classifier, embedding heads, confidence) are imported on first use, so
``from personalizer.backends.rewards import RewardSet`` needs neither torch nor transformers.
"""

from __future__ import annotations

from typing import Any

from personalizer.backends.rewards.attributes import (
    AttributeScorer,
    KeywordReward,
    attribute_reward_set,
    attribute_scorers,
    flesch_kincaid_grade,
)
from personalizer.backends.rewards.base import MultiRewardModel, Normalization, RewardModel, RewardSet, check_scores
from personalizer.backends.rewards.judge import Judgement, JudgeReward, parse_score, parse_verdict
from personalizer.backends.rewards.quality import QualityModel, Substance, content_words

__all__ = [
    "AttributeScorer",
    "CausalLMEncoder",
    "ClassifierReward",
    "ConfidenceReward",
    "EmbeddingHeads",
    "JudgeReward",
    "Judgement",
    "KeywordReward",
    "MultiRewardModel",
    "Normalization",
    "QualityModel",
    "RewardModel",
    "RewardSet",
    "SentenceEncoder",
    "Substance",
    "attribute_reward_set",
    "attribute_scorers",
    "check_scores",
    "content_words",
    "flesch_kincaid_grade",
    "parse_score",
    "parse_verdict",
]

_LAZY = {
    "CausalLMEncoder": ".embedding",
    "ClassifierReward": ".classifier",
    "ConfidenceReward": ".confidence",
    "EmbeddingHeads": ".embedding",
    "SentenceEncoder": ".embedding",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
