"""The one decoding loop: rows decoded together, one batched forward per step.

A single request is a batch of one; many users are many rows, each with its own prompt,
options and policy (plain, ARGS with any token scorer, token-level rewards); best-of-n forks one prompt into n
rows; a lookahead draft is a row of its own. Per step:

1. the logits of every active row (the LM alone, or proxy-tuned by an expert/antiexpert pair:
   one left-padded KV cache per model, :class:`~.kv.PaddedCache`); a row steered by
   token-level rewards projects its hidden state shifted by its user's folded heads; a row
   with attribute experts (its person's weights) is its base row plus one LoRA-routed row
   per expert in the same forward, its logits the weighted sum of their differences;
2. the top candidates of the rows that rescore candidates, and, once per scorer, the raw
   base-reward features of those candidates for the rows it serves (a tree pass of a reward
   model, the LM's own tree pass for trunk heads, or decoded texts);
3. each row's policy chooses its token;
4. rows that finished (end of turn, stop string, block end, token limit) leave the batch;
5. every cache commits the chosen tokens of the rest (a chosen tree slot is kept, no extra
   forward).

Each row's tokens equal decoding that row alone (up to floating-point ties).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import torch

from personalizer.errors import BackendError
from personalizer.types import Message

from personalizer.backends.decoding.tensor_math import proxy_logits, slots_of, top_candidates
from personalizer.backends.decoding.handle import ModelHandle
from personalizer.backends.decoding.kv import PaddedCache, project
from personalizer.backends.decoding.repetition import RepeatGuard
from personalizer.steering import GenerationOptions
from personalizer.backends.decoding.text import TextTracker

if TYPE_CHECKING:  # pragma: no cover
    from personalizer.backends.decoding.proxy import ProxyTuning
    from personalizer.backends.decoding.scorers import TokenScorer
    from personalizer.backends.experts.lora import ExpertMix

__all__ = ["DecodeRow", "Decoding", "RowSpec", "TokenPolicy"]


class TokenPolicy(Protocol):
    """How one row chooses its next token (a small object; the loop is shared)."""

    k: int  # candidates it rescores (0: none)
    scorer: TokenScorer | None  # where the candidates' features come from
    # optional: ``steer`` (a :class:`~personalizer.backends.heads.token.HiddenSteer`) shifts the row's hidden
    # state before the vocabulary projection (token-level rewards)

    def candidates_at(self, step: int) -> int:
        """How many candidates it rescores at this step (0: none)."""
        ...

    def scored(self, step: int) -> bool:
        """Whether the candidates are scored at this step."""
        ...

    def choose(self, run: Decoding, row: DecodeRow, logits: torch.Tensor,
               values: torch.Tensor | None, candidates: torch.Tensor | None) -> int:
        """The next token of ``row`` from its ``(vocab,)`` logits (and its top candidates,
        best first, with ``row.features`` of them on scored steps)."""
        ...


@dataclass(frozen=True)
class RowSpec:
    """One row of a decoding run."""

    prompt: list[int]  # the LM's prompt ids (chat prompt + continuation)
    prompt_text: str  # the user's last message (what rewards score against)
    options: GenerationOptions
    policy: TokenPolicy
    max_new_tokens: int  # the options' limit, clipped to the model's context
    rng: torch.Generator | None = None  # may be shared by rows (best-of-n samples)
    messages: Sequence[Message] = ()  # for proxy models, which format the chat their own way
    continuation: tuple[int, ...] = ()  # ids after the chat prompt (proxy models get them too)
    end: Callable[[list[int]], bool] | None = None  # a block ends here (ids so far)
    guard: RepeatGuard | None = None  # steered rows: repeats of the answer lose logit
    mix: ExpertMix | None = None  # attribute experts weighed into this row's logits


def guarded(logits: torch.Tensor, rows: Sequence[DecodeRow]) -> torch.Tensor:
    """``logits`` (rows, vocab) with each guarded row's repeats penalised (its answer so
    far: the block's continuation and its own tokens)."""
    out = logits.clone()
    for b, r in enumerate(rows):
        if r.spec.guard is not None:
            out[b] = r.spec.guard.apply(logits[b], [*r.spec.continuation, *r.ids])
    return out


class DecodeRow:
    """One row's decoding state."""

    def __init__(self, spec: RowSpec, tokenizer: Any, index: int) -> None:
        self.spec, self.index, self.b = spec, index, index
        self.prompt, self.prompt_text, self.k = spec.prompt, spec.prompt_text, spec.policy.k
        self.tracker = TextTracker(tokenizer, spec.options.stop)
        self.features: torch.Tensor | None = None  # this step's candidate features
        self.token_ids: list[int] = []  # every chosen token, end of turn included
        self.finish = "length"  # "stop" (end of turn or stop string), "block", "length"
        self.done = False
        self.first_s: float | None = None

    @property
    def ids(self) -> list[int]:
        """The answer's tokens so far (no end of turn)."""
        return self.tracker.ids

    @property
    def tokens(self) -> int:
        return len(self.token_ids)

    def take(self, tid: int, eos_ids: set[int], elapsed: float) -> str:
        """Append the chosen token; the newly safe text."""
        self.token_ids.append(tid)
        if self.first_s is None:
            self.first_s = elapsed
        if tid in eos_ids:
            self.done, self.finish = True, "stop"
            return ""
        piece = self.tracker.push(tid)
        if self.tracker.stopped:
            self.done, self.finish = True, "stop"
        elif self.spec.end is not None and self.spec.end(self.ids):
            self.done, self.finish = True, "block"
        elif self.tokens >= self.spec.max_new_tokens:
            self.done = True
        return piece


