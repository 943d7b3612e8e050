"""Graded pairwise answers ("much better", "slightly better", ties): the data model, the schema
step in both stores, the export format, and the interval likelihood that learns from them."""

from __future__ import annotations

import json
import math
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import get_args

import numpy as np
import psycopg
import pytest
from pydantic import ValidationError

from personalizer import Personalizer
from personalizer.backends.rewards import AttributeScorer, RewardSet
from personalizer.errors import InvalidInput, InvalidProfileData, UnsupportedSchemaVersion
from personalizer.profiles import (
    Judgement,
    Preference,
    ProfileLearner,
    SQLiteProfileStore,
    SQLProfileStore,
    open_store,
    parse_export,
)
from personalizer.profiles.learning import posterior as L
from personalizer.profiles.learning.learner import make_preference
from personalizer.profiles.learning.posterior import (
    TAU_MUCH,
    TAU_TIE,
    Posterior,
    fit_posterior,
    interval_log_likelihood,
    judgement_bounds,
    judgement_probability,
    preference_probability,
)
from personalizer.profiles.models import JUDGEMENTS

STEP = "m006_preference_judgement"
EVERY: tuple[str, ...] = ("better", "much_better", "slightly_better", "both_fine", "neither")
REWARDS = RewardSet("letters", [AttributeScorer("e_count", "more e", lambda t: t.count("e"))])


def graded(i: int, judgement: str) -> Preference:
    return Preference(prompt=f"question {i}", chosen=f"first answer {i}",
                      rejected=f"the second answer {i}", judgement=judgement)  # type: ignore[arg-type]


@pytest.fixture
def store(db: str) -> Iterator[SQLProfileStore]:
    with open_store(db) as s:
        yield s


# -- the data model ------------------------------------------------------------------------


def test_the_judgements_are_one_list_everywhere() -> None:
    assert get_args(Judgement) == JUDGEMENTS == EVERY
    assert tuple(L._JUDGEMENT_BOUNDS) == EVERY
    assert Preference(prompt="p", chosen="a", rejected="b").judgement == "better"
    with pytest.raises(ValidationError):
        Preference(prompt="p", chosen="a", rejected="b", judgement="meh")  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="same text"):  # a tie still shows two answers
        Preference(prompt="p", chosen="a", rejected="a", judgement="both_fine")


def test_make_preference_names_the_allowed_judgements() -> None:
    assert make_preference("p", "a", "b", judgement="neither").judgement == "neither"
    for bad in ("meh", "", None, 3, ["better"], "Better"):
        with pytest.raises(InvalidInput, match="judgement .*'much_better'.*'neither'"):
            make_preference("p", "a", "b", judgement=bad)  # type: ignore[arg-type]


def test_history_digests_of_plain_answers_are_unchanged() -> None:
    import hashlib

    from personalizer.profiles.models import history_digest

    plain = [graded(0, "better"), graded(1, "better")]
    h = hashlib.sha256()  # the digest as written before judgements: stored summaries stay valid
    for p in plain:
        h.update(json.dumps([p.prompt, p.chosen, p.rejected, p.reason,
                             p.created_at.isoformat()]).encode())
    assert history_digest(plain) == h.hexdigest()
    tie = [plain[0], plain[1].model_copy(update={"judgement": "both_fine"})]
    assert history_digest(tie) != history_digest(plain)


# -- the schema step, in both stores ---------------------------------------------------------


def test_an_sqlite_database_from_before_judgements_is_upgraded_in_place(tmp_path: Path) -> None:
    from sqlite_utils import Database

    from personalizer.profiles.store.schema import MIGRATIONS

    path = tmp_path / "old.db"
    old = Database(path)
    MIGRATIONS.apply(old, stop_before=STEP)  # the schema of the last release
    assert "judgement" not in old["preferences"].columns_dict
    old.execute("INSERT INTO profiles (user_id, version, coefficients, summary, "
                "preference_count, created_at, updated_at) VALUES ('early', 1, '{}', '', 1, "
                "'2026-01-01T00:00:00+00:00', '2026-01-01T00:00:00+00:00')")
    old.execute("INSERT INTO preferences (user_id, prompt, chosen, rejected, source, "
                "created_at) VALUES ('early', 'q', 'short', 'long', 'feedback', "
                "'2026-01-01T00:00:00+00:00')")
    old.conn.commit()
    old.close()
    for _ in range(2):  # and opening it again applies nothing twice
        with SQLiteProfileStore(path) as s:
            p = s.preferences("early")[0]
            assert (p.chosen, p.rejected, p.judgement) == ("short", "long", "better")
            s.append_preference("early", graded(1, "both_fine"))
    conn = sqlite3.connect(path)
    try:
        cols = {r[1]: r for r in conn.execute("PRAGMA table_info(preferences)")}
        assert cols["judgement"][2:5] == ("TEXT", 1, "'better'")  # type, NOT NULL, default
        assert [r[0] for r in conn.execute(
            "SELECT name FROM _sqlite_migrations WHERE migration_set='personalizer' AND "
            "name = ?", (STEP,))] == [STEP]
    finally:
        conn.close()


