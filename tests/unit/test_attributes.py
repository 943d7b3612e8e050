"""Each attribute scorer moves in its documented direction on hand-written pairs."""

from __future__ import annotations

import pytest

from personalizer.backends.rewards import KeywordReward, attribute_reward_set, attribute_scorers
from personalizer.backends.rewards.attributes import syllables

# (scorer, less, more): the second text has more of the attribute than the first.
PAIRS = {
    "verbosity": ("Yes.", "Yes, and here is the longer explanation with several more words."),
    "reading_level": ("The cat sat. It was fun. We ran.",
                      "Comprehensive epidemiological investigations demonstrated considerable "
                      "heterogeneity across socioeconomic populations."),
    "formality": ("Hey, that's gonna be awesome, you'll love it!!",
                  "The results, however, were therefore consistent with the hypothesis."),
    "warmth": ("This is bad and I hate the terrible result.",
               "What a wonderful idea, I love it and I am so happy for you!"),
    "structure": ("Drink water, walk daily and rest well.",
                  "Tips:\n- Drink water\n- Walk daily\n- Rest well"),
    "technical_depth": ("Put the food in the box and close it.",
                        "Call numpy.linalg.eig() on the float64 matrix; use `torch.compile` "
                        "for asynchronous GPU kernels."),
    "examples": ("Vegetables are healthy.",
                 "Vegetables are healthy, for example carrots, such as raw ones. For instance, "
                 "spinach."),
    "hedging": ("Do it now. It works.",
                "It might work, perhaps, but it depends; I think it could possibly fail."),
    "emoji": ("Great job today.", "Great job today 🎉🙂"),
}


def test_there_are_at_least_eight_scorers_with_descriptions() -> None:
    scorers = attribute_scorers()
    assert len(scorers) >= 8
    assert {s.name for s in scorers} == set(PAIRS)
    for s in scorers:
        assert len(s.description) > 15


@pytest.mark.parametrize("scorer", attribute_scorers(), ids=lambda s: s.name)
def test_scorer_direction(scorer) -> None:  # noqa: ANN001
    less, more = PAIRS[scorer.name]
    low, high = scorer.score("any prompt", [less, more])
    assert high > low, (scorer.name, low, high)


def test_scorers_handle_empty_and_odd_text() -> None:
    rs = attribute_reward_set()
    m = rs.raw_features("q", ["", "   ", "!!!", "ñandú café 中文", "1234567"])
    assert m.shape == (5, len(rs))


def test_syllables_from_pyphen() -> None:
    assert syllables("cat") == 1
    assert syllables("water") == 2
    assert syllables("heterogeneity") >= 4  # hyphenation points: a slight undercount


def test_keyword_reward() -> None:
    r = KeywordReward("cats", ("cat", "kitten"))
    assert r.score("q", ["a cat and a kitten", "a dog", "Cat!"]) == [2.0, 0.0, 1.0]
    dense = KeywordReward("cats", ("cat",), per_100_words=True)
    assert dense.score("q", ["cat dog", "cat"]) == [50.0, 100.0]
