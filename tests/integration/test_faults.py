"""Faults a deployment meets, on real databases: a write racing a delete (threads and processes,
SQLite and PostgreSQL), a damaged value in every column of the profile and preference tables,
an imported singular covariance, a read-only database file and a full disk. Each ends in a
result or a PersonalizerError, loses nothing and leaves other users alone."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from support.fault_workers import check, history, race_processes, race_threads
from support.rows import user_rows

from personalizer import (
    CorruptProfile,
    InvalidProfileData,
    Personalizer,
    StoreError,
)
from personalizer.profiles import (
    Preference,
    ProfileLearner,
    SQLiteProfileStore,
    default_reward_set,
    open_store,
)
from personalizer.profiles.learning.posterior import Posterior, fit_posterior

RACE_TRIES = 120  # per race; four races (two stores, threads and processes): 480 tries


@pytest.fixture(scope="module")
def rewards() -> Any:
    return default_reward_set()


# -- a write racing a delete ---------------------------------------------------------------


def test_a_write_racing_a_delete_in_threads_lands_or_is_refused(db: str, rewards: Any) -> None:
    result = race_threads(db, RACE_TRIES, rewards=rewards)
    check(result, history(db))
    assert result["deletes"].get("deleted", 0) >= 1


def test_a_write_racing_a_delete_in_processes_lands_or_is_refused(db: str,
                                                                  tmp_path: Path) -> None:
    result = race_processes(db, RACE_TRIES, tmp_path)
    check(result, history(db))
    assert result["deletes"].get("deleted", 0) >= 1


def test_a_write_whose_user_is_deleted_before_its_transaction_lands_on_a_fresh_profile(
        db: str, rewards: Any) -> None:
    """The exact interleaving of the race, made deterministic: the write reads a learned
    profile, then the user is deleted, then the write's transaction runs. It starts over from
    the population prior (nothing of the old profile), and lands on a fresh profile."""
    with Personalizer(db, rewards=rewards) as p, Personalizer(db) as other:
        for i in range(3):
            p.record_preference("u", f"old {i}", "Short.", "A much longer answer than that.")
        learner = p._learner
        assert learner is not None
        real_current = learner._current
        calls = []

        def current_then_deleted(user_id: str) -> Any:
            found = real_current(user_id)
            if not calls:
                other.delete_profile(user_id)  # between the read and the write
            calls.append(found)
            return found

        learner._current = current_then_deleted  # type: ignore[method-assign]
        profile = p.record_preference("u", "new", "Short.", "A much longer answer than that.")
        assert calls[0] is not None and calls[0].coefficients  # it had read the old profile
        assert profile.preference_count == 1 and profile.version == 2
        assert [x.prompt for x in p.preferences("u")] == ["new"]
        fresh = ProfileLearner(open_store(":memory:"), rewards)
        expected = fresh.record_preference("u", "new", "Short.",
                                           "A much longer answer than that.")
        assert profile.coefficients == pytest.approx(expected.coefficients)


def test_a_transaction_body_may_read_through_the_store(db: str) -> None:
    """A read of the store inside one of its own write transactions (what the race ran into
    on SQLite: a second BEGIN) reads instead of failing, on both stores."""
    with open_store(db) as store:
        store.append_preference("bob", Preference(prompt="p", chosen="a", rejected="b"))
        with store.transaction("alice") as tx:
            tx.append([Preference(prompt="q", chosen="a", rejected="b")])
            assert store.get("bob").preference_count == 1
            assert store.population_sums("s", "1").count == 0
        assert store.get("alice").preference_count == 1


# -- damaged rows --------------------------------------------------------------------------

# (table, column, value for SQLite, value for PostgreSQL; None: the column's type cannot hold
# a damaged value there). SQLite keeps a number or a blob in any column, but stores a number
# given to a TEXT column as its text.
DAMAGE: list[tuple[str, str, Any, Any]] = [
    ("profiles", "version", "abc", -5),
    ("profiles", "reward_set_id", b"\xff\xfe", "x" * 300),  # a blob, not UTF-8
    ("profiles", "reward_set_version", "v" * 200, "v" * 200),
    ("profiles", "coefficients", "not json", "[1, 2]"),
    ("profiles", "covariance", "{{", '"a string"'),
    ("profiles", "summary", "x" * 20_001, "x" * 20_001),
    ("profiles", "preference_count", "many", -1),
    ("profiles", "created_at", "yesterday", "infinity"),
    ("profiles", "updated_at", "2024-13-45", "-infinity"),
    ("profiles", "summary_source", "robot", "robot"),
    ("profiles", "summary_written_at", "soon", "infinity"),
    ("profiles", "summary_preferences", "x", -3),
    ("profiles", "summary_stale", "maybe", None),
    ("profiles", "summary_digest", "not hex", "not hex"),
    ("preferences", "prompt", b"\xff", None),
    ("preferences", "chosen", "A much longer answer than that.",  # = rejected
     "A much longer answer than that."),
    ("preferences", "rejected", b"\xfe\xff", "Short."),  # PG: = chosen
    ("preferences", "reason", "r" * 4001, "r" * 4001),
    ("preferences", "source", "Not A Source", "Not A Source"),
    ("preferences", "created_at", "yesterday", "infinity"),
    ("preferences", "judgement", "meh", "meh"),
]


def _damage(db: str, table: str, column: str, value: Any, user_id: str) -> None:
    sql = f"UPDATE {table} SET {column} = %s WHERE user_id = %s"
    if db.startswith("postgresql://"):
        import psycopg

        with psycopg.connect(db, autocommit=True) as conn:
            cast = "::json" if column in ("coefficients", "covariance") else ""
            conn.execute(sql.replace("= %s", f"= %s{cast}", 1), (value, user_id))
        return
    conn = sqlite3.connect(db)
    try:
        conn.execute(sql.replace("%s", "?"), (value, user_id))
        conn.commit()
    finally:
        conn.close()


def _export(store: Any, user_id: str) -> dict[str, Any]:
    doc = store.export_profile(user_id)
    del doc["exported_at"]
    return doc


def _pair(p: Personalizer, user_id: str, i: int) -> Any:
    return p.record_preference(user_id, f"question {i}", "Short.",
                               "A much longer answer than that.")


@pytest.mark.parametrize(("table", "column", "sqlite_value", "pg_value"), DAMAGE,
                         ids=[f"{t}.{c}" for t, c, _, _ in DAMAGE])
def test_a_damaged_value_names_its_user_and_field_and_blocks_no_one(
        db: str, rewards: Any, table: str, column: str, sqlite_value: Any,
        pg_value: Any) -> None:
    value = pg_value if db.startswith("postgresql://") else sqlite_value
    if value is None:
        pytest.skip(f"a {table}.{column} of this database cannot hold a damaged value")
    with Personalizer(db, rewards=rewards) as p:
        for user in ("alice", "bob"):
            _pair(p, user, 0)
            _pair(p, user, 1)
        bob_before = _export(p.store, "bob")
        _damage(db, table, column, value, "alice")

        read = p.profile if table == "profiles" else p.preferences
        with pytest.raises(CorruptProfile) as caught:
            read("alice")
        assert caught.value.user_id == "alice"
        assert column in caught.value.field or column in str(caught.value), caught.value
        assert caught.value.field.startswith(table)
        with pytest.raises(CorruptProfile):
            p.export_profile("alice")
        try:  # a write either works (it reads nothing damaged) or says what is damaged
            _pair(p, "alice", 2)
        except CorruptProfile as exc:
            assert exc.user_id == "alice"

        page = p.list_profiles()
        assert "bob" in [x.user_id for x in page.profiles]
        if table == "profiles":
            assert page.damaged == ["alice"]
            assert "alice" not in [x.user_id for x in page.profiles]
        assert p.store.count() == 2

        # everyone else reads and writes as before, newcomers included (population prior)
        assert _export(p.store, "bob") == bob_before
        assert _pair(p, "bob", 2).preference_count == 3
        assert _pair(p, "carol", 0).preference_count == 1

        assert p.delete_profile("alice") >= 3
        assert set(user_rows(db, "alice").values()) == {0}
        assert p.list_profiles().damaged == []
        assert p.profile("bob").preference_count == 3


def test_damaged_json_does_not_fail_the_population_prior(db: str) -> None:
    """The population aggregate (every newcomer's prior) reads around damaged JSON: wrong
    shapes, text, JSON null, numbers that would overflow a sum."""
    with open_store(db) as store:
        for i, user in enumerate(["h1", "h2", "h3", *(f"d{k}" for k in range(7))]):
            p = store.create(user)
            store.update(p.model_copy(update={
                "coefficients": {"a": 0.5 * i, "b": -1.0}, "covariance": [[1.0, 0.1], [0.1, 2.0]],
                "reward_set_id": "s", "reward_set_version": "1"}))
        healthy = store.population_sums("s", "1")
        for k, (column, value) in enumerate([
                ("coefficients", '{"a": "x", "b": 1}'), ("coefficients", '{"a": 1e400, "b": 1}'),
                ("coefficients", '{"a": null, "b": 1}'), ("coefficients", "[1, 2]"),
                ("covariance", "[1, 2]"), ("covariance", '[["x", 1], [1, 1]]'),
                ("covariance", "[[1e400, 0], [0, 1]]")]):
            _damage(db, "profiles", column, value, f"d{k}")
        sums = store.population_sums("s", "1")
        values = [*sums.linear.values(), *sums.outer.values(), *sums.covariance.values()]
        assert all(np.isfinite(values)) and 3 <= sums.count <= healthy.count
        assert set(sums.linear) == {"a", "b"}


def test_a_damaged_user_id_is_listed_as_damaged_and_its_rows_still_delete(
        tmp_path: Path, rewards: Any) -> None:
    db = str(tmp_path / "profiles.db")
    with Personalizer(db, rewards=rewards) as p:
        _pair(p, "alice", 0)
        _pair(p, "bob", 0)
    _damage(db, "profiles", "user_id", "not a user id!", "alice")  # orphans alice's rows
    with Personalizer(db, rewards=rewards) as p:
        page = p.list_profiles()
        assert [x.user_id for x in page.profiles] == ["bob"]
        assert page.damaged == ["not a user id!"]
        assert p.delete_profile("alice") == 1  # the preference the profile row left behind
        assert set(user_rows(db, "alice").values()) == {0}
        assert _pair(p, "bob", 1).preference_count == 2


def test_delete_reads_nothing_of_the_rows_it_deletes(db: str) -> None:
    with open_store(db) as store:
        store.append_preference("alice", Preference(prompt="p", chosen="a", rejected="b"))
        store.append_preference("bob", Preference(prompt="p", chosen="a", rejected="b"))
        before = _export(store, "bob")
        _damage(db, "profiles", "coefficients", "[1, 2]", "alice")
        _damage(db, "profiles", "created_at",
                "infinity" if db.startswith("postgresql://") else "yesterday", "alice")
        assert store.delete("alice") == 2
        assert set(user_rows(db, "alice").values()) == {0}
        assert _export(store, "bob") == before


def test_paging_goes_past_a_damaged_row_at_the_end_of_a_page(tmp_path: Path) -> None:
    db = str(tmp_path / "profiles.db")
    with open_store(db) as store:
        for user in ("a", "b", "c", "d"):
            store.create(user)
        _damage(db, "profiles", "created_at", "yesterday", "b")
        first = store.list_profiles(limit=2)
        assert [x.user_id for x in first.profiles] == ["a"]
        assert first.damaged == ["b"] and first.next_after == "b"
        second = store.list_profiles(limit=2, after=first.next_after)
        assert [x.user_id for x in second.profiles] == ["c", "d"]
        assert second.next_after is None


def test_a_damaged_onboarding_state_or_rating_is_a_corrupt_profile(tmp_path: Path) -> None:
    from personalizer.profiles.models import OnboardingState, Rating

    db = str(tmp_path / "profiles.db")
    with open_store(db) as store:
        with store.transaction("alice") as tx:
            tx.rate([Rating(prompt="p", answer="a", rating="up")])
            tx.set_onboarding(OnboardingState(reward_set_id="s", reward_set_version="1",
                                              pool_id="x", max_questions=5))
        _damage(db, "onboarding", "state", "{not json", "alice")
        _damage(db, "ratings", "rating", "sideways", "alice")
        with pytest.raises(CorruptProfile, match="onboarding.state"):
            store.onboarding_state("alice")
        with pytest.raises(CorruptProfile, match="ratings.rating"):
            store.ratings("alice")
        assert store.delete("alice") == 3


def test_corrupt_profile_survives_pickling() -> None:
    import pickle

    exc = pickle.loads(pickle.dumps(CorruptProfile("alice", "profiles.created_at", "bad")))
    assert (exc.user_id, exc.field, exc.problem) == ("alice", "profiles.created_at", "bad")
    assert isinstance(exc, StoreError)


# -- a singular covariance -----------------------------------------------------------------


@pytest.mark.parametrize("fill", [0.0, 1.0], ids=["zeros", "ones"])
def test_an_imported_singular_covariance_is_refused(db: str, rewards: Any, fill: float) -> None:
    with Personalizer(db, rewards=rewards) as p:
        _pair(p, "alice", 0)
        doc = p.export_profile("alice")
        n = len(doc["profile"]["covariance"])
        doc["profile"]["covariance"] = [[fill] * n for _ in range(n)]
        with pytest.raises(InvalidProfileData, match="positive definite"):
            p.import_profile(doc, replace=True)
        assert p.export_profile("alice") != doc  # nothing was written
        assert _pair(p, "alice", 1).preference_count == 2


@pytest.mark.parametrize("fill", [0.0, 1.0], ids=["zeros", "ones"])
def test_a_stored_singular_covariance_does_not_stop_learning(tmp_path: Path, rewards: Any,
                                                             fill: float) -> None:
    db = str(tmp_path / "profiles.db")
    with Personalizer(db, rewards=rewards) as p:
        _pair(p, "alice", 0)
        n = len(rewards)
        _damage(db, "profiles", "covariance", json.dumps([[fill] * n] * n), "alice")
        for i in range(1, 4):
            profile = _pair(p, "alice", i)
        assert profile.preference_count == 4
        assert np.isfinite(np.array(profile.covariance)).all()
        assert 0.0 <= p.preference_probability("alice", "q", "Short.", "Long, long.") <= 1.0


@pytest.mark.parametrize("cov", [np.zeros((3, 3)), np.ones((3, 3)),
                                 np.array([[1.0, 2.0, 0], [2.0, 1.0, 0], [0, 0, 1.0]])],
                         ids=["zeros", "ones", "indefinite"])
def test_fit_posterior_recovers_from_a_singular_prior(cov: np.ndarray) -> None:
    prior = Posterior(np.array([0.5, -0.5, 0.0]), cov)
    diffs = np.array([[1.0, 0.0, 0.5], [0.0, -1.0, 0.2]])
    post = fit_posterior(prior, diffs)
    assert np.isfinite(post.mean).all() and np.isfinite(post.cov).all()
    np.linalg.cholesky(post.cov)  # a proper covariance again
    assert np.array_equal(prior.cov, cov)  # the input was not changed


def test_fit_posterior_inverts_a_well_conditioned_prior_as_before() -> None:
    rng = np.random.default_rng(0)
    a = rng.normal(size=(4, 4))
    prior = Posterior(rng.normal(size=4), a @ a.T + np.eye(4))
    diffs = rng.normal(size=(5, 4))
    post = fit_posterior(prior, diffs)
    p0 = np.linalg.inv(prior.cov)
    c = post.mean
    s = 1 / (1 + np.exp(-(diffs @ c)))
    grad = p0 @ (c - prior.mean) - diffs.T @ (1 - s)
    assert np.abs(grad).max() < 1e-8  # the MAP of the unregularised objective


# -- a read-only file, a full disk ---------------------------------------------------------

@contextmanager
def _read_only(path: Path) -> Iterator[None]:
    """``path`` read-only for this process: mode 0444, and for root (whom modes do not stop)
    the immutable attribute (skipped where the file system or the container refuses it)."""
    path.chmod(0o444)
    immutable = os.geteuid() == 0
    if immutable:
        done = subprocess.run(["chattr", "+i", str(path)], capture_output=True, check=False)
        if done.returncode != 0:
            path.chmod(0o644)
            pytest.skip(f"cannot make a file read-only for root here: {done.stderr!r}")
    try:
        yield
    finally:
        if immutable:
            subprocess.run(["chattr", "-i", str(path)], check=True)
        path.chmod(0o644)


def test_a_read_only_database_file_refuses_writes_clearly_and_keeps_everything(
        tmp_path: Path, rewards: Any) -> None:
    db = tmp_path / "profiles.db"
    with open_store(str(db)) as store:
        store.append_preference("alice", Preference(prompt="p", chosen="a", rejected="b"))
    before = _dump(db)
    with _read_only(db), Personalizer(str(db), rewards=rewards) as p:
        assert p.profile("alice").preference_count == 1
        assert [x.prompt for x in p.preferences("alice")] == ["p"]
        for call in (lambda: p.record_preference("alice", "q", "Short.", "Longer, longer."),
                     lambda: p.record_preference("bob", "q", "Short.", "Longer, longer."),
                     lambda: p.create_profile("carol"),
                     lambda: p.delete_profile("alice")):
            with pytest.raises(StoreError, match="read-only") as caught:
                call()
            assert "nothing was written" in str(caught.value)
        assert p.profile("alice").preference_count == 1
    assert _dump(db) == before


def _dump(db: Path) -> list[str]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return list(conn.iterdump())
    finally:
        conn.close()


def test_a_full_disk_refuses_the_write_clearly_and_loses_nothing(tmp_path: Path,
                                                                 rewards: Any) -> None:
    db = tmp_path / "profiles.db"
    store = SQLiteProfileStore(db)
    with Personalizer(store, rewards=rewards) as p:
        for i in range(3):
            _pair(p, "alice", i)
        before = _dump(db)
        pages = store._conn.execute("PRAGMA page_count").fetchone()[0]
        store._conn.execute(f"PRAGMA max_page_count = {pages}")  # the disk is full now
        big = "A long answer. " * 4_000  # (60,000 characters: under the text limit)
        for call in (lambda: p.record_preference("bob", "q", "Short.", big),
                     lambda: p.record_preference("alice", "q", "Short.", big),
                     lambda: store.import_profile(_with_big_preference(
                         p.export_profile("alice"), big), replace=True)):
            with pytest.raises(StoreError, match="full") as caught:
                call()
            assert "nothing was written" in str(caught.value)
            assert _dump(db) == before
        assert [x.prompt for x in p.preferences("alice")] == [f"question {i}" for i in range(3)]
        with pytest.raises(LookupError):
            p.profile("bob")
        store._conn.execute("PRAGMA max_page_count = 1073741823")  # space again
        assert p.record_preference("bob", "q", "Short.", big).preference_count == 1
        assert _pair(p, "alice", 3).preference_count == 4
    store.close()
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        conn.close()


def _with_big_preference(doc: dict[str, Any], text: str) -> dict[str, Any]:
    big = {**doc["preferences"][0], "prompt": text}
    profile = {**doc["profile"], "preference_count": doc["profile"]["preference_count"] + 1}
    return {**doc, "profile": profile, "preferences": [*doc["preferences"], big]}


def test_paging_ends_at_user_ids_that_are_not_text(tmp_path: Path) -> None:
    """SQLite sorts a BLOB after every text: a damaged id that became one must not send the
    pages round in a circle."""
    import sqlite3

    from personalizer.profiles import SQLiteProfileStore

    path = tmp_path / "blob.db"
    with SQLiteProfileStore(path) as store:
        for user in "abcd":
            store.create(user)
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA foreign_keys = OFF")
    conn.execute("UPDATE profiles SET user_id = CAST(user_id AS BLOB) WHERE user_id IN ('a', 'c')")
    conn.commit()
    conn.close()
    with SQLiteProfileStore(path) as store:
        seen, damaged, after = [], [], None
        for _ in range(10):
            page = store.list_profiles(limit=1, after=after)
            seen += [p.user_id for p in page.profiles]
            damaged += page.damaged
            after = page.next_after
            if after is None:
                break
        assert after is None, "the pages went round in a circle"
        assert seen == ["b", "d"] and len(damaged) >= 1
