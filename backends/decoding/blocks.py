"""Best-of-n and blockwise best-of-n over the decoding loop: each block is one run of n rows
forked from one prefill of the prompt (and the kept prefix); the user's reward keeps the best.
Suits expensive rewards (reasoning judges): the reward is called once per block on n finished
texts instead of once per token.

* ``block="answer"``: n whole answers, the best is returned.
* ``block="sentence"``: n continuations up to the next sentence end (at most
  ``block_tokens``), the best is kept, and the next block starts from it. With
  ``end_early``, ending the answer after the kept prefix is one more option, open once the
  prefix's last sentence is finished and it clears the quality floor; and an answer never
  stops mid-sentence at its token limit: a last block that the limit cuts before its
  sentence ends is left out (the answer ends at its last finished sentence, finish reason
  ``"length"``). With ``go_on``, where the model ends the answer, one more block without an
  end of turn is the other option, kept when the user's whole-answer reward and quality
  prefer it.

Every option is scored as a finished text (the kept prefix and the block):
``strength * r_user + quality_weight * quality``. ``draw="branch"`` makes the n rows the n
most likely first tokens of the block, each continued greedily; with ``do_sample=True`` its
rows are sampled as ``draw="sample"``'s are (n=1: each block one sampled sentence). Samples
that finish early leave the batch, so they stop costing compute. Streaming emits each
block's chosen text once it is chosen.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from personalizer.backends.decoding.engine import Decoding, RowSpec
from personalizer.backends.decoding.handle import ModelHandle
from personalizer.backends.decoding.policies import BranchPolicy, PlainPolicy
from personalizer.backends.decoding.text import TextTracker, ends_sentence, first_stop, may_end
from personalizer.types import ScoredCandidate, SteeringRecord

if TYPE_CHECKING:  # pragma: no cover
    from personalizer.backends.decoding.proxy import ProxyTuning

__all__ = ["LEANS_ON", "BestOfNRun", "Blocks", "can_start_at", "choose_block", "safe_prefix"]


class Blocks(Protocol):
    """What a blockwise run reads of its strategy's settings (the BestOfN strategy)."""

    n: int
    block: str
    block_tokens: int
    end_early: bool
    go_on: bool
    branch_gap: float
    trim_opening: bool
    quality_weight: float

# First words of a sentence that leans on the one before it: an answer cannot start there.
LEANS_ON = frozenset({
    "also", "and", "another", "but", "finally", "furthermore", "hence", "however", "it",
    "it's", "its", "moreover", "next", "nor", "or", "other", "otherwise", "second", "secondly",
    "she", "so", "than", "that", "that's", "then", "there", "these", "they", "they're",
    "this", "those", "thus", "too", "yet", "he", "additionally", "instead", "such", "both",
    "each", "again", "still", "though", "although", "besides", "likewise", "similarly",
    "therefore", "consequently", "meanwhile", "lastly", "third", "thirdly", "plus", "here"})
_NUMBERED = re.compile(r"^\s*\d+[.)]\s", re.MULTILINE)  # "2. ..." (a numbered list item)


def can_start_at(opening: str, block: str) -> bool:
    """Whether an answer may start at ``block``, leaving out the ``opening`` before it: not
    when the block leans on the opening (its first word is in :data:`LEANS_ON`: "However,
    ...", "This ...") and not inside a numbered list (a numbered list does not start at its
    second item)."""
    first = block.strip().split(maxsplit=1)
    if not first or first[0].lower().strip(",.;:!?\"'") in LEANS_ON:
        return False
    return not (_NUMBERED.search(opening) or _NUMBERED.match(block))


# a finished list item's line: a marker, then words, not ending in ':' ',' or ';'
_ITEM_LINE = re.compile(r"(?:^|\n)[ \t]*(?:[-*\u2022]|\d+[.)])[ \t]+\S[^\n]*[^\s:,;]"
                        r"[ \t]*\n\s*$")


