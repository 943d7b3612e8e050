"""Onboarding and the profile learner on real SQLite files and the shipped question bank."""

from __future__ import annotations

import itertools
import re
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from support.rows import user_rows

from personalizer import Personalizer
from personalizer.cli import main
from personalizer.errors import InvalidInput, RewardSetMismatch
from personalizer.profiles import (
    Onboarding,
    Posterior,
    ProfileLearner,
    SimulatedUser,
    SQLiteProfileStore,
    default_reward_set,
    question_bank,
)
from personalizer.profiles.onboarding.simulate import taste_vector


@pytest.fixture(scope="module")
def rewards():  # noqa: ANN201
    return default_reward_set()


def answer_all(ob: Onboarding, user: SimulatedUser, rewards) -> None:  # noqa: ANN001
    ob.run(user.chooser(rewards))


def test_question_bank_has_30_plus_distinct_questions() -> None:
    def norm(text: str) -> str:  # texts that differ in spacing or case only are the same
        return " ".join(text.split()).casefold()

    bank = question_bank()
    # a question is a prompt and two of its answers to choose between
    questions = [(norm(item.prompt), frozenset({norm(a), norm(b)}))
                 for item in bank for a, b in itertools.combinations(item.responses, 2)]
    assert all(len(pair) == 2 for _, pair in questions)  # never a choice between equals
    assert len(set(questions)) == len(questions) >= 30  # none twice, in one item or across
    assert len({norm(item.prompt) for item in bank}) == len(bank)  # each prompt once
    assert all(3 <= len(item.responses) <= 12 for item in bank)


def test_onboarding_learns_a_terse_user(db_path: Path, rewards) -> None:  # noqa: ANN001
    with SQLiteProfileStore(db_path) as store:
        ob = Onboarding(store, rewards, "terse-user", max_questions=10)
        answer_all(ob, SimulatedUser(taste_vector("terse", rewards.names), beta=2.0), rewards)
        profile = ob.profile
        history = store.preferences("terse-user")
        assert ob.done and len(ob.state.asked) == profile.preference_count == len(history) <= 10
        assert len(set(ob.state.asked)) == len(ob.state.asked)  # no question twice
    assert {h.source for h in history} == {"onboarding"}
    assert profile.coefficients["verbosity"] < 0
    prior_var = np.trace(np.eye(len(rewards)))
    assert np.trace(np.array(profile.covariance)) < prior_var  # uncertainty went down


def test_onboarding_resumes_after_a_restart(db_path: Path, rewards) -> None:  # noqa: ANN001
    user = SimulatedUser(taste_vector("lists", rewards.names), beta=2.0, seed=1)
    with SQLiteProfileStore(db_path) as store:
        ob = Onboarding(store, rewards, "resumer")
        for _ in range(3):
            q = ob.next_question()
            f = rewards.features(q.prompt, list(q.options))
            ob.answer(q.id, user.answer(f[0], f[1]))
        pending = ob.next_question()
        assert ob.next_question() == pending  # shown again until answered
    with SQLiteProfileStore(db_path) as store:  # a new process, same file
        again = Onboarding(store, rewards, "resumer")
        assert len(again.state.asked) == 3
        assert again.next_question() == pending
        answer_all(again, user, rewards)
        assert again.done and again.profile.preference_count == len(again.state.asked)
        with pytest.raises(InvalidInput, match="another question pool"):
            Onboarding(store, rewards, "resumer", pool=[{"prompt": "p", "responses": ["a", "b"]}])


def test_small_pool_runs_out_and_bad_answers_are_refused(store, rewards) -> None:  # noqa: ANN001
    pool = [{"prompt": "Hi?", "responses": ["Hello.", "Hello there, my dear friend!"]}]
    ob = Onboarding(store, rewards, "small", pool=pool, min_questions=1)
    q = ob.next_question()
    with pytest.raises(InvalidInput, match="choice must be"):
        ob.answer(q.id, 2)
    with pytest.raises(InvalidInput, match="unknown question"):
        ob.answer("nope", 0)
    ob.answer(q.id, 0)
    assert ob.done and ob.remaining == 0
    with pytest.raises(InvalidInput, match="finished"):
        ob.next_question()
    with pytest.raises(InvalidInput, match="must all differ"):
        Onboarding(store, rewards, "dupes", pool=[{"prompt": "p", "responses": ["a", "a"]}])
    with pytest.raises(InvalidInput, match="empty"):
        Onboarding(store, rewards, "empty", pool=[])


