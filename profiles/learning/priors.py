"""Where a newcomer's prior comes from: the population, or the prior shipped with the default
reward set.

A newcomer's coefficients start from the population prior: the spread of coefficients over
the application's own users, once it has at least 20 of them (:meth:`ProfileLearner.prior`).
Before that, a prior fitted offline on a simulated population (``bench/make_prior.py``) is
used for the reward set it was fitted for — the shipped default set at its frozen version —
and ``N(0, I)`` for any other set. The shipped prior says which rewards people's tastes tend
to weigh and how strongly; it holds no person's data.

* :func:`population_prior`: the empirical-Bayes prior from existing users' posteriors;
  :func:`prior_from_sums` the same from a store's aggregate (:class:`PopulationSums`).
* :func:`shipped_prior`: the built-in prior for the set it was fitted for.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from functools import lru_cache
from importlib import resources
from typing import Any

import numpy as np

from personalizer.errors import InvalidInput

from ..base import PopulationSums
from .posterior import Posterior

__all__ = ["POPULATION_FLOOR", "population_prior", "prior_from_sums", "shipped_prior"]

# Added to every variance of an app's population prior (the learner's ``shrink``), as
# bench/make_prior.py adds it to the shipped one: the spread of an app's users' learned
# coefficients underestimates the tastes a newcomer may have (each user's posterior mean is
# shrunk, and a taste few users share barely shows), and a prior that tight stops onboarding
# after 3-4 answers. Measured on a simulated app of 300 users (#35): newcomers asked 4-7
# answers and predicted at 0.65-0.87 without it, 7-9 answers and 0.76-0.94 with it.
POPULATION_FLOOR = 0.25


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


def population_prior(posteriors: list[Posterior], *, min_users: int = 20,
                     fallback: Posterior | None = None, shrink: float = 1e-3) -> Posterior:
    """Empirical-Bayes prior: the spread of coefficients across existing users.

    Mean of the users' means; covariance by the law of total variance (covariance of the
    means plus the mean of their covariances). With fewer than ``min_users`` users it returns
    ``fallback`` (default ``N(0, I)``) so no small group's data shapes a newcomer's prior.
    """
    if not posteriors:
        if fallback is None:
            raise InvalidInput("population_prior needs posteriors or a fallback")
        return fallback
    j = posteriors[0].dim
    if len(posteriors) < min_users:
        return fallback or Posterior.standard(j)
    means = np.stack([p.mean for p in posteriors])
    between = np.cov(means, rowvar=False).reshape(j, j)
    within = np.mean([p.cov for p in posteriors], axis=0)
    cov = between + within + shrink * np.eye(j)
    return Posterior(means.mean(axis=0), 0.5 * (cov + cov.T))


def prior_from_sums(sums: PopulationSums, names: Sequence[str], *, min_users: int = 20,
                    fallback: Posterior | None = None, shrink: float = 1e-3) -> Posterior:
    """:func:`population_prior` from a store's aggregate (:class:`PopulationSums`) instead of
    every user's posterior: the same mean and covariance, without reading profiles out."""
    j = len(names)
    n = sums.count
    if n < max(min_users, 1):
        return fallback or Posterior.standard(j)
    total = np.array([sums.linear.get(a, 0.0) for a in names])
    mean = total / n
    products = np.array([[sums.outer.get((a, b), 0.0) for b in names] for a in names])
    between = (products - n * np.outer(mean, mean)) / (n - 1) if n > 1 else np.zeros((j, j))
    within = np.array([[sums.covariance.get((r, c), 0.0) for c in range(j)]
                       for r in range(j)]) / n
    cov = between + within + shrink * np.eye(j)
    return Posterior(mean, 0.5 * (cov + cov.T))
