"""Simulated users: hidden true coefficients decide their answers, with Bradley-Terry noise.

Used by tests, benchmarks and the demo (PersonalLLM-style weighted reward mixtures).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from personalizer.errors import InvalidInput

from ..learning.posterior import sigmoid as _sigmoid

__all__ = [
    "TASTES",
    "SimulatedUser",
    "calibrate_beta",
    "sample_coefficients",
    "synthetic_texts",
    "taste_vector",
]

# Named tastes over the attribute scorers (missing names weigh 0), for demos and the CLI.
TASTES: dict[str, dict[str, float]] = {
    "terse": {"verbosity": -2.0, "hedging": -1.0, "structure": 0.5},
    "thorough": {"verbosity": 2.0, "examples": 1.0, "warmth": 0.5},
    "lists": {"structure": 2.5, "verbosity": -0.5},
    "warm": {"warmth": 2.0, "emoji": 0.5, "formality": -1.0},
    "technical": {"technical_depth": 2.0, "reading_level": 1.0, "warmth": -0.5},
}


def taste_vector(taste: str | dict[str, float], names: tuple[str, ...]) -> np.ndarray:
    """A named taste (or a name -> weight dict) as coefficients in ``names`` order; names
    joined by ``+`` are a person with both tastes (``"terse+warm"``: their coefficients
    added)."""
    if isinstance(taste, str) and "+" in taste:
        return np.sum([taste_vector(part.strip(), names) for part in taste.split("+")], axis=0)
    weights = TASTES.get(taste) if isinstance(taste, str) else taste
    if weights is None:
        raise InvalidInput(f"unknown taste {taste!r:.60}; known: {', '.join(sorted(TASTES))}, "
                           "or two joined by '+' (terse+warm)")
    unknown = set(weights) - set(names)
    if unknown:
        raise InvalidInput(f"taste uses rewards {sorted(unknown)} that the set lacks")
    return np.array([weights.get(n, 0.0) for n in names])


class SimulatedUser:
    """A user with true coefficients ``c``: prefers ``a`` over ``b`` with probability
    ``sigmoid(beta * c . (phi(a) - phi(b)))``. ``beta`` sets how consistent they are."""

    def __init__(self, coefficients: np.ndarray, *, beta: float = 1.0, seed: int = 0) -> None:
        c = np.asarray(coefficients, dtype=float)
        if c.ndim != 1 or not np.isfinite(c).all():
            raise InvalidInput("coefficients must be a finite vector")
        if beta <= 0:
            raise InvalidInput("beta must be positive")
        self.coefficients, self.beta = c, beta
        self._rng = np.random.default_rng(seed)

    def prefers_first(self, diff: np.ndarray) -> bool:
        """Answer one question given ``phi(first) - phi(second)`` (noisy)."""
        p = float(_sigmoid(self.beta * (np.asarray(diff, float) @ self.coefficients)))
        return bool(self._rng.random() < p)

    def answer(self, features_first: np.ndarray, features_second: np.ndarray) -> int:
        """0 if they pick the first response, 1 for the second."""
        return 0 if self.prefers_first(np.asarray(features_first) - features_second) else 1

    def chooser(self, rewards: Any) -> Callable[[Any], int]:
        """An answer function for :meth:`Onboarding.run`: this person's choice between a
        question's two options, judged on ``rewards``' features."""
        def choose(question: Any) -> int:
            f = rewards.features(question.prompt, list(question.options))
            return self.answer(f[0], f[1])

        return choose

    def truth(self, diffs: np.ndarray) -> np.ndarray:
        """Noise-free preferences (True where the first is preferred)."""
        return np.asarray(diffs, float) @ self.coefficients > 0


def sample_coefficients(n: int, j: int, *, seed: int = 0, correlated: bool = False,
                        mean: np.ndarray | None = None) -> np.ndarray:
    """``n`` users' true coefficients: ``N(mean, I)``, or with correlated tastes
    (covariance ``0.5 I + 0.5 * 11^T``-like structure) when ``correlated``."""
    rng = np.random.default_rng(seed)
    m = np.zeros(j) if mean is None else np.asarray(mean, float)
    if correlated:
        cov = 0.5 * np.eye(j) + 0.5 * np.outer(*(2 * [np.linspace(1, -1, j)]))
        return rng.multivariate_normal(m, cov + 1e-6 * np.eye(j), size=n)
    return m + rng.standard_normal((n, j))


def calibrate_beta(coefficients: np.ndarray, diffs: np.ndarray, agreement: float) -> float:
    """The ``beta`` at which answers agree with the noise-free preference ``agreement`` of the
    time on average over these users and pairs (bisection)."""
    if not 0.5 < agreement < 1.0:
        raise InvalidInput("agreement must be between 0.5 and 1")
    margins = np.abs(np.asarray(coefficients, float) @ np.asarray(diffs, float).T)
    lo, hi = 1e-4, 1e3
    for _ in range(100):
        mid = (lo * hi) ** 0.5
        if float(_sigmoid(mid * margins).mean()) < agreement:
            lo = mid
        else:
            hi = mid
    return (lo * hi) ** 0.5


def synthetic_texts(n: int, *, seed: int = 0) -> list[str]:
    """``n`` varied answers recombined from the sentences of the question bank's hand-written
    ``general`` items (stable as the bank grows): 1-6 sentences,
    as prose or as a list, sometimes with a warm opener, a hedge, an example or an emoji, so
    that the base attributes vary independently. Offline and fast (for tests and benchmarks)."""
    import re

    from .bank import question_bank

    rng = np.random.default_rng(seed)
    sentences = sorted({s.strip(" -0123456789.") for item in question_bank(["general"])
                        for r in item.responses for s in re.split(r"(?<=[.!?])\s+|\n", r)
                        if len(s.split()) >= 3})
    openers = ["Great question!", "I'm happy to help!", "Sure.", "Honestly,", ""]
    hedges = ["It might depend on your situation.", "Perhaps this could help.",
              "I think this generally works."]
    examples = ["For example, start small.", "For instance, try it tomorrow."]
    emoji = [" 🙂", " 🎉", " 👍"]
    out = []
    for _ in range(n):
        k = int(rng.integers(1, 7))
        body = [sentences[i] for i in rng.choice(len(sentences), size=k, replace=False)]
        if rng.random() < 0.3:
            body.append(hedges[int(rng.integers(len(hedges)))])
        if rng.random() < 0.3:
            body.append(examples[int(rng.integers(len(examples)))])
        if rng.random() < 0.4:
            text = "\n".join(f"- {s}" for s in body)
        else:
            text = " ".join(body)
        opener = openers[int(rng.integers(len(openers)))]
        text = f"{opener} {text}".strip() if opener else text
        if rng.random() < 0.2:
            text += emoji[int(rng.integers(len(emoji)))]
        out.append(text)
    return out