def test_onboarding_state_is_exported_imported_and_deleted(db_path: Path, rewards) -> None:  # noqa: ANN001
    with SQLiteProfileStore(db_path) as store:
        ob = Onboarding(store, rewards, "mover")
        q = ob.next_question()
        ob.answer(q.id, 0)
        pending = ob.next_question()
        doc = store.export_profile("mover")
        assert doc["onboarding"]["pending"] == pending.id
        assert user_rows(db_path, "mover")["onboarding"] == 1
        store.delete("mover")
        assert set(user_rows(db_path, "mover").values()) == {0}
        store.import_profile(doc)
        assert Onboarding(store, rewards, "mover").next_question() == pending


def test_record_preference_updates_the_posterior_in_one_go(store, rewards) -> None:  # noqa: ANN001
    learner = ProfileLearner(store, rewards)
    item = question_bank()[0]
    short, listy, warm, technical = item.responses
    p1 = learner.record_preference("ann", item.prompt, chosen=short, rejected=warm)
    assert p1.preference_count == 1 and p1.reward_set_version == rewards.version
    p2 = learner.record_preference("ann", item.prompt, chosen=short, rejected=technical)
    assert p2.version == p1.version + 1
    assert p2.coefficients["verbosity"] < p1.coefficients["verbosity"] < 0
    assert learner.preference_probability("ann", item.prompt, short, warm) > 0.6
    p3 = learner.delete_preference("ann", 1)
    assert p3.preference_count == 1
    assert p3.coefficients["verbosity"] == pytest.approx(p1.coefficients["verbosity"], rel=1e-6)
    with pytest.raises(InvalidInput, match="out of range"):
        learner.delete_preference("ann", 5)


def test_coefficients_of_another_set_need_a_refit(store, rewards) -> None:  # noqa: ANN001
    from personalizer.backends.rewards import attribute_reward_set

    other = attribute_reward_set()  # unnormalised: another version
    item = question_bank()[1]
    ProfileLearner(store, other).record_preference("bo", item.prompt, item.responses[0],
                                                   item.responses[2])
    learner = ProfileLearner(store, rewards)
    with pytest.raises(RewardSetMismatch, match="refit"):
        learner.record_preference("bo", item.prompt, item.responses[0], item.responses[3])
    refit = learner.refit("bo")
    assert refit.reward_set_version == rewards.version and refit.preference_count == 1


def test_population_prior_starts_newcomers_where_people_are(store, rewards) -> None:  # noqa: ANN001
    learner = ProfileLearner(store, rewards)
    taste = {name: 0.0 for name in rewards.names} | {"verbosity": -1.5}
    cov = np.eye(len(rewards)) * 0.1
    for i in range(19):
        store.create(f"old-{i}")
        store.modify(f"old-{i}", lambda p: p.model_copy(update=learner.fields(
            Posterior(
                np.array(list(taste.values())), cov))))
    fixed = learner.fallback_prior.mean  # the built-in prior
    assert np.allclose(learner.prior(exclude="new").mean, fixed)  # 19 < 20: the fixed prior
    store.create("old-19")
    store.modify("old-19", lambda p: p.model_copy(update=learner.fields(
        Posterior(
            np.array(list(taste.values())), cov))))
    prior = learner.prior(exclude="new")
    assert prior.mean[rewards.names.index("verbosity")] == pytest.approx(-1.5)
    store.delete("old-3")  # a deleted user no longer counts: back below 20
    assert np.allclose(learner.prior(exclude="new").mean, fixed)


def test_facade_needs_rewards_for_learning(tmp_path: Path, rewards) -> None:  # noqa: ANN001
    with Personalizer(tmp_path / "p.db") as p:
        with pytest.raises(InvalidInput, match="rewards="):
            p.onboarding("x")
    with Personalizer(tmp_path / "p.db", rewards=rewards) as p:
        item = question_bank()[2]
        prof = p.record_preference("y", item.prompt, item.responses[0], item.responses[2])
        assert prof.coefficients and prof.covariance
        assert 0 < p.preference_probability("y", item.prompt, item.responses[0],
                                            item.responses[2]) < 1
        assert p.onboarding("y").next_question().prompt


