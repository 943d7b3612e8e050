"""Token rules: base rewards that token-level steering expresses through their own tokens.

A distilled token head (:mod:`.token_heads`) can say "shorter", "a list" or "more hedging"
only through small gains spread over many tokens, and on a small LM it learns them poorly. An
attribute scorer whose reward lives in identifiable tokens names its ``token_rule`` instead,
and :class:`~personalizer.backends.TokenRewards` biases those tokens by the user's
coefficient (times ``strength * rule_scale``); the rewards with a rule are left out of the
heads' fold (:func:`ruled_mask`):

* ``"end_of_turn"`` (length): more of it makes ending less likely — the end-of-turn logits
  get ``-scale * c``; a bias toward ending (a user who likes short answers) applies only
  where an answer can end, after a finished sentence or line, never mid-sentence;
* ``"list_marker"`` (structure): a line that starts (the answer's start, or after a token
  ending in a newline) more likely starts a list item — its markers get ``+scale * c``;
* ``"lexicon"`` (a reward that counts words: hedges, "for example", formal connectives,
  sentiment): every token that is one of the scorer's words gets ``+scale * c * weight``.
  For a reward that adds up its words' weights this is the reward itself, token by token
  (GenARM's token-level reward with no context): a word's weight is earned when the word is
  written. The built-in lexical rewards saturate (a log of the count, a sentiment score),
  so a raised word is raised until the answer has written it once, in any of its tokens
  (" consider", "Consider"); a lowered one stays lowered (:class:`WordBias`). A token counts as a word when it is the whole word: a leading space (" might"),
  or a capital at a line start ("However"); pieces inside longer words do not, and
  punctuation entries ("!", "'t") match the token's text exactly.

All rules are pure functions of the reward set, the user's coefficients and the tokenizer's
decoded vocabulary, which is decoded once per tokenizer and cached while it lives.
"""

from __future__ import annotations

import re
import threading
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from personalizer.errors import InvalidInput

__all__ = ["TOKEN_RULES", "LineTokens", "WordBias", "lexicon_bias", "lexicon_matrix", "line_tokens",
           "ruled_mask", "token_rules", "token_texts"]

TOKEN_RULES = ("end_of_turn", "list_marker", "lexicon")
_MARKERS = frozenset({"-", "*", "+", "•", "1", "1."})


def _rule(reward: Any) -> str | None:
    return getattr(reward, "token_rule", None)


def token_rules(rewards: Any, coefficients: Any, scale: float,
                end_scale: float | None = None) -> dict[str, float]:
    """The logit bias of the end-of-turn and list-marker rules for a user: ``scale``
    (``end_scale`` for the end of turn, when given) times the sum of their coefficients on
    the base rewards with that rule, signed so that more of the attribute is more likely:
    length lowers the end of turn, structure raises list markers. Other rewards contribute
    nothing (lexicons: :func:`lexicon_bias`)."""
    out = {"end_of_turn": 0.0, "list_marker": 0.0}
    names = list(rewards.names)
    for reward in rewards.rewards:
        rule, name = _rule(reward), getattr(reward, "name", None)
        if rule in out and name in names:
            out[rule] += float(coefficients[names.index(name)])
    return {"end_of_turn": -(scale if end_scale is None else end_scale) * out["end_of_turn"],
            "list_marker": scale * out["list_marker"]}


def ruled_mask(rewards: Any) -> np.ndarray:
    """1.0 for each base reward of ``rewards`` that has a token rule, else 0.0."""
    ruled = {getattr(r, "name", None) for r in rewards.rewards if _rule(r) in TOKEN_RULES}
    return np.array([1.0 if n in ruled else 0.0 for n in rewards.names])


# -- the decoded vocabulary -----------------------------------------------------------------

_TEXTS: weakref.WeakKeyDictionary[Any, tuple[int, tuple[str, ...]]] = \
    weakref.WeakKeyDictionary()
_LOCK = threading.RLock()


def token_texts(tokenizer: Any) -> tuple[str, ...]:
    """Every token of ``tokenizer`` decoded alone (in Rust for a fast tokenizer), cached
    while the tokenizer lives and keeps its size."""
    with _LOCK:
        size = len(tokenizer)
        cached = _TEXTS.get(tokenizer)
        if cached is not None and cached[0] == size:
            return cached[1]
        fast = getattr(tokenizer, "_tokenizer", None)
        ids = [[i] for i in range(size)]
        texts = tuple(fast.decode_batch(ids, skip_special_tokens=False) if fast is not None
                      else tokenizer.batch_decode(ids))
        _TEXTS[tokenizer] = (size, texts)
        return texts


