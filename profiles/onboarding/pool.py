"""Question pools whose answers differ along one or two base rewards at a time.

A pool of answers written in a few caricature styles (one sentence / a list / warm and
detailed / technical) moves every attribute at once: a person who likes short answers also
looks like one who dislikes warmth and examples, and what onboarding learns does not carry
over to answers where those go apart. :func:`variant_answers` starts from one answer written
by a model and rewrites it along single attributes — the same content shorter, as a list,
warmer, more hedged, more formal — plus two mixed rewrites, so that each question isolates
what it asks about. The model writes the content (and the answers that need new content:
an example, technical detail); the rewrites are plain text operations, so the shipped pool
is reproducible from the model's answers.

>>> variant_answers("Sleep at a fixed time. Avoid screens before bed.")["list"]
'- Sleep at a fixed time\\n- Avoid screens before bed'
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

__all__ = [
    "REWRITES",
    "answers_question",
    "as_list",
    "clean_answer",
    "formal",
    "hedged",
    "sentences",
    "shorter",
    "variant_answers",
    "warmer",
]

_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(])")
_CONTENT = re.compile(r"[a-z]{4,}")  # content words: 4+ letters
_LIST_MARK = re.compile(r"^\s*(?:[-*+•]|\d+[.)])\s+")

_OPENERS = ("What a great question!", "I love that you're asking this!",
            "Oh, this is such a good thing to think about!", "Great idea to look into this!")
_CLOSERS = ("You've got this!", "I hope this helps, and good luck!",
            "Have fun with it!", "You'll do wonderfully!")
_HEDGES = ("Generally, ", "In many cases, ", "Usually, ", "Perhaps ")
_CAVEAT = "It might depend on your situation, though."
_CONTRACTIONS = {"don't": "do not", "doesn't": "does not", "can't": "cannot",
                 "won't": "will not", "it's": "it is", "you're": "you are",
                 "isn't": "is not", "aren't": "are not", "you'll": "you will",
                 "that's": "that is", "there's": "there is", "i'm": "I am",
                 "let's": "let us", "you've": "you have", "didn't": "did not"}
_CONNECTIVES = ("Furthermore, ", "Moreover, ", "In addition, ", "Consequently, ")


def _lower_first(s: str) -> str:
    """``s`` with its first letter lowercased, unless it starts a name or acronym ("I",
    "NASA", "SQL", "iPhone")."""
    first = s.split(" ", 1)[0]
    if first in ("I", "I'm", "I've", "I'll", "I'd") or first[1:2].isupper() or not first[:1].isupper():
        return s
    return s[0].lower() + s[1:]


def sentences(text: str) -> list[str]:
    """The sentences of ``text`` (list items count as sentences, markers removed)."""
    out: list[str] = []
    for line in text.splitlines():
        line = _LIST_MARK.sub("", line).strip()
        if line:
            out.extend(s.strip() for s in _SENTENCE.split(line) if s.strip())
    return out


def _similar(a: str, b: str) -> bool:
    """Whether two sentences say nearly the same (80% of the shorter one's content words)."""
    wa, wb = set(_CONTENT.findall(a.lower())), set(_CONTENT.findall(b.lower()))
    return min(len(wa), len(wb)) >= 3 and len(wa & wb) >= 0.8 * min(len(wa), len(wb))


def clean_answer(text: str, *, max_words: int = 90) -> str:
    """A model's answer as prose: markdown emphasis removed, list items made sentences,
    sentences that repeat an earlier one dropped, cut at the last finished sentence within
    ``max_words`` words (an unfinished last sentence is dropped)."""
    text = re.sub(r"\*\*|__|##+ ?", "", text).strip()
    kept: list[str] = []
    count = 0
    for line in text.splitlines():
        item = bool(_LIST_MARK.match(line))
        for s in sentences(line):
            if item and not re.search(r"[.!?:]\"?$", s) and line != text.splitlines()[-1]:
                s += "."  # a finished list item without a stop
            if not re.search(r"[.!?:]\"?$", s):
                break
            if s.endswith(":") or any(_similar(s, k) for k in kept):
                continue  # a lead-in to a list, or a repeat
            n = len(s.split())
            if kept and count + n > max_words:
                return _prose(kept)
            kept.append(s)
            count += n
    return _prose(kept)


def _prose(kept: list[str]) -> str:
    return " ".join(kept)


def _restates(sentence: str, prompt: str) -> bool:
    """Whether half or more of the sentence's content words are the prompt's own."""
    own = set(_CONTENT.findall(prompt.lower()))
    words = _CONTENT.findall(sentence.lower())
    return bool(words) and sum(w in own for w in words) >= 0.5 * len(words)


def _first(ss: Sequence[str], n: int, prompt: str = "") -> list[str]:
    """The first ``n`` sentences that say something (not a lead-in ending in ':' or '?',
    not under five words, not a restatement of the prompt)."""
    useful = [s for s in ss if len(s.split()) >= 5 and not s.rstrip().endswith((":", "?"))
              and not _restates(s, prompt)]
    return (useful or list(ss))[:n]


def shorter(text: str, n: int = 1, prompt: str = "") -> str:
    """The same answer cut to its first ``n`` sentences that say something."""
    return " ".join(_first(sentences(text), n, prompt))


def as_list(text: str, *, max_items: int = 5) -> str:
    """The same content as a bulleted list: one item per sentence, final stops dropped."""
    items = [s.rstrip(".!") for s in sentences(text)[:max_items]]
    return "\n".join(f"- {s}" for s in items)


def warmer(text: str, i: int = 0) -> str:
    """The same answer with a warm, enthusiastic opening and closing line (a list keeps its
    lines: the opening and closing go on lines of their own)."""
    if not text.strip():
        return ""
    sep = "\n" if "\n" in text.strip() else " "
    return f"{_OPENERS[i % len(_OPENERS)]}{sep}{text.strip()}{sep}{_CLOSERS[i % len(_CLOSERS)]}"


def hedged(text: str, i: int = 0) -> str:
    """The same answer, less direct: hedges on alternate sentences and a closing caveat."""
    ss = sentences(text)
    if not ss:
        return ""
    out = []
    for k, s in enumerate(ss):
        if k % 2 == 0 and s[:1].isupper():
            s = _HEDGES[(i + k // 2) % len(_HEDGES)] + _lower_first(s)
        out.append(s)
    return " ".join([*out, _CAVEAT])


def formal(text: str, i: int = 0) -> str:
    """The same answer in a more formal register: contractions spelled out, exclamations
    made statements, formal connectives between sentences."""
    def expand(m: re.Match[str]) -> str:
        full = _CONTRACTIONS[m.group(0).lower()]
        return full[0].upper() + full[1:] if m.group(0)[0].isupper() else full

    pattern = re.compile(r"\b(" + "|".join(map(re.escape, _CONTRACTIONS)) + r")\b", re.IGNORECASE)
    ss = [re.sub(r"!+(?=\"?$)", ".", pattern.sub(expand, s)) for s in sentences(text)]
    out = []
    for k, s in enumerate(ss):
        if k and k % 2 == 1 and s[:1].isupper():
            s = _CONNECTIVES[(i + k) % len(_CONNECTIVES)] + _lower_first(s)
        out.append(s)
    return " ".join(out)


# name -> rewrite of a base answer to a prompt (i: the prompt's index, to vary the phrases)
REWRITES: dict[str, Callable[[str, str, int], str]] = {
    "short": lambda t, p, i: shorter(t, 1, p),
    "list": lambda t, p, i: as_list(t),
    "warm": lambda t, p, i: warmer(t, i),
    "hedged": lambda t, p, i: hedged(t, i),
    "formal": lambda t, p, i: formal(t, i),
    "short warm": lambda t, p, i: warmer(shorter(t, 1, p), i + 1),
    "short list": lambda t, p, i: as_list(" ".join(_first(sentences(t), 3, p))),
}


# Words that say nothing about what a question is about.
_STOP_WORDS = frozenset((
    "a", "about", "after", "all", "also", "am", "an", "and", "any", "are", "as", "at", "be",
    "been", "being", "best", "better", "between", "but", "by", "can", "could", "did", "do",
    "does", "doing", "during", "each", "every", "explain", "few", "first", "for", "from",
    "get", "gets", "getting", "give", "good", "had", "has", "have", "how", "i", "if", "in",
    "into", "is", "it", "its", "just", "let", "make", "makes", "making", "many", "me",
    "more", "most", "much", "my", "need", "no", "not", "of", "on", "or", "our", "should",
    "so", "some", "tell", "than", "that", "the", "their", "them", "then", "there", "these",
    "they", "this", "those", "to", "too", "use", "very", "want", "was", "way", "ways", "we",
    "well", "were", "what", "when", "where", "which", "who", "whom", "why", "will", "with",
    "would", "you", "your",
))
_WORD = re.compile(r"[a-z0-9]+(?:[-'’][a-z0-9]+)*")
_SUFFIXES = ("ations", "ation", "ings", "ing", "ies", "ied", "es", "ed", "ly", "s")


def _stems(text: str) -> set[str]:
    """The stems of ``text``'s content words (stop words and one- or two-letter words out)."""
    out = set()
    for w in _WORD.findall(text.lower()):
        w = re.sub(r"['’]s$", "", w)
        if len(w) < 3 or w in _STOP_WORDS:
            continue
        for suffix in _SUFFIXES:
            if w.endswith(suffix) and len(w) - len(suffix) >= 3 and not w.endswith(
                    ("ss", "eed")):
                w = w[: -len(suffix)]
                break
        out.add(w[:-1] if w.endswith("e") and len(w) > 3 else w)
    return out


def answers_question(prompt: str, text: str) -> bool:
    """Whether ``text`` shares a content word with ``prompt`` (stop words left out; a word
    matches another with the same stem, or one stem of four letters or more starting the
    other: "procrastinating" / "procrastination", "photos" / "photography"). A bank check
    for model-written answers: "It's a delicate balance of aesthetics and practicality."
    names nothing of "How can I make a small apartment feel bigger?" and is no answer to
    it. A terse answer written by a person may fail it too ("Keep a fixed bedtime." for
    "How do I get better sleep?"), so it screens what a model wrote, not a person."""
    asked = _stems(prompt)
    return any(a == b or (min(len(a), len(b)) >= 4 and (a.startswith(b) or b.startswith(a)))
               for a in asked for b in _stems(text))


def variant_answers(base: str, i: int = 0, *, prompt: str = "",
                    rewrites: Sequence[str] = tuple(REWRITES)) -> dict[str, str]:
    """``base`` and its rewrites by name (``"base"`` first); rewrites that come out empty or
    equal to an earlier answer are left out. ``prompt`` lets the short rewrites skip a
    sentence that only restates it. Rewrites expect prose (:func:`clean_answer` makes a
    model's answer prose); an empty base has no rewrites."""
    out = {"base": base}
    if not base.strip():
        return out
    for name in rewrites:
        text = REWRITES[name](base, prompt, i)
        if text and text not in out.values():
            out[name] = text
    return out