def test_cli_onboard_simulated_and_interactive(tmp_path: Path) -> None:
    db = str(tmp_path / "p.db")
    out = CliRunner().invoke(main, ["onboard", "sim", "--simulate", "terse", "--questions", "6",
                                    "--db", db])
    assert out.exit_code == 0, out.output
    done = re.search(r"complete \((\d+) answers\)", out.output)
    assert done and 3 <= int(done.group(1)) <= 6  # a clear simulated person stops early
    assert f"Question {done.group(1)}" in out.output
    with SQLiteProfileStore(db) as store:
        assert store.get("sim").coefficients["verbosity"] < 0
    out = CliRunner().invoke(main, ["onboard", "human", "--questions", "3", "--db", db],
                             input="1\n2+\n=\nboth are too chatty for me\n")
    assert out.exit_code == 0, out.output
    assert "complete (3 answers)" in out.output
    with SQLiteProfileStore(db) as store:
        history = store.preferences("human")
        assert [p.judgement for p in history] == ["better", "much_better", "both_fine"]
        assert [p.reason for p in history] == [None, None, "both are too chatty for me"]
    tech = CliRunner().invoke(main, ["onboard", "dev", "--simulate", "terse", "--domain", "tech",
                                     "--db", db])
    assert tech.exit_code == 0, tech.output
    tech_prompts = {item.prompt for item in question_bank(["tech"])}
    with SQLiteProfileStore(db) as store:
        assert {p.prompt for p in store.preferences("dev")} <= tech_prompts
    bad = CliRunner().invoke(main, ["onboard", "sim2", "--simulate", "grumpy", "--db", db])
    assert bad.exit_code == 1 and "unknown taste" in bad.output


def test_generate_pool_with_a_generator(store, rewards) -> None:  # noqa: ANN001
    from personalizer.profiles import generate_pool
    from personalizer.testing import ScriptedGenerator

    def reply(messages):  # noqa: ANN001, ANN202
        style = messages[0].content if messages[0].role == "system" else "plain"
        return f"{messages[-1].content} -> answer in style: {style}"

    pool = generate_pool(ScriptedGenerator(reply), ["Q1?", "Q2?"], rewrites=False)
    assert [len(item.responses) for item in pool] == [4, 4]
    ob = Onboarding(store, rewards, "gen-user", pool=pool)
    assert ob.next_question().prompt in {"Q1?", "Q2?"}
    with pytest.raises(InvalidInput, match="no prompt"):
        generate_pool(ScriptedGenerator(lambda m: "same"), ["Q?"])


def test_causal_lm_encoder_feeds_learned_heads() -> None:
    from support import tiny

    from personalizer.backends import LocalGenerator
    from personalizer.backends.rewards import CausalLMEncoder, EmbeddingHeads, RewardSet

    enc = CausalLMEncoder(LocalGenerator(tiny.gpt2(), tiny.tokenizer()), pooling="last")
    e = enc.encode(["short", "a longer text here", ""])
    assert e.shape == (3, 64) and np.isfinite(e).all()
    single = enc.encode(["a longer text here"])
    np.testing.assert_allclose(e[1], single[0], rtol=1e-4, atol=1e-5)  # padding-independent
    heads = EmbeddingHeads(enc, np.ones((2, 64)), None, ["h0", "h1"])
    assert RewardSet("lm-heads", [heads]).features("q", ["a", "b"]).shape == (2, 2)


def test_reading_an_onboarding_never_writes(db_path: Path, rewards) -> None:  # noqa: ANN001
    import sqlite3

    from personalizer.profiles import SQLiteProfileStore

    SQLiteProfileStore(db_path).close()  # the schema exists; nobody is in it
    writer = sqlite3.connect(db_path, isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")  # another process holds the write lock throughout
    try:
        with SQLiteProfileStore(db_path, busy_timeout_s=0.2) as store:
            ob = Onboarding(store, rewards, "reader", max_questions=5)
            assert (ob.done, ob.remaining, ob.state.asked) == (False, len(ob._questions), [])
            assert ob.profile.preference_count == 0
            assert store.count() == 0  # no profile was created by looking
    finally:
        writer.execute("ROLLBACK")
        writer.close()
    with SQLiteProfileStore(db_path) as store:
        ob = Onboarding(store, rewards, "reader", max_questions=5)
        q = ob.next_question()  # acting writes: now the profile and the session exist
        assert store.onboarding_state("reader").pending == q.id
        ob.answer(q.id, 0)
        assert store.get("reader").preference_count == 1


def test_read_only_cli_verbs_refuse_a_missing_database_file(tmp_path: Path) -> None:
    missing = tmp_path / "typo.db"
    for verb in (["list"], ["show", "alice"], ["export", "alice"], ["summary", "alice"],
                 ["delete", "alice", "--yes"]):
        out = CliRunner().invoke(main, ["profiles", *verb, "--db", str(missing)])
        assert out.exit_code == 1 and "DatabaseNotFound" in out.output, verb
        assert "typo.db" in out.output
    assert not missing.exists()