@dataclass(frozen=True)
class LineTokens:
    """Ids of a tokenizer's tokens that end a line, of those that end a sentence or a line
    (".", "!", "?" or a newline last; "1." and other list numbers are not), and of those
    that start a list item (a bullet or "1", leading spaces aside)."""

    newline: frozenset[int]
    markers: tuple[int, ...]
    sentence_end: frozenset[int] = frozenset()


_NOT_AN_END = re.compile(r"(?:^|\n)\s*\d+[.)]$|\d\.$|\b(?:e\.g|i\.e|etc|vs|Dr|Mr|Mrs|Ms|St|"
                         r"No|approx|incl)\.$|\b[A-Za-z]\.$")


def _may_end_with(token: str) -> bool:
    """Whether a token can be the last of a whole sentence or line (a cheap filter;
    :func:`ends_whole` then reads the answer's text)."""
    s = token.strip()
    return token.rstrip(" \t").endswith("\n") or (
        s.endswith((".", "!", "?")) and not s[:-1].isdigit() and s not in _MARKERS)


def ends_whole(text: str) -> bool:
    """Whether ``text`` (an answer so far) ends a sentence or a line: a newline last, or
    ".", "!", "?" that does not close a list number ("2."), a number ("3.") or an
    abbreviation ("e.g.", "Dr.")."""
    if text.rstrip(" \t").endswith("\n"):
        return True
    tail = text.rstrip()[-40:]
    return tail.endswith((".", "!", "?")) and not _NOT_AN_END.search(tail)


_LINES: weakref.WeakKeyDictionary[Any, tuple[int, LineTokens]] = weakref.WeakKeyDictionary()


def line_tokens(tokenizer: Any) -> LineTokens:
    """:class:`LineTokens` of ``tokenizer`` (cached like :func:`token_texts`)."""
    with _LOCK:
        texts = token_texts(tokenizer)
        cached = _LINES.get(tokenizer)
        if cached is not None and cached[0] == len(texts):
            return cached[1]
        found = LineTokens(
            newline=frozenset(i for i, t in enumerate(texts) if t.rstrip(" \t").endswith("\n")),
            markers=tuple(i for i, t in enumerate(texts) if t.strip(" ") in _MARKERS),
            sentence_end=frozenset(i for i, t in enumerate(texts) if _may_end_with(t)))
        _LINES[tokenizer] = (len(texts), found)
        return found


# -- lexicons -------------------------------------------------------------------------------

def _word(text: str, spaced: bool = False) -> str | None:
    """The lexicon key of one decoded token: a whole word (leading whitespace, given as
    ``spaced`` when decoding drops it, or a capital that may start a line), or a token of
    punctuation; None for a piece of a word."""
    s = text.strip()
    if not s:
        return None
    if not any(ch.isalpha() for ch in s):
        return s  # "!", "?", ...
    if spaced or text[0].isspace() or s[0].isupper() or s[0] in "'’":
        return s.lower()
    return None


def _spaced(tokenizer: Any, size: int) -> list[bool]:
    """Per token, whether its vocabulary entry starts with a word-start marker (SentencePiece
    "▁", byte-level "Ġ"): decoding one such token alone may drop the space."""
    try:
        pieces = tokenizer.convert_ids_to_tokens(list(range(size)))
    except (AttributeError, TypeError, ValueError):
        return [False] * size
    return [isinstance(p, str) and p[:1] in ("▁", "Ġ") for p in pieces]


def _entries(reward: Any) -> Mapping[str, float]:
    lexicon = getattr(reward, "lexicon", None)
    lexicon = lexicon() if callable(lexicon) else lexicon
    if not isinstance(lexicon, Mapping) or not lexicon:
        raise InvalidInput(f"reward {getattr(reward, 'name', reward)!r} has token_rule "
                           "'lexicon' but no lexicon: give it a mapping of words to weights")
    return {str(k).lower(): float(v) for k, v in lexicon.items()}


