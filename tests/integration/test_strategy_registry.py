"""A decoding strategy is one module and one line in the table: this file is the module.

``Letters`` below is a whole strategy -- its settings model, its planning and its token
policy -- and ``STRATEGIES.register(Letters)`` is the one line that makes every door take it
by name: ``Steering(strategy="letters")``, ``LocalGenerator(strategy=...)``,
``Personalizer.generate(..., strategy="letters")``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pytest
import torch
from pydantic import Field
from support import tiny

from personalizer import Personalizer
from personalizer.backends import LocalGenerator, Steering
from personalizer.backends.decoding.planning import Plan, PlanContext
from personalizer.backends.rewards import AttributeScorer, RewardSet
from personalizer.backends.rewards.user import UserReward
from personalizer.errors import InvalidInput, UnsupportedRequest
from personalizer.steering import STRATEGIES, Strategy

# -- the strategy: one module's worth ----------------------------------------------------


class Letters(Strategy):
    """Each step, the one of the ``k`` most likely tokens whose text the user's reward
    likes best, with the model's logit: a one-step lookahead over candidate texts."""

    kind: Literal["letters"] = "letters"
    k: int = Field(default=4, ge=1, le=64, description="Candidate tokens per step.")

    def plan(self, ctx: PlanContext) -> Plan:
        if ctx.idle:  # strength 0 or no weight: plain decoding, token for token
            return ctx.plain()
        policy = LettersPolicy(k=self.k, strength=ctx.steering.strength,
                               reward=UserReward(ctx.rewards, ctx.user))
        return ctx.plan(policy, "letters", ("letters",))


@dataclass(frozen=True)
class LettersPolicy:
    """A token policy of the one decoding loop (see engine.TokenPolicy)."""

    k: int
    strength: float
    reward: UserReward
    scorer: None = None

    def scored(self, step: int) -> bool:
        return False  # no candidate features from the loop: this policy scores texts itself

    def candidates_at(self, step: int) -> int:
        return 0

    def choose(self, run: Any, row: Any, logits: torch.Tensor, values: Any,
               candidates: Any) -> int:
        top = logits.topk(self.k).indices.tolist()
        texts = [row.tracker.decode([*row.ids, t]) for t in top]
        rewards = torch.tensor(self.reward(row.prompt_text, texts), dtype=logits.dtype)
        return top[int((logits[top] + self.strength * rewards).argmax())]


STRATEGIES.register(Letters)  # the one line

# -- what the one line gives ---------------------------------------------------------------

E_COUNT = AttributeScorer("e_count", "more letter e", lambda t: float(t.count("e")))
REWARDS = RewardSet("letters-e", [E_COUNT])
PROMPTS = ["Tell me about the sea", "What is a good breakfast?", "Name a color"]


@pytest.fixture(scope="module")
def gen() -> LocalGenerator:
    return LocalGenerator(tiny.gpt2(), tiny.tokenizer(), rewards=REWARDS, quality=None)


def steering(strength: float) -> Steering:
    return Steering(coefficients={"e_count": 1.0}, reward_set_id=REWARDS.id,
                    reward_set_version=REWARDS.version, strength=strength,
                    strategy="letters")


def test_the_registered_strategy_is_taken_by_name(gen: LocalGenerator) -> None:
    assert isinstance(steering(1.0).strategy, Letters)
    assert Steering(strategy={"kind": "letters", "k": 2}).strategy == Letters(k=2)
    with pytest.raises(ValueError, match="greater than or equal to 1"):
        Steering(strategy={"kind": "letters", "k": 0})
    with pytest.raises(ValueError, match="unknown strategy 'nope'"):
        Steering(strategy="nope")
    with pytest.raises(InvalidInput, match="taken by Letters"):  # one kind, one strategy
        STRATEGIES.register(type("Other", (Strategy,), {
            "__annotations__": {"kind": Literal["letters"]}, "kind": "letters"}))
    out = gen.generate(PROMPTS[0], max_new_tokens=8, steering=steering(2.0))
    assert out.steering.path == "letters" and out.steering.levers == ("letters", "no_repeat")
    assert out.steering.strategy == {"kind": "letters", "k": 4}


def test_it_steers_toward_the_reward_and_strength_zero_is_plain(gen: LocalGenerator) -> None:
    def e_count(strength: float) -> float:
        return float(np.mean([E_COUNT.fn(gen.generate(p, max_new_tokens=16,
                                                      steering=steering(strength)).text)
                              for p in PROMPTS]))

    assert e_count(5.0) > e_count(0.0) + 1.0
    for p in PROMPTS:  # strength 0: plain decoding token for token
        plain = gen.generate(p, max_new_tokens=16)
        zero = gen.generate(p, max_new_tokens=16, steering=steering(0.0))
        assert zero.token_ids == plain.token_ids


def test_every_door_takes_it(gen: LocalGenerator, tmp_path: Path) -> None:
    own = LocalGenerator(gen.model, gen.tokenizer, rewards=REWARDS, quality=None,
                         strategy="letters")  # a generator's default strategy
    assert own.default_strategy == Letters()
    with Personalizer(tmp_path / "p.db", generator=own) as p:
        p.store.get_or_create("ann")
        p.store.modify("ann", lambda prof: prof.model_copy(update={
            "coefficients": {"e_count": 1.0}, "reward_set_id": REWARDS.id,
            "reward_set_version": REWARDS.version}))
        assert p.generate("ann", PROMPTS[1], max_new_tokens=6).steering.path == "letters"
        asked = p.generate("ann", PROMPTS[1], max_new_tokens=6, strategy={"kind": "letters",
                                                                          "k": 2})
        assert asked.steering.strategy == {"kind": "letters", "k": 2}
        batch = p.generate_batch([("ann", PROMPTS[0]), ("ann", PROMPTS[2])],
                                 max_new_tokens=6)
        assert [b.steering.path for b in batch] == ["letters", "letters"]
        assert batch[0].text == p.generate("ann", PROMPTS[0], max_new_tokens=6).text


def test_a_generator_that_cannot_run_it_says_so() -> None:
    from personalizer.backends import OpenAIGenerator

    hosted = OpenAIGenerator("gpt-test", api_key="k", base_url="http://127.0.0.1:9/v1",
                             rewards=REWARDS)
    with pytest.raises(UnsupportedRequest, match="letters"):
        hosted.generate("hi", steering=steering(1.0))
