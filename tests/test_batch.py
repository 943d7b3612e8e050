"""Many users in one batch: each row equals decoding that row alone."""

from __future__ import annotations

import numpy as np
import pytest
import tiny

from personalizer.backends import LocalGenerator, Steering
from personalizer.backends.batch import generate_batch
from personalizer.backends.rewards import RewardSet
from personalizer.backends.trunk import TrunkHeads
from personalizer.errors import InvalidInput

PROMPTS = ["Hello there", "How are you today? I am asking because I care.", "Drink water",
           "Tell me about sleep and dreams and the night", "Hi"]


@pytest.fixture(scope="module", params=["gpt2", "llama"])
def gen(request) -> LocalGenerator:  # noqa: ANN001
    lm = tiny.gpt2(seed=6) if request.param == "gpt2" else tiny.llama(seed=6)
    g = LocalGenerator(lm, tiny.tokenizer())
    heads = TrunkHeads(g, np.random.default_rng(0).standard_normal((2, 64)),
                       np.array([0.1, -0.2]), ["h0", "h1"])
    g.rewards = RewardSet("trunk", [heads])
    return g


def steer(g: LocalGenerator, c0: float, strength: float = 3.0, **kw) -> Steering:  # noqa: ANN003
    return Steering(coefficients={"h0": c0, "h1": -c0}, reward_set_id=g.rewards.id,
                    reward_set_version=g.rewards.version, strength=strength, top_k=6,
                    whole_answer="off", **kw)


def test_plain_rows_equal_single_greedy(gen: LocalGenerator) -> None:
    batch = gen.generate_batch([(p, None) for p in PROMPTS], max_new_tokens=15)
    for p, out in zip(PROMPTS, batch, strict=True):
        assert out.text == gen.generate(p, max_new_tokens=15).text


def test_mixed_users_equal_their_single_runs(gen: LocalGenerator) -> None:
    steerings = [steer(gen, 1.0), None, steer(gen, -1.0), steer(gen, 0.5, do_sample=True, seed=3),
                 steer(gen, 2.0, strength=0.0)]
    batch = generate_batch(gen, list(zip(PROMPTS, steerings, strict=True)), max_new_tokens=15)
    for p, s, out in zip(PROMPTS, steerings, batch, strict=True):
        alone = gen.generate(p, max_new_tokens=15, steering=s)
        assert out.text == alone.text, (p, s)


def test_seeded_sampling_rows_equal_single_runs(gen: LocalGenerator) -> None:
    batch = generate_batch(gen, [(p, None) for p in PROMPTS[:3]], max_new_tokens=12,
                           do_sample=True, seed=5, top_k=10)
    for p, out in zip(PROMPTS[:3], batch, strict=True):
        assert out.text == gen.generate(p, max_new_tokens=12, do_sample=True, seed=5,
                                        top_k=10).text


def test_rows_that_finish_leave_the_batch(gen: LocalGenerator) -> None:
    from personalizer.backends import GenerationOptions

    tid = next(iter(gen.token_ids(gen.prompt_ids(PROMPTS[0]),
                                  GenerationOptions(max_new_tokens=1))))
    saved = gen.eos_ids
    gen.eos_ids = {tid}
    try:
        batch = generate_batch(gen, [(p, None) for p in PROMPTS], max_new_tokens=10)
        alone = [gen.generate(p, max_new_tokens=10) for p in PROMPTS]
    finally:
        gen.eos_ids = saved
    assert batch[0].finish_reason == "stop" and batch[0].completion_tokens == 1
    assert [b.text for b in batch] == [a.text for a in alone]


def test_unsupported_batches_are_refused(gen: LocalGenerator) -> None:
    with pytest.raises(InvalidInput, match="whole_answer"):
        generate_batch(gen, [(PROMPTS[0], Steering(
            coefficients={"h0": 1.0, "h1": 0.0}, reward_set_id=gen.rewards.id,
            reward_set_version=gen.rewards.version))])
    with pytest.raises(InvalidInput, match="stop strings"):
        generate_batch(gen, [(PROMPTS[0], None)], stop=["x"])