def test_a_postgresql_database_from_before_judgements_is_upgraded_in_place(pg_url: str) -> None:
    from personalizer.profiles import PostgresProfileStore
    from personalizer.profiles.store.pg_schema import MIGRATIONS_TABLE, STEPS

    names = [name for name, _ in STEPS]
    assert STEP in names
    with psycopg.connect(pg_url, autocommit=True) as conn:  # the schema of the last release
        conn.execute(f"CREATE TABLE {MIGRATIONS_TABLE} (name text PRIMARY KEY, "
                     "applied_at timestamptz NOT NULL DEFAULT now())")
        for name, statements in STEPS[:names.index(STEP)]:
            for sql in statements:
                conn.execute(sql)
            conn.execute(f"INSERT INTO {MIGRATIONS_TABLE} (name) VALUES (%s)", (name,))
        conn.execute("INSERT INTO profiles (user_id, version, coefficients, summary, "
                     "preference_count, created_at, updated_at) VALUES "
                     "('early', 1, '{}', '', 1, now(), now())")
        conn.execute("INSERT INTO preferences (user_id, prompt, chosen, rejected, source, "
                     "created_at) VALUES ('early', 'q', 'short', 'long', 'feedback', now())")
    for _ in range(2):
        with PostgresProfileStore(pg_url) as s:
            p = s.preferences("early")[0]
            assert (p.chosen, p.rejected, p.judgement) == ("short", "long", "better")
            s.append_preference("early", graded(1, "much_better"))
    with psycopg.connect(pg_url) as conn:
        row = conn.execute("SELECT data_type, is_nullable, column_default FROM "
                           "information_schema.columns WHERE table_name = 'preferences' "
                           "AND column_name = 'judgement'").fetchone()
        assert row[:2] == ("text", "NO") and row[2].startswith("'better'")
        applied = conn.execute(f"SELECT count(*) FROM {MIGRATIONS_TABLE} WHERE name = %s",
                               (STEP,)).fetchone()[0]
        assert applied == 1


# -- stores and export -------------------------------------------------------------------------


def test_every_judgement_round_trips_through_the_store_and_export(store: SQLProfileStore) -> None:
    prefs = [graded(i, j) for i, j in enumerate(EVERY)]
    store.append_preferences("alice", prefs)
    assert store.preferences("alice") == prefs
    doc = store.export_profile("alice")
    assert doc["schema_version"] == 7
    assert [p["judgement"] for p in doc["preferences"]] == list(EVERY)
    text = json.dumps(doc)
    store.delete("alice")
    store.import_profile(text)
    assert store.preferences("alice") == prefs
    assert store.export_profile("alice")["preferences"] == doc["preferences"]


def test_export_versions_and_the_judgement_field() -> None:
    pref = graded(0, "slightly_better").model_dump(mode="json")
    doc = {"schema": "personalizer.profile-export", "schema_version": 5,
           "profile": {"user_id": "alice", "preference_count": 1}, "preferences": [pref]}
    assert parse_export(doc).preferences[0].judgement == "slightly_better"
    plain = {k: v for k, v in pref.items() if k != "judgement"}
    v4 = doc | {"schema_version": 4, "preferences": [plain]}
    assert parse_export(v4).preferences[0].judgement == "better"  # v4 files: all plain
    with pytest.raises(InvalidProfileData, match=r"preferences\.0\.judgement is new in schema "
                       "version 5, but the file says version 4"):
        parse_export(doc | {"schema_version": 4})
    with pytest.raises(InvalidProfileData, match="judgement"):  # a v5 file: a known value
        parse_export(doc | {"preferences": [pref | {"judgement": "meh"}]})
    assert parse_export(doc | {"schema_version": 6}).preferences[0].judgement == "slightly_better"
    assert parse_export(doc | {"schema_version": 7}).preferences[0].judgement == "slightly_better"
    with pytest.raises(UnsupportedSchemaVersion):
        parse_export(doc | {"schema_version": 8})


