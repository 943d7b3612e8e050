"""Per-user coefficients as Bayesian logistic regression (Bradley-Terry): the posterior.

Pure NumPy functions on feature vectors: no I/O, inputs never modified. A preference
"chosen over rejected" is the feature difference ``d = phi(chosen) - phi(rejected)`` with
``P(chosen > rejected | c) = sigmoid(c . d)``.

Graded answers (:class:`~personalizer.profiles.Preference`'s ``judgement``) are intervals of
the same latent utility difference ``z = c . d + e``, ``e`` standard logistic noise: the
answer says ``lo < z < hi``, with probability ``F(c . d - lo) - F(c . d - hi)`` (``F`` the
logistic CDF, :func:`sigmoid`). A plain choice is ``(0, inf)``, exactly the binary
``sigmoid(c . d)``; "much better" is ``(TAU_MUCH, inf)``, "slightly better"
``(TAU_TIE, TAU_MUCH)`` and the ties "both fine" and "neither" ``(-TAU_TIE, TAU_TIE)``
(:func:`judgement_bounds`). The log-likelihood of an interval is concave in ``c`` (the
logistic density is log-concave), so the MAP is unique.

* :func:`fit_posterior`: MAP under a Gaussian prior (Newton's method) and its Laplace
  approximation ``N(c_map, H^-1)``, ``H = P0 + sum_i sigmoid'(c . d_i) d_i d_i^T`` (for an
  interval answer the weight is the negative second derivative of its log-likelihood,
  ``sigmoid'(lo - c . d) + sigmoid'(c . d - hi)``).
* :func:`interval_log_likelihood`: the log-probability of interval answers and its first two
  derivatives in ``c . d``, computed stably far in the tails.
* :func:`judgement_probability`: the predictive probability of a judgement, over the
  posterior.
* :func:`preference_probability`: the predictive ``P(chosen > rejected)`` integrating over the
  posterior (probit approximation ``sigmoid(mu . d / sqrt(1 + pi/8 d^T S d))``), calibrated
  where a point estimate is over-confident.

Which question to ask next is in :mod:`.questions`; where the prior comes from, in
:mod:`.priors`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from personalizer.errors import InvalidInput

__all__ = [
    "TAU_MUCH",
    "TAU_TIE",
    "Posterior",
    "as_diffs",
    "fit_posterior",
    "interval_log_likelihood",
    "is_positive_definite",
    "judgement_bounds",
    "judgement_probability",
    "preference_probability",
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


def as_diffs(diffs: np.ndarray, j: int) -> np.ndarray:
    d = np.asarray(diffs, dtype=float)
    if d.ndim == 1:
        d = d[None, :]
    if d.ndim != 2 or (d.size and d.shape[1] != j):
        raise InvalidInput(f"feature differences must be (n, {j}); got {d.shape}")
    if not np.isfinite(d).all():
        raise InvalidInput("feature differences must be finite")
    return d


# What graded answers mean, on the scale of the latent utility difference z = c . d + e
# (e standard logistic noise, so at c . d = +-TAU_TIE a plain choice splits 62/38, at
# TAU_MUCH 88/12): a difference within +-TAU_TIE reads as a tie ("both fine" / "neither"),
# one beyond TAU_MUCH as "much better", one in between as "slightly better". They fix what
# stored answers mean, so they are constants, never tuned per user or per data set.
TAU_TIE = 0.5
TAU_MUCH = 2.0

# The interval of z each judgement asserts (see Preference.judgement).
_JUDGEMENT_BOUNDS: dict[str, tuple[float, float]] = {
    "better": (0.0, math.inf),
    "much_better": (TAU_MUCH, math.inf),
    "slightly_better": (TAU_TIE, TAU_MUCH),
    "both_fine": (-TAU_TIE, TAU_TIE),
    "neither": (-TAU_TIE, TAU_TIE),
}


def judgement_bounds(judgements: Sequence[str]) -> np.ndarray:
    """The ``(n, 2)`` interval ``(lo, hi)`` of the utility difference that each judgement
    asserts, for :func:`fit_posterior`'s ``bounds``; :class:`InvalidInput` for an unknown
    one."""
    if isinstance(judgements, (str, bytes)):
        raise InvalidInput("judgement_bounds takes a sequence of judgements, not one string")
    out = np.empty((len(judgements), 2))
    for i, j in enumerate(judgements):
        interval = _JUDGEMENT_BOUNDS.get(j) if isinstance(j, str) else None
        if interval is None:
            raise InvalidInput(f"unknown judgement {j!r:.60}; use one of "
                               f"{', '.join(map(repr, _JUDGEMENT_BOUNDS))}")
        out[i] = interval
    return out


def _as_bounds(bounds: np.ndarray | None, n: int) -> np.ndarray | None:
    if bounds is None:
        return None
    b = np.asarray(bounds, dtype=float)
    if b.shape != (n, 2):
        raise InvalidInput(f"bounds must be (n, 2), one (lo, hi) per answer; got {b.shape} "
                           f"for {n} answers")
    if np.isnan(b).any() or not (b[:, 0] < b[:, 1]).all():
        raise InvalidInput("every bound needs lo < hi (either may be infinite, neither NaN)")
    return b


def _softplus(x: np.ndarray) -> np.ndarray:
    """``log(1 + e^x)``, exact for large ``|x|`` (and 0 at ``-inf``)."""
    return np.logaddexp(0.0, x)


def _log_likelihood(z: np.ndarray, b: np.ndarray | None) -> np.ndarray:
    """``log(F(z - lo) - F(z - hi))`` per row, without cancellation: by the identity
    ``F(a) - F(b) = F(a) F(-b) (1 - e^(b - a))`` it is
    ``-softplus(lo - z) - softplus(z - hi) + log(1 - e^-(hi - lo))``."""
    if b is None:
        return -_softplus(-z)
    lo, hi = b[:, 0], b[:, 1]
    return -_softplus(lo - z) - _softplus(z - hi) + np.log(-np.expm1(lo - hi))


def _derivatives(z: np.ndarray, b: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """The first derivative of :func:`_log_likelihood` in ``z`` and the negative second one
    (``>= 0``): ``sigmoid(lo - z) - sigmoid(z - hi)`` and
    ``sigmoid'(lo - z) + sigmoid'(z - hi)``. Plain choices, ``(0, inf)``, take the binary
    formulas exactly."""
    s = sigmoid(z)
    g, h = 1.0 - s, s * (1.0 - s)
    if b is None:
        return g, h
    lo, hi = b[:, 0], b[:, 1]
    binary = (lo == 0.0) & (hi == math.inf)
    if binary.all():
        return g, h
    below, above = sigmoid(lo - z), sigmoid(z - hi)
    g_iv = below - above
    h_iv = below * sigmoid(z - lo) + above * sigmoid(hi - z)
    return np.where(binary, g, g_iv), np.where(binary, h, h_iv)


def interval_log_likelihood(z: np.ndarray, bounds: np.ndarray | None = None
                            ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For utility differences ``z = c . d`` (n,) and intervals ``bounds`` (n, 2) (None:
    every row ``(0, inf)``, a plain choice): per row the log-probability of the answer,
    ``log(F(z - lo) - F(z - hi))`` with ``F`` the logistic CDF, its derivative in ``z`` and
    its negative second derivative (never negative: the log-likelihood is concave), all
    computed stably far in the tails."""
    zz = np.asarray(z, dtype=float).reshape(-1)
    if not np.isfinite(zz).all():
        raise InvalidInput("utility differences must be finite")
    b = _as_bounds(bounds, zz.size)
    g, h = _derivatives(zz, b)
    return _log_likelihood(zz, b), g, h


