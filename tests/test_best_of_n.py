"""Best-of-n and blockwise best-of-n on a tiny model with a lexical reward."""

from __future__ import annotations

import numpy as np
import pytest
import tiny

from personalizer.backends import BestOfN, LocalGenerator, Steering
from personalizer.backends.rewards import AttributeScorer, RewardSet
from personalizer.errors import InvalidInput

E_COUNT = AttributeScorer("e_count", "more letter e", lambda t: float(t.count("e")))
REWARDS = RewardSet("letters", [E_COUNT])


def steering(**kw) -> Steering:  # noqa: ANN003
    return Steering(coefficients={"e_count": 1.0}, reward_set_id=REWARDS.id,
                    reward_set_version=REWARDS.version, strategy=BestOfN(**kw))


@pytest.fixture(scope="module")
def gen() -> LocalGenerator:
    return LocalGenerator(tiny.gpt2(seed=2), tiny.tokenizer(), rewards=REWARDS)


def test_best_of_n_returns_the_highest_reward_sample(gen: LocalGenerator) -> None:
    out = gen.generate("Hello there", max_new_tokens=20, steering=steering(n=6), seed=1,
                       top_k=20)
    record = out.steering
    assert record.path == "best-of-n" and len(record.candidates) == 6
    texts = [c.text for c in record.candidates]
    recomputed = [E_COUNT.fn(t) for t in texts]
    assert [c.reward for c in record.candidates] == pytest.approx(recomputed)
    assert out.text == texts[int(np.argmax(recomputed))] == texts[record.chosen]
    assert len(set(texts)) > 1  # the n samples differ
    assert np.max(recomputed) > np.mean(recomputed)  # the kept one beats the average sample
    with pytest.raises(InvalidInput, match="do_sample=False"):
        gen.generate("Hello there", steering=steering(), do_sample=False)


def test_n_equal_1_is_plain_seeded_sampling(gen: LocalGenerator) -> None:
    one = gen.generate("Hello there", max_new_tokens=20, steering=steering(n=1), seed=7,
                       temperature=0.9, top_k=20)
    plain = gen.generate("Hello there", max_new_tokens=20, do_sample=True, seed=7,
                         temperature=0.9, top_k=20)
    assert one.text == plain.text


def test_top_k_1_makes_every_sample_the_greedy_answer(gen: LocalGenerator) -> None:
    out = gen.generate("Tell me about sleep", max_new_tokens=10, steering=steering(n=3),
                       top_k=1, seed=0)
    greedy = gen.generate("Tell me about sleep", max_new_tokens=10).text
    assert [c.text for c in out.steering.candidates] == [greedy] * 3


def test_blockwise_best_of_n_picks_the_best_sentence_each_block(gen: LocalGenerator) -> None:
    blockwise = steering(n=4, block="sentence", block_tokens=8)
    out = gen.generate("Drink water", max_new_tokens=30, steering=blockwise, seed=3, top_k=20)
    plain = [gen.generate("Drink water", max_new_tokens=30, do_sample=True, seed=s,
                          top_k=20).text for s in range(6)]
    assert E_COUNT.fn(out.text) > np.mean([E_COUNT.fn(t) for t in plain])
    assert "".join(gen.stream("Drink water", max_new_tokens=30, steering=blockwise, seed=3,
                              top_k=20)) == out.text
    record = out.steering
    assert record.candidates[record.chosen].text == out.text  # the last block, kept whole


def test_samples_that_finish_leave_the_batch(gen: LocalGenerator) -> None:
    sizes: list[int] = []
    hook = gen.model.base_model.register_forward_pre_hook(
        lambda _m, _a, kw: sizes.append(int(kw["input_ids"].shape[0])), with_kwargs=True)
    try:
        out = gen.generate("Tell me about sleep", max_new_tokens=12, steering=steering(n=8),
                           seed=1, temperature=1.5, stop=["e"])
    finally:
        hook.remove()
    lengths = [len(c.text) for c in out.steering.candidates]
    assert len(lengths) == 8 and len(set(lengths)) > 1  # some samples stopped early
    # the prompt is prefilled once, forked into 8 rows; the batch shrinks as samples finish
    assert sizes[0] == 1 and sizes[1] <= 8 and min(sizes[1:]) < sizes[1]
    assert sizes[1:] == sorted(sizes[1:], reverse=True)
