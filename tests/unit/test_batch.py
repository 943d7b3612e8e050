"""Many users in one batch: each row equals decoding that row alone."""

from __future__ import annotations

import numpy as np
import pytest
from support import tiny

from personalizer.backends import Args, LocalGenerator, Steering
from personalizer.backends.heads.trunk import TrunkHeads
from personalizer.backends.rewards import RewardSet
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
    kw.setdefault("whole_answer", "off")
    return Steering(coefficients={"h0": c0, "h1": -c0}, reward_set_id=g.rewards.id,
                    reward_set_version=g.rewards.version, strength=strength,
                    strategy=Args(candidates=6, **kw))


def test_plain_rows_equal_single_greedy(gen: LocalGenerator) -> None:
    batch = gen.generate_batch([(p, None) for p in PROMPTS], max_new_tokens=15)
    for p, out in zip(PROMPTS, batch, strict=True):
        assert out.text == gen.generate(p, max_new_tokens=15).text


def test_mixed_users_equal_their_single_runs(gen: LocalGenerator) -> None:
    steerings = [steer(gen, 1.0), None, steer(gen, -1.0), steer(gen, 0.5, whole_answer="lookahead"),
                 steer(gen, 2.0, strength=0.0)]
    batch = gen.generate_batch(list(zip(PROMPTS, steerings, strict=True)), max_new_tokens=15)
    for p, s, out in zip(PROMPTS, steerings, batch, strict=True):
        alone = gen.generate(p, max_new_tokens=15, steering=s)
        assert out.text == alone.text, (p, s)
        assert out.steering == alone.steering
    assert [b.steering.path for b in batch] == ["args-trunk", "plain", "args-trunk",
                                                "args-trunk", "plain"]
    assert len({b.text for b in batch[:3]}) == 3


def test_seeded_sampling_rows_equal_single_runs(gen: LocalGenerator) -> None:
    steerings = [None, steer(gen, 1.0), steer(gen, -1.0)]
    batch = gen.generate_batch(list(zip(PROMPTS[:3], steerings, strict=True)),
                               max_new_tokens=12, do_sample=True, seed=5, top_k=10)
    for p, s, out in zip(PROMPTS[:3], steerings, batch, strict=True):
        assert out.text == gen.generate(p, max_new_tokens=12, do_sample=True, seed=5,
                                        top_k=10, steering=s).text


def test_rows_that_finish_leave_the_batch() -> None:
    gen = LocalGenerator(tiny.gpt2(seed=0), tiny.tokenizer())  # rows start differently
    first = next(iter(gen.stream(PROMPTS[0], max_new_tokens=1)))
    tid = gen.tokenizer(first, add_special_tokens=False)["input_ids"][0]
    saved = gen.eos_ids
    gen.eos_ids = {tid}
    sizes: list[int] = []
    hook = gen.model.base_model.register_forward_pre_hook(
        lambda _m, _a, kw: sizes.append(int(kw["input_ids"].shape[0])), with_kwargs=True)
    try:
        batch = gen.generate_batch([(p, None) for p in PROMPTS], max_new_tokens=10)
        hook.remove()
        alone = [gen.generate(p, max_new_tokens=10) for p in PROMPTS]
    finally:
        hook.remove()
        gen.eos_ids = saved
    assert batch[0].finish_reason == "stop" and batch[0].completion_tokens == 1
    assert [b.text for b in batch] == [a.text for a in alone]
    assert any(b.completion_tokens > 1 for b in batch)
    assert sizes[0] == len(PROMPTS) and all(n < len(PROMPTS) for n in sizes[1:])


def test_stop_strings_end_each_row_as_alone(gen: LocalGenerator) -> None:
    free = gen.generate_batch([(p, None) for p in PROMPTS], max_new_tokens=15)
    stop = next(t.text[3:5] for t in free if len(t.text) > 6)  # a string some row will meet
    steerings = [None, steer(gen, 1.0), None, steer(gen, -1.0), None]
    batch = gen.generate_batch(list(zip(PROMPTS, steerings, strict=True)), max_new_tokens=15,
                               stop=[stop])
    assert any(stop not in b.text and b.finish_reason == "stop" for b in batch)
    for p, s, out in zip(PROMPTS, steerings, batch, strict=True):
        alone = gen.generate(p, max_new_tokens=15, steering=s, stop=[stop])
        assert (out.text, out.finish_reason) == (alone.text, alone.finish_reason)