def fit_posterior(prior: Posterior, diffs: np.ndarray, *, weights: np.ndarray | None = None,
                  bounds: np.ndarray | None = None, max_iter: int = 50,
                  tol: float = 1e-9) -> Posterior:
    """MAP coefficients given answered pairs (rows of ``diffs``: chosen minus rejected, or
    first minus second) and the Laplace covariance around them. ``weights`` scale each answer
    (default 1). ``bounds`` (n, 2) is the interval ``(lo, hi)`` of the utility difference each
    answer asserts (:func:`judgement_bounds`; infinite ends allowed); None means ``(0, inf)``
    for every row, the binary Bradley-Terry fit, to which such rows reduce exactly.

    Newton's method on the concave log-posterior, halving a step that would lower it; the
    Laplace precision adds each answer's negative second derivative along ``d d^T``."""
    d = as_diffs(diffs, prior.dim)
    b = _as_bounds(bounds, d.shape[0])
    if d.shape[0] == 0:
        return prior
    w = np.ones(d.shape[0]) if weights is None else np.asarray(weights, float)
    p0 = _precision(prior.cov)

    def objective(c: np.ndarray) -> float:
        r = c - prior.mean
        return float(-0.5 * r @ p0 @ r + w @ _log_likelihood(d @ c, b))

    c = prior.mean.copy()
    value = objective(c)
    for _ in range(max_iter):
        g, h = _derivatives(d @ c, b)
        grad = p0 @ (c - prior.mean) - d.T @ (w * g)
        hess = p0 + (d * (w * h)[:, None]).T @ d
        step = np.linalg.solve(hess, grad)
        size = float(np.abs(step).max())
        new = c - step
        new_value = objective(new)
        for _ in range(40):  # a full Newton step overshot (rare): shorten it
            if new_value >= value - 1e-12 * (1.0 + abs(value)):
                break
            step = 0.5 * step
            new = c - step
            new_value = objective(new)
        c, value = new, new_value
        if size < tol:
            break
    g, h = _derivatives(d @ c, b)
    hess = p0 + (d * (w * h)[:, None]).T @ d
    cov = np.linalg.inv(hess)
    return Posterior(c, 0.5 * (cov + cov.T))