# -- the likelihood --------------------------------------------------------------------------


def _binary_reference(prior: Posterior, d: np.ndarray, w: np.ndarray | None = None,
                      max_iter: int = 50, tol: float = 1e-9) -> Posterior:
    """fit_posterior as it was before graded answers (binary Bradley-Terry only)."""
    w = np.ones(len(d)) if w is None else w
    p0 = np.linalg.inv(prior.cov)
    c = prior.mean.copy()
    for _ in range(max_iter):
        s = L.sigmoid(d @ c)
        grad = p0 @ (c - prior.mean) - d.T @ (w * (1.0 - s))
        hess = p0 + (d * (w * s * (1.0 - s))[:, None]).T @ d
        step = np.linalg.solve(hess, grad)
        c = c - step
        if float(np.abs(step).max()) < tol:
            break
    s = L.sigmoid(d @ c)
    cov = np.linalg.inv(p0 + (d * (w * s * (1.0 - s))[:, None]).T @ d)
    return Posterior(c, 0.5 * (cov + cov.T))


@pytest.mark.parametrize("seed", range(8))
def test_plain_answers_reduce_to_the_binary_fit(seed: int) -> None:
    rng = np.random.default_rng(seed)
    j, n = int(rng.integers(1, 7)), int(rng.integers(1, 40))
    d = rng.standard_normal((n, j))
    prior = Posterior(0.3 * rng.standard_normal(j), np.eye(j) * rng.uniform(0.5, 2.0))
    w = rng.uniform(0.5, 2.0, n) if seed % 2 else None
    ref = _binary_reference(prior, d, w)
    for bounds in (None, np.tile([0.0, math.inf], (n, 1)), judgement_bounds(["better"] * n)):
        got = fit_posterior(prior, d, weights=w, bounds=bounds)
        np.testing.assert_allclose(got.mean, ref.mean, rtol=0, atol=1e-10)
        np.testing.assert_allclose(got.cov, ref.cov, rtol=0, atol=1e-10)


def test_judgement_bounds() -> None:
    b = judgement_bounds(list(EVERY))
    assert b.tolist() == [[0.0, math.inf], [TAU_MUCH, math.inf], [TAU_TIE, TAU_MUCH],
                          [-TAU_TIE, TAU_TIE], [-TAU_TIE, TAU_TIE]]
    assert judgement_bounds([]).shape == (0, 2)
    with pytest.raises(InvalidInput, match="'both_fine'"):
        judgement_bounds(["better", "meh"])
    with pytest.raises(InvalidInput):
        judgement_bounds("better")
    prior = Posterior.standard(2)
    d = np.ones((2, 2))
    for bad in (np.zeros((2, 2)), np.ones((3, 2)), [[0, 1], [math.nan, 1]], [[1, 0], [0, 1]]):
        with pytest.raises(InvalidInput, match="bound"):
            fit_posterior(prior, d, bounds=np.asarray(bad, float))


def _naive(z: np.ndarray, b: np.ndarray) -> np.ndarray:
    """log(F(z - lo) - F(z - hi)), straight from the definition (fine in the middle)."""
    def cdf(x: np.ndarray) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-x))
    return np.log(cdf(z - b[:, 0]) - cdf(z - b[:, 1]))


def test_interval_likelihood_and_its_derivatives_against_finite_differences() -> None:
    b = judgement_bounds(list(EVERY) + ["better"])
    b[-1] = [-1.0, 3.0]  # and any finite interval
    for z0 in np.linspace(-6.0, 6.0, 25):
        z = np.full(len(b), z0)
        logp, g, h = interval_log_likelihood(z, b)
        np.testing.assert_allclose(logp, _naive(z, b), rtol=0, atol=1e-12)
        e = 1e-5
        up, down = _naive(z + e, b), _naive(z - e, b)
        np.testing.assert_allclose(g, (up - down) / (2 * e), rtol=0, atol=1e-7)
        g_up, g_down = interval_log_likelihood(z + e, b)[1], interval_log_likelihood(z - e, b)[1]
        np.testing.assert_allclose(h, -(g_up - g_down) / (2 * e), rtol=0, atol=1e-8)
        assert (h >= 0).all()  # concave


