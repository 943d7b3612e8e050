"""Which pairwise question to ask next: the expected information of an answer.

Pure NumPy functions on a :class:`~.posterior.Posterior` and feature differences; inputs are
never modified.

* :func:`information_gain`: expected information about ``c`` from the answer to pair ``d``
  (the mutual information between answer and coefficients, "BALD"): the entropy of the
  predicted answer minus the expected entropy given ``c``, in closed form for a Gaussian
  posterior (Houlsby et al. 2011, with the logistic curve taken as a probit of scale
  sqrt(pi/8)). It favours pairs whose outcome the posterior is unsure of *because* ``c`` is
  uncertain, not pairs that are merely noisy. :func:`pref_rule` is PReF's published rule,
  ``sigmoid'(mu . d)^2 d^T A^-1 d``, kept for comparison.
* :func:`select_question`: the most informative pair not yet asked.
* :func:`undecided`: how much better each pair's answer would be predicted if the
  coefficients were known exactly (the expected value of perfect information about ``c``, in
  accuracy); its mean over a question bank is what the profile still has to learn about the
  answers people meet. Pairs the person is indifferent to under every plausible ``c`` cost
  nothing, unlike in a posterior variance.
"""

from __future__ import annotations

import math

import numpy as np

from personalizer.errors import InvalidInput

from .posterior import Posterior, as_diffs, sigmoid

__all__ = ["information_gain", "pref_rule", "select_question", "undecided"]


_C2 = math.pi * math.log(2.0) / 2.0  # Houlsby et al.: h(Phi(f)) ~ exp(-f^2 / (pi ln 2))


def _binary_entropy_bits(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-12, 1 - 1e-12)
    return -(p * np.log2(p) + (1 - p) * np.log2(1 - p))


def information_gain(post: Posterior, diffs: np.ndarray) -> np.ndarray:
    """Expected information (bits) about the coefficients from the answer to each pair."""
    d = as_diffs(diffs, post.dim)
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
    d = as_diffs(diffs, post.dim)
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


# A fine grid for expectations over z ~ N(m, s^2): max(sigmoid, 1 - sigmoid) has a kink at
# 0, which Gauss-Hermite nodes integrate poorly; 241 points to 6 sd are within 1e-3.
_NODES = np.linspace(-6.0, 6.0, 241)
_WEIGHTS = np.exp(-0.5 * _NODES**2)
_WEIGHTS = _WEIGHTS / _WEIGHTS.sum()


def _undecided(m: np.ndarray, s2: np.ndarray) -> np.ndarray:
    """``E[max(sigmoid(z), 1 - sigmoid(z))] - max(E sigmoid(z), 1 - E sigmoid(z))`` for
    ``z ~ N(m, s2)``, elementwise (any shape)."""
    z = m[..., None] + np.sqrt(np.maximum(s2, 0.0))[..., None] * _NODES
    p = sigmoid(z)
    known = (np.maximum(p, 1.0 - p) * _WEIGHTS).sum(-1)
    mean = (p * _WEIGHTS).sum(-1)
    return np.maximum(known - np.maximum(mean, 1.0 - mean), 0.0)


def undecided(post: Posterior, diffs: np.ndarray) -> np.ndarray:
    """For each pair, how much more often its answer would be predicted right with the exact
    coefficients than with the posterior (0 to 0.5): the part of the prediction that the
    person's answers could still decide."""
    d = as_diffs(diffs, post.dim)
    return _undecided(d @ post.mean, np.einsum("ij,jk,ik->i", d, post.cov, d))