# The smallest variance a prior keeps, relative to its largest (and absolutely): a singular
# covariance (a zero or an all-ones matrix, imported or stored by hand) is lifted to this
# floor instead of making the precision infinite.
_VARIANCE_FLOOR = 1e-9


def _precision(cov: np.ndarray) -> np.ndarray:
    """The inverse of a covariance, robustly: its symmetric part with every eigenvalue at
    least ``_VARIANCE_FLOOR`` times the largest (and at least ``_VARIANCE_FLOOR``), so a
    singular or slightly indefinite matrix yields a finite, positive definite precision
    where ``np.linalg.inv`` would fail or mislead. A well-conditioned covariance is
    inverted as it is."""
    sym = 0.5 * (cov + cov.T)
    values, vectors = np.linalg.eigh(sym)
    floor = _VARIANCE_FLOOR * max(1.0, float(np.abs(values).max(initial=0.0)))
    if values.min(initial=np.inf) >= floor:
        return np.linalg.inv(sym)
    return (vectors / np.maximum(values, floor)) @ vectors.T


def is_positive_definite(cov: object) -> bool:
    """Whether ``cov`` is a finite, symmetric, positive definite matrix: what a posterior's
    covariance must be (a Cholesky factorisation exists)."""
    try:
        c = np.asarray(cov, dtype=float)
    except (TypeError, ValueError):
        return False
    if c.ndim != 2 or c.shape[0] != c.shape[1] or not np.isfinite(c).all():
        return False
    if not np.allclose(c, c.T, rtol=1e-6, atol=1e-12):
        return False
    try:
        np.linalg.cholesky(0.5 * (c + c.T))
    except np.linalg.LinAlgError:
        return False
    return True


def preference_probability(post: Posterior, diffs: np.ndarray) -> np.ndarray:
    """``P(first > second)`` for each row ``d = phi(first) - phi(second)``, averaged over the
    posterior (probit approximation)."""
    d = as_diffs(diffs, post.dim)
    mu = d @ post.mean
    var = np.einsum("ij,jk,ik->i", d, post.cov, d)
    return sigmoid(mu / np.sqrt(1.0 + math.pi / 8.0 * var))


def judgement_probability(post: Posterior, diffs: np.ndarray, judgement: str) -> np.ndarray:
    """The chance of answering ``judgement`` about ``first`` against ``second``, for each row
    ``d = phi(first) - phi(second)``, averaged over the posterior (the probit approximation
    of :func:`preference_probability`, on each end of the judgement's interval). For
    ``"better"`` it is :func:`preference_probability`."""
    d = as_diffs(diffs, post.dim)
    lo, hi = judgement_bounds([judgement])[0]
    mu = d @ post.mean
    scale = np.sqrt(1.0 + math.pi / 8.0 * np.einsum("ij,jk,ik->i", d, post.cov, d))
    return sigmoid((mu - lo) / scale) - sigmoid((mu - hi) / scale)