class _Logits:
    """Next-token logits of the active rows: the LM alone, or proxy-tuned by two more.

    A row with attribute experts (``spec.mix``) is several rows of the LM's cache: its base
    row and one row per expert (routed through that expert's LoRA), all in the same
    forward; its logits are ``base + sum_e w_e (expert_e - base)``. ``parent`` maps the
    LM's rows to the active rows, ``base`` the active rows to their base LM row."""

    def __init__(self, handle: ModelHandle, rows: list[DecodeRow],
                 proxy: ProxyTuning | None) -> None:
        mixes = [r.spec.mix for r in rows]
        router = next((m.experts for m in mixes if m is not None), None)
        if any(m is not None and m.experts is not router for m in mixes):
            raise BackendError("rows of one run must share one expert set")
        if any(r.spec.mix is not None and getattr(r.spec.policy, "steer", None) is not None
               for r in rows):
            raise BackendError("a row is steered by token heads or by experts, not both")
        prompts: list[list[int]] = []
        route: list[int] = []
        parent: list[int] = []
        weight: list[float] = []
        for i, r in enumerate(rows):
            prompts.append(r.prompt)
            route.append(-1)
            parent.append(i)
            weight.append(0.0)
            if r.spec.mix is not None:
                for e, w in zip(r.spec.mix.index, r.spec.mix.weight, strict=True):
                    prompts.append(r.prompt)
                    route.append(e)
                    parent.append(i)
                    weight.append(w)
        self.mixed = len(prompts) > len(rows)
        if router is not None:
            router.attach(handle.model)
        self.lm = PaddedCache(handle.model, prompts, handle.tokenizer.pad_token_id or 0,
                              route=route if self.mixed else None, router=router)
        self.parent = torch.tensor(parent, dtype=torch.long)
        self.weight = torch.tensor(weight, dtype=torch.float32)
        self._index()
        self.heads = [handle.model.get_output_embeddings()]
        self.caches = [self.lm]
        self.alpha, self.vocab = 0.0, None
        self._outs: list[torch.Tensor] = []
        if proxy is not None:
            from personalizer.backends.decoding.proxy import shared_vocab_size

            self.vocab = shared_vocab_size(handle, proxy.expert, proxy.antiexpert)
            self.alpha = proxy.alpha
            for g in (proxy.expert, proxy.antiexpert):
                prompts = [g.prompt_ids(r.spec.messages) + list(r.spec.continuation)
                           for r in rows]
                self.caches.append(PaddedCache(g.model, prompts, g.tokenizer.pad_token_id or 0))
                self.heads.append(g.model.get_output_embeddings())

    def _index(self) -> None:
        route = self.lm.route if self.mixed else None
        if route is None:
            self.base = self.parent
            self.expert_rows = torch.empty(0, dtype=torch.long)
            return
        self.base = (route < 0).nonzero().flatten()
        self.expert_rows = (route >= 0).nonzero().flatten()

    def current(self, steers: Sequence[Any] = ()) -> torch.Tensor:
        """The rows' next-token logits; rows with a steer (token-level rewards) project
        their LM hidden state shifted by it (:func:`~personalizer.backends.heads.token.shift_hidden`)."""
        hidden = self.lm.hidden
        if self.mixed:
            hidden = hidden[self.base]
        if any(s is not None for s in steers):
            from personalizer.backends.heads.token import shift_hidden

            hidden = shift_hidden(hidden, steers)
        outs = [project(self.heads[0], hidden).float().cpu()[:, :self.vocab]]
        outs += [project(h, c.hidden).float().cpu()[:, :self.vocab]
                 for h, c in zip(self.heads[1:], self.caches[1:], strict=True)]
        self._outs = outs
        own = outs[0]
        if self.mixed and len(self.expert_rows):
            ex = self.expert_rows
            experts = project(self.heads[0], self.lm.hidden[ex]).float().cpu()[:, :self.vocab]
            rows = self.parent[ex]
            delta = (experts - own[rows]) * self.weight[ex, None]
            own = own.index_add(0, rows, delta)
        logits = own if len(outs) == 1 else proxy_logits(own, *outs[1:], self.alpha)
        if not bool(torch.isfinite(logits).any(dim=-1).all()):
            raise BackendError("the model produced no finite logits for a row")
        return logits

    def unsteered(self, b: int) -> torch.Tensor:
        """Row ``b``'s logits of this step without its steer or experts (what plain
        decoding sees)."""
        at = int(self.base[b])
        own = project(self.heads[0], self.lm.hidden[at:at + 1]).float().cpu()[0, :self.vocab]
        if len(self._outs) == 1:
            return own
        return proxy_logits(own, self._outs[1][b], self._outs[2][b], self.alpha)

    def tree(self, candidates: torch.Tensor) -> torch.Tensor:
        """The LM's tree pass over each row's candidates (expert rows follow their row's
        candidates), the base rows' states."""
        if not self.mixed:
            return self.lm.tree(candidates)
        return self.lm.tree(candidates[self.parent])[self.base]

    def commit(self, chosen: torch.Tensor, slot: torch.Tensor) -> None:
        if self.mixed:
            self.lm.commit(chosen[self.parent], slot[self.parent])
        else:
            self.lm.commit(chosen, slot)
        for c in self.caches[1:]:
            c.commit(chosen, torch.full_like(slot, -1))

    def select(self, keep: list[int]) -> None:
        if self.mixed:  # each kept row brings its LM rows (a repeated row forks them all)
            lm_keep: list[int] = []
            parent: list[int] = []
            for i, b in enumerate(keep):
                rows = (self.parent == b).nonzero().flatten().tolist()
                lm_keep += rows
                parent += [i] * len(rows)
            self.parent = torch.tensor(parent, dtype=torch.long)
            self.weight = self.weight[lm_keep]
            self.lm.select(lm_keep)
            self._index()
        else:
            self.lm.select(keep)
            self.parent = torch.arange(len(keep))
            self.base = self.parent
        for c in self.caches[1:]:
            c.select(keep)


