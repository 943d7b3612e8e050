"""Best-of-n and blockwise best-of-n on a tiny model with a lexical reward."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from support import tiny

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
    return LocalGenerator(tiny.gpt2(seed=2), tiny.tokenizer(), rewards=REWARDS, quality=None)


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
                       top_k=1, seed=0, repetition_guard=False)
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


# -- scoring a block: the user's reward beside the quality term ------------------------------


def test_choose_block_weighs_the_user_and_quality_and_honours_what_is_allowed() -> None:
    from personalizer.backends.decoding.blocks import choose_block

    user, quality = np.array([1.0, 0.0, 2.0]), np.array([0.0, 3.0, 0.0])
    before = (user.copy(), quality.copy())
    best, scores = choose_block(user, quality, strength=1.0, quality_weight=1.0)
    assert best == 1 and scores.tolist() == [1.0, 3.0, 2.0]
    assert choose_block(user, quality, strength=2.0, quality_weight=0.5)[0] == 2
    assert choose_block(user, None, strength=1.0, quality_weight=9.0)[0] == 2
    allowed = np.array([True, False, False])
    best, scores = choose_block(user, quality, strength=1.0, quality_weight=1.0,
                                allowed=allowed)
    assert best == 0 and np.isinf(scores[1:]).all()
    # when nothing is allowed, nothing is ruled out
    assert choose_block(user, quality, strength=1.0, quality_weight=1.0,
                        allowed=np.zeros(3, bool))[0] == 1
    assert np.array_equal(user, before[0]) and np.array_equal(quality, before[1])  # unmodified


# -- greedy branches, ending early (a tiny model trained to write sentences) -----------------


class Letters:
    """A lexical quality model for tests: how many times 'e' occurs."""

    name, description = "letters", "more letter e"

    def __init__(self, floor: float) -> None:
        self.floor = floor

    def score(self, prompt: str, responses: list[str]) -> list[float]:
        return [float(r.count("e")) for r in responses]


LENGTH = AttributeScorer("length", "longer answers", lambda t: len(t) / 10, per_token=False)
SHORT = RewardSet("short", [LENGTH])


def short_steering(**kw) -> Steering:  # noqa: ANN003
    return Steering(coefficients={"length": -1.0}, reward_set_id=SHORT.id,
                    reward_set_version=SHORT.version,
                    strategy=BestOfN(block="sentence", draw="branch", **kw))


def test_branches_are_deterministic_and_the_first_is_the_greedy_block() -> None:
    gen = LocalGenerator(tiny.trained_gpt2(), tiny.tokenizer(), rewards=SHORT, quality=None)
    s = short_steering(n=3, block_tokens=12, branch_gap=50.0)  # branch on any of the top 3
    out = gen.generate("Drink water", max_new_tokens=12, steering=s, do_sample=False)
    again = gen.generate("Drink water", max_new_tokens=12, steering=s)
    assert out.text == again.text  # no sampling: the same answer every time
    texts = [c.text for c in out.steering.candidates]
    assert len({t.split()[-1] for t in texts}) == 3  # the branches part ways
    assert out.steering.path == "branch" and out.steering.levers == ("branch", "no_repeat")
    narrow = gen.generate("Drink water", max_new_tokens=12,
                          steering=short_steering(n=3, block_tokens=12, branch_gap=1e-6))
    assert len({c.text for c in narrow.steering.candidates}) == 1  # every row the greedy one
    # one greedy branch per block, never ending early: plain greedy decoding, token for token
    greedy = gen.generate("Tell me about sleep", max_new_tokens=40)
    one = gen.generate("Tell me about sleep", max_new_tokens=40,
                       steering=short_steering(n=1, block_tokens=6), repetition_guard=False)
    assert one.token_ids == greedy.token_ids and one.text == greedy.text


def test_an_answer_ends_early_only_once_it_clears_the_quality_floor() -> None:
    def answer(floor: float, end_early: bool = True) -> str:
        gen = LocalGenerator(tiny.trained_gpt2(), tiny.tokenizer(), rewards=SHORT,
                             quality=Letters(floor))
        s = short_steering(n=2, block_tokens=16, end_early=end_early)
        out = gen.generate("Tell me about sleep", max_new_tokens=60, steering=s)
        q = out.steering.quality  # the quality term, beside the user's terms
        assert (q.name, q.floor, q.weight, q.score) == ("letters", floor, 1.0,
                                                        out.text.count("e"))
        assert [t.name for t in out.steering.terms] == ["length"]
        assert out.steering.levers == (("branch", "end_early") if end_early else
                                       ("branch",)) + ("no_repeat",)
        return out.text

    free = answer(floor=0.0)
    long = answer(floor=0.0, end_early=False)
    assert len(free) < len(long)  # ending early is what shortened it
    gated = answer(floor=free.count("e") + 3)  # a floor the short answer does not clear
    assert len(gated) > len(free)
    assert gated.count("e") >= free.count("e") + 3 or len(gated) >= len(long)


@pytest.mark.parametrize("block_tokens", [16, 4])  # 4: sentences longer than a block
def test_an_answer_that_may_end_early_never_stops_mid_sentence_at_its_limit(
        block_tokens: int) -> None:
    from personalizer.backends.decoding.text import may_end

    gen = LocalGenerator(tiny.trained_gpt2(), tiny.tokenizer(), rewards=SHORT, quality=None)
    greedy = gen.generate("Tell me about sleep", max_new_tokens=50)
    assert greedy.finish_reason == "length" and not may_end(greedy.text)  # cut mid-sentence

    def answer(end_early: bool) -> Any:  # a taste for long answers: it never ends early
        s = short_steering(n=1, block_tokens=block_tokens, end_early=end_early).model_copy(
            update={"coefficients": {"length": 1.0}})
        return gen.generate("Tell me about sleep", max_new_tokens=50, steering=s,
                            repetition_guard=False)

    assert answer(end_early=False).text == greedy.text
    out = answer(end_early=True)
    # the last sentence, which the limit would cut, is left out; the limit still ended it
    assert out.finish_reason == "length" and may_end(out.text)
    assert greedy.text.startswith(out.text) and len(out.text) < len(greedy.text)
    assert out.completion_tokens == len(out.token_ids) < 50
    record = out.steering
    assert record.chosen == len(record.candidates) - 1  # the kept option: ending here
    assert record.candidates[record.chosen].text == out.text


def test_a_cut_block_keeps_its_finished_sentences_and_list_lines() -> None:
    from personalizer.backends.decoding.blocks import safe_prefix

    tok = tiny.tokenizer()

    def decode(ids: list[int]) -> str:
        return tok.decode(ids, skip_special_tokens=True)

    def kept(before: str, block: str) -> str:
        b, ids = tok.encode(before) if before else [], tok.encode(block)
        return decode(ids[:safe_prefix(decode, b, ids)])

    # list items without a full stop end at their line
    assert kept("Tips:", "\n- drink water\n- walk daily\n- rest") == \
        decode(tok.encode("\n- drink water\n- walk daily\n"))
    assert kept("", "Sleep well. Keep a fixed bedtime and").rstrip() == "Sleep well."
    assert kept("Sleep well.", " Keep a fixed bedtime and avoid").strip() == ""  # unfinished
    assert kept("", "") == ""
    # a line that is no list item, or an item that announces more, is no place to end
    assert kept("Here is a letter:", "\nDear Hiring Manager,\n\nI am") == ""
    assert kept("", "- Tips:\n- drink") == ""


def test_a_taste_for_long_answers_goes_on_where_the_model_would_end() -> None:
    gen = LocalGenerator(tiny.trained_gpt2(), tiny.tokenizer(), rewards=SHORT,
                         quality=Letters(0.0))
    plain = gen.generate("Tell me about sleep", max_new_tokens=80)
    assert plain.finish_reason == "stop"  # the model ends its answer

    def answer(coefficient: float, go_on: bool) -> Any:
        s = short_steering(n=1, block_tokens=16, end_early=True, go_on=go_on).model_copy(
            update={"coefficients": {"length": coefficient}})
        return gen.generate("Tell me about sleep", max_new_tokens=80, steering=s,
                            repetition_guard=False)

    long = answer(1.0, go_on=True)
    assert answer(1.0, go_on=False).text == plain.text  # without it: the model's end
    assert long.steering.levers == ("end_early", "go_on")  # no "no_repeat": guard off
    assert long.text.startswith(plain.text) and len(long.text) > len(plain.text)
    assert long.completion_tokens == len(long.token_ids) <= 80
    # a taste for short answers never goes on
    assert answer(-1.0, go_on=True).text == answer(-1.0, go_on=False).text
    with pytest.raises(ValueError, match="go_on"):
        BestOfN(block="answer", go_on=True)


def test_strength_0_or_no_coefficients_is_plain_decoding() -> None:
    gen = LocalGenerator(tiny.trained_gpt2(), tiny.tokenizer(), rewards=SHORT, quality=None)
    plain = gen.generate("Drink water", max_new_tokens=20)
    for s in (short_steering(n=3).model_copy(update={"strength": 0.0}),
              short_steering(n=3).model_copy(update={"coefficients": {"length": 0.0}})):
        out = gen.generate("Drink water", max_new_tokens=20, steering=s)
        assert out.text == plain.text and out.token_ids == plain.token_ids
        assert out.steering.path == "plain"


def test_ending_early_needs_sentence_blocks() -> None:
    with pytest.raises(ValueError, match="end_early"):
        BestOfN(block="answer", end_early=True)


class AfterTheFirst:
    """A quality model for tests: every sentence after the first says something."""

    name, description, floor = "after-first", "sentences after the first", 1.0

    def score(self, prompt: str, responses: list[str]) -> list[float]:
        from personalizer.backends.rewards.quality import sentences

        return [float(max(0, len(sentences(r)) - 1)) for r in responses]


def test_an_opening_that_says_nothing_is_left_out_for_a_short_taste() -> None:
    gen = LocalGenerator(tiny.trained_gpt2(), tiny.tokenizer(), rewards=SHORT,
                         quality=AfterTheFirst())

    def answer(trim: bool, coefficient: float = -1.0) -> Any:
        s = short_steering(n=1, block_tokens=16, trim_opening=trim).model_copy(
            update={"coefficients": {"length": coefficient}})
        return gen.generate("Tell me about sleep", max_new_tokens=40, steering=s)

    kept = answer(trim=False)
    trimmed = answer(trim=True)
    # one greedy branch: no "branch"
    assert trimmed.steering.levers == ("trim_opening", "no_repeat")
    first = kept.text.split(".")[0] + "."  # the trained model's opening sentence
    assert not trimmed.text.startswith(first.strip()) and kept.text.startswith(first)
    assert kept.text.replace(first, "", 1).strip().startswith(trimmed.text[:10])
    assert trimmed.text == trimmed.text.lstrip()  # no blank start
    assert trimmed.completion_tokens < kept.completion_tokens
    assert "".join(gen.stream("Tell me about sleep", max_new_tokens=40,
                              steering=short_steering(n=1, block_tokens=16,
                                                      trim_opening=True))) == trimmed.text
    # a taste for longer answers keeps the opening (only the blank start goes)
    assert answer(trim=True, coefficient=1.0).text == kept.text.lstrip()


def test_an_answer_never_starts_on_a_sentence_that_leans_on_the_one_before() -> None:
    from personalizer.backends.decoding.blocks import LEANS_ON, can_start_at

    assert {"however", "this", "it", "they", "also"} <= LEANS_ON
    opening = "The age-old question of sleep."
    assert can_start_at(opening, " Go to bed at the same time every night.")
    assert can_start_at(opening, "\n- Keep the room dark.")  # a bullet may start a list
    assert not can_start_at(opening, " However, keep the room dark.")
    assert not can_start_at(opening, " This means a dark room.")
    # a numbered list starts at its first item
    assert not can_start_at(opening, "\n2. Keep the room dark.")
    assert not can_start_at("1. Sleep well.", "\nKeep the room dark.")
    assert not can_start_at(opening, "   ")