def test_interval_likelihood_is_exact_far_in_the_tails() -> None:
    b = judgement_bounds(["much_better", "slightly_better", "both_fine", "better"])
    z = np.array([-60.0, -60.0, 80.0, -800.0])
    logp, g, h = interval_log_likelihood(z, b)
    assert np.isfinite(logp).all() and np.isfinite(g).all() and np.isfinite(h).all()
    # F(z - lo) - F(z - hi) ~ e^(z - lo) (1 - e^-(hi - lo)) below, mirrored above
    expected = [-62.0, -60.5 + math.log(-math.expm1(-1.5)), -79.5 + math.log(-math.expm1(-1.0)),
                -800.0]
    np.testing.assert_allclose(logp, expected, rtol=1e-12)
    np.testing.assert_allclose(g, [1.0, 1.0, -1.0, 1.0], rtol=1e-12)


def test_the_fit_is_the_map_and_its_precision_the_laplace_one() -> None:
    rng = np.random.default_rng(3)
    j, n = 3, 12
    d = rng.standard_normal((n, j))
    b = judgement_bounds([EVERY[i % 5] for i in range(n)])
    prior = Posterior(np.array([0.2, -0.1, 0.0]), np.diag([1.0, 0.5, 2.0]))
    post = fit_posterior(prior, d, bounds=b)
    p0 = np.linalg.inv(prior.cov)

    def log_post(c: np.ndarray) -> float:
        r = c - prior.mean
        return float(-0.5 * r @ p0 @ r + interval_log_likelihood(d @ c, b)[0].sum())

    e, eye = 1e-4, np.eye(j)
    grad = [(log_post(post.mean + e * eye[k]) - log_post(post.mean - e * eye[k])) / (2 * e)
            for k in range(j)]
    np.testing.assert_allclose(grad, 0.0, atol=1e-7)
    hess = np.array([[(log_post(post.mean + e * (eye[a] + eye[c])) - log_post(
        post.mean + e * (eye[a] - eye[c])) - log_post(post.mean - e * (eye[a] - eye[c]))
        + log_post(post.mean - e * (eye[a] + eye[c]))) / (4 * e * e) for c in range(j)]
        for a in range(j)])
    np.testing.assert_allclose(np.linalg.inv(post.cov), -hess, atol=1e-4)


def test_a_steep_start_converges_where_plain_newton_steps_overshoot() -> None:
    rng = np.random.default_rng(0)
    d = 3.0 * rng.standard_normal((45, 8))  # separable and strong: full steps diverge
    prior = Posterior.standard(8, 1.2)
    post = fit_posterior(prior, d)
    _, g, _ = interval_log_likelihood(d @ post.mean)
    grad = np.linalg.inv(prior.cov) @ post.mean - d.T @ g
    assert float(np.abs(grad).max()) < 1e-8


def test_a_tie_pulls_the_utility_difference_toward_zero() -> None:
    d = np.array([[1.0, 0.5, 0.0]])
    start = Posterior(np.array([1.0, 1.0, -0.5]), np.eye(3) * 0.5)  # c . d = 1.5
    before = float(start.mean @ d[0])
    for tie in ("both_fine", "neither"):
        after = float(fit_posterior(start, d, bounds=judgement_bounds([tie])).mean @ d[0])
        assert 0 < after < before - 0.2
    plain = float(fit_posterior(start, d).mean @ d[0])
    assert plain > before
    # the other way round: a tie from a negative difference pulls it up toward zero
    flipped = Posterior(-start.mean, start.cov)
    after = float(fit_posterior(flipped, d, bounds=judgement_bounds(["both_fine"])).mean @ d[0])
    assert -before + 0.2 < after < 0
    # from zero, a tie says nothing about the direction, only that the difference is small
    zero = fit_posterior(Posterior.standard(3), d, bounds=judgement_bounds(["neither"]))
    assert abs(float(zero.mean @ d[0])) < 1e-12
    assert float(d[0] @ zero.cov @ d[0]) < float(d[0] @ np.eye(3) @ d[0])


def test_stronger_answers_move_the_mean_further_along_d() -> None:
    d = np.array([[1.0, 0.0, 0.0]])
    prior = Posterior.standard(3)
    along = {j: float(fit_posterior(prior, d, bounds=judgement_bounds([j])).mean @ d[0])
             for j in ("much_better", "better", "slightly_better")}
    assert along["much_better"] > along["better"] > along["slightly_better"] > 0
    several = np.tile(d, (6, 1))  # six "slightly better": the difference settles inside
    settled = fit_posterior(Posterior.standard(3, 10.0), several,
                            bounds=judgement_bounds(["slightly_better"] * 6))
    assert TAU_TIE < float(settled.mean @ d[0]) < TAU_MUCH


