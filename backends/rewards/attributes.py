"""Interpretable attribute scorers: cheap, CPU-only, no model, no download.

Each scorer measures one property of a response (the prompt is ignored), higher meaning more
of what its ``description`` says. Sentiment uses VADER (``vaderSentiment``); syllables for the
reading level come from ``pyphen``'s hyphenation dictionaries. textstat is not used: its
syllable counts call ``nltk.download('cmudict')`` at run time, which must never happen here.
Their dependencies (pyphen, vaderSentiment) are part of the core install.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from personalizer._optional import require
from personalizer.errors import InvalidInput

from personalizer.backends.rewards.base import RewardSet

__all__ = [
    "AttributeScorer",
    "KeywordReward",
    "attribute_reward_set",
    "attribute_scorers",
    "flesch_kincaid_grade",
    "syllables",
]

_WORD = re.compile(r"[A-Za-z0-9]+(?:['’][A-Za-z]+)?")
_SENTENCE_END = re.compile(r"[.!?]+(?:\s|$)")
# A list item, heading or table row; a bare marker ("-", "1", "1.", "#") counts too, so that a
# prefix that has just started an item already scores as structured.
_LIST_LINE = re.compile(r"^\s*(?:[-*+•](?:\s+|$)|\d+(?:[.)](?:\s+|$)|$)|#{1,6}(?:\s+|$)"
                        r"|\|.*\|\s*$)")
_CONTRACTION = re.compile(r"\b\w+['’](?:t|re|ll|m|ve|d|s)\b", re.IGNORECASE)
_EMOJI = re.compile(
    "[\U0001F300-\U0001FAFF\U00002600-\U000027BF\U0001F000-\U0001F2FF\U0001F900-\U0001F9FF]"
)
_CODE = re.compile(r"`[^`]+`|```")
_TECH_TOKEN = re.compile(r"\b(?:\w*\d\w*|\w+_\w+|[a-z]+[A-Z]\w*|\w+\.\w+\(?\)?)\b")


def _phrases(text: str, phrases: Sequence[str]) -> int:
    low = " " + re.sub(r"\s+", " ", text.lower()) + " "
    return sum(low.count(p) for p in phrases)


_INFORMAL = (" gonna ", " wanna ", " yeah", " hey", " cool ", " awesome", " stuff", " lol",
             " btw", " ok ", " okay", " kinda", " sorta", " yep", " nope", " guys", " super ",
             " totally", " pretty much", " a lot of ")
_FORMAL = (" therefore", " however", " furthermore", " moreover", " consequently", " thus ",
           " regarding", " hence", " nevertheless", " accordingly", " in addition",
           " subsequently", " whereas", " shall ")
_HEDGES = (" might ", " may ", " perhaps", " possibly", " could ", " likely", " probably",
           " it depends", " i think", " i believe", " seems", " appears", " generally",
           " usually", " often", " somewhat", " arguably", " in some cases", " not sure",
           " maybe")
_EXAMPLES = (" for example", " for instance", " e.g.", " such as", " example", " consider ",
             " imagine ", " like this", " say you", "```")


def _single_words(phrases: Sequence[str], weight: float) -> dict[str, float]:
    return {p.strip(): weight for p in phrases if p.strip().isalpha()}


# The words of the lexical scorers, for token-level steering (``token_rule="lexicon"``): a
# word's weight is what one more of it adds to its scorer, before the per-100-words scaling.
_HEDGE_WORDS = _single_words(_HEDGES, 1.0)
_EXAMPLE_WORDS = {"example": 1.0, "instance": 1.0, "such": 1.0, "imagine": 1.0,
                  "consider": 1.0}
_FORMALITY_WORDS = (_single_words(_FORMAL, 1.0) | _single_words(_INFORMAL, -1.0)
                    | {"!": -1.0} | {f"{a}{s}": -1.0 for a in "'’"
                                     for s in ("t", "re", "ll", "m", "ve", "d", "s")})


def _hedge_words() -> Mapping[str, float]:
    return _HEDGE_WORDS


def _example_words() -> Mapping[str, float]:
    return _EXAMPLE_WORDS


def _formality_words() -> Mapping[str, float]:
    return _FORMALITY_WORDS


def _warmth_words() -> Mapping[str, float]:
    """VADER's own lexicon: each word's valence (-4..4) divided by 4; words of four letters
    or more (its short entries are mostly abbreviations, "lol", and pieces of other words
    once tokenized: " po", " ass")."""
    return {w: v / 4.0 for w, v in _vader().lexicon.items() if w.isalpha() and len(w) >= 4}


def words(text: str) -> list[str]:
    return _WORD.findall(text)


@functools.lru_cache(maxsize=1)
def _pyphen() -> Any:
    module = require("pyphen", extra="attributes", feature="the reading-level scorer",
                     install="pip install pyphen")
    return module.Pyphen(lang="en_US")


@functools.lru_cache(maxsize=65536)
def syllables(word: str) -> int:
    """Syllables of one English word from pyphen's hyphenation points (at least 1; long words
    are slightly undercounted, as hyphenation skips some syllable breaks)."""
    w = word.lower().strip("'’")
    if not w:
        return 0
    if w.isdigit():
        return len(w)
    return len(_pyphen().positions(w)) + 1


def flesch_kincaid_grade(text: str) -> float:
    """Flesch-Kincaid grade level: ``0.39 w/s + 11.8 syl/w - 15.59`` (0 for empty text)."""
    ws = words(text)
    if not ws:
        return 0.0
    sentences = max(1, len(_SENTENCE_END.findall(text.strip() + " ")))
    syl = sum(syllables(w) for w in ws)
    return 0.39 * len(ws) / sentences + 11.8 * syl / len(ws) - 15.59


@functools.lru_cache(maxsize=1)
def _vader() -> Any:
    module = require("vaderSentiment.vaderSentiment", extra="attributes",
                     feature="the warmth scorer", install="pip install vaderSentiment")
    return module.SentimentIntensityAnalyzer()


def _verbosity(t: str) -> float:
    return math.log1p(len(words(t)))


def _formality(t: str) -> float:
    n = max(len(words(t)), 1)
    informal = (len(_CONTRACTION.findall(t)) + _phrases(t, _INFORMAL) + t.count("!")
                + len(_EMOJI.findall(t)))
    return 100.0 * (_phrases(t, _FORMAL) - informal) / n


def _warmth(t: str) -> float:
    return float(_vader().polarity_scores(t)["compound"])


def _structure(t: str) -> float:
    lines = [ln for ln in t.splitlines() if ln.strip()]
    if not lines:
        return 0.0
    return sum(1 for ln in lines if _LIST_LINE.match(ln)) / len(lines)


def _technical(t: str) -> float:
    ws = words(t)
    if not ws:
        return 0.0
    jargon = sum(1 for w in ws if len(w) > 3 and syllables(w) >= 4)
    return 100.0 * (jargon + len(_TECH_TOKEN.findall(t)) + len(_CODE.findall(t))) / len(ws)


def _examples(t: str) -> float:
    return math.log1p(_phrases(t, _EXAMPLES))


def _hedging(t: str) -> float:
    return 100.0 * _phrases(t, _HEDGES) / max(len(words(t)), 1)


def _emoji(t: str) -> float:
    return math.log1p(len(_EMOJI.findall(t)))


@dataclass(frozen=True)
class AttributeScorer:
    """A :class:`RewardModel` from a pure function of the response text.

    ``per_token=False`` marks a whole-answer attribute (length): a prefix says nothing about
    it (every candidate token adds about one word), so reward-guided decoding uses it only
    when it compares finished answers (lookahead), never to rescore single tokens. ``more``
    and ``less`` are instructions that ask a model for more or less of it (the profile's
    prompt block uses them). ``token_rule`` says which tokens express the attribute to
    token-level steering (:class:`~personalizer.backends.TokenRewards`,
    :mod:`~personalizer.backends.heads.rules`): ``"end_of_turn"`` (more of it: ending is
    less likely; length), ``"list_marker"`` (more of it: a line more likely starts a list
    item; structure) or ``"lexicon"`` (more of it: the words of ``lexicon`` are more likely,
    each by its weight; a mapping of lower-case words to weights, or a function returning
    one, called when a tokenizer's rule is first built).
    """

    name: str
    description: str
    fn: Callable[[str], float]
    per_token: bool = True
    more: str | None = None
    less: str | None = None
    token_rule: Literal["end_of_turn", "list_marker", "lexicon"] | None = None
    lexicon: Mapping[str, float] | Callable[[], Mapping[str, float]] | None = field(
        default=None, hash=False, compare=False)

    def __post_init__(self) -> None:
        if self.token_rule not in (None, "end_of_turn", "list_marker", "lexicon"):
            raise InvalidInput(f"token_rule must be 'end_of_turn', 'list_marker', 'lexicon' "
                               f"or None, not {self.token_rule!r:.40}")
        if (self.token_rule == "lexicon") != (self.lexicon is not None):
            raise InvalidInput(f"attribute {self.name!r}: token_rule='lexicon' and a lexicon "
                               "go together (give both, or neither)")

    def score(self, prompt: str, responses: Sequence[str]) -> list[float]:
        return [float(self.fn(r)) for r in responses]


_SCORERS = (
    AttributeScorer("verbosity", "longer answers: log(1 + number of words)", _verbosity,
                    per_token=False, more="Give a thorough, detailed answer.",
                    less="Give a short answer with the key points only.",
                    token_rule="end_of_turn"),
    AttributeScorer("reading_level", "harder reading: Flesch-Kincaid grade level",
                    flesch_kincaid_grade, more="Use precise, advanced vocabulary.",
                    less="Use simple, everyday words."),
    AttributeScorer("formality", "more formal: formal connectives minus contractions, slang, "
                    "exclamations and emoji, per 100 words", _formality,
                    more="Write in a formal tone.", less="Write in a casual, friendly tone.",
                    token_rule="lexicon", lexicon=_formality_words),
    AttributeScorer("warmth", "warmer, more positive tone: VADER sentiment compound (-1..1)",
                    _warmth, more="Be warm and encouraging.",
                    less="Be neutral and matter-of-fact.", token_rule="lexicon",
                    lexicon=_warmth_words),
    AttributeScorer("structure", "more structured: share of lines that are list items, "
                    "headings or table rows", _structure,
                    more="Format the answer as a bulleted list.",
                    less="Write in flowing prose, without lists.", token_rule="list_marker"),
    AttributeScorer("technical_depth", "more technical: long jargon words, identifiers, "
                    "numbers and code per 100 words", _technical,
                    more="Include technical details.", less="Avoid technical jargon."),
    AttributeScorer("examples", "more examples: log(1 + 'for example', 'such as', code blocks, "
                    "...)", _examples, more="Include a concrete example.",
                    less="Skip examples.", token_rule="lexicon", lexicon=_example_words),
    AttributeScorer("hedging", "more hedging, less direct: 'might', 'perhaps', 'it depends', "
                    "... per 100 words", _hedging, more="Mention caveats and uncertainty.",
                    less="Be direct and confident.", token_rule="lexicon",
                    lexicon=_hedge_words),
    AttributeScorer("emoji", "more emoji: log(1 + number of emoji)", _emoji,
                    more="Use emoji.", less="Do not use emoji."),
)


def attribute_scorers() -> tuple[AttributeScorer, ...]:
    """The nine built-in attribute scorers."""
    return _SCORERS


def attribute_reward_set(*, version: str = "1") -> RewardSet:
    """The attribute scorers as a reward set (identity normalisation; call
    :meth:`RewardSet.fit_normalization` on your own responses to fit one)."""
    return RewardSet("attributes", _SCORERS, version=version)


@dataclass(frozen=True)
class KeywordReward:
    """A lexical reward for tests and quick experiments: occurrences of ``keywords`` per
    response (case-insensitive, whole words), optionally per 100 words."""

    name: str
    keywords: tuple[str, ...]
    description: str = "mentions the keywords more often"
    per_100_words: bool = False

    def score(self, prompt: str, responses: Sequence[str]) -> list[float]:
        pattern = re.compile(r"\b(?:" + "|".join(map(re.escape, self.keywords)) + r")\b", re.IGNORECASE)
        out = []
        for r in responses:
            hits = len(pattern.findall(r))
            out.append(100.0 * hits / max(len(words(r)), 1) if self.per_100_words else hits)
        return [float(v) for v in out]