def test_text_level_rows_with_lookahead_equal_their_single_runs() -> None:
    from personalizer.backends.rewards import AttributeScorer

    # a tiny GPT-2 trained to answer in sentences, so that lookahead runs at sentence ends
    rs = RewardSet("text", [AttributeScorer("e", "more e", lambda t: t.count("e")),
                            AttributeScorer("length", "characters", lambda t: len(t) / 10,
                                            per_token=False)])
    g = LocalGenerator(tiny.trained_gpt2(), tiny.tokenizer(), rewards=rs, quality=None)

    def user(e: float, length: float, **kw) -> Steering:  # noqa: ANN003
        return Steering(coefficients={"e": e, "length": length}, reward_set_id=rs.id,
                        reward_set_version=rs.version, strength=1.0,
                        strategy=Args(**{"candidates": 5, "lookahead_tokens": 8, **kw}))

    prompts = ["Drink water", "How are you today?", "Hello there", "Tell me about sleep",
               "Drink water"]
    steerings = [user(0.0, -1.0), user(0.0, 1.0), None, user(0.5, -0.2, score_every=3),
                 user(1.0, -1.0, candidates=3)]
    batch = g.generate_batch(list(zip(prompts, steerings, strict=True)), max_new_tokens=24)
    for p, s, out in zip(prompts, steerings, batch, strict=True):
        alone = g.generate(p, max_new_tokens=24, steering=s)
        assert (out.text, out.completion_tokens) == (alone.text, alone.completion_tokens), s
    sampled = g.generate_batch(list(zip(prompts[:2], steerings[:2], strict=True)),
                               max_new_tokens=24, do_sample=True, seed=4)
    for p, s, out in zip(prompts[:2], steerings[:2], sampled, strict=True):
        assert out.text == g.generate(p, max_new_tokens=24, steering=s, do_sample=True,
                                      seed=4).text
    # the short-answer user stops at a finished sentence: lookahead chose the end of turn
    plain = g.generate(prompts[0], max_new_tokens=24)
    assert batch[0].finish_reason == "stop"
    assert batch[0].completion_tokens < plain.completion_tokens
    assert batch[0].text.rstrip().endswith((".", "!", "?"))
    assert batch[1].completion_tokens > batch[0].completion_tokens


def test_best_of_n_rows_are_decoded_alone_and_foreign_steering_refused(
        gen: LocalGenerator) -> None:
    best = Steering(coefficients={"h0": 1.0, "h1": 0.0}, reward_set_id=gen.rewards.id,
                    reward_set_version=gen.rewards.version, strategy="best_of_n")
    both = gen.generate_batch([(PROMPTS[0], best), (PROMPTS[1], None)], max_new_tokens=8,
                              seed=3)
    assert both[0].text == gen.generate(PROMPTS[0], steering=best, max_new_tokens=8,
                                        seed=3).text
    assert both[0].steering.path == "best-of-n" and both[1].steering.path == "plain"
    assert both[1].text == gen.generate(PROMPTS[1], max_new_tokens=8).text
    with pytest.raises(InvalidInput, match="Steering"):
        gen.generate_batch([(PROMPTS[0], {"h0": 1.0})])  # type: ignore[list-item]
    with pytest.raises(InvalidInput, match="request 1 must be a"):
        gen.generate_batch([(PROMPTS[0], None), PROMPTS[1]])  # type: ignore[list-item]


# -- a separate reward model (tree scoring) and proxy-tuning ----------------------------------


@pytest.fixture(scope="module")
def rm_gen() -> LocalGenerator:
    from personalizer.backends.rewards import ClassifierReward

    rm = tiny.gpt2_classifier(num_labels=2, seed=3)
    rs = RewardSet("rm", [ClassifierReward(rm, tiny.tokenizer(), name="rm")])
    rs = rs.fit_normalization(("q", t) for t in ["a b c", "hello there", "drink water", "xyz"])
    return LocalGenerator(tiny.llama(seed=5), tiny.tokenizer(), rewards=rs)


def rm_steer(g: LocalGenerator, c: float, **kw) -> Steering:  # noqa: ANN003
    names = g.rewards.names
    return Steering(coefficients={names[0]: c, names[1]: 1 - c}, reward_set_id=g.rewards.id,
                    reward_set_version=g.rewards.version, strength=4.0,
                    strategy=Args(candidates=5, **kw))


def test_separate_reward_model_rows_equal_their_single_runs(rm_gen: LocalGenerator) -> None:
    steerings = [rm_steer(rm_gen, 1.0, whole_answer="off"), None,
                 rm_steer(rm_gen, -1.0, whole_answer="off"),
                 rm_steer(rm_gen, 0.3, score_every=2),  # + lookahead
                 rm_steer(rm_gen, 1.0, scoring="text", whole_answer="off")]
    batch = rm_gen.generate_batch(list(zip(PROMPTS, steerings, strict=True)),
                                  max_new_tokens=14)
    for p, s, out in zip(PROMPTS, steerings, batch, strict=True):
        assert out.text == rm_gen.generate(p, max_new_tokens=14, steering=s).text, s
    assert [b.steering.path for b in batch] == ["args-tree", "plain", "args-tree", "args-tree",
                                                "args-text"]
    assert len({b.text for b in batch[:3]}) == 3


def test_proxy_tuned_batch_equals_single_proxy_runs(rm_gen: LocalGenerator) -> None:
    from personalizer.backends import ProxyTuning

    tok = tiny.tokenizer()
    expert = LocalGenerator(tiny.gpt2(seed=2, vocab_size=len(tok) + 16), tok)
    anti = LocalGenerator(tiny.gpt2(seed=4), tok)
    proxy = ProxyTuning(expert, anti, alpha=1.5)
    steerings = [None, rm_steer(rm_gen, 1.0, whole_answer="off"), None,
                 rm_steer(rm_gen, -1.0, whole_answer="off")]
    batch = rm_gen.generate_batch(list(zip(PROMPTS, steerings, strict=False)),
                                  max_new_tokens=12, proxy=proxy)
    for p, s, out in zip(PROMPTS, steerings, batch, strict=False):
        alone = rm_gen.generate(p, max_new_tokens=12, steering=s, proxy=proxy)
        assert out.text == alone.text, s
    plain = rm_gen.generate_batch([(p, None) for p in PROMPTS[:3]], max_new_tokens=12)
    assert [b.text for b in batch[:3:2]] != [plain[0].text, plain[2].text]
