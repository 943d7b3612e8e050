"""The profile-store contract: what every ProfileStore does, written once and run on a real
SQLite file and a real PostgreSQL server (each test takes ``store`` or ``db``, both parametrised
over the two): profiles and their versions, preferences, kept answers with their steering
record, export and import, delete removing every row of that user only, and the migrations
(reopening, a newer release's database, older releases' databases upgraded in place).

What is particular to one store is in tests/integration/test_sqlite_store.py and
tests/integration/test_postgres.py."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from support.rows import pref, user_rows

from personalizer.errors import (
    InvalidInput,
    InvalidProfileData,
    InvalidUserId,
    PersonalizerError,
    ProfileExists,
    ProfileNotFound,
    SchemaTooNew,
    UnsupportedSchemaVersion,
    VersionConflict,
)
from personalizer.profiles import Profile, SQLProfileStore, open_store
from personalizer.profiles.models import StoredGeneration, utcnow
from personalizer.steering import GenerationOptions
from personalizer.types import QualityTerm, RewardTerm, ScoredCandidate, SteeringRecord


@pytest.fixture
def store(db: str) -> Iterator[SQLProfileStore]:
    """A store of each kind (the ``db`` fixture is parametrised over SQLite and PostgreSQL)."""
    with open_store(db) as s:
        yield s


def _record() -> SteeringRecord:
    """A steering record with every part filled in."""
    return SteeringRecord(
        path="best-of-n", levers=("prompt", "best_of_n"), strategy={"kind": "best_of_n", "n": 2},
        strength=2.0, reward_set_id="attributes", reward_set_version="1",
        terms=(RewardTerm(name="verbosity", description="longer answers", coefficient=-0.8,
                          contribution=0.31),),
        quality=QualityTerm(name="substance", description="says something", weight=1.0,
                            floor=0.2, score=0.5),
        candidates=(ScoredCandidate(text="Short.", reward=0.9),
                    ScoredCandidate(text="A long one, ü😀.", reward=-0.2)),
        chosen=0, hint=None, experts={"verbosity": -0.5})


def _tasteful(p: Profile) -> Profile:
    return p.model_copy(update={
        "coefficients": {"verbosity": -0.8, "warmth": 0.3},
        "covariance": [[0.2, 0.01], [0.01, 0.1]],
        "reward_set_id": "attributes", "reward_set_version": "1",
        "summary": "Short and warm.",
    })


def test_create_get_and_versions(store: SQLProfileStore) -> None:
    created = store.create("alice")
    assert created.version == 1
    assert store.get("alice") == created
    with pytest.raises(ProfileExists, match="alice"):
        store.create("alice")
    updated = store.update(_tasteful(store.get("alice")))
    assert updated.version == 2
    again = store.get("alice")
    assert again == updated
    assert list(again.coefficients) == ["verbosity", "warmth"]  # order kept for the covariance
    assert again.stddev("warmth") == pytest.approx(0.1 ** 0.5)


def test_stale_update_raises_conflict_and_changes_nothing(store: SQLProfileStore) -> None:
    store.create("alice")
    first = store.get("alice")
    second = store.get("alice")
    store.update(first.model_copy(update={"summary": "first writer"}))
    with pytest.raises(VersionConflict, match="re-read"):
        store.update(second.model_copy(update={"summary": "second writer"}))
    assert store.get("alice").summary == "first writer"


def test_modify_reapplies_after_conflict(store: SQLProfileStore) -> None:
    store.create("alice")
    calls = []

    def change(p: Profile) -> Profile:
        calls.append(p.version)
        if len(calls) == 1:  # somebody else writes between our read and our update
            store.update(p.model_copy(update={"summary": "interloper"}))
        return p.model_copy(update={"summary": p.summary + "+mine"})

    result = store.modify("alice", change)
    assert calls == [1, 2]
    assert result.summary == "interloper+mine"


def test_update_revalidates_model_copy(store: SQLProfileStore) -> None:
    p = store.create("alice")
    bad = p.model_copy(update={"coefficients": {"x": float("nan")}, "reward_set_id": "s",
                               "reward_set_version": "1"})
    with pytest.raises(InvalidInput, match="finite"):
        store.update(bad)
    assert store.get("alice") == p


def test_append_preferences_counts_and_order(store: SQLProfileStore) -> None:
    profile = store.append_preferences("bob", [pref(0), pref(1)])  # creates the profile
    assert profile.preference_count == 2
    profile = store.append_preference("bob", pref(2, reason="too long", source="onboarding"))
    assert profile.preference_count == 3 and profile.version == 3
    history = store.preferences("bob")
    assert [p.prompt for p in history] == ["question 0", "question 1", "question 2"]
    assert history[2].reason == "too long" and history[2].source == "onboarding"
    with pytest.raises(ProfileNotFound):
        store.append_preference("carol", pref(), create=False)


def test_list_profiles_pages(store: SQLProfileStore) -> None:
    for i in range(7):
        store.create(f"user-{i}")
    seen, after = [], None
    while True:
        page = store.list_profiles(limit=3, after=after)
        seen += [p.user_id for p in page.profiles]
        if page.next_after is None:
            break
        after = page.next_after
    assert seen == [f"user-{i}" for i in range(7)]
    assert store.count() == 7
    with pytest.raises(InvalidInput):
        store.list_profiles(limit=0)


def test_export_delete_import_round_trip(store: SQLProfileStore) -> None:
    store.append_preferences("alice", [pref(i) for i in range(5)])
    store.modify("alice", _tasteful)
    before = store.get("alice")
    history = store.preferences("alice")
    exported = store.export_profile("alice")
    text = json.dumps(exported)  # the export is plain JSON

    store.delete("alice")
    with pytest.raises(ProfileNotFound):
        store.get("alice")
    restored = store.import_profile(text)
    assert restored == before
    assert store.get("alice") == before
    assert store.preferences("alice") == history
    assert store.export_profile("alice")["profile"] == exported["profile"]


def test_import_refuses_existing_unless_replace(store: SQLProfileStore) -> None:
    store.append_preferences("alice", [pref(0)])
    exported = store.export_profile("alice")
    store.append_preferences("alice", [pref(1), pref(2)])
    with pytest.raises(ProfileExists, match="replace=True"):
        store.import_profile(exported)
    assert store.get("alice").preference_count == 3  # untouched
    store.import_profile(exported, replace=True)
    assert store.get("alice").preference_count == 1
    assert len(store.preferences("alice")) == 1


def test_delete_removes_every_row_of_that_user_only(store: SQLProfileStore, db: str) -> None:
    from uuid import uuid4

    from personalizer.profiles.models import Rating, StoredGeneration

    for user in ("alice", "bob", "carol"):
        store.append_preferences(user, [pref(i) for i in range(4)])
        store.modify(user, _tasteful)
        store.save_generation(user, StoredGeneration(id=uuid4().hex, prompt="q", answer="a"))
        with store.transaction(user) as tx:
            tx.rate([Rating(prompt="q", answer="a", rating="down")])
    def others() -> dict:
        return {u: {k: v for k, v in store.export_profile(u).items() if k != "exported_at"}
                for u in ("alice", "carol")}

    before = others()
    assert store.delete("bob") == 7  # 4 preferences, a generation, a rating, the profile
    assert set(user_rows(db, "bob").values()) == {0}
    assert user_rows(db, "alice") == {"preferences": 4, "profiles": 1, "onboarding": 0,
                                      "generations": 1, "ratings": 1}
    assert others() == before
    with pytest.raises(ProfileNotFound):
        store.delete("bob")


@pytest.mark.parametrize(
    "bad",
    ["", "a" * 129, "with space", "semi;colon", "../etc", "-leading", "名前", "x'; DROP TABLE"],
)
def test_bad_user_ids_are_refused(store: SQLProfileStore, bad: str) -> None:
    with pytest.raises(InvalidUserId):
        store.get(bad)
    with pytest.raises(InvalidUserId):
        store.create(bad)
    with pytest.raises(InvalidUserId):
        store.append_preference(bad, pref())


def test_good_user_ids_are_accepted(store: SQLProfileStore) -> None:
    for good in ("a", "u-42", "alice@example.com", "tenant:7.user_9+x", "A" * 128):
        store.create(good)
        assert store.get(good).user_id == good


@pytest.mark.parametrize(
    ("payload", "error", "match"),
    [
        ("{not json", InvalidProfileData, "not valid JSON"),
        ("[1, 2]", InvalidProfileData, "JSON object"),
        ('{"schema": "something-else"}', InvalidProfileData, "not a personalizer"),
        ('{"schema": "personalizer.profile-export", "schema_version": 99}',
         UnsupportedSchemaVersion, "upgrade personalizer"),
        ('{"schema": "personalizer.profile-export", "schema_version": 1}',
         InvalidProfileData, "profile"),
    ],
)
def test_malformed_imports(store: SQLProfileStore, payload: str, error: type,
                           match: str) -> None:
    with pytest.raises(error, match=match):
        store.import_profile(payload)
    assert store.count() == 0


def test_import_with_wrong_fields_is_refused_and_writes_nothing(
        store: SQLProfileStore) -> None:
    store.append_preferences("alice", [pref(0), pref(1)])
    good = store.export_profile("alice")
    store.delete("alice")
    cases = [
        {**good, "extra": 1},
        {**good, "profile": {**good["profile"], "user_id": "bad id"}},
        {**good, "profile": {**good["profile"], "preference_count": 5}},
        {**good, "profile": {**good["profile"], "coefficients": {"a": "x"}}},
        {**good, "preferences": [{**good["preferences"][0], "chosen": "same",
                                  "rejected": "same"}, good["preferences"][1]]},
    ]
    for case in cases:
        with pytest.raises(InvalidProfileData):
            store.import_profile(case)
    assert store.count() == 0


def test_errors_are_all_personalizer_errors(store: SQLProfileStore) -> None:
    for call in (lambda: store.get("nobody"), lambda: store.get(""),
                 lambda: store.import_profile("{")):
        with pytest.raises(PersonalizerError):
            call()


def test_version_1_to_6_exports_still_import(store: SQLProfileStore) -> None:
    from personalizer.profiles.export import GENERATION_RECORD_FIELDS, SUMMARY_FIELDS

    store.append_preferences("alice", [pref(0)])
    store.modify("alice", lambda p: p.model_copy(update={"summary": "Likes it short."}))
    store.save_generation("alice", StoredGeneration(id="a" * 32, prompt="q", answer="Short."),
                          model="m", options={"max_new_tokens": 8}, steering=_record())
    doc = store.export_profile("alice")
    assert doc["schema_version"] == 7 and doc["onboarding"] is None
    assert doc["generations"][0]["steering"]["experts"] == {"verbosity": -0.5}
    # version 6: a kept answer's steering record has no expert weights
    v6 = doc | {"schema_version": 6, "generations": [
        g | {"steering": {k: v for k, v in g["steering"].items() if k != "experts"}}
        for g in doc["generations"]]}
    store.delete("alice")
    assert store.import_profile(v6).preference_count == 1
    assert store.generation("alice", "a" * 32).steering.experts == {}
    with pytest.raises(InvalidProfileData, match=r"generations\.0\.steering\.experts is new "
                                                 "in schema version 7"):
        store.import_profile(doc | {"schema_version": 6}, replace=True)
    v5 = doc | {"schema_version": 5, "generations": [
        {k: v for k, v in g.items() if k not in GENERATION_RECORD_FIELDS}
        for g in doc["generations"]]}
    v4 = v5 | {"schema_version": 4, "preferences": [
        {k: v for k, v in p.items() if k != "judgement"} for p in doc["preferences"]]}
    v3 = {k: v for k, v in v4.items() if k not in ("generations", "ratings")} | {
        "schema_version": 3}
    v2 = v3 | {"schema_version": 2, "profile": {
        k: v for k, v in doc["profile"].items() if k not in SUMMARY_FIELDS}}
    v1 = {k: v for k, v in v2.items() if k != "onboarding"} | {"schema_version": 1}
    for old in (v1, v2, v3, v4, v5):
        store.delete("alice")
        back = store.import_profile(old)
        assert back.preference_count == 1 and back.summary == "Likes it short."
        assert [p.judgement for p in store.preferences("alice")] == ["better"]
        # a summary from before summaries had an author is the person's: never overwritten
        assert back.summary_source == "user" and not back.summary_stale
        kept = store.generation("alice", "a" * 32)  # v4 and v5 hold it, with no record
        assert kept is None if "generations" not in old else (
            (kept.answer, kept.model, kept.options, kept.strategy, kept.steering)
            == ("Short.", None, {}, None, None))
    with pytest.raises(InvalidProfileData, match=r"generations\.0\.model is new in schema "
                                                 "version 6"):
        store.import_profile(doc | {"schema_version": 5}, replace=True)
    with pytest.raises(InvalidProfileData, match="new in schema version 3"):
        store.import_profile(v3 | {"schema_version": 2}, replace=True)
    with pytest.raises(InvalidProfileData, match="new in schema version 4"):
        store.import_profile(v4 | {"schema_version": 3}, replace=True)
    with pytest.raises(InvalidProfileData, match="judgement is new in schema version 5"):
        store.import_profile(doc | {"schema_version": 4}, replace=True)
    state = {"reward_set_id": "attributes", "reward_set_version": "1", "pool_id": "p",
             "asked": ["q1"], "max_questions": 10}
    store.delete("alice")
    assert store.import_profile(v4 | {"onboarding": state}).preference_count == 1
    assert store.onboarding_state("alice").confirmed == 0  # older states: none counted
    with pytest.raises(InvalidProfileData, match="onboarding.confirmed is new in schema "
                                                 "version 5"):
        store.import_profile(v4 | {"onboarding": state | {"confirmed": 1}}, replace=True)


def test_transaction_is_all_or_nothing(store: SQLProfileStore) -> None:
    store.append_preferences("alice", [pref(0)])
    before = store.export_profile("alice")
    with pytest.raises(RuntimeError), store.transaction("alice") as tx:
        tx.append([pref(1)])
        tx.update(summary="half-done")
        raise RuntimeError("crash in the middle")
    after = store.export_profile("alice")
    assert {k: v for k, v in after.items() if k != "exported_at"} == \
        {k: v for k, v in before.items() if k != "exported_at"}
    with store.transaction("alice") as tx:
        assert [p.prompt for p in tx.preferences] == ["question 0"]
        with pytest.raises(InvalidInput, match="cannot change"):
            tx.update(version=99)
        tx.append([pref(1)])
        tx.update(summary="done")
    assert tx.result.summary == "done" and tx.result.preference_count == 2
    assert store.get("alice") == tx.result


# -- contract additions: idempotent appends, exact vectors, the population aggregate ----------


def test_an_append_with_a_stored_key_writes_nothing(store: SQLProfileStore) -> None:
    first = store.append_preferences("alice", [pref(0), pref(1)], key="request-17")
    again = store.append_preferences("alice", [pref(0), pref(1)], key="request-17")
    assert again == first  # the retry of a request whose reply was lost: no new rows
    assert [p.prompt for p in store.preferences("alice")] == ["question 0", "question 1"]
    store.append_preferences("alice", [pref(2)], key="request-18")
    store.append_preferences("bob", [pref(0)], key="request-17")  # keys are per user
    assert store.get("alice").preference_count == 3
    assert store.get("bob").preference_count == 1
    with pytest.raises(InvalidInput, match="key"):
        store.append_preferences("alice", [pref(3)], key="")


def test_vectors_keep_their_order_and_values_exactly(store: SQLProfileStore) -> None:
    names = ["zeta", "alpha", "mu", "beta", "omega", "a_b", "Z"]  # not in sorted order
    values = [0.1 + 0.2, -1e-300, 1e300, 2.0 / 3.0, -0.0, 123456789.123456789, 5e-324]
    # symmetric positive definite (an import refuses any other), with inexact float values
    cov = [[1 / (i + j + 1) + (i == j) / 3 for j in range(len(names))] for i in range(len(names))]
    p = store.create("alice")
    stored = store.update(p.model_copy(update={
        "coefficients": dict(zip(names, values, strict=True)), "covariance": cov,
        "reward_set_id": "s", "reward_set_version": "1"}))
    again = store.get("alice")
    assert list(again.coefficients) == names
    assert [again.coefficients[n] for n in names] == values
    assert again.covariance == cov and again == stored
    doc = store.export_profile("alice")
    assert list(doc["profile"]["coefficients"]) == names
    store.delete("alice")
    assert list(store.import_profile(doc).coefficients) == names


def test_population_sums_give_the_prior_of_the_stored_posteriors(store: SQLProfileStore) -> None:
    import numpy as np

    from personalizer.profiles.learning.posterior import Posterior
    from personalizer.profiles.learning.priors import population_prior, prior_from_sums

    names = ["verbosity", "warmth", "lists"]
    rng = np.random.default_rng(0)
    posts = {}
    for i in range(6):
        mean = rng.normal(size=3)
        a = rng.normal(size=(3, 3))
        cov = a @ a.T + np.eye(3)
        posts[f"u{i}"] = Posterior(mean, cov)
        p = store.create(f"u{i}")
        store.update(p.model_copy(update={
            "coefficients": dict(zip(names, map(float, mean), strict=True)),
            "covariance": cov.tolist(), "reward_set_id": "attrs", "reward_set_version": "2"}))
    other = store.create("other-set")  # another reward set version does not count
    store.update(other.model_copy(update={"coefficients": {"verbosity": 9.0},
                                          "covariance": [[1.0]], "reward_set_id": "attrs",
                                          "reward_set_version": "1"}))
    store.create("never-learned")  # no coefficients: does not count

    sums = store.population_sums("attrs", "2", exclude="u0")
    assert sums.count == 5
    got = prior_from_sums(sums, names, min_users=2)
    want = population_prior([posts[f"u{i}"] for i in range(1, 6)], min_users=2)
    np.testing.assert_allclose(got.mean, want.mean, rtol=1e-9)
    np.testing.assert_allclose(got.cov, want.cov, rtol=1e-9)

    store.delete("u1")  # a deleted user stops counting at once
    assert store.population_sums("attrs", "2").count == 5
    want = population_prior([posts[f"u{i}"] for i in (0, 2, 3, 4, 5)], min_users=2)
    got = prior_from_sums(store.population_sums("attrs", "2"), names, min_users=2)
    np.testing.assert_allclose(got.mean, want.mean, rtol=1e-9)
    assert store.population_sums("nothing", "1").count == 0


def test_the_url_selects_the_store(db: str) -> None:
    with open_store(db) as s:
        kind = type(s).__name__
    assert kind == ("PostgresProfileStore" if db.startswith("postgresql://")
                    else "SQLiteProfileStore")


# -- kept answers remember how they were made --------------------------------------------------


def test_a_kept_answer_keeps_how_it_was_made(store: SQLProfileStore) -> None:
    store.create("alice")
    options = GenerationOptions(max_new_tokens=64, temperature=0.7, do_sample=True,
                                stop=["\n\n"])
    store.save_generation("alice", StoredGeneration(id="a" * 32, prompt="q", answer="Short."),
                          model="HuggingFaceTB/SmolLM2-135M-Instruct", options=options,
                          strategy={"kind": "best_of_n", "n": 2}, steering=_record())
    kept = store.generation("alice", "a" * 32)
    assert kept is not None and kept.model == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert kept.options == options.model_dump(mode="json")
    assert GenerationOptions.model_validate(kept.options) == options
    assert kept.strategy == {"kind": "best_of_n", "n": 2}
    assert isinstance(kept.steering, SteeringRecord) and kept.steering == _record()
    assert kept.steering.why() == _record().why()
    # the fields of the model itself are kept the same way
    direct = StoredGeneration(id="b" * 32, prompt="q2", answer="x", model="m",
                              options={"max_new_tokens": 8}, steering=SteeringRecord(path="plain"))
    store.save_generation("alice", direct)
    assert store.generation("alice", "b" * 32) == direct
    # an answer kept without a record reads back with it empty
    store.save_generation("alice", StoredGeneration(id="c" * 32, prompt="q3", answer="y"))
    plain = store.generation("alice", "c" * 32)
    assert plain is not None
    assert (plain.model, plain.options, plain.strategy, plain.steering) == (None, {}, None, None)
    # and the record travels with the export, equal
    doc = store.export_profile("alice")
    assert doc["schema_version"] == 7
    assert [g["steering"] and g["steering"]["path"] for g in doc["generations"]] == [
        "best-of-n", "plain", None]
    store.delete("alice")
    store.import_profile(json.dumps(doc))
    assert store.generation("alice", "a" * 32) == kept
    assert store.export_profile("alice")["generations"] == doc["generations"]


@pytest.mark.parametrize("record", [
    {"steering": SteeringRecord(path="best-of-n", candidates=(
        ScoredCandidate(text="x", reward=float("nan")),))},
    {"steering": SteeringRecord(path="plain", hint="a\x00b")},
    {"options": {"stop": ["a\x00b"]}},
    {"options": {"temperature": float("inf")}},
    {"strategy": {"\ud800": 1}},
    {"model": "m\udc80"},
    {"steering": "not a record"},
    {"options": ["max_new_tokens", 8]},
], ids=["nan-reward", "nul-in-record", "nul-in-options", "inf-option", "surrogate-key",
        "surrogate-model", "not-a-record", "options-not-an-object"])
def test_a_record_that_cannot_be_stored_is_refused_and_writes_nothing(
        store: SQLProfileStore, db: str, record: dict) -> None:
    store.create("alice")
    with pytest.raises(InvalidInput, match="StoredGeneration"):
        store.save_generation(
            "alice", StoredGeneration(id="a" * 32, prompt="q", answer="a"), **record)
    assert user_rows(db, "alice")["generations"] == 0


# -- migrations: the same schema steps in both stores, applied once, never lost ----------------

MIGRATIONS_IN_ORDER = ["m001_profiles_and_preferences", "m002_onboarding", "m003_append_keys",
                       "m004_summary_meta", "m005_generations", "m006_preference_judgement",
                       "m007_no_nul_in_text", "m008_generation_record"]


def _is_pg(db: str) -> bool:
    return db.startswith("postgresql://")


def applied_migrations(db: str) -> list[str]:
    """The schema steps the database records as applied, read with its own driver."""
    if _is_pg(db):
        import psycopg

        from personalizer.profiles.store.pg_schema import MIGRATIONS_TABLE

        with psycopg.connect(db) as conn:
            return [r[0] for r in conn.execute(f"SELECT name FROM {MIGRATIONS_TABLE} "
                                               "ORDER BY name")]
    conn = sqlite3.connect(db)
    try:
        return [r[0] for r in conn.execute(
            "SELECT name FROM _sqlite_migrations WHERE migration_set='personalizer'")]
    finally:
        conn.close()


def record_migration(db: str, name: str) -> None:
    """Mark ``name`` applied, as a later release would."""
    if _is_pg(db):
        import psycopg

        from personalizer.profiles.store.pg_schema import MIGRATIONS_TABLE

        with psycopg.connect(db) as conn:
            conn.execute(f"INSERT INTO {MIGRATIONS_TABLE} (name) VALUES (%s)", (name,))
        return
    conn = sqlite3.connect(db)
    conn.execute("INSERT INTO _sqlite_migrations (migration_set, name, applied_at) "
                 "VALUES ('personalizer', ?, '2030-01-01')", (name,))
    conn.commit()
    conn.close()


@contextmanager
def older_release(db: str, before: str) -> Iterator[Callable[..., Any]]:
    """The database as an older release left it: every schema step before ``before``
    applied, the rest not. Yields ``execute(sql, params)`` (``?`` placeholders) to write the
    rows that release wrote, and ``columns(table)`` is ``execute.columns``."""
    if _is_pg(db):
        import psycopg

        from personalizer.profiles.store.pg_schema import MIGRATIONS_TABLE, STEPS

        names = [name for name, _ in STEPS]
        with psycopg.connect(db, autocommit=True) as conn:
            conn.execute(f"CREATE TABLE {MIGRATIONS_TABLE} (name text PRIMARY KEY, "
                         "applied_at timestamptz NOT NULL DEFAULT now())")
            for name, statements in STEPS[:names.index(before)]:
                for sql in statements:
                    conn.execute(sql)
                conn.execute(f"INSERT INTO {MIGRATIONS_TABLE} (name) VALUES (%s)", (name,))

            def execute(sql: str, params: tuple = ()) -> None:
                conn.execute(sql.replace("?", "%s"), params)

            execute.columns = lambda table: {r[0] for r in conn.execute(  # type: ignore[attr-defined]
                "SELECT column_name FROM information_schema.columns WHERE table_name = %s",
                (table,))}
            yield execute
        return
    from sqlite_utils import Database

    from personalizer.profiles.store.schema import MIGRATIONS

    old = Database(db)
    MIGRATIONS.apply(old, stop_before=before)

    def execute(sql: str, params: tuple = ()) -> None:  # type: ignore[no-redef]
        old.execute(sql, params)

    execute.columns = lambda table: set(old[table].columns_dict)  # type: ignore[attr-defined]
    try:
        yield execute
        old.conn.commit()
    finally:
        old.close()


def test_reopening_applies_no_migration_twice_and_loses_nothing(db: str) -> None:
    with open_store(db) as s:
        s.append_preferences("alice", [pref(0)])
    for _ in range(2):  # reopening applies nothing twice and loses nothing
        with open_store(db) as s:
            assert s.get("alice").preference_count == 1
    assert applied_migrations(db) == MIGRATIONS_IN_ORDER


def test_a_database_from_a_newer_release_is_refused(db: str) -> None:
    open_store(db).close()
    record_migration(db, "m999_from_the_future")
    with pytest.raises(SchemaTooNew, match="upgrade personalizer"):
        open_store(db)


@pytest.mark.parametrize("before", ["m002_onboarding", "m004_summary_meta"],
                         ids=["from-the-first-release", "from-before-summaries"])
def test_a_database_from_before_summaries_is_upgraded_in_place(db: str, before: str) -> None:
    now = "2026-01-01T00:00:00+00:00"
    with older_release(db, before) as execute:
        assert "summary_source" not in execute.columns("profiles")
        execute("INSERT INTO profiles (user_id, version, coefficients, summary, "
                "preference_count, created_at, updated_at) VALUES "
                "('early', 1, '{}', 'from an older release', 0, ?, ?), "
                "('blank', 1, '{}', '', 0, ?, ?)", (now, now, now, now))
    with open_store(db) as store:
        early, blank = store.get("early"), store.get("blank")
        assert store.export_profile("early")["onboarding"] is None
    # m004: a summary from before summaries had an author is the person's own
    assert (early.summary, early.summary_source) == ("from an older release", "user")
    assert early.summary_written_at == early.updated_at and not early.summary_stale
    assert (blank.summary_source, blank.summary_preferences) == (None, 0)
    assert applied_migrations(db) == MIGRATIONS_IN_ORDER


def test_answers_kept_before_the_record_are_upgraded_in_place(db: str) -> None:
    now = utcnow().isoformat()
    with older_release(db, "m008_generation_record") as execute:  # the last release's schema
        assert "steering" not in execute.columns("generations")
        execute("INSERT INTO profiles (user_id, version, coefficients, summary, "
                "preference_count, created_at, updated_at) VALUES "
                "('early', 1, '{}', '', 0, ?, ?)", (now, now))
        execute("INSERT INTO generations (id, user_id, prompt, answer, created_at) VALUES "
                "(?, 'early', 'q', 'an old answer', ?)", ("e" * 32, now))
    for _ in range(2):  # and opening it again applies nothing twice
        with open_store(db) as store:
            kept = store.generation("early", "e" * 32)
            assert kept is not None and kept.answer == "an old answer"
            assert (kept.model, kept.options, kept.strategy, kept.steering) == (
                None, {}, None, None)
    with open_store(db) as store:
        store.save_generation("early", StoredGeneration(id="f" * 32, prompt="q", answer="new",
                                                        created_at=utcnow()),
                              model="m", options={"seed": 3}, steering=_record())
        kept = store.generation("early", "f" * 32)
        assert (kept.model, kept.options, kept.steering) == ("m", {"seed": 3}, _record())
        assert [g["id"] for g in store.export_profile("early")["generations"]] == ["e" * 32,
                                                                                   "f" * 32]
    assert applied_migrations(db) == MIGRATIONS_IN_ORDER