class _Step:
    """What one step offers the scorers: candidates, and the LM's tree pass on demand."""

    def __init__(self, source: _Logits, candidates: torch.Tensor) -> None:
        self.candidates, self._source = candidates, source
        self._tree: torch.Tensor | None = None

    def lm_tree(self) -> torch.Tensor:
        if self._tree is None:
            self._tree = self._source.tree(self.candidates).float()
        return self._tree


@dataclass
class Decoding:
    """One run of the loop. Iterate for ``(row index, text piece)``; afterwards ``rows`` hold
    each row's tokens, text, finish reason and timings."""

    handle: ModelHandle
    specs: Sequence[RowSpec]
    proxy: ProxyTuning | None = None
    rows: list[DecodeRow] = field(init=False)
    source: Any = field(init=False, default=None)  # this step's logits (``unsteered(b)``)
    start: float = field(init=False, default_factory=time.perf_counter)

    def __post_init__(self) -> None:
        self.rows = [DecodeRow(s, self.handle.tokenizer, i) for i, s in enumerate(self.specs)]

    def __iter__(self) -> Iterator[tuple[int, str]]:
        with torch.inference_mode():
            yield from self._loop()

    def _loop(self) -> Iterator[tuple[int, str]]:
        eos = self.handle.eos_ids
        active = [r for r in self.rows if r.spec.max_new_tokens > 0]
        if not active:
            return
        source = self.source = _Logits(self.handle, active, self.proxy)
        scorers: list[TokenScorer] = []
        for r in active:
            s = r.spec.policy.scorer
            if s is not None and all(s is not t for t in scorers):
                scorers.append(s)
        for s in scorers:
            s.start([r for r in active if r.spec.policy.scorer is s])
        step = 0
        while active:
            for b, r in enumerate(active):
                r.b = b
                r.k = r.spec.policy.candidates_at(step)
            logits = source.current([getattr(r.spec.policy, "steer", None) for r in active])
            if any(r.spec.guard is not None for r in active):
                logits = guarded(logits, active)
            k_max = max(r.k for r in active)
            values = cands = None
            if k_max:
                values, cands = top_candidates(logits, k_max)
                view = _Step(source, cands)
                for s in scorers:
                    scored = [r for r in active
                              if r.spec.policy.scorer is s and r.spec.policy.scored(step)]
                    if scored:
                        for r, f in zip(scored, s.features(view, scored), strict=True):
                            r.features = f
            chosen = torch.empty(len(active), dtype=torch.long)
            for b, r in enumerate(active):
                chosen[b] = r.spec.policy.choose(
                    self, r, logits[b], None if values is None else values[b],
                    None if cands is None else cands[b])
                r.features = None
            slot = slots_of(cands, chosen) if cands is not None else \
                torch.full((len(active),), -1, dtype=torch.long)
            elapsed = time.perf_counter() - self.start
            for b, r in enumerate(active):
                piece = r.take(int(chosen[b]), eos, elapsed)
                if r.done and not r.tracker.stopped:
                    piece += r.tracker.flush()
                if piece:
                    yield r.index, piece
            alive = [r for r in active if not r.done]
            if not alive:
                return
            keep = [r.b for r in alive]
            if len(alive) < len(active):  # finished rows leave before the next forward
                source.select(keep)
                for s in scorers:
                    s.select(alive)
                for b, r in enumerate(alive):
                    r.b = b
                chosen, slot = chosen[keep], slot[keep]
            source.commit(chosen, slot)
            for s in scorers:
                s.commit(chosen, slot)
            active = alive
            step += 1

