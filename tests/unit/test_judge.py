"""Reasoning-before-scoring judges: parsing, aggregation, retries, pairwise, a real tiny LM."""

from __future__ import annotations

import pytest

from personalizer.backends.rewards import JudgeReward, parse_score, parse_verdict
from personalizer.errors import BackendError, InvalidInput
from personalizer.testing import ScriptedGenerator


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Principles: ...\nCritique: ...\nScore: 7", 7.0),
        ("The answer deserves \\boxed{8}.", 8.0),
        ("Final rating: [[6]]", 6.0),
        ("<score>9</score>", 9.0),
        ("Score: 3/10", 3.0),
        ("score = 4.5", 4.5),
        ("I first thought Score: 2, but on reflection Score: 9", 9.0),  # the last one counts
        ("**Score:** 7", 7.0),
        ("No number here at all.", None),
        ("Score: 42", None),  # out of range is not a score
        ("Score: 0", None),
    ],
)
def test_parse_score(text: str, expected: float | None) -> None:
    assert parse_score(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Rubric...\nEvaluation...\n[[A]]", "A"),
        ("<answer>[[B]]</answer>", "B"),
        ("<answer>B</answer>", "B"),
        ("\\boxed{A}", "A"),
        ("Verdict: B", "B"),
        ("Final answer: [[A]]", "A"),
        ("[[A]] at first, but after all [[B]]", "B"),
        ("Both are fine.", None),
        ("[[C]]", None),
    ],
)
def test_parse_verdict(text: str, expected: str | None) -> None:
    assert parse_verdict(text) == expected


def test_pointwise_scores_and_keeps_rationale() -> None:
    g = ScriptedGenerator(["Principles: brevity.\nCritique: fine.\nScore: 8",
                           "Principles: brevity.\nCritique: rambling.\nScore: 3"])
    judge = JudgeReward(g)
    out = judge.judge("How to boil an egg?", ["Boil 9 min.", "Eggs have a long history..."])
    assert [j.score for j in out] == [8.0, 3.0]
    assert "rambling" in out[1].rationales[0]
    prompt_text = g.calls[0][0][-1].content
    assert "How to boil an egg?" in prompt_text and "Boil 9 min." in prompt_text


def test_samples_mean_and_vote() -> None:
    replies = ["Score: 6", "Score: 8", "Score: 8"]
    mean = JudgeReward(ScriptedGenerator(list(replies)), samples=3)
    assert mean.score("q", ["a"]) == [pytest.approx(22 / 3)]
    vote = JudgeReward(ScriptedGenerator(list(replies)), samples=3, aggregate="vote")
    assert vote.score("q", ["a"]) == [8.0]
    g = ScriptedGenerator(["Score: 5"] * 3)
    JudgeReward(g, samples=3).score("q", ["a"])
    assert g.calls[0][1] == {"do_sample": True, "temperature": 0.8}  # samples differ


def test_unparseable_is_retried_then_reported_never_zero() -> None:
    g = ScriptedGenerator(["I like it.", "Score: 7"])
    assert JudgeReward(g, max_retries=1).score("q", ["a"]) == [7.0]
    assert g.calls[1][1].get("do_sample") is True  # the retry samples
    g = ScriptedGenerator(["hmm", "still no number", "nope"])
    with pytest.raises(BackendError, match="nope"):
        JudgeReward(g, max_retries=2).score("q", ["a"])


def test_pairwise_wins_and_position_swap() -> None:
    # the judge always prefers the answer mentioning "egg", whichever position it is in, and
    # otherwise always says B: a position bias that only asking both orders cancels
    def between(text: str, tag: str) -> str:
        return text.split(f"<{tag}>")[1].split(f"</{tag}>")[0].strip()

    def verdict(messages):  # noqa: ANN001, ANN202
        return "Rubric...\n[[A]]" if "egg" in between(messages[-1].content, "answer_a") \
            else "Rubric...\n[[B]]"

    answers = ["boil the egg", "something else", "another thing"]
    g = ScriptedGenerator(verdict)
    judge = JudgeReward(g, mode="pairwise")
    # by hand, over the 6 ordered pairs (A, B): the egg answer wins all 4 of its comparisons;
    # each other answer loses to it in both positions, and against the third one wins only
    # in position B (the biased verdict): 1 win in 4
    assert judge.score("q", answers) == [1.0, 0.25, 0.25]
    asked = [(between(m[-1].content, "answer_a"), between(m[-1].content, "answer_b"))
             for m, _ in g.calls]
    assert sorted(asked) == sorted((a, b) for a in answers for b in answers if a != b)
    with pytest.raises(InvalidInput, match="at least 2"):
        judge.score("q", ["alone"])


def test_per_user_principles_reach_the_prompt() -> None:
    g = ScriptedGenerator(["Score: 5"])
    JudgeReward(g).with_principles("Prefers short answers.").score("q", ["a"])
    assert "Prefers short answers." in g.calls[0][0][-1].content


def test_judge_on_a_real_tiny_local_model() -> None:
    from support import tiny

    from personalizer.backends import LocalGenerator

    gen = LocalGenerator(tiny.gpt2(), tiny.tokenizer())
    strict = JudgeReward(gen, max_retries=1, finish="parse",
                         generation_options={"max_new_tokens": 8})
    # a random tiny LM writes no parseable score: the judge must say so, with its raw text
    with pytest.raises(BackendError, match="last output"):
        strict.score("q", ["a"])
    # finish="auto" reads the score from the LM's own probabilities after its critique
    auto = JudgeReward(gen, generation_options={"max_new_tokens": 8})
    out = auto.judge("q", ["an answer", "another answer"])
    assert all(1.0 <= j.score <= 10.0 for j in out)
    assert out[0].score != out[1].score  # the answer text changes the distribution
    assert "(expected value)" in out[0].rationales[0]
    assert auto.score("q", ["an answer"]) == [pytest.approx(out[0].score)]  # deterministic
    pair = JudgeReward(gen, mode="pairwise", generation_options={"max_new_tokens": 8})
    a, b = pair.score("q", ["an answer", "another answer"])
    assert 0.0 < a < 1.0 and a + b == pytest.approx(1.0)


def test_option_logprobs_match_a_manual_computation() -> None:
    import torch
    from support import tiny

    from personalizer.backends import LocalGenerator

    gen = LocalGenerator(tiny.gpt2(), tiny.tokenizer())
    msgs = [{"role": "user", "content": "q"}, {"role": "assistant", "content": "Score:"}]
    lps = gen.option_logprobs(msgs, [" 1/10", " 7/10"])
    head = gen.prompt_ids(msgs)
    body = gen.tokenizer(" 7/10", add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        logp = gen.model(torch.tensor([head + body])).logits.log_softmax(-1)[0]
    manual = sum(logp[len(head) - 1 + i, t].item() for i, t in enumerate(body))
    assert lps[1] == pytest.approx(manual, abs=1e-4)
    # a final assistant message is continued, not followed by a new assistant turn
    assert gen.tokenizer.decode(gen.prompt_ids(msgs)).endswith("assistant: Score:")
