"""Best-of-n and blockwise best-of-n on a tiny model with a lexical reward."""

from __future__ import annotations

import numpy as np
import pytest
import tiny

from personalizer.backends import LocalGenerator, Steering
from personalizer.backends.best_of_n import sample_batch
from personalizer.backends.rewards import AttributeScorer, RewardSet

E_COUNT = AttributeScorer("e_count", "more letter e", lambda t: float(t.count("e")))
REWARDS = RewardSet("letters", [E_COUNT])


def steering(**kw) -> Steering:  # noqa: ANN003
    return Steering(coefficients={"e_count": 1.0}, reward_set_id=REWARDS.id,
                    reward_set_version=REWARDS.version, strategy="best_of_n",
                    top_k=20, **kw)


@pytest.fixture(scope="module")
def gen() -> LocalGenerator:
    return LocalGenerator(tiny.gpt2(seed=2), tiny.tokenizer(), rewards=REWARDS)


def test_best_of_n_returns_the_highest_reward_sample(gen: LocalGenerator) -> None:
    out = gen.generate("Hello there", max_new_tokens=20, steering=steering(n=6, seed=1))
    record = out.steering
    assert record["strategy"] == "best_of_n" and len(record["candidates"]) == 6
    recomputed = [E_COUNT.fn(t) for t in record["candidates"]]
    assert record["rewards"] == pytest.approx(recomputed)
    assert out.text == record["candidates"][int(np.argmax(recomputed))]
    assert len(set(record["candidates"])) > 1  # the n samples differ


def test_n_equal_1_is_plain_seeded_sampling(gen: LocalGenerator) -> None:
    one = gen.generate("Hello there", max_new_tokens=20,
                       steering=steering(n=1, seed=7, temperature=0.9))
    plain = gen.generate("Hello there", max_new_tokens=20, do_sample=True, seed=7,
                         temperature=0.9, top_k=20)
    assert one.text == plain.text


def test_sample_batch_rows_and_top_k_1(gen: LocalGenerator) -> None:
    import torch

    ids = gen.prompt_ids("Tell me about sleep")
    batch = sample_batch(gen, ids, 3, 10, temperature=1.0, top_k=None,
                         generator=torch.Generator().manual_seed(0))
    greedy_like = sample_batch(gen, ids, 2, 10, temperature=1e-4, top_k=1,
                               generator=torch.Generator().manual_seed(0))
    assert greedy_like[0] == greedy_like[1]  # top_k=1: every row is the greedy answer
    assert len(batch) == 3 and all(len(r) <= 10 for r in batch)


def test_blockwise_best_of_n_picks_the_best_sentence_each_block(gen: LocalGenerator) -> None:
    out = gen.generate("Drink water", max_new_tokens=30,
                       steering=steering(n=4, block="sentence", block_tokens=8, seed=3))
    plain = [gen.generate("Drink water", max_new_tokens=30, do_sample=True, seed=s,
                          top_k=20).text for s in range(6)]
    assert E_COUNT.fn(out.text) >= np.mean([E_COUNT.fn(t) for t in plain])
    assert "".join(gen.stream("Drink water", max_new_tokens=30,
                              steering=steering(n=4, block="sentence", block_tokens=8,
                                                seed=3))) == out.text
    record = out.steering
    assert record["candidates"][record["chosen"]] == out.text  # the last block, kept whole


def test_samples_that_finish_leave_the_batch(gen: LocalGenerator) -> None:
    import torch

    sizes: list[int] = []
    hook = gen.model.register_forward_pre_hook(
        lambda _m, _a, kw: sizes.append(int(kw["input_ids"].shape[0])), with_kwargs=True)
    try:
        rows = sample_batch(gen, gen.prompt_ids("Tell me about sleep"), 8, 12, temperature=1.5,
                            top_k=None, generator=torch.Generator().manual_seed(1),
                            stop=lambda row: len(row) >= 2 and row[0] % 2 == 0)
    finally:
        hook.remove()
    short = [r for r in rows if r[0] % 2 == 0 and r[0] not in gen.eos_ids]
    assert short and all(len(r) == 2 for r in short)
    assert any(len(r) > 2 for r in rows)
    # the prefill is one row, repeated; then the batch shrinks as samples finish
    assert sizes[0] == 1 and sizes[1] == 8 and min(sizes[1:]) < 8
    assert sizes[1:] == sorted(sizes[1:], reverse=True)
