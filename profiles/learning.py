"""Per-user coefficients as Bayesian logistic regression (Bradley-Terry), and question choice.

Pure NumPy functions on feature vectors: no I/O, inputs never modified. A preference
"chosen over rejected" is the feature difference ``d = phi(chosen) - phi(rejected)`` with
``P(chosen > rejected | c) = sigmoid(c . d)``.

* :func:`fit_posterior`: MAP under a Gaussian prior (Newton's method) and its Laplace
  approximation ``N(c_map, H^-1)``, ``H = P0 + sum_i sigmoid'(c . d_i) d_i d_i^T``.
* :func:`preference_probability`: the predictive ``P(chosen > rejected)`` integrating over the
  posterior (probit approximation ``sigmoid(mu . d / sqrt(1 + pi/8 d^T S d))``), calibrated
  where a point estimate is over-confident.
* :func:`information_gain`: expected information about ``c`` from the answer to pair ``d``
  (the mutual information between answer and coefficients, "BALD"): the entropy of the
  predicted answer minus the expected entropy given ``c``, in closed form for a Gaussian
  posterior (Houlsby et al. 2011, with the logistic curve taken as a probit of scale
  sqrt(pi/8)). It favours pairs whose outcome the posterior is unsure of *because* ``c`` is
  uncertain, not pairs that are merely noisy. :func:`pref_rule` is PReF's published rule,
  ``sigmoid'(mu . d)^2 d^T A^-1 d``, kept for comparison.
* :func:`population_prior`: the empirical-Bayes prior from existing users' posteriors.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from personalizer.errors import InvalidInput

from .base import PopulationSums

__all__ = [
    "Posterior",
    "fit_posterior",
    "information_gain",
    "population_prior",
    "pref_rule",
    "preference_probability",
    "prior_from_sums",
    "select_question",
    "sigmoid",
]


def sigmoid(z: np.ndarray) -> np.ndarray:
    """The logistic function, stable for large ``|z|``."""
    return 0.5 * (1.0 + np.tanh(0.5 * z))



@dataclass(frozen=True)
class Posterior:
    """A Gaussian over coefficients: ``mean`` (J,) and ``cov`` (J, J)."""

    mean: np.ndarray
    cov: np.ndarray

    def __post_init__(self) -> None:
        m, c = np.asarray(self.mean, float), np.asarray(self.cov, float)
        if m.ndim != 1 or c.shape != (m.size, m.size):
            raise InvalidInput(f"posterior needs mean (J,) and cov (J, J); got {m.shape}, "
                               f"{c.shape}")
        if not (np.isfinite(m).all() and np.isfinite(c).all()):
            raise InvalidInput("posterior mean and covariance must be finite")
        m.setflags(write=False)
        c.setflags(write=False)
        object.__setattr__(self, "mean", m)
        object.__setattr__(self, "cov", c)

    @classmethod
    def standard(cls, j: int, scale: float = 1.0) -> Posterior:
        """The default prior ``N(0, scale^2 I)``."""
        return cls(np.zeros(j), np.eye(j) * scale**2)

    @property
    def dim(self) -> int:
        return int(self.mean.size)


def _as_diffs(diffs: np.ndarray, j: int) -> np.ndarray:
    d = np.asarray(diffs, dtype=float)
    if d.ndim == 1:
        d = d[None, :]
    if d.ndim != 2 or (d.size and d.shape[1] != j):
        raise InvalidInput(f"feature differences must be (n, {j}); got {d.shape}")
    if not np.isfinite(d).all():
        raise InvalidInput("feature differences must be finite")
    return d


def fit_posterior(prior: Posterior, diffs: np.ndarray, *, weights: np.ndarray | None = None,
                  max_iter: int = 50, tol: float = 1e-9) -> Posterior:
    """MAP coefficients given answered pairs (rows of ``diffs``: chosen minus rejected) and
    the Laplace covariance around them. ``weights`` scale each answer (default 1)."""
    d = _as_diffs(diffs, prior.dim)
    if d.shape[0] == 0:
        return prior
    w = np.ones(d.shape[0]) if weights is None else np.asarray(weights, float)
    p0 = np.linalg.inv(prior.cov)
    c = prior.mean.copy()
    for _ in range(max_iter):
        s = sigmoid(d @ c)
        grad = p0 @ (c - prior.mean) - d.T @ (w * (1.0 - s))
        hess = p0 + (d * (w * s * (1.0 - s))[:, None]).T @ d
        step = np.linalg.solve(hess, grad)
        c = c - step
        if float(np.abs(step).max()) < tol:
            break
    s = sigmoid(d @ c)
    hess = p0 + (d * (w * s * (1.0 - s))[:, None]).T @ d
    cov = np.linalg.inv(hess)
    return Posterior(c, 0.5 * (cov + cov.T))


def preference_probability(post: Posterior, diffs: np.ndarray) -> np.ndarray:
    """``P(first > second)`` for each row ``d = phi(first) - phi(second)``, averaged over the
    posterior (probit approximation)."""
    d = _as_diffs(diffs, post.dim)
    mu = d @ post.mean
    var = np.einsum("ij,jk,ik->i", d, post.cov, d)
    return sigmoid(mu / np.sqrt(1.0 + math.pi / 8.0 * var))


_C2 = math.pi * math.log(2.0) / 2.0  # Houlsby et al.: h(Phi(f)) ~ exp(-f^2 / (pi ln 2))


def _binary_entropy_bits(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-12, 1 - 1e-12)
    return -(p * np.log2(p) + (1 - p) * np.log2(1 - p))


def information_gain(post: Posterior, diffs: np.ndarray) -> np.ndarray:
    """Expected information (bits) about the coefficients from the answer to each pair."""
    d = _as_diffs(diffs, post.dim)
    k2 = math.pi / 8.0  # sigmoid(z) ~ Phi(sqrt(pi/8) z)
    mu = k2**0.5 * (d @ post.mean)
    var = k2 * np.einsum("ij,jk,ik->i", d, post.cov, d)
    predictive = _normal_cdf(mu / np.sqrt(1.0 + var))
    expected_noise = np.sqrt(_C2 / (var + _C2)) * np.exp(-(mu**2) / (2.0 * (var + _C2)))
    return np.maximum(_binary_entropy_bits(predictive) - expected_noise, 0.0)


_erf = np.frompyfunc(math.erf, 1, 1)


def _normal_cdf(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + _erf(np.asarray(x, float) / math.sqrt(2.0)).astype(float))


def pref_rule(post: Posterior, diffs: np.ndarray) -> np.ndarray:
    """PReF's selection score ``sigmoid'(mu . d)^2 d^T A^-1 d`` with ``A^-1`` the covariance."""
    d = _as_diffs(diffs, post.dim)
    s = sigmoid(d @ post.mean)
    var = np.einsum("ij,jk,ik->i", d, post.cov, d)
    return (s * (1.0 - s)) ** 2 * var


def select_question(post: Posterior, diffs: np.ndarray, *, asked: set[int] | None = None,
                    rule: str = "eig") -> int:
    """Index of the most informative pair among ``diffs`` not yet ``asked``.

    ``rule`` is ``"eig"`` (expected information gain) or ``"pref"`` (PReF's rule). Raises
    :class:`InvalidInput` when every pair has been asked.
    """
    scorer = {"eig": information_gain, "pref": pref_rule}.get(rule)
    if scorer is None:
        raise InvalidInput(f"unknown rule {rule!r}; use 'eig' or 'pref'")
    scores = np.array(scorer(post, diffs), dtype=float)
    if asked:
        scores[list(asked)] = -np.inf
    if not np.isfinite(scores).any():
        raise InvalidInput("every candidate pair has been asked; add more to the pool")
    return int(np.argmax(scores))


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
