"""Coefficient learning on simulated users: recovery, calibration, active vs random."""

from __future__ import annotations

import numpy as np
import pytest

from personalizer.errors import InvalidInput
from personalizer.profiles.learning import (
    Posterior,
    fit_posterior,
    information_gain,
    population_prior,
    pref_rule,
    preference_probability,
    select_question,
)
from personalizer.profiles.simulate import SimulatedUser, calibrate_beta, sample_coefficients

J = 8


@pytest.fixture(scope="module")
def pool() -> np.ndarray:
    return np.random.default_rng(0).standard_normal((600, J))


def onboard(user: SimulatedUser, pool: np.ndarray, n: int, rule: str | None,
            seed: int = 0) -> Posterior:
    post, rows, asked = Posterior.standard(J), [], set()
    order = np.random.default_rng(seed).permutation(len(pool))
    for q in range(n):
        i = int(order[q]) if rule is None else select_question(post, pool, asked=asked, rule=rule)
        asked.add(i)
        rows.append(pool[i] if user.prefers_first(pool[i]) else -pool[i])
        post = fit_posterior(Posterior.standard(J), np.array(rows))
    return post


def _cos(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


def test_coefficients_are_recovered_after_40_answers(pool: np.ndarray) -> None:
    true = sample_coefficients(20, J, seed=1)
    beta = calibrate_beta(true, pool, 0.85)
    cos = [_cos(onboard(SimulatedUser(c, beta=beta, seed=u), pool, 40, "eig").mean, c)
           for u, c in enumerate(true)]
    assert np.mean(cos) >= 0.9


def test_active_selection_beats_random_on_the_same_users(pool: np.ndarray) -> None:
    true = sample_coefficients(20, J, seed=2)
    beta = calibrate_beta(true, pool, 0.8)
    held = np.random.default_rng(9).standard_normal((300, J))

    def acc(rule: str | None) -> float:
        out = []
        for u, c in enumerate(true):
            post = onboard(SimulatedUser(c, beta=beta, seed=u), pool, 10, rule, seed=u)
            out.append(np.mean((held @ post.mean > 0) == (held @ c > 0)))
        return float(np.mean(out))

    assert acc("eig") > acc(None) + 0.01


def test_posterior_variance_shrinks_with_answers(pool: np.ndarray) -> None:
    user = SimulatedUser(np.ones(J), beta=1.0, seed=3)
    traces = [np.trace(onboard(user, pool, n, "eig").cov) for n in (0, 5, 20, 60)]
    assert traces == sorted(traces, reverse=True) and traces[-1] < traces[0] / 4


def test_predicted_probability_is_calibrated(pool: np.ndarray) -> None:
    true = sample_coefficients(40, J, seed=4)
    beta = calibrate_beta(true, pool, 0.8)
    probs, outcomes = [], []
    rng = np.random.default_rng(5)
    for u, c in enumerate(true):
        user = SimulatedUser(c, beta=beta, seed=u)
        post = onboard(user, pool, 15, "eig")
        test = rng.standard_normal((50, J))
        probs += preference_probability(post, test).tolist()
        outcomes += [user.prefers_first(d) for d in test]
    probs_a, outcomes_a = np.array(probs), np.array(outcomes)
    for lo, hi in ((0.0, 0.3), (0.3, 0.7), (0.7, 1.0)):
        sel = (probs_a >= lo) & (probs_a < hi)
        assert abs(probs_a[sel].mean() - outcomes_a[sel].mean()) < 0.08, (lo, hi)


def test_pure_functions_leave_inputs_untouched(pool: np.ndarray) -> None:
    prior = Posterior.standard(J)
    diffs = pool[:30].copy()
    before = (diffs.copy(), prior.mean.copy(), prior.cov.copy())
    post = fit_posterior(prior, diffs)
    for fn in (preference_probability, information_gain, pref_rule):
        fn(post, diffs)
    select_question(post, diffs, asked={1, 2})
    assert np.array_equal(diffs, before[0])
    assert np.array_equal(prior.mean, before[1]) and np.array_equal(prior.cov, before[2])
    with pytest.raises(ValueError):
        post.mean[0] = 1.0  # posteriors are read-only


def test_information_gain_prefers_uncertain_high_contrast_pairs() -> None:
    post = Posterior(np.zeros(2), np.diag([1.0, 0.01]))
    gains = information_gain(post, np.array([[1.0, 0.0], [0.0, 1.0], [0.1, 0.0]]))
    assert gains[0] > gains[2] > 0 and gains[0] > gains[1]


def test_degenerate_inputs() -> None:
    prior = Posterior.standard(J)
    # identical responses: a zero difference carries no information and changes nothing
    same = fit_posterior(prior, np.zeros((5, J)))
    np.testing.assert_allclose(same.mean, 0.0, atol=1e-12)
    np.testing.assert_allclose(same.cov, prior.cov, atol=1e-12)
    # every answer on the same side: the prior keeps the estimate finite
    one_sided = fit_posterior(prior, np.tile(np.eye(J)[0], (50, 1)))
    assert np.isfinite(one_sided.mean).all() and 0 < one_sided.mean[0] < 20
    # a pool that is used up
    small = np.eye(J)[:3]
    with pytest.raises(InvalidInput, match="every candidate pair"):
        select_question(prior, small, asked={0, 1, 2})
    with pytest.raises(InvalidInput, match="finite"):
        fit_posterior(prior, np.full((1, J), np.nan))
    with pytest.raises(InvalidInput, match="rule"):
        select_question(prior, small, rule="nope")


def test_population_prior_needs_20_users_and_tracks_the_spread() -> None:
    # user i's coefficients all sit at 2 + 0.1 i, its uncertainty is (0.05 + 0.01 i) I
    centres = [2.0 + 0.1 * i for i in range(19)]
    variances = [0.05 + 0.01 * i for i in range(19)]
    posts = [Posterior(np.full(J, c), np.eye(J) * v) for c, v in zip(centres, variances,
                                                                      strict=True)]
    fallback = population_prior(posts)  # 19 users are too few: N(0, I)
    assert np.array_equal(fallback.mean, np.zeros(J)) and np.array_equal(fallback.cov, np.eye(J))
    centres.append(2.0)
    variances.append(0.3)
    posts.append(Posterior(np.full(J, 2.0), np.eye(J) * 0.3))
    prior = population_prior(posts, shrink=1e-3)
    # by hand: law of total variance, the sample variance of the centres (n - 1) between
    # users (the same for every pair of coefficients: they move together), the mean of the
    # variances within, and the shrink on the diagonal
    n = len(centres)
    centre = sum(centres) / n
    between = sum((c - centre) ** 2 for c in centres) / (n - 1)
    within = sum(variances) / n
    assert between == pytest.approx(0.3405) and within == pytest.approx(0.148)
    np.testing.assert_allclose(prior.mean, np.full(J, centre), rtol=1e-10)
    np.testing.assert_allclose(prior.cov, between * np.ones((J, J)) + (within + 1e-3) * np.eye(J),
                               rtol=1e-10)
