"""Token ids to text as they are decoded: incremental detokenisation, stop strings, and the
one rule for where a sentence ends (used by lookahead drafts and sentence blocks alike)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

__all__ = ["TextTracker", "ends_sentence", "first_stop", "may_end"]

# A sentence (or a list item's line) ends at . ! ? : ) or a line break.
_SENTENCE_END = re.compile(r"[.!?:)]\s*$|\n\s*$")
# ... but an answer may only end after a finished sentence: not after "Here are the steps:",
# nor after a bare list marker ("2.", "-").
_FINISHED = re.compile(r"[^\W\d_][\"')\]*]*[.!?][\"')\]*]*\s*$")


def ends_sentence(text: str) -> bool:
    """Whether ``text`` (non-blank) ends a sentence or a line (a block may end here)."""
    return bool(text.strip()) and bool(_SENTENCE_END.search(text))


def may_end(text: str) -> bool:
    """Whether an answer could end after ``text``: its last sentence is finished (a word
    and then . ! or ?), not an announcement (':') or a bare list marker."""
    return bool(_FINISHED.search(text))


def first_stop(text: str, stops: Sequence[str]) -> int | None:
    """Index where the first of ``stops`` begins in ``text`` (None when none occurs)."""
    hits = [i for i in (text.find(s) for s in stops if s) if i >= 0]
    return min(hits) if hits else None


def _held_back(text: str, stops: Sequence[str]) -> int:
    """Length of the longest suffix of ``text`` that could still grow into a stop string."""
    best = 0
    for s in stops:
        for n in range(min(len(s) - 1, len(text)), 0, -1):
            if text.endswith(s[:n]):
                best = max(best, n)
                break
    return best


class TextTracker:
    """The text of one row's tokens: :meth:`push` a token, get the text that is now safe to
    show (never part of a stop string, never half a multi-byte character)."""

    def __init__(self, tokenizer: Any, stops: Sequence[str] = ()) -> None:
        self.tokenizer, self.stops = tokenizer, tuple(stops)
        self.ids: list[int] = []
        self.emitted = 0
        self.cut: str | None = None  # the whole text, once a stop string ended it

    @property
    def stopped(self) -> bool:
        return self.cut is not None

    def decode(self, ids: Sequence[int] | None = None) -> str:
        return self.tokenizer.decode(self.ids if ids is None else list(ids),
                                     skip_special_tokens=True)

    def push(self, token_id: int) -> str:
        """Add one (non-end-of-turn) token; return the newly safe text."""
        self.ids.append(int(token_id))
        text = self.decode()
        cut = first_stop(text, self.stops)
        if cut is not None:
            self.cut = text[:cut]
            piece = self.cut[self.emitted:]
            self.emitted = max(self.emitted, cut)
            return piece
        safe = len(text) - _held_back(text, self.stops)
        if text.endswith("\ufffd"):  # an incomplete multi-byte character: wait for more
            safe = min(safe, len(text) - 1)
        if safe <= self.emitted:
            return ""
        piece, self.emitted = text[self.emitted:safe], safe
        return piece

    def flush(self) -> str:
        """The text not yet returned (at the end of the row)."""
        text = self.text
        piece = text[self.emitted:]
        self.emitted = len(text)
        return piece

    @property
    def text(self) -> str:
        return self.cut if self.cut is not None else self.decode()