@dataclass(frozen=True)
class WordBias:
    """A user's lexical rules on one tokenizer: ``bias`` per token (vocabulary-sized), and
    ``word``, the lexicon word each token writes (-1 for none; " consider" and "Consider"
    share one), so that a raised word is raised only until the answer has written it in
    any of its forms (:meth:`at`); a lowered word stays lowered."""

    bias: torch.Tensor
    word: torch.Tensor

    def at(self, written: Sequence[int], size: int) -> torch.Tensor:
        """The bias for the next token of an answer whose tokens so far are ``written``,
        cut or padded with zeros to ``size`` logits."""
        bias = self.bias
        if written:
            ids = torch.as_tensor(list(written), dtype=torch.long)
            used = self.word[ids[ids < self.word.shape[0]]]
            used = used[used >= 0]
            if used.numel():
                bias = bias.masked_fill((bias > 0) & torch.isin(self.word, used), 0.0)
        if bias.shape[0] >= size:
            return bias[:size]
        return torch.nn.functional.pad(bias, (0, size - bias.shape[0]))


_LEXICONS: weakref.WeakKeyDictionary[Any, weakref.WeakKeyDictionary[Any, dict[Any, Any]]] = \
    weakref.WeakKeyDictionary()


def _cache(rewards: Any, tokenizer: Any) -> dict[Any, Any]:
    """The lexicon cache of one tokenizer and one reward-set object (not its id: two sets of
    one id may carry different lexicons)."""
    per_tokenizer = _LEXICONS.setdefault(tokenizer, weakref.WeakKeyDictionary())
    return per_tokenizer.setdefault(rewards, {})


def _keys(tokenizer: Any, cache: dict[Any, Any]) -> list[str | None]:
    texts = token_texts(tokenizer)
    if cache.get("size") != len(texts):
        cache.clear()
        cache["size"] = len(texts)
        spaced = _spaced(tokenizer, len(texts))
        cache["keys"] = [_word(t, s) for t, s in zip(texts, spaced, strict=True)]
    return cache["keys"]


def _row(rewards: Any, j: int, tokenizer: Any) -> tuple[torch.Tensor, dict[str, float]]:
    """The weight per token of ``rewards.rewards[j]`` (a lexical reward), and its lexicon."""
    with _LOCK:
        cache = _cache(rewards, tokenizer)
        keys = _keys(tokenizer, cache)
        if j not in cache:
            entries = _entries(rewards.rewards[j])
            cache[j] = (torch.tensor([entries.get(k, 0.0) if k is not None else 0.0
                                      for k in keys]), entries)
        return cache[j]


def _lexical(rewards: Any) -> list[tuple[int, int]]:
    """(position in ``rewards.names``, position in ``rewards.rewards``) of each lexical
    reward."""
    return [(rewards.names.index(r.name), i) for i, r in enumerate(rewards.rewards)
            if _rule(r) == "lexicon" and getattr(r, "name", None) in rewards.names]


def lexicon_matrix(rewards: Any, tokenizer: Any) -> torch.Tensor | None:
    """``(len(rewards), vocabulary)``: for each base reward with the ``"lexicon"`` rule, the
    weight of each token that is one of its words (0 elsewhere; 0 rows for other rewards);
    None when no reward of the set has a lexicon. Cached per tokenizer and reward set;
    a new tensor per call."""
    lexical = _lexical(rewards)
    if not lexical:
        return None
    out = torch.zeros(len(rewards.names), len(token_texts(tokenizer)))
    for at, j in lexical:
        out[at] = _row(rewards, j, tokenizer)[0]
    return out


def lexicon_bias(rewards: Any, coefficients: Any, scale: float,
                 tokenizer: Any) -> WordBias | None:
    """A user's lexical rules: the per-token logit bias ``scale * c . L``
    (:func:`lexicon_matrix`) with each token's word; None when the bias would be all zero.
    Only the lexicons of rewards the user weighs are built (warmth's needs VADER)."""
    c = np.asarray(coefficients, dtype=np.float64)
    used = [(at, j) for at, j in _lexical(rewards) if c[at] != 0]
    if not used or scale == 0:
        return None
    with _LOCK:
        keys = _keys(tokenizer, _cache(rewards, tokenizer))
        bias = torch.zeros(len(keys))
        words: dict[str, int] = {}
        for at, j in used:
            row, entries = _row(rewards, j, tokenizer)
            bias += float(scale * c[at]) * row
            for k in entries:
                words.setdefault(k, len(words))
        word = torch.tensor([words.get(k, -1) if k is not None else -1 for k in keys],
                            dtype=torch.long)
    return WordBias(bias=bias, word=word)