def test_judgement_probabilities_partition_and_match_the_binary_one() -> None:
    rng = np.random.default_rng(5)
    post = Posterior(rng.standard_normal(3), np.eye(3) * 0.3)
    d = rng.standard_normal((7, 3))
    plain = judgement_probability(post, d, "better")
    np.testing.assert_array_equal(plain, preference_probability(post, d))
    # much better, slightly better, a tie, and the same two the other way round: the line
    # beyond TAU_TIE split in two on each side (between 0 and TAU_TIE only "better" speaks)
    parts = [judgement_probability(post, d, "much_better"),
             judgement_probability(post, d, "slightly_better"),
             judgement_probability(post, d, "both_fine"),
             judgement_probability(post, -d, "slightly_better"),
             judgement_probability(post, -d, "much_better")]
    np.testing.assert_allclose(np.sum(parts, axis=0), 1.0, atol=1e-12)
    assert all((p > 0).all() for p in parts)
    np.testing.assert_array_equal(parts[2], judgement_probability(post, d, "neither"))


# -- learning from graded answers --------------------------------------------------------------


def test_the_learner_learns_each_judgement_and_refits_with_their_intervals(
        tmp_path: Path) -> None:
    with SQLiteProfileStore(tmp_path / "p.db") as s:
        learner = ProfileLearner(s, REWARDS)
        out = {}
        for j in ("much_better", "better", "slightly_better"):
            out[j] = learner.record_preference(f"u-{j}", "q", "eeee", "a",
                                               judgement=j).coefficients["e_count"]
        assert out["much_better"] > out["better"] > out["slightly_better"] > 0
        learner.record_preference("ann", "q", "eeee", "a", judgement="much_better")
        shrunk = learner.record_preference("ann", "q", "eeee", "a", judgement="both_fine")
        assert 0 < shrunk.coefficients["e_count"] < out["much_better"]
        learner.record_rating("ann", "q", "eeeeee", "up")
        history = s.preferences("ann")
        assert [p.judgement for p in history] == ["much_better", "both_fine"]
        refit = learner.refit("ann")
        rows = [learner.diff(p.prompt, p.chosen, p.rejected) for p in history]
        rows.append(learner.rating_term(s.ratings("ann")[0]))
        bounds = judgement_bounds(["much_better", "both_fine", "better"])
        want = fit_posterior(learner.prior(exclude="ann"), np.array(rows), bounds=bounds)
        assert refit.coefficients["e_count"] == pytest.approx(float(want.mean[0]), abs=1e-12)
        dropped = learner.delete_preference("ann", 1)  # without the tie
        assert [p.judgement for p in s.preferences("ann")] == ["much_better"]
        assert dropped.coefficients["e_count"] > refit.coefficients["e_count"]


def test_a_bad_judgement_is_refused_and_stores_nothing(tmp_path: Path) -> None:
    with SQLiteProfileStore(tmp_path / "p.db") as s:
        learner = ProfileLearner(s, REWARDS)
        for bad in ("meh", None, 2):
            with pytest.raises(InvalidInput, match="'slightly_better'"):
                learner.record_preference("bob", "q", "eee", "a", judgement=bad)  # type: ignore[arg-type]
        assert s.count() == 0
        learner.record_preference("bob", "q", "eee", "a")
        version = s.get("bob").version
        with pytest.raises(InvalidInput, match="judgement"):
            learner.record_preference("bob", "q", "eee", "a", judgement="Much better")
        assert s.get("bob").version == version and len(s.preferences("bob")) == 1


@pytest.mark.parametrize("rewards", [REWARDS, None], ids=["learning", "history only"])
def test_the_facade_passes_the_judgement_through(tmp_path: Path,
                                                 rewards: RewardSet | None) -> None:
    with Personalizer(tmp_path / "p.db", rewards=rewards) as p:
        plain = p.record_preference("ann", "q", "eee", "a")
        p.record_preference("ann", "q2", "eeee", "aa", judgement="neither")
        assert [x.judgement for x in p.store.preferences("ann")] == ["better", "neither"]
        with pytest.raises(InvalidInput, match="judgement"):
            p.record_preference("ann", "q3", "eee", "a", judgement="meh")  # type: ignore[arg-type]
        assert p.profile("ann").preference_count == 2
        if rewards is not None:
            assert plain.coefficients["e_count"] > 0