def safe_prefix(decode: Callable[[list[int]], str], before: list[int], ids: list[int]) -> int:
    """How many of ``ids`` an answer may show where a block was cut before its sentence
    ended: up to the last point where, after ``before``, they end a finished sentence or a
    list item's line ("- drink water\\n"); 0 when none does. ``decode`` turns ids into
    text."""
    for k in range(len(ids), 0, -1):
        text = decode([*before, *ids[:k]])
        if may_end(text) or (text.endswith("\n") and _ITEM_LINE.search(text)):
            return k
    return 0


def choose_block(user: np.ndarray, quality: np.ndarray | None, *, strength: float,
                 quality_weight: float, allowed: np.ndarray | None = None
                 ) -> tuple[int, np.ndarray]:
    """The kept option of one block and every option's score
    ``strength * user + quality_weight * quality``; options where ``allowed`` is False
    score ``-inf`` (unless none is allowed)."""
    scores = strength * np.asarray(user, dtype=np.float64)
    if quality is not None:
        scores = scores + quality_weight * np.asarray(quality, dtype=np.float64)
    if allowed is not None and bool(np.any(allowed)):
        scores = np.where(allowed, scores, -np.inf)
    return int(np.argmax(scores)), scores


class BestOfNRun:
    """Iterate for the text pieces of the kept samples; afterwards ``candidates`` hold the
    last block's options with their scores and ``chosen`` the kept one."""

    def __init__(self, handle: ModelHandle, spec: RowSpec, strategy: Blocks,
                 user_reward: Callable[[list[str]], Any], proxy: ProxyTuning | None, *,
                 strength: float = 1.0, quality: Any = None) -> None:
        self.handle, self.spec, self.strategy = handle, spec, strategy
        self.user_reward, self.proxy = user_reward, proxy
        self.strength, self.quality = strength, quality
        self.candidates: tuple[ScoredCandidate, ...] = ()
        self.chosen: int | None = None
        self.token_ids: list[int] = []
        self.finish = "length"
        self.first_s: float | None = None
        self.start = time.perf_counter()

    def record(self, record: SteeringRecord) -> SteeringRecord:
        """``record`` with the last block's candidates and the kept one."""
        return record.model_copy(update={"candidates": self.candidates, "chosen": self.chosen})

    def _rows(self, block: RowSpec) -> list[RowSpec]:
        """The n rows of one block: n samples (``draw="sample"``, or any draw when the
        generation samples: ``do_sample=True``), or n greedy branches."""
        strategy = self.strategy
        if block.options.sampling():
            return [block] * strategy.n
        greedy = block.options.model_copy(update={"do_sample": False})
        return [replace(block, options=greedy, rng=None,
                        policy=BranchPolicy(rank=i, max_gap=strategy.branch_gap))
                for i in range(strategy.n)]

    def __iter__(self) -> Iterator[str]:
        tok, spec, strategy = self.handle.tokenizer, self.spec, self.strategy
        out = TextTracker(tok, spec.options.stop)
        kept: list[int] = []  # what the model said (its context)
        shown: list[int] = []  # what the answer holds: kept, less a left-out opening
        held: list[int] = []  # an opening said but not shown yet: it says nothing so far
        held_tokens: list[int] = []
        # with end_early, a block cut before its sentence ended is shown up to its last
        # finished sentence or line; the rest waits for the sentence to end, or is left out
        # where the token limit ends the answer (an answer never stops mid-sentence)
        pending: list[int] = []
        eos = self.handle.eos_ids
        trim = strategy.trim_opening and self.quality is not None

        # a block ends at a sentence or line end; when the answer may end after a block, at
        # a finished sentence (not after "Tips:" or "2."), so that ending is weighed
        # against one whole sentence more
        ends = may_end if strategy.end_early else ends_sentence

        def sentence_done(ids: list[int]) -> bool:
            return len(ids) >= 2 and ends(tok.decode(ids))

        started = [False]  # a non-blank piece was shown: the answer starts with no blank

        def show(ids: list[int]) -> Iterator[str]:
            for tid in ids:
                piece = out.push(tid)
                if not started[0] and trim:
                    piece = piece.lstrip()
                if piece:
                    started[0] = True
                    yield piece
                if out.stopped:
                    return

        while len(kept) < spec.max_new_tokens:
            budget = spec.max_new_tokens - len(kept)
            end = None
            if strategy.block == "sentence":
                budget, end = min(budget, strategy.block_tokens), sentence_done
            block = replace(spec, prompt=[*spec.prompt, *kept],
                            continuation=(*spec.continuation, *kept),
                            max_new_tokens=budget, end=end)
            run = Decoding(self.handle, self._rows(block), proxy=self.proxy)
            for _ in run:
                pass
            rows = list(run.rows)
            before = [*shown, *held, *pending]
            texts = [self._text([*before, *r.ids]) for r in rows]
            now = self._text(before)
            # ending here, before this block: an option once the answer says something
            stop_open = strategy.end_early and bool(before) and may_end(now)
            best, scores = self._choose(texts, rows, now if stop_open else None)
            options = [*texts, now] if stop_open else texts
            self.candidates = tuple(ScoredCandidate(text=t, reward=float(s))
                                    for t, s in zip(options, scores, strict=True))
            self.chosen = best
            if self.first_s is None:
                self.first_s = time.perf_counter() - self.start
            if best == len(rows):  # ending here scored best
                self.finish = "stop"
                break
            row = rows[best]
            ids, token_ids, went_on, last = row.ids, row.token_ids, False, False
            if strategy.go_on and self._model_ended(row, len(kept)) and \
                    may_end(texts[best]):
                more = self._go_on(block, row, before, texts[best], len(kept))
                if more is not None:  # the user's reward prefers the answer to go on
                    # no end of turn, and the sentence it added is finished
                    ids, token_ids, went_on = [*row.ids, *more], [*row.ids, *more], True
            kept += ids
            done = not went_on and \
                (row.finish == "stop" or any(t in eos for t in row.token_ids))
            ids = [*pending, *ids]
            token_ids, pending = [*pending, *token_ids], []  # (pending: no end of turn)
            if strategy.end_early and strategy.block == "sentence" and not done and \
                    not went_on and row.finish == "length":
                safe = safe_prefix(self._text, [*shown, *held], ids)
                last = len(kept) >= spec.max_new_tokens  # the limit ends the answer here
                if last and (shown or held or safe):
                    ids = token_ids = ids[:safe]  # the rest is left out
                    self._ended_with(self._text([*shown, *held, *ids]))
                elif not last:
                    ids, pending = ids[:safe], ids[safe:]
                    token_ids = ids
                    if not ids:
                        continue  # the sentence goes on in the next block
            if trim and not shown and not done and len(kept) < spec.max_new_tokens and \
                    self._says_nothing(texts[best]):
                held += ids  # an opening that says nothing yet: wait and see
                held_tokens += token_ids
                continue
            if held and self._leave_out(self._text(held), self._text(ids), texts[best]):
                held, held_tokens = [], []
            self.token_ids += [*held_tokens, *token_ids]
            new, held, held_tokens = [*held, *ids], [], []
            shown += new
            yield from show(new)
            if out.stopped or done:
                self.finish = "stop"
                return
            if strategy.block == "answer" or not ids or last:
                break
        if held:  # the answer ended before it said anything: show what it said
            self.token_ids += held_tokens
            yield from show(held)
        rest = out.flush()
        if rest:
            yield rest

    def _ended_with(self, text: str) -> None:
        """Record that the token limit ended the answer at ``text``: the last option when it
        is that text (ending here), else ``text`` added as an unscored option."""
        if not self.candidates or self.candidates[-1].text != text:
            self.candidates += (ScoredCandidate(text=text, reward=None),)
        self.chosen = len(self.candidates) - 1

    def _model_ended(self, row: Any, kept: int) -> bool:
        """Whether the model ended the answer with ``row`` (an end of turn, not a stop
        string), with room left under the token limit."""
        return row.finish == "stop" and not row.tracker.stopped and \
            kept + len(row.ids) < self.spec.max_new_tokens

    def _go_on(self, block: RowSpec, row: Any, before: list[int], ended: str,
               kept: int) -> list[int] | None:
        """One more block where the model ended the answer (no end of turn), or None: kept
        when the user's whole-answer reward and quality prefer the answer with it to the
        answer ``ended`` there (a taste for thorough answers). Its tokens, or None."""
        room = self.spec.max_new_tokens - kept - len(row.ids)
        more = replace(block, prompt=[*block.prompt, *row.ids],
                       continuation=(*block.continuation, *row.ids),
                       max_new_tokens=min(room, block.max_new_tokens),
                       policy=PlainPolicy(banned=tuple(sorted(self.handle.eos_ids))))
        run = Decoding(self.handle, [more], proxy=self.proxy)
        for _ in run:
            pass
        extra = run.rows[0]
        going = self._text([*before, *row.ids, *extra.ids])
        if not extra.ids or not may_end(going) or extra.tracker.stopped:
            return None
        options = [ended, going]
        _, whole = (np.asarray(r, dtype=np.float64) for r in self.user_reward(options))
        quality = None if self.quality is None else np.asarray(
            self.quality.score(self.spec.prompt_text, options), dtype=np.float64)
        self.chosen, scores = choose_block(whole, quality, strength=self.strength,
                                           quality_weight=self.strategy.quality_weight)
        self.candidates = tuple(ScoredCandidate(text=t, reward=float(s))
                                for t, s in zip(options, scores, strict=True))
        return list(extra.ids) if self.chosen else None

    def _says_nothing(self, text: str) -> bool:
        """Whether ``text`` (an opening) says nothing yet: its quality is below a tenth of
        the floor."""
        q = float(self.quality.score(self.spec.prompt_text, [text])[0])
        return q < 0.1 * self.quality.floor

    def _leave_out(self, opening: str, block: str, whole: str) -> bool:
        """Whether the answer starts at ``block`` rather than with the ``opening`` before it
        (which said nothing): when the user's whole-answer reward prefers it, and the block
        does not lean on the opening ("However, ...", "This ...") and neither is a numbered
        list item (a numbered list does not start at its second item)."""
        if not can_start_at(opening, block):
            return False
        trimmed = block.lstrip()
        _, wholes = (np.asarray(r, dtype=np.float64)
                        for r in self.user_reward([whole, trimmed]))
        q = np.asarray(self.quality.score(self.spec.prompt_text, [whole, trimmed]),
                       dtype=np.float64)
        pick, _ = choose_block(wholes, q, strength=self.strength,
                               quality_weight=self.strategy.quality_weight)
        return pick == 1

    def _choose(self, texts: list[str], rows: list[Any], stop: str | None
                ) -> tuple[int, np.ndarray]:
        """The kept option: the best block (the user's whole reward and quality), then,
        when ending here (``stop``, the text so far) is open, that block against ending --
        decided by the whole-answer part of the user's reward (length) and quality only, as
        a sentence more or less says nothing about tone or format. Every option's score."""
        options = texts if stop is None else [*texts, stop]
        user, whole = (np.asarray(r, dtype=np.float64) for r in self.user_reward(options))
        quality = None
        ends = [r.finish == "stop" for r in rows]
        allowed = np.ones(len(texts), bool)
        if self.quality is not None:
            quality = np.asarray(self.quality.score(self.spec.prompt_text, options),
                                 dtype=np.float64)
            # the reward may not end an answer that says nothing yet: a sample the model
            # ended is kept only above the floor (unless nothing is)
            allowed = np.array([not e or q >= self.quality.floor
                                for e, q in zip(ends, quality[:len(texts)], strict=True)])
        n, w, qw = len(texts), self.strength, self.strategy.quality_weight
        best, scores = choose_block(user[:n], None if quality is None else quality[:n],
                                    strength=w, quality_weight=qw, allowed=allowed)
        if stop is None:
            return best, scores
        if quality is None or quality[n] < self.quality.floor:
            return best, np.append(scores, -np.inf)  # nothing said yet: it may not end
        pair = np.array([best, n])
        end, _ = choose_block(whole[pair], quality[pair], strength=w, quality_weight=qw)
        ending = w * whole[n] + qw * quality[n]
        return (n if end == 1 else best), np.append(scores, ending)

    def _text(self, ids: list[int]) -> str:
        text = self.handle.tokenizer.decode(ids, skip_special_tokens=True)
        cut = first_stop(text, self.spec.options.stop)
        return text if cut is None else text[:cut]
