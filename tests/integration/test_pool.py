"""The shipped question pool (domains, one-attribute rewrites), the frozen default reward set,
the built-in prior, graded onboarding answers and early stopping, on real SQLite files."""

from __future__ import annotations

import numpy as np
import pytest

from personalizer.errors import InvalidInput
from personalizer.profiles import (
    Onboarding,
    ProfileLearner,
    SimulatedUser,
    default_reward_set,
    question_bank,
)
from personalizer.profiles.learning.priors import shipped_prior
from personalizer.profiles.onboarding.bank import domains
from personalizer.profiles.onboarding.pool import (
    as_list,
    clean_answer,
    formal,
    hedged,
    shorter,
    variant_answers,
    warmer,
)
from personalizer.profiles.onboarding.simulate import taste_vector

BASE = ("Getting better sleep is important. Keep a fixed bedtime, even at weekends. "
        "Don't use screens for the last hour before bed! Keep the bedroom cool and dark.")


@pytest.fixture(scope="module")
def rewards():  # noqa: ANN201
    return default_reward_set()


def feature(rewards, name: str, text: str) -> float:  # noqa: ANN001
    return float(rewards.features("How do I get better sleep?", [text])[0][
        rewards.names.index(name)])


def test_rewrites_move_their_attribute_and_keep_the_content(rewards) -> None:  # noqa: ANN001
    assert shorter(BASE, prompt="How do I get better sleep?") == \
        "Keep a fixed bedtime, even at weekends."  # skips the restated question
    listed = as_list(BASE)
    assert listed.splitlines()[1] == "- Keep a fixed bedtime, even at weekends"
    moves = {"structure": listed, "warmth": warmer(BASE), "hedging": hedged(BASE),
             "formality": formal(BASE)}
    for name, text in moves.items():
        assert feature(rewards, name, text) > feature(rewards, name, BASE) + 0.3, name
    assert feature(rewards, "verbosity", shorter(BASE)) < feature(rewards, "verbosity", BASE)
    assert "Do not use screens" in formal(BASE) and "!" not in formal(BASE)
    assert "bedroom cool and dark" in warmer(BASE) and "bedroom cool and dark" in hedged(BASE)
    variants = variant_answers(BASE, prompt="How do I get better sleep?")
    assert list(variants)[0] == "base" and len(set(variants.values())) == len(variants)


def test_clean_answer_turns_a_rambling_list_into_finished_prose() -> None:
    raw = ("Here is how:\n\n1. **Traps**: Use a vinegar trap.\n2. **Traps**: Use a vinegar "
           "trap.\n3. Take out the trash daily.\n4. Keep the fruit in the")
    assert clean_answer(raw) == "Traps: Use a vinegar trap. Take out the trash daily."
    assert clean_answer("One. Two three four five six.", max_words=2) == "One."


