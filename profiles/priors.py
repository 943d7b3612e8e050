"""The built-in prior shipped with the default reward set.

A newcomer's coefficients start from the population prior: the spread of coefficients over
the application's own users, once it has at least 20 of them (:meth:`ProfileLearner.prior`).
Before that, a prior fitted offline on a simulated population (``bench/make_prior.py``) is
used for the reward set it was fitted for — the shipped default set at its frozen version —
and ``N(0, I)`` for any other set. The shipped prior says which rewards people's tastes tend
to weigh and how strongly; it holds no person's data.
"""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources
from typing import Any

import numpy as np

from .learning import Posterior

__all__ = ["shipped_prior"]


@lru_cache(maxsize=1)
def _shipped() -> dict[str, Any] | None:
    path = resources.files("personalizer.profiles").joinpath("data/attributes_prior.json")
    if not path.is_file():
        return None
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def shipped_prior(reward_set: Any) -> Posterior | None:
    """The built-in prior for ``reward_set`` (same id, version and reward names as the set it
    was fitted for), else None."""
    data = _shipped()
    if data is None or (reward_set.id, reward_set.version, list(reward_set.names)) != (
            data["reward_set"], data["version"], data["names"]):
        return None
    return Posterior(np.array(data["mean"], dtype=float), np.array(data["cov"], dtype=float))
