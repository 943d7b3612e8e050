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
