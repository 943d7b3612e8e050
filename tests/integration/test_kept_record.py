"""Kept answers remember how they were made: the model, the options, the strategy and the
steering record travel with each answer the facade keeps, through both doors of the store
(read back, exported, imported), so an old answer can still be explained."""

from __future__ import annotations

from pathlib import Path

from support import tiny

from personalizer import Personalizer
from personalizer.backends import LocalGenerator
from personalizer.backends.rewards import AttributeScorer, RewardSet
from personalizer.testing import ScriptedGenerator

E_COUNT = AttributeScorer("e_count", "more letter e", lambda t: float(t.count("e")))
REWARDS = RewardSet("kept-e", [E_COUNT])


def test_a_steered_answer_is_kept_with_its_record(tmp_path: Path) -> None:
    gen = LocalGenerator(tiny.gpt2(), tiny.tokenizer(), rewards=REWARDS, quality=None)
    with Personalizer(tmp_path / "p.db", generator=gen) as p:
        p.store.get_or_create("ann")
        p.store.modify("ann", lambda prof: prof.model_copy(update={
            "coefficients": {"e_count": 1.0}, "reward_set_id": REWARDS.id,
            "reward_set_version": REWARDS.version}))
        reply = p.generate("ann", "Tell me about the sea", strategy="args", max_new_tokens=6,
                           stop=["\n\n"])
        kept = p.store.generation("ann", reply.id)
        assert kept is not None and kept.answer == reply.text
        assert kept.steering == reply.steering  # the whole record: path, terms, levers
        assert kept.steering.path.startswith("args-") and kept.steering.terms
        assert kept.model == reply.model == gen.name
        assert kept.options == {"max_new_tokens": 6, "stop": ["\n\n"]}
        assert kept.strategy == reply.steering.strategy and kept.strategy["kind"] == "args"
        exported = p.export_profile("ann")
        (row,) = exported["generations"]
        assert row["steering"]["path"] == reply.steering.path and row["model"] == gen.name
        p.delete_profile("ann")
        p.import_profile(exported)
        again = p.store.generation("ann", reply.id)
        assert again is not None and again.steering == reply.steering


def test_a_plain_answer_is_kept_with_what_there_is(tmp_path: Path) -> None:
    with Personalizer(tmp_path / "p.db", generator=ScriptedGenerator(["Hi!"])) as p:
        reply = p.generate("bob", "hello", temperature=0.5)
        kept = p.store.generation("bob", reply.id)
        assert kept is not None
        assert kept.model == "scripted" and kept.options == {"temperature": 0.5}
        assert kept.strategy is None and kept.steering == reply.steering
        assert kept.steering.new_user and kept.steering.path == "plain"


def test_a_candidate_that_could_not_be_chosen_is_kept_without_a_reward(
        tmp_path: Path) -> None:
    import json

    from personalizer.profiles.models import StoredGeneration
    from personalizer.types import ScoredCandidate, SteeringRecord

    # the search scores a candidate it may not choose (ending below the quality floor) -inf
    record = SteeringRecord(path="branch", levers=("end_early",), chosen=0, candidates=(
        ScoredCandidate(text="Sleep well.", reward=1.25),
        ScoredCandidate(text="", reward=float("-inf"))))
    assert [c.reward for c in record.candidates] == [1.25, None]
    with Personalizer(tmp_path / "p.db", generator=ScriptedGenerator(["Hi!"])) as p:
        p.store.get_or_create("cy")
        kept = StoredGeneration(id="a" * 32, prompt="sleep?", answer="Sleep well.")
        p.store.save_generation("cy", kept, keep=10, max_age_s=3600, steering=record)
        assert p.store.generation("cy", "a" * 32).steering == record
        exported = json.loads(json.dumps(p.export_profile("cy"), allow_nan=False))
        assert exported["generations"][0]["steering"]["candidates"][1]["reward"] is None
