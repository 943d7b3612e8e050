"""Coefficient learning on simulated users: recovery, calibration, active vs random."""

from __future__ import annotations

import numpy as np
import pytest

from personalizer.errors import InvalidInput
from personalizer.profiles.learning.posterior import (
    Posterior,
    fit_posterior,
    preference_probability,
)
from personalizer.profiles.learning.priors import population_prior
from personalizer.profiles.learning.questions import information_gain, pref_rule, select_question
from personalizer.profiles.onboarding.simulate import (
    SimulatedUser,
    calibrate_beta,
    sample_coefficients,
)

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


def test_information_gain_matches_a_monte_carlo_estimate() -> None:
    """The expected information gain (BALD: the entropy of the predicted answer minus the
    expected entropy given the coefficients) against sampling the posterior, with the probit
    likelihood the closed form is derived for: P(first) = Phi(sqrt(pi/8) d.c), the usual
    stand-in for the logistic (Houlsby et al. 2011)."""
    import math

    rng = np.random.default_rng(0)
    mean, cov = np.array([0.8, -0.3]), np.array([[0.6, 0.2], [0.2, 0.4]])
    diffs = np.array([[1.0, 0.0], [0.0, 2.0], [1.5, -1.0], [0.1, 0.1], [3.0, 0.0],
                      [-2.0, 2.5]])
    c = rng.multivariate_normal(mean, cov, size=60_000)
    z = math.sqrt(math.pi / 8.0) * (c @ diffs.T) / math.sqrt(2.0)   # (samples, pairs)
    p = 0.5 * (1.0 + np.vectorize(math.erf)(z))

    def bits(q: np.ndarray) -> np.ndarray:
        q = np.clip(q, 1e-15, 1 - 1e-15)
        return -(q * np.log2(q) + (1 - q) * np.log2(1 - q))

    expected = bits(p.mean(axis=0)) - bits(p).mean(axis=0)
    got = information_gain(Posterior(mean, cov), diffs)
    np.testing.assert_allclose(got, expected, atol=0.01)
    assert expected.max() > 0.15  # informative pairs, not all near zero


def test_prior_from_sums_is_the_population_prior_from_aggregates() -> None:
    from personalizer.profiles.base import PopulationSums
    from personalizer.profiles.learning.priors import prior_from_sums

    rng = np.random.default_rng(3)
    names = ["a", "b", "c"]
    for n in (19, 20, 27):
        posts = []
        for _ in range(n):
            a = rng.standard_normal((3, 3))
            posts.append(Posterior(rng.standard_normal(3), a @ a.T + 0.1 * np.eye(3)))
        means = np.stack([q.mean for q in posts])
        covs = np.stack([q.cov for q in posts])
        sums = PopulationSums(
            count=n, linear={x: float(means[:, i].sum()) for i, x in enumerate(names)},
            outer={(x, y): float((means[:, i] * means[:, k]).sum())
                   for i, x in enumerate(names) for k, y in enumerate(names)},
            covariance={(r, s): float(covs[:, r, s].sum()) for r in range(3) for s in range(3)})
        from_sums, direct = prior_from_sums(sums, names), population_prior(posts)
        np.testing.assert_allclose(from_sums.mean, direct.mean, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(from_sums.cov, direct.cov, rtol=1e-10, atol=1e-12)
        standard = n < 20  # 20 users are enough; 19 are not
        assert np.array_equal(direct.cov, np.eye(3)) == standard
        assert np.array_equal(from_sums.mean, np.zeros(3)) == standard


def test_positive_definite_means_finite_square_symmetric_and_factorable() -> None:
    from personalizer.profiles.learning.posterior import is_positive_definite

    assert is_positive_definite([[2.0, 0.5], [0.5, 1.0]])
    for bad in ([1.0, 2.0], [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], [[1.0, 0.9], [0.0, 1.0]],
                [[0.0, 0.0], [0.0, 0.0]], [[1.0, 1.0], [1.0, 1.0]], [[1.0, 2.0], [2.0, 1.0]],
                [[np.nan, 0.0], [0.0, 1.0]], [["x", 0], [0, 1]], object()):
        assert not is_positive_definite(bad), bad


def test_a_posterior_needs_a_vector_mean_and_a_matching_square_covariance() -> None:
    with pytest.raises(InvalidInput, match="mean"):
        Posterior(np.zeros((2, 1)), np.eye(2))       # a matrix for a mean
    with pytest.raises(InvalidInput, match="mean"):
        Posterior(np.zeros(2), np.eye(3))


def test_a_singular_prior_covariance_is_lifted_to_the_variance_floor() -> None:
    """The precision of a singular covariance keeps its well-defined direction as it is and
    gives the null direction the floor's variance, relative to the largest eigenvalue."""
    from personalizer.profiles.learning.posterior import _VARIANCE_FLOOR, _precision

    cov = np.array([[4.0, 4.0], [4.0, 4.0]])          # eigenvalues 8 (along [1, 1]) and 0
    along, across = np.array([1.0, 1.0]) / 2**0.5, np.array([1.0, -1.0]) / 2**0.5
    expected = (np.outer(along, along) / 8.0
                + np.outer(across, across) / (_VARIANCE_FLOOR * 8.0))
    np.testing.assert_allclose(_precision(cov), expected, rtol=1e-6)
    well = np.array([[2.0, 0.3], [0.3, 1.0]])
    np.testing.assert_allclose(_precision(well), np.linalg.inv(well), rtol=1e-12)


def test_a_population_prior_of_nobody_is_the_fallback_or_refused() -> None:
    fallback = Posterior.standard(3, scale=2.0)
    assert population_prior([], fallback=fallback) is fallback
    with pytest.raises(InvalidInput, match="posteriors or a fallback"):
        population_prior([])


def test_undecided_is_what_knowing_the_coefficients_exactly_would_add() -> None:
    from personalizer.profiles.learning.questions import undecided

    d = np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0], [3.0, 0.0]])
    known = Posterior(np.array([0.5, -2.0]), np.eye(2) * 1e-12)
    assert np.allclose(undecided(known, d), 0.0, atol=1e-6)  # nothing left to learn
    unsure = Posterior(np.zeros(2), np.diag([4.0, 0.01]))
    u = undecided(unsure, d)
    assert u[2] == 0.0  # a pair no taste decides costs nothing
    assert u[0] > 0.2 and u[1] < 0.05  # unknown direction vs nearly known one
    assert u[3] > u[0]  # a bigger difference along the unknown direction matters more
    assert (u >= 0).all() and (u <= 0.5).all()
    leaning = Posterior(np.array([3.0, 0.0]), np.diag([4.0, 0.01]))
    assert undecided(leaning, d)[0] < u[0]  # a clear lean settles most of it
    # Monte Carlo check of the closed form's quadrature
    rng = np.random.default_rng(0)
    z = rng.normal(0.7, 1.5, 200_000)
    s = 1 / (1 + np.exp(-z))
    mc = np.maximum(s, 1 - s).mean() - max(s.mean(), 1 - s.mean())
    post = Posterior(np.array([0.7]), np.array([[2.25]]))
    assert abs(float(undecided(post, np.array([[1.0]]))[0]) - mc) < 2e-3