def test_the_shipped_bank_has_domains_and_isolating_rewrites(rewards) -> None:  # noqa: ANN001
    bank = question_bank()
    assert domains()[0] == "general" and {"everyday", "work", "tech", "learning"} <= set(
        domains())
    pairs = sum(len(i.responses) * (len(i.responses) - 1) // 2 for i in bank)
    assert pairs >= 500
    tech = question_bank(["tech"])
    assert tech and {i.domain for i in tech} == {"tech"}
    assert question_bank("work") == question_bank(["work"])
    with pytest.raises(InvalidInput, match="unknown question-bank domain"):
        question_bank(["astrology"])
    # the bank's features are far less correlated than the first bank's four styles
    feats = np.concatenate([rewards.features(i.prompt, i.responses) for i in bank])
    first = np.concatenate([rewards.features(i.prompt, i.responses) for i in bank[:8]])
    names = rewards.names
    v, w = names.index("verbosity"), names.index("warmth")
    assert abs(np.corrcoef(feats[:, v], feats[:, w])[0, 1]) < \
        abs(np.corrcoef(first[:, v], first[:, w])[0, 1])


def test_the_default_reward_set_version_is_frozen(rewards) -> None:  # noqa: ANN001
    # stored coefficients refer to this version: a new question bank must never move it
    assert rewards.version == "1-4e186394"


def test_onboarding_by_domain_asks_only_that_domain(store, rewards) -> None:  # noqa: ANN001
    ob = Onboarding(store, rewards, "dev", domains=["tech"], max_questions=3)
    prompts = {i.prompt for i in question_bank(["tech"])}
    ob.run(lambda q: 0)
    assert {p.prompt for p in store.preferences("dev")} <= prompts
    with pytest.raises(InvalidInput, match="either pool= .* or domains="):
        Onboarding(store, rewards, "dev2", pool=[{"prompt": "p", "responses": ["a", "b"]}],
                   domains=["tech"])


def test_a_session_resumes_on_a_pool_that_still_holds_its_questions(store, rewards) -> None:  # noqa: ANN001
    first = list(question_bank()[:8])
    ob = Onboarding(store, rewards, "old", pool=first)
    q = ob.next_question()
    ob.answer(q.id, 0)
    pending = ob.next_question()
    again = Onboarding(store, rewards, "old")  # the grown shipped bank
    assert again.next_question() == pending
    again.answer(pending.id, 1)
    assert again.state.pool_id == again.pool_id and len(again.state.asked) == 2


def test_shipped_prior_is_used_before_20_users_and_only_for_its_set(store, rewards) -> None:  # noqa: ANN001
    from personalizer.backends.rewards import attribute_reward_set

    shipped = shipped_prior(rewards)
    assert shipped is not None and shipped.dim == len(rewards)
    assert np.all(np.diag(shipped.cov) > 0.1)
    learner = ProfileLearner(store, rewards)
    assert np.allclose(learner.prior().cov, shipped.cov)
    standard = ProfileLearner(store, rewards, prior="standard")
    assert np.allclose(standard.prior().cov, np.eye(len(rewards)))
    assert shipped_prior(attribute_reward_set()) is None  # another version: N(0, I)
    with pytest.raises(InvalidInput, match="prior must be"):
        ProfileLearner(store, rewards, prior="mine")  # type: ignore[arg-type]


def test_graded_answers_are_stored_and_weigh_more_or_less(store, rewards) -> None:  # noqa: ANN001
    item = question_bank()[0]
    pool = [{"prompt": item.prompt, "responses": [item.responses[0], item.responses[2]]}]
    verbosity = {}
    for user, reply in (("plain", 0), ("much", (0, "much")), ("slight", (0, "slightly"))):
        ob = Onboarding(store, rewards, user, pool=pool, min_questions=1, prior="standard")
        ob.run(lambda q, r=reply: r)
        verbosity[user] = store.get(user).coefficients["verbosity"]
    assert verbosity["much"] < verbosity["plain"] < 0  # the short answer was chosen
    assert [p.judgement for p in store.preferences("much")] == ["much_better"]
    # a tie after a preference pulls the learned difference back toward zero
    two = [{"prompt": item.prompt, "responses": [item.responses[0], item.responses[2]]},
           {"prompt": item.prompt, "responses": [item.responses[0], item.responses[3]]}]
    learned = {}
    for user, second in (("then-better", 0), ("then-tie", "both_fine")):
        ob = Onboarding(store, rewards, user, pool=two, min_questions=2, prior="standard")
        first = ob.next_question()
        ob.answer(first.id, 0 if len(first.options[0]) < len(first.options[1]) else 1)
        q = ob.next_question()
        ob.answer(q.id, second)
        post = ob.learner.posterior(store.get(user))
        learned[user] = abs(float(post.mean @ ob._diffs[ob._index[q.id]]))
    tie = store.preferences("then-tie")[1]
    assert tie.judgement == "both_fine" and (tie.chosen, tie.rejected) == q.options
    assert learned["then-tie"] < 0.5 * learned["then-better"]
    bad = Onboarding(store, rewards, "bad", pool=pool, min_questions=1)
    q = bad.next_question()
    for choice, strength, match in ((2, None, "choice"), (0, "very", "strength"),
                                    ("neither", "much", "takes no strength")):
        with pytest.raises(InvalidInput, match=match):
            bad.answer(q.id, choice, strength=strength)  # type: ignore[arg-type]
    assert store.preferences("bad") == []


def test_a_second_taste_is_asked_about_before_the_session_stops(store, rewards) -> None:  # noqa: ANN001
    """The default stop waits until the pool's answers are settled; check questions (the old
    default, now ``stop_checks=2``) confirm the strongest taste and stop before the second
    is known."""
    taste = taste_vector("terse+warm", rewards.names)
    learned: dict[str, list[float]] = {}
    for stop_checks in (0, 2):
        for seed in range(4):
            user = SimulatedUser(taste, beta=2.0, seed=seed)
            ob = Onboarding(store, rewards, f"mixed-{stop_checks}-{seed}",
                            stop_checks=stop_checks)
            profile = ob.run(user.chooser(rewards))
            assert len(ob.state.asked) <= 10
            learned.setdefault(f"checks {stop_checks}", []).append(
                profile.coefficients["warmth"])
    assert np.mean(learned["checks 0"]) > 0.15
    assert np.mean(learned["checks 0"]) > np.mean(learned["checks 2"]) + 0.05


def test_the_stop_follows_stop_undecided(store, rewards) -> None:  # noqa: ANN001
    user = SimulatedUser(taste_vector("terse", rewards.names), beta=2.0, seed=0)
    asked = {}
    for stop in (0.5, 0.1, 0.0):
        ob = Onboarding(store, rewards, f"stop-{stop}", stop_undecided=stop, stop_gain=0.0)
        ob.run(user.chooser(rewards))
        asked[stop] = len(ob.state.asked)
    assert asked[0.5] == 3  # min_questions: anything is settled enough
    assert 3 < asked[0.1] < 10 and asked[0.0] == 10


def test_early_stopping_with_checks_stops_a_clear_person_and_not_a_noisy_one(store, rewards) -> None:  # noqa: ANN001
    taste = taste_vector("terse", rewards.names) * 2.0
    asked = {}
    for who, beta in (("clear", 4.0), ("noisy", 0.05)):
        for seed in range(4):
            user = SimulatedUser(taste, beta=beta, seed=seed)
            ob = Onboarding(store, rewards, f"{who}-{seed}", max_questions=12, stop_checks=2)
            ob.run(user.chooser(rewards))
            asked.setdefault(who, []).append(len(ob.state.asked))
    # a clear person confirms two check questions after the first three answers and one
    # more informative question (after three answers no prompt not yet asked has a pair the
    # profile predicts; a prompt is asked once per session), and is done
    assert asked["clear"] == [6, 6, 6, 6]
    # one who answers at random rarely confirms two predictions in a row: asked on
    assert np.mean(asked["noisy"]) > 8.5


def test_only_check_answers_count_toward_stopping(store, rewards) -> None:  # noqa: ANN001
    user = SimulatedUser(taste_vector("terse", rewards.names) * 2.0, beta=4.0, seed=0)
    ob = Onboarding(store, rewards, "counted", max_questions=12, min_questions=4,
                    stop_checks=2)
    choose = user.chooser(rewards)
    for _ in range(4):
        q = ob.next_question()
        ob.answer(q.id, choose(q))
        assert ob.state.confirmed == 0  # informative questions, not checks
    ob.run(choose)
    assert len(ob.state.asked) == 6 and ob.state.confirmed == 2


def test_a_session_changed_by_another_pools_session_says_so(store, rewards) -> None:  # noqa: ANN001
    mine = Onboarding(store, rewards, "shared", domains=["general"])
    q = mine.next_question()
    mine.answer(q.id, 0)
    other = Onboarding(store, rewards, "shared")  # the whole bank holds mine's question
    while other.next_question().prompt in {i.prompt for i in question_bank(["general"])}:
        pending = other.state.pending
        other.answer(pending, 0)  # until it shows a question outside "general"
    with pytest.raises(InvalidInput, match="changed meanwhile by a session with another"):
        mine.next_question()
    with pytest.raises(InvalidInput, match="changed meanwhile"):
        mine.answer(q.id, 1)
    assert Onboarding(store, rewards, "shared").next_question() == other.next_question()


def test_bad_domains_and_pool_domains_are_refused(store, rewards) -> None:  # noqa: ANN001
    from personalizer.profiles import generate_pool
    from personalizer.testing import ScriptedGenerator

    with pytest.raises(InvalidInput, match="domains is empty"):
        Onboarding(store, rewards, "none", domains=[])
    calls = []
    gen = ScriptedGenerator(lambda messages: calls.append(1) or "An answer. Another one.")
    with pytest.raises(InvalidInput, match="domain 'Tech' must be"):
        generate_pool(gen, ["Q?"], domain="Tech")
    assert calls == []  # refused before the generator ran
    pool = generate_pool(gen, ["Q?"], domain="support")
    assert pool[0].domain == "support"


def test_the_personalizers_prior_is_used_by_onboarding_and_refits(tmp_path, rewards) -> None:  # noqa: ANN001
    from personalizer import Personalizer

    item = question_bank()[0]
    with Personalizer(tmp_path / "p.db", rewards=rewards, prior="standard") as p:
        session = p.onboarding("std", max_questions=3)
        session.run(lambda q: 0)
        learned = p.profile("std").coefficients
        refit = p.refit("std").coefficients
        # the same prior both times (online and batch Laplace fits differ in the 3rd digit)
        assert refit == pytest.approx(learned, abs=0.01)
        with pytest.raises(InvalidInput, match="Personalizer\\(prior="):
            p.onboarding("other", prior="shipped")
    with Personalizer(tmp_path / "q.db", rewards=rewards) as p:  # the shipped prior
        p.record_preference("new", item.prompt, item.responses[0], item.responses[2])
    with Personalizer(tmp_path / "r.db", rewards=rewards, prior="standard") as p:
        p.record_preference("new", item.prompt, item.responses[0], item.responses[2])
        assert p.profile("new").covariance != Personalizer(
            tmp_path / "q.db", rewards=rewards).profile("new").covariance
