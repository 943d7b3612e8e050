"""The repetition guard (#33, first step): a token that would repeat an earlier stretch of a
steered answer loses logit, more the longer the stretch; plain decoding is never touched."""

from __future__ import annotations

import pytest
import torch
from support import tiny

from personalizer.backends import LocalGenerator, Steering
from personalizer.backends.decoding.repetition import RepeatGuard, repeat_lengths
from personalizer.backends.rewards import AttributeScorer, RewardSet
from personalizer.errors import InvalidInput

E_COUNT = AttributeScorer("e_count", "more letter e", lambda t: float(t.count("e")))
REWARDS = RewardSet("repeat-e", [E_COUNT])
PROMPTS = ["Tell me about the sea", "What is a good breakfast?", "Name a color"]


def longest_repeat(ids: list[int]) -> int:
    """The longest stretch of tokens that occurs twice (the copies may not overlap)."""
    best = 0
    for i in range(len(ids)):
        for j in range(i + 1, len(ids)):
            k = 0
            while j + k < len(ids) and i + k < j and ids[i + k] == ids[j + k]:
                k += 1
            best = max(best, k)
    return best


def test_repeat_lengths_name_the_tokens_that_would_extend_a_repeat() -> None:
    assert repeat_lengths([]) == {} and repeat_lengths([3]) == {}
    assert repeat_lengths([1, 2, 3]) == {}  # nothing said twice
    assert repeat_lengths([5, 6, 7, 5, 6]) == {7: 2}  # "5 6" again: 7 would repeat 3 tokens
    # a loop: the suffix "1 2 3 4 1 2 3" was said before, then 4 came (and "1 2 3" -> 4 too)
    assert repeat_lengths([1, 2, 3, 4, 1, 2, 3, 4, 1, 2, 3]) == {4: 7}
    assert repeat_lengths([9, 9, 9]) == {9: 2}
    assert repeat_lengths([1, 2] * 50, longest=8) == {1: 8}  # capped


def test_the_penalty_grows_with_the_repeat_and_touches_nothing_else() -> None:
    guard = RepeatGuard(allowed=2, multiplier=0.8, base=1.75)
    logits = torch.arange(10, dtype=torch.float32)
    assert guard.apply(logits, [1, 2, 3]) is logits  # nothing repeats: the same tensor
    short = guard.apply(logits, [5, 6, 7, 5, 6])
    assert short[7] == pytest.approx(7 - 0.8)
    assert torch.equal(short[torch.arange(10) != 7], logits[torch.arange(10) != 7])
    long = guard.apply(logits, [1, 2, 3, 4, 1, 2, 3, 4, 1, 2, 3])
    assert long[4] == pytest.approx(4 - 0.8 * 1.75 ** 5)
    assert guard.apply(logits, [5, 6, 5]).equal(logits)  # a repeat of 1 is allowed
    assert guard.apply(logits, [40, 41, 40, 41]).equal(logits)  # ids beyond the vocab
    assert logits.equal(torch.arange(10, dtype=torch.float32))  # never in place


@pytest.fixture(scope="module")
def gen() -> LocalGenerator:
    return LocalGenerator(tiny.gpt2(), tiny.tokenizer(), rewards=REWARDS, quality=None)


def steering(strength: float, strategy: str | None) -> Steering:
    return Steering(coefficients={"e_count": 1.0}, reward_set_id=REWARDS.id,
                    reward_set_version=REWARDS.version, strength=strength, strategy=strategy)


@pytest.mark.parametrize("strategy", ["args", None])  # ARGS and the local default (branch)
def test_the_guard_breaks_a_steered_loop(gen: LocalGenerator, strategy: str | None) -> None:
    for prompt in PROMPTS:
        loops = gen.generate(prompt, max_new_tokens=48, steering=steering(1.0, strategy),
                             repetition_guard=False)
        guarded = gen.generate(prompt, max_new_tokens=48, steering=steering(1.0, strategy))
        assert longest_repeat(loops.token_ids) >= 10  # the tiny random model loops
        assert longest_repeat(guarded.token_ids) <= 4, guarded.text
        assert "no_repeat" in guarded.steering.levers
        assert "no_repeat" not in loops.steering.levers


def test_plain_decoding_is_never_guarded(gen: LocalGenerator) -> None:
    for prompt in PROMPTS:
        plain = gen.generate(prompt, max_new_tokens=32)
        asked = gen.generate(prompt, max_new_tokens=32, repetition_guard=True)
        zero = gen.generate(prompt, max_new_tokens=32, steering=steering(0.0, "args"),
                            repetition_guard=True)
        assert asked.token_ids == plain.token_ids == zero.token_ids
        assert "no_repeat" not in zero.steering.levers


def test_a_hosted_generator_refuses_the_option() -> None:
    from personalizer.backends import OpenAIGenerator

    hosted = OpenAIGenerator("gpt-test", api_key="k", base_url="http://127.0.0.1:9/v1")
    with pytest.raises(InvalidInput, match="repetition_guard"):
        hosted.generate("hi", repetition_guard=True)
