"""The default reward set: the attribute scorers with the normalisation shipped as data."""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources
from typing import Any

from personalizer.errors import RewardSetMismatch

__all__ = ["default_reward_set"]


@lru_cache(maxsize=1)
def default_reward_set() -> Any:
    """The attribute scorers with the normalisation shipped as data (fitted once on the first
    question bank's responses and frozen, so that the set's version — which stored
    coefficients refer to — does not move when the question bank grows)."""
    from personalizer.backends.rewards import attribute_reward_set
    from personalizer.backends.rewards.base import Normalization, RewardSet

    text = resources.files("personalizer.profiles").joinpath(
        "data/attributes_normalization.json")
    data = json.loads(text.read_text(encoding="utf-8"))
    base = attribute_reward_set()
    rewards = RewardSet(base.id, base.rewards, version=base.base_version,
                        normalization=Normalization(data["mean"], data["scale"]))
    if list(rewards.names) != data["names"] or rewards.version != data["version"]:
        raise RewardSetMismatch("the shipped normalisation does not match the attribute scorers "
                           f"({rewards.version} != {data['version']}); reinstall personalizer")
    return rewards
